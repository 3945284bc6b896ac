"""A long-lived worker keeps a bounded number of step contexts, however many environments of a
fleet it serves, and never one for a config an environment no longer has."""

from pathlib import Path

import pytest

from tasks import runner


def _write(home: Path, name: str, tier: str = "dev") -> None:
    (home / "environments" / f"{name}.yaml").write_text(
        f"name: {name}\ntier: {tier}\naws:\n  endpoint_url: http://127.0.0.1:9\n"
        f"discovery:\n  tags: {{Environment: {name}}}\n"
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PHASEGATE_HOME", str(tmp_path))
    (tmp_path / "environments").mkdir()
    monkeypatch.setattr(runner, "_contexts", type(runner._contexts)())
    return tmp_path


def test_contexts_stay_bounded_over_a_fleet(home: Path) -> None:
    names = [f"tenant-{i}" for i in range(runner.MAX_CONTEXTS + 9)]
    for name in names:
        _write(home, name)
    first = runner.context_for(names[0])
    for name in names[1:]:
        runner.context_for(name)
        assert runner.context_for(names[0]) is first  # in use, so never the one dropped
    assert len(runner._contexts) == runner.MAX_CONTEXTS
    assert {key[0] for key in runner._contexts} >= {names[0], names[-1]}


def test_a_changed_config_replaces_the_environments_context(home: Path) -> None:
    _write(home, "acme")
    before = runner.context_for("acme")
    assert runner.context_for("acme") is before
    _write(home, "acme", tier="staging")
    after = runner.context_for("acme")
    assert after is not before and after.config.tier == "staging"
    assert [key[0] for key in runner._contexts] == ["acme"]
