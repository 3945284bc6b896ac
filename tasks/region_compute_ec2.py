"""regions.expand.compute on the EC2 target: the Auto Scaling group and its launch template.

The launch template is the primary's latest version with what is regional replaced: the
AMI (the same SSM parameter, ECS-optimized AL2023 arm64, read in the second region: AMI ids
differ per region) and the security group (the second region's app group). The instance
profile is global and the user data is kept: it names the log group's region and the
secrets' ARNs, which instances reach across regions. The group keeps the primary's sizes,
in the second region's public subnets, registered with its target group.
"""

from typing import TYPE_CHECKING, Any

from phasegate.errors import AwsCallError
from phasegate.inventory import AUTOSCALING_IAM_ACTIONS, AutoScalingGroup, Discovery
from phasegate.steps import Settling, StepRefused
from tasks.compute_ec2 import AMI_PARAMETER
from tasks.region_common import NETWORK_STEP, tag_dict, tag_list

if TYPE_CHECKING:
    from tasks.region_compute import RegionCompute

EC2_IAM_ACTIONS = (
    *AUTOSCALING_IAM_ACTIONS,
    "ssm:GetParameter",
    "ec2:DescribeLaunchTemplates",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:CreateLaunchTemplate",
    "ec2:DeleteLaunchTemplate",
    "ec2:RunInstances",
    "autoscaling:CreateAutoScalingGroup",
    "autoscaling:DeleteAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags",
    "iam:PassRole",
)


