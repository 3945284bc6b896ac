"""The rollback ledger: one append-only chain of Records per step, like Terraform's state
history or Temporal's event history.

Every apply, every intent written down before an apply, the progress of a half-applied
change, every drift observed and every rollback is a Record appended to the step's chain,
each naming the one before it (`previous`). Nothing in a chain is overwritten or retired, so
whatever happened since (a target changed twice, a size changed by hand, a run killed
mid-apply), the chain still holds the state from before phasegate first touched the
environment, and a rollback can walk back to it.

Chains live in the environment's checkpoint storage (`executor.result_storage`: a local
folder or S3), one JSON file per Record:

    ENV/PHASE/STEP/ledger/000001-intent.json, 000002-progress.json, 000003-applied.json, ...

Two views of a chain do the work:
- `checkpoint()`: the last applied or unchanged Record after the last rollback, unless a
  change was started after it. A re-run skips the step while it holds in AWS.
- `undo_units()`: what a rollback must undo, newest first: every change applied since the
  last rollback, and a half-applied one (an intent with the progress journaled after it).
"""

from typing import Any

from phasegate.checkpoints import stored_files
from phasegate.config import EnvironmentConfig
from phasegate.errors import PhasegateError
from phasegate.steps import Change, Record, Reversibility, flatten, utcnow


class LedgerError(PhasegateError):
    """The ledger could not be written as an append-only chain (a Record already there)."""


class Ledger:
    """The chains of one environment's steps, wherever its checkpoint storage is."""

    def __init__(self, config: EnvironmentConfig) -> None:
        self.config = config
        self.files = stored_files(config)

    def _folder(self, phase: int, step: str) -> str:
        return f"{self.config.name}/{phase}/{step}/ledger"

    def chain(self, phase: int, step: str) -> list[Record]:
        """The step's Records, oldest first."""
        folder = self._folder(phase, step)
        names = sorted(name for name, _ in self.files.listing(folder) if name.endswith(".json"))
        records = []
        for name in names:
            text = self.files.read(f"{folder}/{name}")
            if text is not None:
                records.append(Record.model_validate_json(text))
        return sorted(records, key=lambda r: r.seq)

    def head(self, phase: int, step: str) -> Record | None:
        chain = self.chain(phase, step)
        return chain[-1] if chain else None

    def append(self, record: Record) -> Record:
        """Add `record` at the end of its step's chain; the stored Record (seq, previous set)."""
        head = self.head(record.phase, record.step)
        seq = head.seq + 1 if head else 1
        stored = record.model_copy(update={"seq": seq, "previous": head.seq if head else None})
        name = f"{self._folder(record.phase, record.step)}/{seq:06d}-{record.outcome}.json"
        if self.files.read(name) is not None:
            raise LedgerError(
                f"{self.config.name}: ledger of {record.step}: entry {seq} already exists; "
                "is another run writing this environment?"
            )
        self.files.write(name, stored.model_dump_json(indent=1))
        return stored

    # -- views -------------------------------------------------------------------------------

    @staticmethod
    def _since_rollback(chain: list[Record]) -> list[Record]:
        last = max((i for i, r in enumerate(chain) if r.outcome == "rolled_back"), default=-1)
        return chain[last + 1 :]

    def open_intent(self, phase: int, step: str) -> Record | None:
        """A change journaled but never finished (the run died or failed mid-apply), with the
        progress journaled after it merged into its `after`; None when there is none."""
        units = self.undo_units(phase, step)
        return units[0] if units and units[0].outcome == "intent" else None

    def checkpoint(self, phase: int, step: str) -> Record | None:
        """The last applied or unchanged Record since the last rollback, unless a change was
        started after it (then the step must resume, not skip)."""
        for record in reversed(self._since_rollback(self.chain(phase, step))):
            if record.outcome in ("intent", "progress"):
                return None
            if record.outcome in ("applied", "unchanged"):
                return record
        return None

    def last_drift(self, phase: int, step: str) -> Record | None:
        """The newest drift Record, if the step's newest verdict was drift."""
        for record in reversed(self.chain(phase, step)):
            if record.outcome == "drift":
                return record
            if record.outcome in ("applied", "unchanged", "rolled_back"):
                return None
        return None

    def undo_units(self, phase: int, step: str) -> list[Record]:
        """What a rollback must undo, newest first.

        Each change since the last rollback is one unit: its applied Record, or, for a change
        that never finished, its intent with the progress journaled after it merged into
        `after` (so rollback restores what happened and leaves what did not). A resumed
        intent (the same change journaled again by a re-run) continues its unit.
        """
        units: list[Record] = []
        current: Record | None = None
        for record in self._since_rollback(self.chain(phase, step)):
            if record.outcome == "intent":
                same = (
                    current is not None
                    and current.change is not None
                    and record.change is not None
                    and current.change.digest() == record.change.digest()
                )
                if not same:
                    if current is not None:
                        units.append(current)
                    current = record.model_copy(
                        update={"before": record.change.before if record.change else {}}
                    )
            elif record.outcome == "progress" and current is not None:
                current = current.model_copy(update={"after": _merged(current.after, record.after)})
            elif record.outcome == "applied":
                after = (
                    _merged(current.after, record.after) if current is not None else record.after
                )
                units.append(record.model_copy(update={"after": after}))
                current = None
        if current is not None:
            units.append(current)
        return list(reversed(units))

    def rolled_back(self, template: Record, undone: list[Record], detail: str) -> Record:
        """Append the Record of a finished rollback of `undone` (newest first)."""
        now = utcnow()
        return self.append(
            template.model_copy(
                update={
                    "outcome": "rolled_back",
                    "change": None,
                    "before": {},
                    "after": {"undone": [r.seq for r in undone]},
                    "diff": {},
                    "detail": detail,
                    "started_at": now,
                    "finished_at": now,
                }
            )
        )


def _merged(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """`base` with `more` laid over it, one level of dicts deep (progress adds to an after)."""
    merged = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def rollback_change(step: str, units: list[Record]) -> Change | None:
    """What rolling `step` back will do, as a Change for the plan table and the approval form:
    the changes it undoes (newest first) and the before-state it restores. None: nothing."""
    if not units:
        return None
    changes = [u.change for u in units if u.change is not None]
    oldest = units[-1]
    restores = [f"restore {field} = {value!r}" for field, value in flatten(oldest.before).items()]
    return Change(
        step=step,
        summary=f"undo {len(units)} change(s) back to before #{oldest.seq} "
        f"({oldest.started_at:%Y-%m-%d %H:%M} UTC)"
        + (" (one half-applied)" if any(u.outcome == "intent" for u in units) else ""),
        actions=[
            f"undo #{u.seq} ({u.outcome}): {u.change.summary if u.change else ''}" for u in units
        ]
        + restores,
        monthly_cost_delta=round(-sum(c.monthly_cost_delta for c in changes), 2),
        reversibility=Reversibility(
            restart_needed=any(c.reversibility.restart_needed for c in changes),
            rollback_possible=True,
            expected_disruption="; ".join(
                dict.fromkeys(c.reversibility.expected_disruption for c in changes)
            ),
        ),
        before=oldest.before,
    )
