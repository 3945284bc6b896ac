"""What moto lacks for phase 3's second region (regions.expand), filled around moto's app.

- RDS CreateDBInstanceReadReplica from another region's primary (its ARN) with a
  DBSubnetGroupName: moto looks the subnet group up in the primary's region and answers
  DBSubnetGroupNotFoundFault for the group that exists where the replica is made; without one
  the replica lands in the primary's subnet group and AZ. AWS takes the group of the
  replica's own region. Here the group is checked in the replica's region (refused as AWS
  does when it is not there), moto makes the replica without it, and the replica is then put
  in that group and its first AZ.
- RDS DeleteDBInstance of such a replica: moto lists a cross-region replica on its primary by
  ARN but removes it by identifier, so the delete fails half-done (HTTP 500, the replica gone
  and still listed on the primary). The primary's entry is made the identifier first, so
  moto's own delete completes as on AWS.
- ElastiCache DeleteReplicationGroup: moto answers "deleting" and keeps the group so for
  ever; on AWS it is gone minutes later. Gone once moto has answered (the sandbox's changes
  are instant unless its latency model says otherwise).
- ElastiCache DeleteCacheSubnetGroup: not implemented (HTTP 500). Answered here as AWS does:
  CacheSubnetGroupInUse while a cluster or replication group uses it, else deleted.

Product code never knows: it calls AWS's API and reads AWS's answers.
"""

import io
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from phasegate.sandbox.form_body import replace_form
from phasegate.sandbox.latency import account_and_region

_SERVICE_IN_AUTH = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_RDS_XMLNS = "http://rds.amazonaws.com/doc/2014-10-31/"
_ELASTICACHE_XMLNS = "http://elasticache.amazonaws.com/doc/2015-02-02/"
_ARN_REGION = re.compile(r"^arn:aws[^:]*:rds:([^:]+):")


def _params(environ: dict[str, Any]) -> dict[str, list[str]]:
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return {}
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return parse_qs(body.decode(errors="replace"))


def _answer(start_response: Callable[..., Any], status: str, body: str) -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(data)))])
    return [data]


def _error(start_response: Callable[..., Any], xmlns: str, status: str, code: str, text: str):
    return _answer(
        start_response,
        status,
        f'<ErrorResponse xmlns="{xmlns}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{text}</Message></Error><RequestId>phasegate-sandbox</RequestId>"
        "</ErrorResponse>",
    )