class Ec2Copy:
    """The EC2 half of RegionCompute: same verbs, same shapes."""

    def __init__(self, step: "RegionCompute") -> None:
        self.step = step

    def _primary(self) -> AutoScalingGroup:
        found = Discovery(self.step.ctx.config, self.step.clients).autoscaling_groups()
        if len(found) != 1 or not found[0].launch_template:
            raise StepRefused(
                f"{self.step.where()}: the EC2 target copies exactly one Auto Scaling group "
                f"with a launch template; found {', '.join(g.name for g in found) or 'none'}"
            )
        return found[0]

    def _template_data(self, name: str, region: str | None = None) -> dict[str, Any] | None:
        ec2 = self.step.client("ec2", region) if region else self.step.clients.ec2
        try:
            versions = ec2.describe_launch_template_versions(
                LaunchTemplateName=name, Versions=["$Latest"]
            )["LaunchTemplateVersions"]
        except AwsCallError as exc:
            if "NotFound" in exc.code:
                return None
            raise
        return versions[0]["LaunchTemplateData"] if versions else None

    def desired(self) -> dict[str, Any]:
        group = self._primary()
        data = self._template_data(str(group.launch_template)) or {}
        ami = self.step.client("ssm").get_parameter(Name=AMI_PARAMETER)["Parameter"]["Value"]
        return {
            "launch_template": {
                "name": group.launch_template,
                "instance_type": data.get("InstanceType"),
                "ami": ami,
            },
            "group": {
                "name": group.name,
                "min": group.min_size,
                "max": group.max_size,
                "desired": group.desired,
                "target_group": self.step.name("app", 32),
            },
        }

    def _ours(self, tags: list[dict[str, str]] | None) -> bool:
        return self.step.tags().items() <= tag_dict(tags).items()

    def _template(self, name: str, region: str) -> dict[str, Any] | None:
        ec2 = self.step.client("ec2", region)
        try:
            found = ec2.describe_launch_templates(LaunchTemplateNames=[name])["LaunchTemplates"]
        except AwsCallError as exc:
            if "NotFound" in exc.code:
                return None
            raise
        return dict(found[0]) if found and self._ours(found[0].get("Tags")) else None

    def _group(self, name: str, region: str) -> dict[str, Any] | None:
        autoscaling = self.step.client("autoscaling", region)
        found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        groups = found["AutoScalingGroups"]
        return dict(groups[0]) if groups and self._ours(groups[0].get("Tags")) else None

    def current(self, region: str) -> dict[str, Any]:
        primary = self._primary()
        found: dict[str, Any] = {}
        name = str(primary.launch_template)
        if self._template(name, region) is not None:
            data = self._template_data(name, region) or {}
            found["launch_template"] = {
                "name": name,
                "instance_type": data.get("InstanceType"),
                "ami": data.get("ImageId"),
            }
        group = self._group(primary.name, region)
        if group is not None:
            target = self.step.target_group(region)
            registered = target is not None and target["TargetGroupArn"] in group.get(
                "TargetGroupARNs", []
            )
            found["group"] = {
                "name": group["AutoScalingGroupName"],
                "min": group["MinSize"],
                "max": group["MaxSize"],
                "desired": group["DesiredCapacity"],
                "target_group": target["TargetGroupName"] if registered and target else None,
            }
            running = [i for i in group.get("Instances", []) if i["LifecycleState"] == "InService"]
            if len(running) < group["DesiredCapacity"]:
                raise Settling(
                    f"Auto Scaling group {primary.name} in {region} has {len(running)} of "
                    f"{group['DesiredCapacity']} instances in service"
                )
        return found

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        group, template = desired["group"], desired["launch_template"]
        cost, note = self.step.secondary_cost("compute")
        return (
            f"{desired['region']}: Auto Scaling group {group['name']} ({group['min']}-"
            f"{group['max']}, {group['desired']} now) of {template['instance_type']} from "
            f"launch template {template['name']} (AMI {template['ami']}; {note})",
            [
                f"ec2:CreateLaunchTemplate {template['name']}: the primary's latest version, "
                "with the region's AMI and app security group",
                f"autoscaling:CreateAutoScalingGroup {group['name']} in the public subnets, "
                f"registered with {group['target_group']}",
                "wait until its instances are in service",
            ],
            cost,
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        region = str(desired["region"])
        spec, group = desired["launch_template"], desired["group"]
        if self._template(spec["name"], region) is None:
            self._make_template(spec)
        if self._group(group["name"], region) is None:
            target = self.step.target_group()
            self.step.client("autoscaling").create_auto_scaling_group(
                AutoScalingGroupName=group["name"],
                LaunchTemplate={"LaunchTemplateName": spec["name"], "Version": "$Latest"},
                MinSize=group["min"],
                MaxSize=group["max"],
                DesiredCapacity=group["desired"],
                VPCZoneIdentifier=",".join(self.step.ec2_ids("subnets", NETWORK_STEP)),
                TargetGroupARNs=[target["TargetGroupArn"]] if target else [],
                HealthCheckType="ELB",
                HealthCheckGracePeriod=300,
                Tags=[{**t, "PropagateAtLaunch": True} for t in tag_list(self.step.tags())],
            )
            self.step.progress(auto_scaling_group=group["name"])
        self.step.ctx.wait(
            f"Auto Scaling group {group['name']} in {region} in service",
            lambda: self.step._settled(region),
            bool,
        )
        return {"auto_scaling_group": group["name"], "launch_template": spec["name"]}

    def _make_template(self, spec: dict[str, Any]) -> None:
        data = dict(self._template_data(spec["name"]) or {})
        app = self.step.security_group("app")
        data["ImageId"] = spec["ami"]
        if data.get("NetworkInterfaces"):
            data["NetworkInterfaces"] = [
                {**nic, "Groups": [app]} for nic in data["NetworkInterfaces"]
            ]
        else:
            data["SecurityGroupIds"] = [app]
        self.step.client("ec2").create_launch_template(
            LaunchTemplateName=spec["name"],
            VersionDescription=f"phasegate: copy of {spec['name']} in {self.step.region}",
            LaunchTemplateData=data,
            TagSpecifications=[
                {"ResourceType": "launch-template", "Tags": tag_list(self.step.tags())}
            ],
        )
        self.step.progress(launch_template=spec["name"])

    def _tagged(self, region: str) -> tuple[list[str], list[dict[str, Any]]]:
        """Our groups' names and launch templates in `region`, found by tags alone (the
        primary may have changed since they were copied)."""
        tags = self.step.tags()
        groups = self.step.client("autoscaling", region).describe_auto_scaling_groups(
            Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        )["AutoScalingGroups"]
        templates = self.step.client("ec2", region).describe_launch_templates(
            Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        )["LaunchTemplates"]
        return [g["AutoScalingGroupName"] for g in groups], templates

    def teardown(self, region: str) -> None:
        groups, templates = self._tagged(region)
        if not groups and not templates:
            return
        autoscaling = self.step.client("autoscaling", region)
        for name in groups:
            autoscaling.delete_auto_scaling_group(AutoScalingGroupName=name, ForceDelete=True)
        self.step.ctx.wait(
            f"Auto Scaling groups {', '.join(groups)} in {region} deleted",
            lambda: self._tagged(region)[0],
            lambda left: not left,
        )
        for template in templates:
            self.step.client("ec2", region).delete_launch_template(
                LaunchTemplateId=template["LaunchTemplateId"]
            )

    def leftovers(self, region: str) -> list[str]:
        groups, templates = self._tagged(region)
        return groups + [t["LaunchTemplateName"] for t in templates]
