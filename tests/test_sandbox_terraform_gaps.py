"""The sandbox front answers as AWS does where Terraform's AWS provider reads back what it
made (each gap is one that left a permanent diff or failed an apply; test_terraform shows
the plans clean): target groups follow listeners, Auto Scaling policies say Enabled, a
launch template's own tags stay out of its versions, and a group's instances carry its
groups, parameters carry their Source, DB instances have ids of their own, budgets keep
their tags, a service created with a strategy keeps it, and distributions read back as AWS
describes them."""

from typing import Any

import pytest

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings
from phasegate.errors import AwsCallError
from tasks.cdn_distribution import desired_shape, distribution_config


@pytest.fixture
def clients(sandbox: str) -> AwsClients:
    return AwsClients(AwsSettings(region="us-east-1", endpoint_url=sandbox))


def _alb(clients: AwsClients) -> tuple[str, str, str]:
    """An ALB with one listener forwarding to group `a`; (balancer, listener, group b) ARNs."""
    ec2, elbv2 = clients.ec2, clients.elbv2
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.9.{i}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate(("us-east-1a", "us-east-1b"))
    ]
    lb = elbv2.create_load_balancer(Name="gaps-alb", Subnets=subnets)["LoadBalancers"][0]
    groups = [
        elbv2.create_target_group(Name=f"gaps-{n}", Port=80, Protocol="HTTP", VpcId=vpc)[
            "TargetGroups"
        ][0]["TargetGroupArn"]
        for n in ("a", "b")
    ]
    listener = elbv2.create_listener(
        LoadBalancerArn=lb["LoadBalancerArn"],
        Port=80,
        Protocol="HTTP",
        DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[0]}],
    )["Listeners"][0]["ListenerArn"]
    return lb["LoadBalancerArn"], listener, groups[1]


def test_a_target_group_is_on_the_balancer_whose_listener_forwards_to_it(
    clients: AwsClients,
) -> None:
    elbv2 = clients.elbv2
    lb, listener, group_b = _alb(clients)
    elbv2.modify_listener(
        ListenerArn=listener, DefaultActions=[{"Type": "forward", "TargetGroupArn": group_b}]
    )
    found = elbv2.describe_target_groups(LoadBalancerArn=lb)["TargetGroups"]
    assert [g["TargetGroupName"] for g in found] == ["gaps-b"]
    assert found[0]["LoadBalancerArns"] == [lb]
    [a] = elbv2.describe_target_groups(Names=["gaps-a"])["TargetGroups"]
    assert a.get("LoadBalancerArns", []) == []

    elbv2.delete_listener(ListenerArn=listener)
    assert elbv2.describe_target_groups(LoadBalancerArn=lb)["TargetGroups"] == []


def test_scaling_policies_and_launch_templates_read_back_as_created(clients: AwsClients) -> None:
    ec2, autoscaling = clients.ec2, clients.autoscaling
    tags = [{"Key": "Environment", "Value": "gaps"}]
    ec2.create_launch_template(
        LaunchTemplateName="gaps-app",
        LaunchTemplateData={"InstanceType": "t4g.medium"},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags}],
    )
    [version] = ec2.describe_launch_template_versions(LaunchTemplateName="gaps-app")[
        "LaunchTemplateVersions"
    ]
    assert "TagSpecifications" not in version["LaunchTemplateData"]
    [template] = ec2.describe_launch_templates(LaunchTemplateNames=["gaps-app"])["LaunchTemplates"]
    assert template["Tags"] == tags

    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="gaps-app",
        LaunchTemplate={"LaunchTemplateName": "gaps-app"},
        MinSize=0,
        MaxSize=1,
        AvailabilityZones=["us-east-1a"],
    )
    tracking: dict[str, Any] = {
        "PredefinedMetricSpecification": {"PredefinedMetricType": "ASGAverageCPUUtilization"},
        "TargetValue": 60.0,
    }
    for name, enabled in (("gaps-on", None), ("gaps-off", False)):
        autoscaling.put_scaling_policy(
            AutoScalingGroupName="gaps-app",
            PolicyName=name,
            PolicyType="TargetTrackingScaling",
            TargetTrackingConfiguration=tracking,
            **({} if enabled is None else {"Enabled": enabled}),
        )
    policies = autoscaling.describe_policies(AutoScalingGroupName="gaps-app")["ScalingPolicies"]
    assert {p["PolicyName"]: p["Enabled"] for p in policies} == {
        "gaps-on": True,
        "gaps-off": False,
    }
    assert not any("PredictiveScalingConfiguration" in p for p in policies)


def test_a_groups_instances_carry_its_launch_templates_security_groups(
    clients: AwsClients,
) -> None:
    ec2, autoscaling = clients.ec2, clients.autoscaling
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="gaps-app", Description="app", VpcId=vpc)
    ec2.create_launch_template(
        LaunchTemplateName="gaps-nic",
        LaunchTemplateData={
            "InstanceType": "t4g.medium",
            "NetworkInterfaces": [
                {"DeviceIndex": 0, "AssociatePublicIpAddress": True,
                 "Groups": [group["GroupId"]]},
            ],
        },
    )  # fmt: skip
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="gaps-nic",
        LaunchTemplate={"LaunchTemplateName": "gaps-nic"},
        MinSize=1,
        MaxSize=1,
        VPCZoneIdentifier=subnet,
    )
    [reservation] = ec2.describe_instances()["Reservations"]
    [instance] = reservation["Instances"]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]


