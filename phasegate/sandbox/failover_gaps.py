"""What moto lacks for `phasegate failover` (PromoteReadReplica), filled before moto answers.

- moto's promotion keeps the replica's source link: the promoted instance still describes
  ReadReplicaSourceDBInstanceIdentifier, and the primary still lists it among its
  ReadReplicaDBInstanceIdentifiers. On AWS both are gone once the promotion finishes. Cleared
  here (the primary may live in another region: a cross-region replica names it by ARN), then
  moto answers as usual.
- moto "promotes" an instance that is not a replica without a word; AWS refuses it with
  InvalidDBInstanceState. Refused here the same way, so a failover never counts on that.

Product code never knows: it calls AWS's API and reads AWS's answers.
"""

from typing import Any

from phasegate.sandbox.latency import account_and_region

_RDS_XMLNS = "http://rds.amazonaws.com/doc/2014-10-31/"


def _refusal(code: str, message: str) -> tuple[str, str, bytes]:
    body = (
        f'<ErrorResponse xmlns="{_RDS_XMLNS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>phasegate-sandbox</RequestId>"
        "</ErrorResponse>"
    )
    return "400 Bad Request", "text/xml", body.encode()


def fill(
    service: str, action: str, params: dict[str, list[str]], environ: dict[str, Any]
) -> tuple[str, str, bytes] | None:
    """AWS's refusal of promoting a non-replica, else None (moto answers) with the source
    link of a replica cleared first."""
    if service != "rds" or action != "PromoteReadReplica":
        return None
    from moto.rds.models import rds_backends

    account, region = account_and_region(environ)
    identifier = params.get("DBInstanceIdentifier", [""])[0]
    replica = rds_backends[account][region].databases.get(identifier)
    if replica is None:
        return None  # moto's own DBInstanceNotFound
    source = replica.source_db_instance_identifier
    if not replica.is_replica or not source:
        return _refusal(
            "InvalidDBInstanceState", f"DB Instance {identifier} is not a read replica."
        )
    parts = source.split(":")
    source_region, source_id = (
        (parts[3], parts[-1])
        if source.startswith("arn:")
        else (
            region,
            source,
        )
    )
    primary = rds_backends[account][source_region].databases.get(source_id)
    if primary is not None:
        primary.replicas = [
            r for r in primary.replicas if r not in (replica.db_instance_arn, identifier)
        ]
    replica.source_db_instance_identifier = None
    return None
