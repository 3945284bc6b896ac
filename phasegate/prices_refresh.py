"""Rebuild a region's price table from the AWS Price List API (pricing:GetProducts).

Every rate of the current table is looked up again: one GetProducts query per rate (its
service code and the attributes that pick its product, TERM_MATCH), then the product whose
usage type matches (usage types carry a region prefix such as USE2- in most regions, so the
match ignores it) and its on-demand price dimension of the first tier. The result is written
as a new dated file beside the table (REGION-YYYY-MM-DD.yaml), with a diff of every rate that
moved; REGION.yaml stays the table every command reads until someone reviews the new one and
copies it over. A rate the Price List does not answer is kept from the old table and the diff
says so; the Spot discount is no list price at all and is always carried over.

The Price List API answers in us-east-1 (also eu-central-1 and ap-south-1) for every region.
"""

import difflib
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import NoCredentialsError

from phasegate.aws import AwsClients
from phasegate.config import AwsSettings
from phasegate.cost import PriceTable, load_price_table
from phasegate.errors import PhasegateError
from phasegate.home import display_path
from phasegate.logs import get_logger

PRICE_LIST_REGION = "us-east-1"
OFFER_URL = (
    "https://pricing.us-east-1.amazonaws.com/offers/v1.0/aws/{service}/current/{region}/index.json"
)
STORAGE_VOLUME_TYPES = {"gp2": "General Purpose", "gp3": "General Purpose-GP3"}
FARGATE_ARCH = {"X86_64": "", "ARM64": "ARM-"}
LAMBDA_ARCH = {"x86_64": "", "arm64": "-ARM"}


@dataclass(frozen=True)
class RateQuery:
    """How to find one rate: the table path it fills, the product, and the unit scale."""

    path: tuple[str, ...]
    service: str
    usage_type: str  # a regex the usage type must match after its region prefix
    attributes: dict[str, str] = field(default_factory=dict)
    per: float = 1.0  # the table's unit in the Price List's units (1e6: per million)


