"""Sandbox gap-filler: the member clusters of an ElastiCache replication group.

On AWS a replication group of N nodes (cluster mode disabled) is N cache clusters,
`GROUP-001` .. `GROUP-00N`, each readable with DescribeCacheClusters; Terraform's
aws_elasticache_replication_group reads the first one for the engine version, maintenance
window, subnet group, parameter group and security groups. moto (5.2) does neither:
NumCacheClusters is ignored (only ReplicasPerNodeGroup makes replicas) and member clusters
are not clusters. So here:

- CreateReplicationGroup with NumCacheClusters=N and no ReplicasPerNodeGroup gets
  ReplicasPerNodeGroup=N-1 added before moto sees it;
- DescribeCacheClusters for one member id moto does not know is answered from its group.
"""

from datetime import UTC
from typing import Any

from phasegate.sandbox.form_body import replace_form
from phasegate.sandbox.latency import account_and_region

XMLNS = "http://elasticache.amazonaws.com/doc/2015-02-02/"

Answer = tuple[str, str, bytes]


def _esc(value: object) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _rewrite_create(params: dict[str, list[str]], environ: dict[str, Any]) -> None:
    count = params.get("NumCacheClusters", [""])[0]
    if not count.isdigit() or "ReplicasPerNodeGroup" in params:
        return
    params["ReplicasPerNodeGroup"] = [str(int(count) - 1)]
    replace_form(environ, params)


def _member_xml(group: Any, member: str, node: dict[str, Any]) -> str:
    created = group.replication_group_create_time
    created = created.astimezone(UTC) if created.tzinfo else created
    version = group.engine_version or "7.1"
    family = f"default.{group.engine}{version.split('.')[0]}"
    security = "".join(
        f"<member><SecurityGroupId>{_esc(sg)}</SecurityGroupId><Status>active</Status></member>"
        for sg in group.security_group_ids or []
    )
    window = group.preferred_maintenance_window or "sun:05:00-sun:06:00"
    return (
        "<CacheCluster>"
        f"<CacheClusterId>{_esc(member)}</CacheClusterId>"
        f"<ReplicationGroupId>{_esc(group.replication_group_id)}</ReplicationGroupId>"
        f"<CacheNodeType>{_esc(group.cache_node_type)}</CacheNodeType>"
        f"<Engine>{_esc(group.engine)}</Engine><EngineVersion>{_esc(version)}</EngineVersion>"
        "<CacheClusterStatus>available</CacheClusterStatus><NumCacheNodes>1</NumCacheNodes>"
        "<PreferredAvailabilityZone>"
        f"{_esc(node.get('preferred_availability_zone', 'us-east-1a'))}"
        "</PreferredAvailabilityZone>"
        f"<CacheClusterCreateTime>{created.strftime('%Y-%m-%dT%H:%M:%S.000Z')}"
        "</CacheClusterCreateTime>"
        f"<PreferredMaintenanceWindow>{_esc(window)}</PreferredMaintenanceWindow>"
        f"<CacheSubnetGroupName>{_esc(group.cache_subnet_group_name or '')}"
        "</CacheSubnetGroupName>"
        "<CacheParameterGroup><CacheParameterGroupName>"
        f"{_esc(group.cache_parameter_group_name or family)}</CacheParameterGroupName>"
        "<ParameterApplyStatus>in-sync</ParameterApplyStatus></CacheParameterGroup>"
        f"<SecurityGroups>{security}</SecurityGroups>"
        f"<SnapshotRetentionLimit>{group.snapshot_retention_limit}</SnapshotRetentionLimit>"
        f"<SnapshotWindow>{_esc(group.snapshot_window)}</SnapshotWindow>"
        "<AutoMinorVersionUpgrade>true</AutoMinorVersionUpgrade>"
        f"<TransitEncryptionEnabled>{str(group.transit_encryption_enabled).lower()}"
        "</TransitEncryptionEnabled>"
        f"<AtRestEncryptionEnabled>{str(group.at_rest_encryption_enabled).lower()}"
        "</AtRestEncryptionEnabled>"
        f"<ARN>{_esc(group.arn.replace(':replicationgroup:', ':cluster:').rsplit(':', 1)[0])}"
        f":{_esc(member)}</ARN>"
        "</CacheCluster>"
    )


def _describe_member(environ: dict[str, Any], cluster_id: str) -> Answer | None:
    from moto.elasticache.models import elasticache_backends

    account, region = account_and_region(environ)
    backend = elasticache_backends[account][region]
    if cluster_id in backend.cache_clusters:
        return None  # a cluster of its own: moto answers
    for group in backend.replication_groups.values():
        if cluster_id not in group.member_clusters:
            continue
        node = next(
            (
                n
                for g in group.node_groups
                for n in g["node_group_members"]
                if n["cache_cluster_id"] == cluster_id
            ),
            {},
        )
        body = (
            f'<DescribeCacheClustersResponse xmlns="{XMLNS}"><DescribeCacheClustersResult>'
            f"<CacheClusters>{_member_xml(group, cluster_id, node)}</CacheClusters>"
            "</DescribeCacheClustersResult><ResponseMetadata><RequestId>phasegate-sandbox"
            "</RequestId></ResponseMetadata></DescribeCacheClustersResponse>"
        )
        return "200 OK", "text/xml", body.encode()
    return None


def fill(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> Answer | None:
    """The answer moto cannot give, or None (after rewriting a create moto would misread)."""
    if service != "elasticache":
        return None
    if action == "CreateReplicationGroup":
        _rewrite_create(params, environ)
    elif action == "DescribeCacheClusters" and params.get("CacheClusterId"):
        return _describe_member(environ, params["CacheClusterId"][0])
    return None
