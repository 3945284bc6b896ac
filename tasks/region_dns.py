"""`regions.expand.dns`: Route 53 failover between the two regions' ALBs.

`regions.record_name` in the zone `regions.hosted_zone` becomes two alias records to the
ALBs, PRIMARY (the primary region) and SECONDARY (the second region), each with a health
check on its ALB at `regions.health_check_path`. Route 53 answers with the primary while its
check passes and with the second region's ALB otherwise; the data follows only when an
operator promotes the replica (`phasegate failover`). A zone that does not exist is bad
config, found by asking Route 53 while the phase is planned, before anything is made.

A health check's CallerReference must be new for every creation (Route 53 refuses one used
by a deleted check), so it is `phasegate-ENV-ROLE-<time>`; a re-run finds its checks by the
`phasegate-ENV-ROLE-` prefix and makes none twice.
"""

import time
from typing import Any

from phasegate.errors import AwsCallError, ConfigError
from phasegate.home import display_path
from phasegate.steps import Record, StepRefused, VerificationFailed
from tasks.region_common import ALB_STEP, PRICING_IAM_ACTIONS, RegionStep, pages, tag_list

ROLES = ("PRIMARY", "SECONDARY")
COMPUTE_STEP = "regions.expand.compute"


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


class RegionDns(RegionStep):
    """PRIMARY/SECONDARY failover alias records, each with a health check on its ALB."""

    id = "regions.expand.dns"
    title = "Second region: Route 53 failover records with health checks on both ALBs"
    after = (ALB_STEP, COMPUTE_STEP)
    iam_actions = (
        *PRICING_IAM_ACTIONS,
        "route53:GetHostedZone",
        "route53:ListHostedZonesByName",
        "route53:ListResourceRecordSets",
        "route53:ChangeResourceRecordSets",
        "route53:ListHealthChecks",
        "route53:GetHealthCheck",
        "route53:CreateHealthCheck",
        "route53:DeleteHealthCheck",
        "route53:ChangeTagsForResource",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTags",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeListeners",
    )

    @property
    def route53(self) -> Any:
        return self.clients.client("route53")

    def zone_id(self) -> str:
        """The configured zone's id; ConfigError (exit 2) when Route 53 has no such zone."""
        wanted = str(self.ctx.config.regions.hosted_zone)
        if "." not in wanted:
            try:
                return str(self.route53.get_hosted_zone(Id=wanted)["HostedZone"]["Id"])
            except AwsCallError as exc:
                if exc.code != "NoSuchHostedZone":
                    raise
        else:
            listed = self.route53.list_hosted_zones_by_name(DNSName=_fqdn(wanted))
            for zone in listed["HostedZones"]:
                if zone["Name"].lower() == _fqdn(wanted).lower():
                    return str(zone["Id"])
        source = self.ctx.config.source
        where = display_path(source) if source else self.ctx.config.name
        raise ConfigError(
            f"{where}: regions.hosted_zone: Route 53 has no hosted zone {wanted!r} in this "
            "account; create it or name an existing one (its name or id)"
        )

    def _sides(self) -> dict[str, dict[str, Any]]:
        path = self.ctx.config.regions.health_check_path
        return {
            "PRIMARY": {
                "region": self.ctx.config.aws.region,
                "alb": self.primary_load_balancer().name,
                "health_check": path,
            },
            "SECONDARY": {"region": self.region, "alb": self.name("alb", 32), "health_check": path},
        }

    def desired(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "zone": self.zone_id(),
            "record": _fqdn(str(self.ctx.config.regions.record_name)).lower(),
            "failover": self._sides(),
        }

    # -- reading -------------------------------------------------------------------------

    def _balancers(self, region: str) -> list[dict[str, Any]]:
        return pages(
            self.clients.client("elbv2", region), "describe_load_balancers", "LoadBalancers"
        )

    def _alb_named(self, name: str, region: str) -> dict[str, Any]:
        for lb in self._balancers(region):
            if lb["LoadBalancerName"] == name:
                return lb
        raise StepRefused(f"{self.where()}: no ALB {name} in {region}; {ALB_STEP} runs first")

    def _alb_at(self, dns: str, region: str | None) -> str | None:
        """The name of the ALB in `region` answering at `dns`."""
        wanted = dns.rstrip(".").lower()
        for lb in self._balancers(str(region)):
            if lb["DNSName"].rstrip(".").lower() in (wanted, wanted.removeprefix("dualstack.")):
                return str(lb["LoadBalancerName"])
        return None

    def _records(self, zone: str, record: str) -> list[dict[str, Any]]:
        found = self.route53.list_resource_record_sets(
            HostedZoneId=zone, StartRecordName=record, StartRecordType="A"
        )["ResourceRecordSets"]
        return [
            r for r in found if _fqdn(r["Name"]).lower() == record and r.get("Failover") in ROLES
        ]

    def _checks(self) -> dict[str, dict[str, Any]]:
        """Our health checks by role, found by their CallerReference prefix."""
        found: dict[str, dict[str, Any]] = {}
        for check in pages(self.route53, "list_health_checks", "HealthChecks"):
            for role in ROLES:
                if check["CallerReference"].startswith(self._reference(role)):
                    found[role] = check
        return found

    def _reference(self, role: str) -> str:
        return f"phasegate-{self.ctx.config.name}-{role.lower()}-"

    def current(self, region: str) -> dict[str, Any]:
        config = self.ctx.config
        zone = self.zone_id()
        record = _fqdn(str(config.regions.record_name)).lower()
        found: dict[str, Any] = {"region": region, "zone": zone, "record": record}
        checks = {c["Id"]: c["HealthCheckConfig"] for c in self._checks().values()}
        sides: dict[str, Any] = {}
        for item in self._records(zone, record):
            role = item["Failover"]
            side_region = config.aws.region if role == "PRIMARY" else region
            alias = item.get("AliasTarget", {}).get("DNSName", "")
            check = checks.get(item.get("HealthCheckId", ""), {})
            sides[role] = {
                "region": side_region,
                "alb": self._alb_at(alias, side_region),
                "health_check": check.get("ResourcePath")
                if self._alb_at(check.get("FullyQualifiedDomainName", ""), side_region)
                else None,
            }
        if sides:
            found["failover"] = sides
        return found

    def terraform_part(self) -> dict[str, Any]:
        regions = self.ctx.config.regions
        return {
            "enable_secondary_dns": True,
            "failover_zone_id": self.zone_id().rsplit("/", 1)[-1],  # /hostedzone/ID
            "failover_record_name": _fqdn(str(regions.record_name)).lower().rstrip("."),
            "failover_health_check_path": regions.health_check_path,
        }

    # -- changing ------------------------------------------------------------------------

    def describe(self, desired: dict[str, Any]) -> tuple[str, list[str], float]:
        sides = desired["failover"]
        cost, note = self.secondary_cost("dns")
        return (
            f"{desired['record']}: PRIMARY {sides['PRIMARY']['alb']} "
            f"({sides['PRIMARY']['region']}), SECONDARY {sides['SECONDARY']['alb']} "
            f"({sides['SECONDARY']['region']}), health checks on "
            f"{sides['PRIMARY']['health_check']} ({note})",
            [
                f"route53:CreateHealthCheck x2: each ALB at {sides['PRIMARY']['health_check']}",
                f"route53:ChangeResourceRecordSets in {desired['zone']}: UPSERT "
                f"{desired['record']} A alias PRIMARY and SECONDARY with their checks",
            ],
            cost,
        )

    def make(self, desired: dict[str, Any]) -> dict[str, Any]:
        checks = self._checks()
        changes = []
        for role, side in desired["failover"].items():
            lb = self._alb_named(side["alb"], side["region"])
            check = checks.get(role) or self._make_check(role, lb, side)
            changes.append(
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": desired["record"],
                        "Type": "A",
                        "SetIdentifier": f"{self.ctx.config.name}-{role.lower()}",
                        "Failover": role,
                        "HealthCheckId": check["Id"],
                        "AliasTarget": {
                            "HostedZoneId": lb["CanonicalHostedZoneId"],
                            "DNSName": lb["DNSName"],
                            "EvaluateTargetHealth": True,
                        },
                    },
                }
            )
        self.route53.change_resource_record_sets(
            HostedZoneId=desired["zone"],
            ChangeBatch={"Comment": f"phasegate {self.id}", "Changes": changes},
        )
        return {"zone": desired["zone"], "record": desired["record"]}

    def _make_check(self, role: str, lb: dict[str, Any], side: dict[str, Any]) -> dict[str, Any]:
        listeners = self.clients.client("elbv2", side["region"]).describe_listeners(
            LoadBalancerArn=lb["LoadBalancerArn"]
        )["Listeners"]
        https = any(x["Protocol"] == "HTTPS" for x in listeners)
        check = self.route53.create_health_check(
            CallerReference=f"{self._reference(role)}{time.time_ns()}",
            HealthCheckConfig={
                "Type": "HTTPS" if https else "HTTP",
                "FullyQualifiedDomainName": lb["DNSName"],
                "Port": 443 if https else 80,
                "ResourcePath": side["health_check"],
                "RequestInterval": 30,
                "FailureThreshold": 3,
            },
        )["HealthCheck"]
        self.progress(**{f"health_check_{role.lower()}": check["Id"]})
        self.route53.change_tags_for_resource(
            ResourceType="healthcheck",
            ResourceId=check["Id"],
            AddTags=tag_list({**self.tags(), "Name": f"{self.ctx.config.name} {role.lower()}"}),
        )
        return dict(check)

    # -- undoing -------------------------------------------------------------------------

    def _named(self, record: Record) -> tuple[str | None, str | None]:
        """The zone and record name a Record's change used (the config may have changed)."""
        desired = record.change.desired if record.change else {}
        zone = desired.get("zone") or record.after.get("zone")
        name = desired.get("record") or record.after.get("record")
        if zone and name:
            return str(zone), str(name)
        regions = self.ctx.config.regions
        if regions.hosted_zone and regions.record_name:
            return self.zone_id(), _fqdn(regions.record_name).lower()
        return None, None

    def rollback(self, record: Record) -> None:
        zone, name = self._named(record)
        if zone and name:
            ours = [
                r
                for r in self._records(zone, name)
                if r.get("SetIdentifier", "").startswith(f"{self.ctx.config.name}-")
            ]
            if ours:
                self.route53.change_resource_record_sets(
                    HostedZoneId=zone,
                    ChangeBatch={
                        "Comment": f"phasegate {self.id} rollback",
                        "Changes": [{"Action": "DELETE", "ResourceRecordSet": r} for r in ours],
                    },
                )
        self.teardown(str(self.region_of(record)))

    def teardown(self, region: str) -> None:
        """The health checks (the records go first, in rollback: a record names its check)."""
        for check in self._checks().values():
            self.route53.delete_health_check(HealthCheckId=check["Id"])

    def verify_rollback(self, record: Record) -> None:
        zone, name = self._named(record)
        left = [f"health check {c['Id']}" for c in self._checks().values()]
        if zone and name:
            left += [f"{name} {r['Failover']}" for r in self._records(zone, name)]
        if left:
            raise VerificationFailed(
                f"{self.where()}: still there after rollback: {', '.join(left)}"
            )

    def leftovers(self, region: str) -> list[str]:
        return [f"health check {c['Id']}" for c in self._checks().values()]
