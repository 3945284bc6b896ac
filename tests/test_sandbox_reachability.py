"""The sandbox as a real account looks: data stores admitting the private CIDRs, strays in the
private subnets (`--with-strays`), and targets the ALB cannot reach answered unhealthy."""

from typer.testing import CliRunner

from phasegate.aws import AwsClients
from phasegate.cli import app
from phasegate.config import AwsSettings, EnvironmentConfig
from phasegate.inventory import discover
from phasegate.sandbox.server import seed_sandbox
from phasegate.steps import StepContext


def test_the_seeded_data_stores_admit_the_private_subnets_cidrs(seeded: EnvironmentConfig) -> None:
    ctx = StepContext.for_environment(seeded)
    inventory = discover(seeded)
    private = sorted(s.cidr for s in inventory.subnets if not s.public)
    db = ctx.clients.rds.describe_db_instances(DBInstanceIdentifier="demo-db")["DBInstances"][0]
    [group_id] = [g["VpcSecurityGroupId"] for g in db["VpcSecurityGroups"]]
    [group] = ctx.clients.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"]
    admitted = {(p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p["IpRanges"]}
    assert admitted == {(port, cidr) for port in (5432, 6379) for cidr in private}
    assert all(not p["UserIdGroupPairs"] for p in group["IpPermissions"])


def test_with_strays_the_plan_names_the_instance_and_the_lambda_interface_as_blockers(
    sandbox: str,
) -> None:
    [path] = seed_sandbox(sandbox, ["demo"], strays=True)
    clients = AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))
    private = {
        s["SubnetId"]
        for s in clients.ec2.describe_subnets(
            Filters=[{"Name": "tag:Name", "Values": ["demo-private-*"]}]
        )["Subnets"]
    }
    enis = clients.ec2.describe_network_interfaces(
        Filters=[{"Name": "subnet-id", "Values": sorted(private)}]
    )["NetworkInterfaces"]
    [instance_eni] = [e for e in enis if e.get("Attachment", {}).get("InstanceId")]
    [lambda_eni] = [e for e in enis if e["Description"].startswith("AWS Lambda VPC ENI-")]

    planned = CliRunner().invoke(app, ["plan", str(path), "--phase", "1"])

    assert planned.exit_code == 1, planned.output
    flat = " ".join(planned.output.split())
    assert f"interface {instance_eni['NetworkInterfaceId']} (ec2-instance" in flat
    assert f"interface {lambda_eni['NetworkInterfaceId']} (lambda" in flat
    assert flat.count("BLOCKER") == 2


def _instance_target(clients: AwsClients, config: EnvironmentConfig) -> tuple[str, str, str]:
    """An instance target group on a listener of the seeded ALB, with one instance registered
    whose new security group admits nothing: the group, the instance and its group."""
    inventory = discover(config)
    [lb] = inventory.load_balancers
    [vpc] = inventory.vpcs
    public = sorted(s.id for s in inventory.subnets if s.public)
    elbv2, ec2 = clients.elbv2, clients.ec2
    tg = elbv2.create_target_group(
        Name="demo-instances", Protocol="HTTP", Port=8000, VpcId=vpc.id, TargetType="instance"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=lb.arn,
        Protocol="HTTP",
        Port=8080,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    group = ec2.create_security_group(
        GroupName="demo-forgets-the-alb", Description="admits nothing", VpcId=vpc.id
    )["GroupId"]
    image = ec2.describe_images(Filters=[{"Name": "architecture", "Values": ["x86_64"]}])
    instance = ec2.run_instances(
        ImageId=image["Images"][0]["ImageId"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=public[0],
        SecurityGroupIds=[group],
    )["Instances"][0]["InstanceId"]
    elbv2.register_targets(TargetGroupArn=tg, Targets=[{"Id": instance, "Port": 8000}])
    return tg, instance, group


def test_a_target_whose_security_group_does_not_admit_the_alb_is_unhealthy_as_on_aws(
    seeded: EnvironmentConfig,
) -> None:
    clients = StepContext.for_environment(seeded).clients
    tg, instance, group = _instance_target(clients, seeded)
    [lb] = discover(seeded).load_balancers

    [described] = clients.elbv2.describe_target_health(TargetGroupArn=tg)[
        "TargetHealthDescriptions"
    ]
    assert described["Target"]["Id"] == instance
    assert described["TargetHealth"] == {
        "State": "unhealthy",
        "Reason": "Target.Timeout",
        "Description": "Request timed out",
    }

    clients.ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8000,
                "ToPort": 8000,
                "UserIdGroupPairs": [{"GroupId": sg} for sg in lb.security_groups],
            }
        ],
    )
    [described] = clients.elbv2.describe_target_health(TargetGroupArn=tg)[
        "TargetHealthDescriptions"
    ]
    assert described["TargetHealth"]["State"] == "healthy"


