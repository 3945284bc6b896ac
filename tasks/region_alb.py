"""`regions.expand.alb`: the second region's ALB, its target group and listener, and the two
security groups the standby copy needs (the ALB's, open on 80 and 443; the app's, open on the
app's port to the ALB only).

The target group copies the primary's (port, protocol, target type, health check path), so
the same compute registers the same way. The listener is HTTP on 80: a certificate is a
regional resource that cannot be copied, so HTTPS in the second region needs one issued
there first (ACM); Route 53's failover health checks then probe the ALB over HTTP.
"""

from typing import Any

from phasegate.errors import AwsCallError
from phasegate.inventory import LOAD_BALANCER_IAM_ACTIONS, VPC_IAM_ACTIONS
from phasegate.steps import StepRefused
from tasks.region_common import ALB_STEP, NETWORK_STEP, PRICING_IAM_ACTIONS, RegionStep, tag_list

OPEN_PORTS = [80, 443]


class RegionAlb(RegionStep):
    """An internet-facing ALB in the second region's public subnets, ready for compute."""

    id = ALB_STEP
    title = "Second region: ALB, target group, listener and security groups"
    after = (NETWORK_STEP,)
    iam_actions = (
        *PRICING_IAM_ACTIONS,
        *VPC_IAM_ACTIONS,
        *LOAD_BALANCER_IAM_ACTIONS,
        "elasticloadbalancing:DescribeListeners",
        "elasticloadbalancing:CreateLoadBalancer",
        "elasticloadbalancing:CreateTargetGroup",
        "elasticloadbalancing:CreateListener",
        "elasticloadbalancing:AddTags",
        "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:DeleteLoadBalancer",
        "elasticloadbalancing:DeleteTargetGroup",
        "ec2:DescribeSecurityGroups",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:CreateTags",
        "ec2:DeleteSecurityGroup",
    )

    def desired(self) -> dict[str, Any]:
        primary = self.primary_load_balancer()
        group = self._serving_group(primary.arn, primary.name)
        port = group["Port"]
        return {
            "region": self.region,
            "security_groups": {"alb": {"from_anywhere": OPEN_PORTS}, "app": {"from_alb": [port]}},
            "load_balancer": {"name": self.name("alb", 32), "scheme": "internet-facing"},
            "target_group": {
                "name": self.name("app", 32),
                "port": port,
                "protocol": group.get("Protocol", "HTTP"),
                "target_type": group.get("TargetType", "instance"),
                "health_check_path": group.get("HealthCheckPath", "/"),
            },
            "listener": {"port": 80, "protocol": "HTTP", "forwards_to": self.name("app", 32)},
        }

    def _serving_group(self, arn: str, name: str) -> dict[str, Any]:
        """The target group the primary's listeners forward to (phase 1 may have left the
        old one attached but idle), else its only one."""
        elbv2 = self.clients.elbv2
        groups = elbv2.describe_target_groups(LoadBalancerArn=arn)["TargetGroups"]
        listeners = elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
        forwarded = {
            a.get("TargetGroupArn") for x in listeners for a in x.get("DefaultActions", [])
        }
        serving = [g for g in groups if g["TargetGroupArn"] in forwarded] or groups
        if not serving:
            raise StepRefused(f"{self.where()}: the primary ALB {name} has no target group")
        return dict(serving[0])

    # -- reading -------------------------------------------------------------------------

    def _groups(self, region: str) -> dict[str, dict[str, Any]]:
        """Our security groups by role (alb, app)."""
        ec2 = self.client("ec2", region)
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in self.tags().items()]
        found = ec2.describe_security_groups(Filters=filters)["SecurityGroups"]
        roles = {self.name("alb"): "alb", self.name("app"): "app"}
        return {roles[g["GroupName"]]: g for g in found if g["GroupName"] in roles}

    def _rules(self, groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
        shape: dict[str, Any] = {}
        alb_id = groups["alb"]["GroupId"] if "alb" in groups else None
        for role, group in groups.items():
            rules = group.get("IpPermissions", [])
            if role == "alb":
                ports = [
                    r["FromPort"]
                    for r in rules
                    if any(x.get("CidrIp") == "0.0.0.0/0" for x in r.get("IpRanges", []))
                ]
                shape["alb"] = {"from_anywhere": sorted(ports)}
            else:
                ports = [
                    r["FromPort"]
                    for r in rules
                    if any(p.get("GroupId") == alb_id for p in r.get("UserIdGroupPairs", []))
                ]
                shape["app"] = {"from_alb": sorted(ports)}
        return shape

    def current(self, region: str) -> dict[str, Any]:
        found: dict[str, Any] = {"region": region}
        groups = self._groups(region)
        if groups:
            found["security_groups"] = self._rules(groups)
        lb = self.load_balancer(region)
        if lb is not None:
            found["load_balancer"] = {"name": lb["LoadBalancerName"], "scheme": lb.get("Scheme")}
        group = self.target_group(region)
        if group is not None:
            found["target_group"] = {
                "name": group["TargetGroupName"],
                "port": group.get("Port"),
                "protocol": group.get("Protocol"),
                "target_type": group.get("TargetType"),
                "health_check_path": group.get("HealthCheckPath"),
            }
        if lb is not None:
            elbv2 = self.client("elbv2", region)
            listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])
            for listener in listeners["Listeners"]:
                forwards = [a.get("TargetGroupArn") for a in listener.get("DefaultActions", [])]
                name = (
                    group["TargetGroupName"]
                    if group and group["TargetGroupArn"] in forwards
                    else None
                )
                found["listener"] = {
                    "port": listener["Port"],
                    "protocol": listener["Protocol"],
                    "forwards_to": name,
                }
        return found

    def terraform_part(self) -> dict[str, Any]:
        return {"enable_secondary_alb": True}

    # -- changing ------------------------------------------------------------------------

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        group = desired["target_group"]
        cost, note = self.secondary_cost("load_balancer")
        return (
            f"{desired['region']}: ALB {desired['load_balancer']['name']} forwarding HTTP:80 to "
            f"{group['name']} ({group['target_type']} targets on {group['port']}, health "
            f"{group['health_check_path']}; {note})",
            [
                "ec2:CreateSecurityGroup alb (80, 443 from anywhere) and app "
                f"({group['port']} from the ALB)",
                f"elasticloadbalancing:CreateLoadBalancer {desired['load_balancer']['name']} "
                "internet-facing in the public subnets",
                f"elasticloadbalancing:CreateTargetGroup {group['name']}",
                "elasticloadbalancing:CreateListener HTTP:80 -> the target group",
            ],
            cost,
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        vpcs = self.ec2_ids("vpcs", NETWORK_STEP)
        subnets = self.ec2_ids("subnets", NETWORK_STEP)
        if not vpcs or not subnets:
            raise StepRefused(
                f"{self.where()}: no VPC of {NETWORK_STEP} in {desired['region']}; it runs first"
            )
        groups = self._make_groups(vpcs[0], desired["target_group"]["port"])
        lb = self.load_balancer() or self._make_load_balancer(desired, subnets, groups["alb"])
        group = self.target_group() or self._make_target_group(desired["target_group"], vpcs[0])
        self._listener(lb["LoadBalancerArn"], group["TargetGroupArn"])
        return {
            "load_balancer": lb["LoadBalancerArn"],
            "target_group": group["TargetGroupArn"],
            "security_groups": groups,
        }

    def _make_groups(self, vpc: str, port: int) -> dict[str, str]:
        ec2 = self.client("ec2")
        found = {role: g["GroupId"] for role, g in self._groups(str(self.region)).items()}
        for role, text in (
            ("alb", "ALB: HTTP and HTTPS from anywhere"),
            ("app", "App: from the ALB"),
        ):
            if role not in found:
                tags = {**self.tags(), "Name": self.name(role)}
                found[role] = ec2.create_security_group(
                    GroupName=self.name(role),
                    Description=text,
                    VpcId=vpc,
                    TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(tags)}],
                )["GroupId"]
                self.progress(**{f"security_group_{role}": found[role]})
        rules = {
            "alb": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": p,
                    "ToPort": p,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
                for p in OPEN_PORTS
            ],
            "app": [
                {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "UserIdGroupPairs": [{"GroupId": found["alb"]}],
                }
            ],
        }
        present = self._rules(self._groups(str(self.region)))
        wanted = {"alb": {"from_anywhere": OPEN_PORTS}, "app": {"from_alb": [port]}}
        for role, permissions in rules.items():
            if present.get(role) != wanted[role]:
                try:
                    ec2.authorize_security_group_ingress(
                        GroupId=found[role], IpPermissions=permissions
                    )
                except AwsCallError as exc:
                    if exc.code != "InvalidPermission.Duplicate":
                        raise
        return found

    def _make_load_balancer(
        self, desired: dict[str, Any], subnets: list[str], group: str
    ) -> dict[str, Any]:
        lb = self.client("elbv2").create_load_balancer(
            Name=desired["load_balancer"]["name"],
            Subnets=subnets,
            SecurityGroups=[group],
            Scheme="internet-facing",
            Type="application",
            Tags=tag_list(self.tags()),
        )["LoadBalancers"][0]
        self.progress(load_balancer=lb["LoadBalancerArn"])
        return dict(lb)

    def _make_target_group(self, spec: dict[str, Any], vpc: str) -> dict[str, Any]:
        group = self.client("elbv2").create_target_group(
            Name=spec["name"],
            Protocol=spec["protocol"],
            Port=spec["port"],
            VpcId=vpc,
            TargetType=spec["target_type"],
            HealthCheckPath=spec["health_check_path"],
            Tags=tag_list(self.tags()),
        )["TargetGroups"][0]
        self.progress(target_group=group["TargetGroupArn"])
        return dict(group)

    def _listener(self, lb: str, group: str) -> None:
        elbv2 = self.client("elbv2")
        if elbv2.describe_listeners(LoadBalancerArn=lb)["Listeners"]:
            return
        elbv2.create_listener(
            LoadBalancerArn=lb,
            Protocol="HTTP",
            Port=80,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
        )

    # -- undoing -------------------------------------------------------------------------

    def teardown(self, region: str) -> None:
        elbv2 = self.client("elbv2", region)
        lb = self.load_balancer(region)
        if lb is not None:
            arn = lb["LoadBalancerArn"]
            elbv2.delete_load_balancer(LoadBalancerArn=arn)  # its listeners go with it
            self.ctx.wait(
                f"ALB {lb['LoadBalancerName']} in {region} deleted",
                lambda: self.load_balancer(region),
                lambda found: found is None,
            )
        group = self.target_group(region)
        if group is not None and self.tags().items() <= self._tg_tags(region, group).items():
            elbv2.delete_target_group(TargetGroupArn=group["TargetGroupArn"])
        groups = self._groups(region)
        for role in ("app", "alb"):  # the app's group names the ALB's in a rule
            if role in groups:
                self.delete_security_group(region, groups[role]["GroupId"])

    def _tg_tags(self, region: str, group: dict[str, Any]) -> dict[str, str]:
        described = self.client("elbv2", region).describe_tags(
            ResourceArns=[group["TargetGroupArn"]]
        )["TagDescriptions"]
        return {t["Key"]: t["Value"] for d in described for t in d.get("Tags", [])}

    def leftovers(self, region: str) -> list[str]:
        left = [g["GroupId"] for g in self._groups(region).values()]
        lb = self.load_balancer(region)
        if lb is not None:
            left.append(lb["LoadBalancerName"])
        group = self.target_group(region)
        if group is not None and self.tags().items() <= self._tg_tags(region, group).items():
            left.append(group["TargetGroupName"])
        return left
