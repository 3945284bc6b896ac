"""The sandbox's bill: Cost Explorer answers for moto, which tracks no cost at all.

moto answers GetCostAndUsage from a queue of results posted to its
/moto-api/static/ce/cost-and-usage-results endpoint: the first request with a given body
takes the next queued result and keeps it (an identical request gets the same answer), and a
request with an empty queue gets no days. This module builds such a result from a daily bill
by service, in Cost Explorer's wire format (DAILY granularity, grouped by SERVICE), and
queues it, so `phasegate savings` reads a bill over HTTP exactly as it reads AWS's.
"""

from datetime import date, timedelta

import requests

CE_RESULTS_PATH = "/moto-api/static/ce/cost-and-usage-results"
METRIC = "UnblendedCost"


def cost_and_usage_result(days: dict[date, dict[str, float]]) -> dict:
    """GetCostAndUsage's answer for `days` (day -> service -> USD), one period per day."""
    return {
        "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}],
        "ResultsByTime": [
            {
                "TimePeriod": {
                    "Start": day.isoformat(),
                    "End": (day + timedelta(days=1)).isoformat(),
                },
                "Total": {},
                "Groups": [
                    {
                        "Keys": [service],
                        "Metrics": {METRIC: {"Amount": f"{amount:.10f}", "Unit": "USD"}},
                    }
                    for service, amount in sorted(costs.items())
                ],
                "Estimated": False,
            }
            for day, costs in sorted(days.items())
        ],
        "DimensionValueAttributes": [],
    }


def queue_cost_and_usage(endpoint: str, *results: dict) -> None:
    """Queue GetCostAndUsage answers in the sandbox's moto, in the order they will be taken."""
    answer = requests.post(
        f"{endpoint}{CE_RESULTS_PATH}", json={"results": list(results)}, timeout=10
    )
    answer.raise_for_status()
