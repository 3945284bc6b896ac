"""The wave's form and what its answer binds to (phasegate/wave_approval.py); no AWS, no
Prefect: the fleet test (tests/test_fleet.py) drives the real pause and the runs."""

from pathlib import Path

from conftest import write_environment

from phasegate.config import EnvironmentConfig, parse_environment
from phasegate.steps import Change, Reversibility
from phasegate.wave_approval import WaveApproval, acting_digests, wave_description


def change(step: str, desired: str, delta: float, actions: bool = True) -> Change:
    return Change(
        step=step,
        summary=f"{step} to {desired}",
        actions=[f"do {desired}"] if actions else [],
        monthly_cost_delta=delta,
        reversibility=Reversibility(restart_needed=False, rollback_possible=True,
                                    expected_disruption="none"),
        desired={"to": desired},
    )  # fmt: skip


def prod(tmp_path: Path, name: str) -> EnvironmentConfig:
    return parse_environment(write_environment(tmp_path, name, "http://127.0.0.1:1", tier="prod"))


def test_the_form_lists_every_environment_its_delta_and_the_extra_approval(
    tmp_path: Path,
) -> None:
    one, two = prod(tmp_path, "wa-1"), prod(tmp_path, "wa-2")
    plans = [
        (one, [("nat.assess", change("nat.assess", "report", 0, actions=False)),
               ("nat.remove", change("nat.remove", "none", -64.8))]),
        (two, [("database.resize", change("database.resize", "t4g", -1.46)),
               ("cache.resize", None)]),
    ]  # fmt: skip
    form = wave_description("prod", 1, plans, 3600)
    summary = form.split("\n---\n")[0]
    assert "wave `prod`: 2 environments" in summary
    assert "**Total monthly cost delta:** -$66.26 / month" in summary
    assert "| `wa-1` | prod | us-east-1 | 1 | -$64.80 | `nat.remove` |" in summary
    assert "| `wa-2` | prod | us-east-1 | 1 | -$1.46 | - |" in summary
    for name in ("wa-1", "wa-2"):  # each environment's own full plan follows
        assert f"## Approve phase 1 on `{name}`" in form


def test_the_answer_covers_exactly_the_approved_changes() -> None:
    approved = [("nat.remove", change("nat.remove", "none", -64.8)), ("cache.resize", None)]
    answer = WaveApproval(wave="prod", approver="lead", digests=acting_digests(approved))
    assert answer.covers(approved)
    assert answer.covers_step("nat.remove", approved[0][1])
    moved = [("nat.remove", change("nat.remove", "one left", -32.4)), ("cache.resize", None)]
    assert not answer.covers(moved), "a plan that changed since the form asks again"
    assert not answer.covers_step("nat.remove", moved[0][1])
    more = [*approved[:1], ("cache.resize", change("cache.resize", "t4g", -1.46))]
    assert not answer.covers(more), "a change nobody saw on the form is not approved"
    assert not answer.covers([("nat.remove", None)]), "nothing left to do is not what was shown"
