"""Every resource of the kinds regions.expand makes, by id, in both regions and Route 53: what
the second region's tests compare before phase 3 and after its rollback."""

from typing import Any

from phasegate.aws import AwsClients

SECONDARY = "us-west-2"


def inventory(clients: AwsClients) -> dict[str, Any]:
    """Every resource of the kinds regions.expand makes, in both regions, and Route 53's."""
    found: dict[str, Any] = {}
    for region in ("us-east-1", SECONDARY):
        ec2 = clients.client("ec2", region)
        rds = clients.client("rds", region)
        elasticache = clients.client("elasticache", region)
        ecs = clients.client("ecs", region)
        elbv2 = clients.client("elbv2", region)
        clusters = ecs.list_clusters()["clusterArns"]
        active = [
            c["clusterArn"]
            for c in (ecs.describe_clusters(clusters=clusters)["clusters"] if clusters else [])
            if c["status"] == "ACTIVE"
        ]
        found[region] = {
            "vpcs": sorted(v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]),
            "subnets": sorted(s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]),
            "security_groups": sorted(
                g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]
            ),
            "internet_gateways": sorted(
                g["InternetGatewayId"] for g in ec2.describe_internet_gateways()["InternetGateways"]
            ),
            "route_tables": sorted(
                t["RouteTableId"] for t in ec2.describe_route_tables()["RouteTables"]
            ),
            "load_balancers": sorted(
                lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]
            ),
            "target_groups": sorted(
                g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]
            ),
            "db_instances": sorted(
                (d["DBInstanceIdentifier"], tuple(d.get("ReadReplicaDBInstanceIdentifiers", [])))
                for d in rds.describe_db_instances()["DBInstances"]
            ),
            "db_subnet_groups": sorted(
                g["DBSubnetGroupName"] for g in rds.describe_db_subnet_groups()["DBSubnetGroups"]
            ),
            "db_parameter_groups": sorted(
                g["DBParameterGroupName"]
                for g in rds.describe_db_parameter_groups()["DBParameterGroups"]
                if not g["DBParameterGroupName"].startswith("default.")  # AWS's own, everywhere
            ),
            "replication_groups": sorted(
                g["ReplicationGroupId"]
                for g in elasticache.describe_replication_groups()["ReplicationGroups"]
            ),
            "cache_subnet_groups": sorted(
                g["CacheSubnetGroupName"]
                for g in elasticache.describe_cache_subnet_groups()["CacheSubnetGroups"]
            ),
            "ecs_services": sorted(
                arn for c in active for arn in ecs.list_services(cluster=c)["serviceArns"]
            ),
            "ecs_clusters": sorted(active),
            "task_definitions": sorted(ecs.list_task_definitions()["taskDefinitionArns"]),
            "auto_scaling_groups": sorted(
                g["AutoScalingGroupName"]
                for g in clients.client("autoscaling", region).describe_auto_scaling_groups()[
                    "AutoScalingGroups"
                ]
            ),
            "launch_templates": sorted(
                t["LaunchTemplateName"] for t in ec2.describe_launch_templates()["LaunchTemplates"]
            ),
            "log_groups": sorted(
                g["logGroupName"]
                for g in clients.client("logs", region).describe_log_groups()["logGroups"]
            ),
        }
    route53 = clients.route53
    found["health_checks"] = sorted(c["Id"] for c in route53.list_health_checks()["HealthChecks"])
    found["records"] = sorted(
        (r["Name"], r["Type"], r.get("SetIdentifier", ""))
        for z in route53.list_hosted_zones()["HostedZones"]
        for r in route53.list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]
    )
    return found
