"""`phasegate prices refresh` against a Price List answer served by a local test server.

tests/data/price_list_us_east_1.json holds one product per rate in GetProducts' format
(product attributes, usage type with the region prefix some services carry, on-demand price
dimensions; API Gateway's with a second tier that must not be taken). Its prices are the
table's times 1.07, so a rate that was not read from the answer shows. The server answers
GetProducts like AWS: products of the ServiceCode whose attributes match every TERM_MATCH
filter, one product per page with a NextToken.
"""

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from phasegate.cli import app
from phasegate.cost import PriceTable, load_price_table
from phasegate.home import REPO_ROOT
from phasegate.prices_refresh import first_tier_usd, rate_queries

ANSWER = json.loads((REPO_ROOT / "tests/data/price_list_us_east_1.json").read_text())


class _PriceListHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert self.headers["X-Amz-Target"] == "AWSPriceListService.GetProducts"
        type(self).requests.append(body)
        wanted = {f["Field"]: f["Value"] for f in body.get("Filters", [])}
        assert all(f["Type"] == "TERM_MATCH" for f in body.get("Filters", []))
        matching = [
            p
            for p in ANSWER.get(body["ServiceCode"], [])
            if all(p["product"]["attributes"].get(k) == v for k, v in wanted.items())
        ]
        start = int(body.get("NextToken", "0"))
        page: dict = {
            "FormatVersion": "aws_v1",
            "PriceList": [json.dumps(p) for p in matching[start : start + 1]],
        }
        if start + 1 < len(matching):
            page["NextToken"] = str(start + 1)
        data = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def price_list(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict]]:
    """A Price List endpoint on a free port, used through boto3's per-service endpoint
    variable (the product's code does not know it); the requests it got."""
    _PriceListHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PriceListHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", f"http://127.0.0.1:{server.server_port}")
    yield _PriceListHandler.requests
    server.shutdown()
    server.server_close()


def _by_path(table: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        table = table[key]
    return table


def test_refresh_writes_a_dated_table_whose_rates_equal_the_answer(
    price_list: list[dict], tmp_path: Path
) -> None:
    old = load_price_table("us-east-1")
    out = CliRunner().invoke(
        app, ["prices", "refresh", "--region", "us-east-1", "--out", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output

    written = sorted(tmp_path.glob("us-east-1-*.yaml"))
    assert len(written) == 1
    new = PriceTable.model_validate(yaml.safe_load(written[0].read_text()))
    data = new.model_dump(mode="json")
    queries = rate_queries(old)
    assert len(queries) == 52
    for query in queries:
        served = [
            p
            for p in ANSWER[query.service]
            if re.sub(r"^[A-Z]{2,4}\d?-", "", p["product"]["attributes"]["usagetype"])
            == query.usage_type.replace("\\", "")
            and all(p["product"]["attributes"].get(k) == v for k, v in query.attributes.items())
        ]
        assert len(served) == 1, query.path
        price = _by_path(data, query.path)
        assert price["usd"] == pytest.approx(first_tier_usd(served[0]) * query.per, rel=1e-9)
        assert price["source"].startswith("https://pricing.us-east-1.amazonaws.com/offers/")
        old_usd = _by_path(old.model_dump(mode="json"), query.path)["usd"]
        # the served page writes 10 decimals, as AWS's does
        assert price["usd"] == pytest.approx(old_usd * 1.07, abs=1e-10 * query.per), query.path
    assert new.as_of.isoformat() in written[0].name
    assert new.ec2_spot_discount == old.ec2_spot_discount  # no list price: carried over
    diff = written[0].with_suffix(".diff").read_text()
    assert "# ~ ec2_instance_hour.t4g.medium: 0.0336 -> 0.035952" in diff
    assert "# = ec2_spot_discount" in diff
    assert "us-east-1.yaml" in diff and "+as_of:" in diff
    assert {r["ServiceCode"] for r in price_list} == set(ANSWER)
    assert all(
        {"Field": "regionCode", "Type": "TERM_MATCH", "Value": "us-east-1"} in r["Filters"]
        for r in price_list
    )


def test_a_rate_the_answer_lacks_is_kept_and_said(
    price_list: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(ANSWER, "AmazonEKS", [])
    out = CliRunner().invoke(
        app, ["prices", "refresh", "--region", "us-east-1", "--out", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    assert "? eks_cluster_hour: not in the Price List answer; kept 0.1" in out.stdout


def test_no_credentials_is_one_line_and_writes_nothing(
    price_list: list[dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = CliRunner().invoke(
        app, ["prices", "refresh", "--region", "us-east-1", "--out", str(tmp_path)]
    )
    assert out.exit_code == 1
    assert "no AWS credentials for the Price List API" in out.stderr
    assert "Traceback" not in out.output
    assert not list(tmp_path.glob("*.yaml")) and not price_list


def test_an_unknown_region_is_exit_2_naming_the_table(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app, ["prices", "refresh", "--region", "xx-nowhere-1", "--out", str(tmp_path)]
    )
    assert out.exit_code == 2
    assert "xx-nowhere-1" in out.stderr and "Traceback" not in out.output