def test_a_target_admitting_the_albs_subnets_by_cidr_is_healthy(seeded: EnvironmentConfig) -> None:
    clients = StepContext.for_environment(seeded).clients
    tg, _, group = _instance_target(clients, seeded)
    [vpc] = discover(seeded).vpcs
    clients.ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8000,
                "ToPort": 8000,
                "IpRanges": [{"CidrIp": vpc.cidr}],
            }
        ],
    )
    [described] = clients.elbv2.describe_target_health(TargetGroupArn=tg)[
        "TargetHealthDescriptions"
    ]
    assert described["TargetHealth"]["State"] == "healthy"


def test_a_group_no_listener_forwards_to_reports_its_targets_unused_as_on_aws(
    seeded: EnvironmentConfig,
) -> None:
    """AWS health-checks a target group only while a listener's default action or rule
    forwards to it (a weighted forward at weight 0 included); otherwise its targets stay
    `unused`. moto calls them healthy, and ModifyListener leaves its own bookkeeping stale."""
    clients = StepContext.for_environment(seeded).clients
    elbv2 = clients.elbv2
    tg, _, group = _instance_target(clients, seeded)
    [lb] = discover(seeded).load_balancers
    clients.ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8000,
                "ToPort": 8000,
                "UserIdGroupPairs": [{"GroupId": sg} for sg in lb.security_groups],
            }
        ],
    )
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb.arn)["Listeners"]
    [extra] = [x for x in listeners if x["Port"] == 8080]
    [app] = [x for x in listeners if x["Port"] != 8080]
    app_tg = app["DefaultActions"][0]["TargetGroupArn"]

    def health() -> dict[str, str]:
        [described] = elbv2.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return described["TargetHealth"]

    unused = {
        "State": "unused",
        "Reason": "Target.NotInUse",
        "Description": "Target group is not configured to receive traffic from the load balancer",
    }
    assert health()["State"] == "healthy"  # the 8080 listener forwards to it
    elbv2.modify_listener(
        ListenerArn=extra["ListenerArn"],
        DefaultActions=[{"Type": "forward", "TargetGroupArn": app_tg}],
    )
    assert health() == unused

    weighted = {
        "TargetGroups": [
            {"TargetGroupArn": app_tg, "Weight": 1},
            {"TargetGroupArn": tg, "Weight": 0},
        ]
    }
    elbv2.modify_listener(
        ListenerArn=app["ListenerArn"],
        DefaultActions=[{"Type": "forward", "ForwardConfig": weighted}],
    )
    assert health()["State"] == "healthy"
    elbv2.modify_listener(ListenerArn=app["ListenerArn"], DefaultActions=app["DefaultActions"])
    assert health() == unused

    elbv2.create_rule(
        ListenerArn=app["ListenerArn"],
        Priority=10,
        Conditions=[{"Field": "path-pattern", "Values": ["/new/*"]}],
        Actions=[{"Type": "forward", "TargetGroupArn": tg}],
    )
    assert health()["State"] == "healthy"
