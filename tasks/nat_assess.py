"""Phase 1, network, read-only: what the NAT gateways carry and who would lose egress.

NAT gateways are about $90 of a $200-255 environment: two gateway-hours around the clock plus
a charge per GB processed. Before nat.remove touches them the operator sees, per gateway, its
traffic, every route through it (partner CIDRs and prefix lists too), the subnets behind it,
each network interface there and whether it would lose egress, the gateways left alone, the
Elastic IPs that removal gives up for good, and the VPC endpoints workloads would need. The
step changes nothing in AWS; inside a Prefect run it publishes the report as an artifact.
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from phasegate.cost import load_price_table, price_inventory
from phasegate.inventory import DISCOVERY_IAM_ACTIONS, Inventory, Vpc
from phasegate.steps import Change, Observation, Record, Reversibility, Step
from tasks.nat_routes import INTERFACE_ENDPOINTS, s3_service
from tasks.nat_survey import SURVEY_IAM_ACTIONS, NetworkSurvey

TRAFFIC_DAYS = 7
TRAFFIC_METRIC = ("AWS/NATGateway", "BytesOutToDestination", "NatGatewayId")
UNKNOWN = "unknown"


class NatAssessmentObservation(Observation):
    assessment: dict[str, Any]


def _format_bytes(value: Any) -> str:
    if not isinstance(value, int | float):
        return "unknown (no data)"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:,.1f} {unit}" if unit != "B" else f"{int(size):,} B"
        size /= 1024
    return f"{value} B"  # pragma: no cover


def render_markdown(assessment: dict[str, Any]) -> str:
    """The assessment as the markdown an operator reads in the Prefect UI."""
    env = assessment["environment"]
    lines = [
        f"# NAT gateway assessment: {env}",
        "",
        f"Region {assessment['region']}, generated {assessment['generated_at']}. "
        f"Traffic is AWS/NATGateway BytesOutToDestination, Sum over the last "
        f"{assessment['traffic_days']} days; no data is shown as unknown, never as 0.",
        "",
        f"NAT gateways cost about ${assessment['monthly_nat_cost']:,.2f} a month here.",
        "",
        "| NAT gateway | subnet (AZ) | traffic | route tables | private subnets | workloads |",
        "|---|---|---|---|---|---|",
    ]
    for nat in assessment["nat_gateways"]:
        workloads = ", ".join(f"{w['kind']} {w['id']}" for w in nat["workloads"]) or "none"
        lines.append(
            f"| {nat['id']} | {nat['subnet_id']} ({nat['availability_zone']}) "
            f"| {_format_bytes(nat['bytes_out_to_destination'])} "
            f"| {', '.join(t['id'] for t in nat['route_tables']) or 'none'} "
            f"| {', '.join(nat['private_subnets']) or 'none'} | {workloads} |"
        )
    if not assessment["nat_gateways"]:
        lines.append("| none | | | | | |")
    lines += ["", "## Workloads that lose egress without a NAT", ""]
    for w in assessment["workloads"]:
        verdict = "movable" if w["movable"] else "BLOCKS nat.remove"
        lines.append(f"- {w['kind']} `{w['id']}` ({verdict}): {w['note']}")
    if not assessment["workloads"]:
        lines.append("- none")
    for key, heading in (
        ("accepted", "Egress loss accepted in config (nat.accept_egress_loss)"),
        ("left_alone", "NAT gateways left alone"),
        ("released_ips", "Elastic IPs released for good (IRREVERSIBLE: new egress addresses)"),
    ):
        if assessment.get(key):
            lines += ["", f"## {heading}", ""]
            lines += [
                f"- {item['id']}: {item['why']}" if isinstance(item, dict) else f"- {item}"
                for item in assessment[key]
            ]
    lines += [
        "",
        "## VPC endpoints needed without a NAT",
        "",
        "| VPC | endpoint | type | needed | present |",
        "|---|---|---|---|---|",
    ]
    for e in assessment["vpc_endpoints"]:
        lines.append(
            f"| {e['vpc_id']} | {e['service']} | {e['type']} | {e['needed']} "
            f"| {'yes' if e['present'] else 'no'} |"
        )
    lines += ["", *(f"> {note}" for note in assessment["notes"])]
    return "\n".join(lines) + "\n"


class NatAssessment(Step):
    """Read-only: what the NAT gateways carry, who depends on them, and what replaces them.

    Removing a NAT gateway is cheap to do and expensive to get wrong, so before anything
    moves the operator sees, per gateway, its traffic (no data is "unknown", not 0: a gateway
    with no metrics may still carry traffic), the route tables and subnets sending 0.0.0.0/0
    through it, the workloads in those subnets, and which VPC endpoints they will need.
    """

    id = "nat.assess"
    phase = 1
    title = "Assess NAT gateways: traffic, routes, workloads, endpoints"
    iam_actions = (*DISCOVERY_IAM_ACTIONS, *SURVEY_IAM_ACTIONS, "cloudwatch:GetMetricData")

    render_markdown = staticmethod(render_markdown)

    def observe(self) -> NatAssessmentObservation:
        return NatAssessmentObservation(assessment=self.assess())

    def assess(self) -> dict[str, Any]:
        inventory = self.ctx.inventory()
        survey = NetworkSurvey(self).picture(inventory)
        traffic = self.traffic([n.id for n in inventory.nat_gateways])
        az_of = {s.id: s.availability_zone for s in inventory.subnets}
        region = self.ctx.config.aws.region
        nats, endpoints, workloads, left_alone, routes = [], [], [], [], []
        for part in survey["vpcs"]:
            vpc: Vpc = part["vpc"]
            tables = {t.id: t for t in vpc.route_tables}
            removed = {n["NatGatewayId"] for n in part["nat_gateways"]}
            left_alone += [{**n, "vpc_id": vpc.id} for n in part["left_alone"]]
            routes += part["nat_routes"]
            for nat in vpc.nat_gateways:
                if nat.id not in removed:
                    continue
                behind = sorted(s for s, n in part["private_subnets"].items() if n == nat.id)
                nats.append(
                    {
                        "id": nat.id,
                        "vpc_id": vpc.id,
                        "state": nat.state,
                        "subnet_id": nat.subnet_id,
                        "availability_zone": az_of.get(nat.subnet_id, ""),
                        "public_ips": nat.public_ips,
                        "allocation_ids": nat.allocation_ids,
                        "bytes_out_to_destination": traffic.get(nat.id, UNKNOWN),
                        "route_tables": [
                            {"id": t, "subnet_ids": sorted(tables[t].subnet_ids)}
                            for t in sorted(
                                {
                                    r["route_table_id"]
                                    for r in part["nat_routes"]
                                    if r["nat_gateway_id"] == nat.id
                                }
                            )
                        ],
                        "routes": [
                            f"{r['route_table_id']}: {r['destination']}"
                            for r in part["nat_routes"]
                            if r["nat_gateway_id"] == nat.id
                        ],
                        "private_subnets": behind,
                        "workloads": [
                            {"kind": w["kind"], "id": w["id"], "name": w.get("name")}
                            for w in part["workloads"]
                            if set(w["subnet_ids"]) & set(behind)
                        ],
                    }
                )
            workloads += part["workloads"]
            present = set(vpc.vpc_endpoints)
            endpoints.append(
                {
                    "vpc_id": vpc.id,
                    "service": s3_service(region),
                    "type": "Gateway",
                    "needed": "yes (free; keeps S3 traffic off the internet)",
                    "present": s3_service(region) in present,
                }
            )
            endpoints += [
                {
                    "vpc_id": vpc.id,
                    "service": f"com.amazonaws.{region}.{name}",
                    "type": "Interface",
                    "needed": "only if workloads stay in private subnets",
                    "present": f"com.amazonaws.{region}.{name}" in present,
                }
                for name in INTERFACE_ENDPOINTS
            ]
        return {
            "environment": self.ctx.config.name,
            "region": region,
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "traffic_days": TRAFFIC_DAYS,
            "monthly_nat_cost": round(self._nat_cost(inventory), 2),
            "nat_gateways": nats,
            "nat_routes": routes,
            "left_alone": left_alone,
            "workloads": workloads,
            "blockers": survey["blockers"],
            "accepted": survey["accepted"],
            "released_ips": sorted(ip for n in nats for ip in n["public_ips"]),
            "vpc_endpoints": endpoints,
            "notes": [
                "nat.remove moves ECS tasks to the public subnets with public IPs, so they "
                "pull images and ship logs over the internet gateway: only the S3 gateway "
                "endpoint is added. ECR api/dkr, CloudWatch Logs, Secrets Manager and SSM "
                "interface endpoints (about $7 a month each per AZ) are needed only by "
                "workloads that stay private.",
                "Data stores (RDS, ElastiCache) stay in the private subnets; they need no egress.",
                "Egress leaves from new addresses after removal: the NAT gateways' Elastic IPs "
                "are released for good, so partners' allow-lists and aws:SourceIp bucket "
                "policies naming them must be updated.",
            ],
        }

    def _nat_cost(self, inventory: Inventory) -> float:
        prices = self.ctx.prices or load_price_table(self.ctx.config.aws.region)
        return price_inventory(inventory, self.ctx.config, prices).row("NAT Gateway")

    def traffic(self, nat_ids: list[str]) -> dict[str, int | str]:
        """BytesOutToDestination summed over the last TRAFFIC_DAYS days; "unknown" if no data."""
        if not nat_ids:
            return {}
        namespace, metric, dimension = TRAFFIC_METRIC
        end = datetime.now(UTC).replace(second=0, microsecond=0)
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": namespace,
                        "MetricName": metric,
                        "Dimensions": [{"Name": dimension, "Value": nat_id}],
                    },
                    "Period": 3600,
                    "Stat": "Sum",
                },
                "ReturnData": True,
            }
            for i, nat_id in enumerate(nat_ids)
        ]
        values: dict[str, list[float]] = {q["Id"]: [] for q in queries}
        params: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": end - timedelta(days=TRAFFIC_DAYS),
            "EndTime": end,
        }
        while True:
            page = self.clients.cloudwatch.get_metric_data(**params)
            for result in page["MetricDataResults"]:
                values[result["Id"]] += result.get("Values", [])
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
        return {
            nat_id: round(sum(values[f"m{i}"])) if values[f"m{i}"] else UNKNOWN
            for i, nat_id in enumerate(nat_ids)
        }

    def plan(self, obs: Observation) -> Change:
        """Always a Change (read-only, so re-running is harmless): it carries the report."""
        assessment = obs.assessment  # type: ignore[attr-defined]
        unknown = sum(
            1 for n in assessment["nat_gateways"] if n["bytes_out_to_destination"] == UNKNOWN
        )
        found = [
            *(f"route via NAT {r['route_table_id']}: {r['destination']} -> {r['nat_gateway_id']}"
              for r in assessment["nat_routes"]),
            *(f"left alone: NAT gateway {n['id']}: {n['why']}" for n in assessment["left_alone"]),
            *(f"accepted egress loss: {line}" for line in assessment["accepted"]),
            *(f"blocker: {line}" for line in assessment["blockers"]),
            *(f"endpoint {e['service']} ({e['type']}) in {e['vpc_id']}: "
              f"{'present' if e['present'] else 'absent'}, needed {e['needed']}"
              for e in assessment["vpc_endpoints"]),
        ]  # fmt: skip
        return self.change(
            "\n".join(
                [
                    f"assessment of {len(assessment['nat_gateways'])} NAT gateways "
                    f"({unknown} without traffic data), {len(assessment['workloads'])} "
                    f"workloads behind them, {len(assessment['blockers'])} blockers",
                    *(f"  * {line}" for line in found),
                ]
            ),
            [],  # read-only: the lines below are what it found, not what it will do
            0.0,
            reversibility=Reversibility(
                restart_needed=False, rollback_possible=True, expected_disruption="none"
            ),
            before=assessment,
            desired=assessment,
        )

    def apply(self, change: Change) -> dict[str, Any]:
        """Publish the report as a Prefect artifact when inside a run; change nothing in AWS."""
        assessment = change.desired
        artifact = self.publish(assessment)
        if self.log:
            self.log.info("nat.assessment", resource=assessment["environment"], artifact=artifact)
        return assessment

    def publish(self, assessment: dict[str, Any]) -> str | None:
        """The markdown artifact's id, or None outside a Prefect flow or task run."""
        from prefect.context import get_run_context
        from prefect.exceptions import MissingContextError

        try:
            get_run_context()
        except MissingContextError:
            return None
        from prefect.artifacts import create_markdown_artifact

        key = re.sub(r"[^a-z0-9-]+", "-", f"nat-assessment-{assessment['environment']}".lower())
        return str(
            create_markdown_artifact(
                markdown=render_markdown(assessment),
                key=key,
                description=f"NAT gateways of {assessment['environment']} and what depends on them",
            )
        )

    def verify(self, record: Record) -> None:
        """Nothing to prove: the step changed nothing."""

    def rollback(self, record: Record) -> None:
        """Nothing to undo: the step changed nothing."""