def test_parameters_set_by_the_caller_are_the_users(clients: AwsClients) -> None:
    rds = clients.rds
    rds.create_db_parameter_group(
        DBParameterGroupName="gaps-pg", DBParameterGroupFamily="postgres16", Description="gaps"
    )
    rds.modify_db_parameter_group(
        DBParameterGroupName="gaps-pg",
        Parameters=[
            {"ParameterName": "max_connections", "ParameterValue": "112",
             "ApplyMethod": "pending-reboot"},
        ],
    )  # fmt: skip
    [parameter] = rds.describe_db_parameters(DBParameterGroupName="gaps-pg")["Parameters"]
    assert (parameter["ParameterName"], parameter["Source"]) == ("max_connections", "user")


def test_db_instances_have_resource_ids_of_their_own(clients: AwsClients) -> None:
    rds = clients.rds
    made = [
        rds.create_db_instance(
            DBInstanceIdentifier=f"gaps-db-{n}", DBInstanceClass="db.t4g.micro",
            Engine="postgres", MasterUsername="u", MasterUserPassword="password1",
            AllocatedStorage=20,
        )["DBInstance"]["DbiResourceId"]
        for n in (1, 2)
    ]  # fmt: skip
    assert len(set(made)) == 2 and all(r.startswith("db-") and len(r) == 29 for r in made)
    found = rds.describe_db_instances(Filters=[{"Name": "dbi-resource-id", "Values": made[:1]}])
    assert [d["DBInstanceIdentifier"] for d in found["DBInstances"]] == ["gaps-db-1"]


def test_budgets_keep_their_tags(clients: AwsClients) -> None:
    budgets = clients.budgets
    account = clients.sts.get_caller_identity()["Account"]
    budgets.create_budget(
        AccountId=account,
        Budget={
            "BudgetName": "gaps-monthly",
            "BudgetLimit": {"Amount": "250", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        },
        ResourceTags=[{"Key": "Environment", "Value": "gaps"}],
    )
    arn = f"arn:aws:budgets::{account}:budget/gaps-monthly"
    budgets.tag_resource(ResourceARN=arn, ResourceTags=[{"Key": "Owner", "Value": "ops"}])
    budgets.untag_resource(ResourceARN=arn, ResourceTagKeys=["Environment"])
    assert budgets.list_tags_for_resource(ResourceARN=arn)["ResourceTags"] == [
        {"Key": "Owner", "Value": "ops"}
    ]
    with pytest.raises(AwsCallError) as missing:
        budgets.list_tags_for_resource(ResourceARN=f"arn:aws:budgets::{account}:budget/none")
    assert missing.value.code == "ResourceNotFoundException"


def test_a_service_created_with_a_strategy_keeps_it_and_has_no_launch_type(
    clients: AwsClients,
) -> None:
    ecs = clients.ecs
    ecs.create_cluster(clusterName="gaps-cluster")
    ecs.put_cluster_capacity_providers(
        cluster="gaps-cluster",
        capacityProviders=["FARGATE", "FARGATE_SPOT"],
        defaultCapacityProviderStrategy=[],
    )
    ecs.register_task_definition(
        family="gaps-app",
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[{"name": "app", "image": "nginx", "memory": 512}],
    )
    strategy = [{"capacityProvider": "FARGATE", "base": 1, "weight": 1}]
    ecs.create_service(
        cluster="gaps-cluster",
        serviceName="gaps-strategy",
        taskDefinition="gaps-app",
        desiredCount=1,
        capacityProviderStrategy=strategy,
    )
    ecs.create_service(
        cluster="gaps-cluster", serviceName="gaps-launch-type", taskDefinition="gaps-app",
        desiredCount=1, launchType="FARGATE",
    )  # fmt: skip
    found = {
        s["serviceName"]: s
        for s in ecs.describe_services(
            cluster="gaps-cluster", services=["gaps-strategy", "gaps-launch-type"]
        )["services"]
    }
    assert found["gaps-strategy"]["capacityProviderStrategy"] == strategy
    assert "launchType" not in found["gaps-strategy"]
    assert found["gaps-launch-type"]["launchType"] == "FARGATE"
    assert not found["gaps-launch-type"].get("capacityProviderStrategy")

    spot = [*strategy, {"capacityProvider": "FARGATE_SPOT", "base": 0, "weight": 3}]
    ecs.update_service(
        cluster="gaps-cluster", service="gaps-strategy", capacityProviderStrategy=spot,
        forceNewDeployment=True,
    )  # fmt: skip
    [updated] = ecs.describe_services(cluster="gaps-cluster", services=["gaps-strategy"])[
        "services"
    ]
    assert updated["capacityProviderStrategy"] == spot, "an update's strategy is not undone"


def test_a_distribution_reads_back_as_aws_describes_it(clients: AwsClients) -> None:
    """On the default certificate: no SSLSupportMethod; a behaviour with a cache policy: no
    legacy ForwardedValues (moto returned both, a permanent Terraform diff)."""
    cloudfront = clients.client("cloudfront")
    config = distribution_config(
        "gaps-cdn",
        "gaps",
        desired_shape("gaps-alb.example.com", "http-only", ["/static/*"], "PriceClass_100"),
    )
    made = cloudfront.create_distribution(DistributionConfig=config)["Distribution"]
    found = cloudfront.get_distribution(Id=made["Id"])["Distribution"]["DistributionConfig"]
    assert found["ViewerCertificate"]["CloudFrontDefaultCertificate"] is True
    assert "SSLSupportMethod" not in found["ViewerCertificate"]
    assert "ForwardedValues" not in found["DefaultCacheBehavior"]
    [static] = found["CacheBehaviors"]["Items"]
    assert "ForwardedValues" not in static