class RegionGaps:
    """WSGI middleware around moto's app for the second region's resources."""

    def __init__(self, moto: Callable[..., Iterable[bytes]]) -> None:
        self.moto = moto

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        match = _SERVICE_IN_AUTH.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = match.group(1) if match else ""
        if service not in ("rds", "elasticache") or environ.get("HTTP_X_AMZ_TARGET"):
            return self.moto(environ, start_response)
        params = _params(environ)
        action = params.get("Action", [""])[0]
        if service == "rds" and action == "CreateDBInstanceReadReplica":
            return self._cross_region_replica(environ, params, start_response)
        if service == "rds" and action == "DeleteDBInstance":
            self._list_replica_by_identifier(environ, params)
        if service == "elasticache" and action == "DeleteReplicationGroup":
            return self._delete_replication_group(environ, params, start_response)
        if service == "elasticache" and action == "DeleteCacheSubnetGroup":
            return self._delete_cache_subnet_group(environ, params, start_response)
        return self.moto(environ, start_response)

    def _cross_region_replica(
        self, environ: dict[str, Any], params: dict[str, list[str]], start_response: Any
    ) -> Iterable[bytes]:
        from moto.rds.models import rds_backends

        account, region = account_and_region(environ)
        source = params.get("SourceDBInstanceIdentifier", [""])[0]
        source_region = _ARN_REGION.match(source)
        group_name = params.get("DBSubnetGroupName", [""])[0]
        if not source_region or source_region.group(1) == region or not group_name:
            return self.moto(environ, start_response)
        backend = rds_backends[account][region]
        group = backend.subnet_groups.get(group_name)
        if group is None:
            return _error(
                start_response, _RDS_XMLNS, "404 Not Found", "DBSubnetGroupNotFoundFault",
                f"DBSubnetGroup {group_name} not found.",
            )  # fmt: skip
        del params["DBSubnetGroupName"]
        replace_form(environ, params)
        captured: list[Any] = []
        body = b"".join(self.moto(environ, lambda *a: captured.extend(a[:2])))
        replica = backend.databases.get(params.get("DBInstanceIdentifier", [""])[0].lower())
        if replica is not None and captured[0].startswith("200"):
            replica.db_subnet_group = group
            replica._db_subnet_group_name = group_name
            zones = sorted(s.availability_zone for s in group._subnets)
            replica.availability_zone = zones[0] if zones else f"{region}a"
            text = body.decode()
            text = re.sub(
                r"<DBSubnetGroup>.*?</DBSubnetGroup>",
                f"<DBSubnetGroup><DBSubnetGroupName>{group_name}</DBSubnetGroupName>"
                f"<VpcId>{group.vpc_id}</VpcId><SubnetGroupStatus>Complete</SubnetGroupStatus>"
                "</DBSubnetGroup>",
                text,
                flags=re.S,
            )
            body = text.encode()
        status, headers = captured
        content_type = dict(headers).get("Content-Type", "text/xml")
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _list_replica_by_identifier(environ: dict[str, Any], params: dict[str, list[str]]) -> None:
        from moto.rds.models import rds_backends

        account, region = account_and_region(environ)
        identifier = params.get("DBInstanceIdentifier", [""])[0].lower()
        replica = rds_backends[account][region].databases.get(identifier)
        source = getattr(replica, "source_db_instance_identifier", None) or ""
        source_region = _ARN_REGION.match(source)
        if replica is None or not source_region or source_region.group(1) == region:
            return
        primary = rds_backends[account][source_region.group(1)].databases.get(
            source.rsplit(":", 1)[-1]
        )
        if primary is not None and replica.db_instance_arn in primary.replicas:
            index = primary.replicas.index(replica.db_instance_arn)
            primary.replicas[index] = replica.db_instance_identifier

    def _delete_replication_group(
        self, environ: dict[str, Any], params: dict[str, list[str]], start_response: Any
    ) -> Iterable[bytes]:
        from moto.elasticache.models import elasticache_backends

        account, region = account_and_region(environ)
        captured: list[Any] = []
        body = b"".join(self.moto(environ, lambda *a: captured.extend(a[:2])))
        status, headers = captured
        if status.startswith("200"):
            group = params.get("ReplicationGroupId", [""])[0]
            elasticache_backends[account][region].replication_groups.pop(group, None)
        content_type = dict(headers).get("Content-Type", "text/xml")
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]

    def _delete_cache_subnet_group(
        self, environ: dict[str, Any], params: dict[str, list[str]], start_response: Any
    ) -> Iterable[bytes]:
        from moto.elasticache.models import elasticache_backends

        account, region = account_and_region(environ)
        backend = elasticache_backends[account][region]
        name = params.get("CacheSubnetGroupName", [""])[0]
        if name not in backend.cache_subnet_groups:
            return _error(
                start_response, _ELASTICACHE_XMLNS, "404 Not Found",
                "CacheSubnetGroupNotFoundFault", f"CacheSubnetGroup {name} not found.",
            )  # fmt: skip
        users = [
            *backend.cache_clusters.values(),
            *backend.replication_groups.values(),
        ]
        if any(getattr(u, "cache_subnet_group_name", None) == name for u in users):
            return _error(
                start_response, _ELASTICACHE_XMLNS, "400 Bad Request", "CacheSubnetGroupInUse",
                f"Cache subnet group {name} is currently in use by a cache cluster.",
            )  # fmt: skip
        del backend.cache_subnet_groups[name]
        return _answer(
            start_response,
            "200 OK",
            f'<DeleteCacheSubnetGroupResponse xmlns="{_ELASTICACHE_XMLNS}"><ResponseMetadata>'
            "<RequestId>phasegate-sandbox</RequestId></ResponseMetadata>"
            "</DeleteCacheSubnetGroupResponse>",
        )