def rate_queries(table: PriceTable) -> list[RateQuery]:
    """One query for every rate the table holds (its keys decide which classes to look up)."""
    queries = []
    for arch, infix in FARGATE_ARCH.items():
        for spot, section in (("", "fargate"), ("SpotUsage-", "fargate_spot")):
            if arch in getattr(table, section):
                queries += [
                    RateQuery(
                        (section, arch, "vcpu_hour"),
                        "AmazonECS",
                        rf"{spot}Fargate-{infix}vCPU-Hours:perCPU",
                    ),
                    RateQuery(
                        (section, arch, "gb_hour"), "AmazonECS", rf"{spot}Fargate-{infix}GB-Hours"
                    ),
                ]
    ec2_box = {
        "operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }  # fmt: skip
    queries += [
        RateQuery(
            ("ec2_instance_hour", t),
            "AmazonEC2",
            rf"BoxUsage:{re.escape(t)}",
            {"instanceType": t, **ec2_box},
        )
        for t in table.ec2_instance_hour
    ]
    queries += [
        RateQuery(
            ("rds_postgres_instance_hour", c),
            "AmazonRDS",
            rf"InstanceUsage:{re.escape(c)}",
            {"instanceType": c, "databaseEngine": "PostgreSQL", "deploymentOption": "Single-AZ"},
        )
        for c in table.rds_postgres_instance_hour
    ]
    queries += [
        RateQuery(
            ("rds_storage_gb_month", s),
            "AmazonRDS",
            rf"RDS:{s.upper()}-Storage",
            {
                "productFamily": "Database Storage",
                "volumeType": STORAGE_VOLUME_TYPES[s],
                "databaseEngine": "PostgreSQL",
                "deploymentOption": "Single-AZ",
            },
        )
        for s in table.rds_storage_gb_month
        if s in STORAGE_VOLUME_TYPES
    ]
    queries += [
        RateQuery(
            ("elasticache_node_hour", n),
            "AmazonElastiCache",
            rf"NodeUsage:{re.escape(n)}",
            {"instanceType": n, "cacheEngine": "Redis"},
        )
        for n in table.elasticache_node_hour
    ]
    nat = {"productFamily": "NAT Gateway"}
    alb = {"productFamily": "Load Balancer-Application"}
    queries += [
        RateQuery(("nat_gateway", "hour"), "AmazonEC2", "NatGateway-Hours", nat),
        RateQuery(("nat_gateway", "gb_processed"), "AmazonEC2", "NatGateway-Bytes", nat),
        RateQuery(("application_load_balancer", "hour"), "AWSELB", "LoadBalancerUsage", alb),
        RateQuery(("application_load_balancer", "lcu_hour"), "AWSELB", "LCUUsage", alb),
        RateQuery(("public_ipv4_hour",), "AmazonVPC", r"PublicIPv4:InUseAddress"),
        RateQuery(("aws_lambda", "request_per_million"), "AWSLambda", "Request", per=1e6),
        RateQuery(
            ("api_gateway", "http_per_million"),
            "AmazonApiGateway",
            "ApiGatewayHttpRequest",
            per=1e6,
        ),
        RateQuery(
            ("api_gateway", "rest_per_million"), "AmazonApiGateway", "ApiGatewayRequest", per=1e6
        ),
        RateQuery(("eks_cluster_hour",), "AmazonEKS", r"AmazonEKS-Hours:perCluster"),
        RateQuery(("app_runner", "active_vcpu_hour"), "AWSAppRunner", "AppRunner-vCPU-hours"),
        RateQuery(("app_runner", "active_gb_hour"), "AWSAppRunner", "AppRunner-GB-hours"),
        RateQuery(
            ("app_runner", "provisioned_gb_hour"), "AWSAppRunner", "AppRunner-Provisioned-GB-hours"
        ),
    ]
    queries += [
        RateQuery(("aws_lambda", "gb_second", arch), "AWSLambda", rf"Lambda-GB-Second{suffix}")
        for arch, suffix in LAMBDA_ARCH.items()
        if arch in table.aws_lambda.gb_second
    ]
    return queries


def first_tier_usd(product: dict[str, Any]) -> float | None:
    """The on-demand USD price of a product's first tier (beginRange 0), if it has one."""
    for term in product.get("terms", {}).get("OnDemand", {}).values():
        for dimension in term.get("priceDimensions", {}).values():
            if str(dimension.get("beginRange", "0")) in ("0", "0.0"):
                usd = dimension.get("pricePerUnit", {}).get("USD")
                if usd is not None:
                    return float(usd)
    return None


class PriceList:
    """GetProducts answers, one query per (service, attributes), all pages."""

    def __init__(self, clients: AwsClients, region: str) -> None:
        self.pricing = clients.client("pricing", region=PRICE_LIST_REGION)
        self.region = region
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def products(self, service: str, attributes: dict[str, str]) -> list[dict[str, Any]]:
        filters = [
            {"Type": "TERM_MATCH", "Field": k, "Value": v}
            for k, v in {"regionCode": self.region, **attributes}.items()
        ]
        key = json.dumps([service, filters], sort_keys=True)
        if key not in self._cache:
            found, params = [], {"ServiceCode": service, "Filters": filters, "MaxResults": 100}
            while True:
                page = self.pricing.get_products(**params)
                found += [json.loads(item) for item in page.get("PriceList", [])]
                if not page.get("NextToken"):
                    break
                params["NextToken"] = page["NextToken"]
            self._cache[key] = found
        return self._cache[key]

    def rate(self, query: RateQuery) -> float | None:
        """The query's price in the table's unit; None when no product answers it."""
        pattern = re.compile(rf"(?:[A-Z]{{2,4}}\d?-)?{query.usage_type}")
        for product in self.products(query.service, query.attributes):
            usage = product.get("product", {}).get("attributes", {}).get("usagetype", "")
            if pattern.fullmatch(usage):
                usd = first_tier_usd(product)
                if usd is not None:
                    return usd * query.per
        return None


@dataclass
class Refreshed:
    path: Path
    diff_path: Path
    diff: list[str]
    missing: list[str]


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _get(data: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def refresh_price_table(region: str, out_dir: Path | None = None) -> Refreshed:
    """Write REGION-TODAY.yaml from the Price List and its diff against REGION.yaml."""
    old = load_price_table(region)
    assert old.path is not None
    log = get_logger("prices", region=region)
    today = datetime.now(UTC).date()
    price_list = PriceList(AwsClients(AwsSettings(region=PRICE_LIST_REGION)), region)
    data = old.model_dump(mode="json", exclude_none=True)
    data["as_of"] = today.isoformat()
    missing, diff = [], []
    try:
        for query in rate_queries(old):
            before = _get(data, query.path)
            usd = price_list.rate(query)
            where = ".".join(query.path)
            if usd is None:
                missing.append(where)
                diff.append(f"? {where}: not in the Price List answer; kept {before['usd']}")
                continue
            source = OFFER_URL.format(service=query.service, region=region)
            _set(data, query.path, {"usd": float(f"{usd:.10g}"), "source": source})
            if usd != before["usd"]:
                diff.append(f"~ {where}: {before['usd']} -> {float(f'{usd:.10g}')}")
            log.debug("prices.rate", rate=where, usd=usd)
    except NoCredentialsError:
        raise PhasegateError(
            f"prices refresh {region}: no AWS credentials for the Price List API "
            f"(pricing:GetProducts); {display_path(old.path)} stays in use"
        ) from None
    diff.append("= ec2_spot_discount: no list price (Spot prices move hourly); carried over")
    PriceTable.model_validate(data)  # what we write must load
    folder = out_dir or old.path.parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{region}-{today.isoformat()}.yaml"
    header = (
        f"# {region} list prices from the AWS Price List API (pricing:GetProducts), read "
        f"{today}.\n# Review the diff ({region}-{today}.diff), then copy it over {region}.yaml "
        "to use it.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    old_text = old.path.read_text().splitlines(keepends=True)
    unified = difflib.unified_diff(
        old_text, path.read_text().splitlines(keepends=True), str(old.path.name), path.name
    )
    diff_path = path.with_suffix(".diff")
    diff_path.write_text("".join(f"# {line}\n" for line in diff) + "".join(unified))
    return Refreshed(path=path, diff_path=diff_path, diff=diff, missing=missing)
