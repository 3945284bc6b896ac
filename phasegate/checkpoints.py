"""Checkpoints: where step Records live, and the keys that find them again.

A Record is stored under `ENV/PHASE/STEP/TARGETHASH-gGENERATION` in Prefect result storage,
the same key the step's Prefect task is cached under, so a re-run in a new process finds it.
The generation is bumped when a step is rolled back or its Record no longer matches AWS
(drift), which retires the old key: a checkpoint never hides a rollback or a drift.

Storage is a local folder under PHASEGATE_HOME by default, or the folder named by
`executor.result_storage`; every process of a migration must see the same storage.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore
from prefect.serializers import JSONSerializer
from prefect.settings import (
    PREFECT_RESULTS_LOCAL_STORAGE_PATH,
    PREFECT_RESULTS_PERSIST_BY_DEFAULT,
    temporary_settings,
)

from phasegate.config import EnvironmentConfig
from phasegate.errors import ConfigError
from phasegate.home import phasegate_home
from phasegate.steps import Change, Record


def storage_path(config: EnvironmentConfig) -> Path:
    """The local folder holding checkpoints for `config`'s environment."""
    configured = config.executor.result_storage
    if configured and "://" in configured and not configured.startswith("file://"):
        raise ConfigError(
            f"{config.name}: executor.result_storage: {configured!r}: only local folders are "
            "supported so far"
        )
    path = Path(configured.removeprefix("file://")) if configured else phasegate_home() / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def checkpoint_storage(config: EnvironmentConfig) -> Iterator[Path]:
    """Run flows inside this so their tasks' results land in the checkpoint folder.

    Prefect reads its settings once, at import; a temporary settings context is the way to
    point one run's result storage somewhere else.
    """
    path = storage_path(config)
    with temporary_settings(
        {PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(path), PREFECT_RESULTS_PERSIST_BY_DEFAULT: True}
    ):
        yield path


class Checkpoints:
    """Read and retire the Records of one environment."""

    def __init__(self, config: EnvironmentConfig) -> None:
        self.config = config
        self.path = storage_path(config)
        self.store = ResultStore(
            result_storage=LocalFileSystem(basepath=str(self.path)), serializer=JSONSerializer()
        )

    def _prefix(self, phase: int, step: str) -> str:
        return f"{self.config.name}/{phase}/{step}"

    def generation(self, phase: int, step: str) -> int:
        marker = self.path / self._prefix(phase, step) / "generation"
        return int(marker.read_text()) if marker.is_file() else 0

    def retire(self, phase: int, step: str) -> int:
        """Bump the step's generation so its current Record is no longer trusted; the new one."""
        marker = self.path / self._prefix(phase, step) / "generation"
        marker.parent.mkdir(parents=True, exist_ok=True)
        new = self.generation(phase, step) + 1
        marker.write_text(str(new))
        return new

    def key(self, phase: int, step: str, target_hash: str) -> str:
        generation = self.generation(phase, step)
        return f"{self._prefix(phase, step)}/{target_hash}-g{generation}"

    def read(self, key: str) -> Record | None:
        """The Record under `key`, or None when the step has not finished under that key."""
        if not self.store.exists(key):
            return None
        result = self.store.read(key).result
        return result if isinstance(result, Record) else Record.model_validate(result)

    def _intent_path(self, key: str) -> Path:
        return self.path / f"{key}.intent.json"

    def save_intent(self, key: str, change: Change) -> None:
        """Journal a change before it is applied, so a crash mid-apply keeps its before-state."""
        path = self._intent_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(change.model_dump_json())

    def intent(self, key: str) -> Change | None:
        """The change journaled under `key` by a run that may have died while applying it."""
        path = self._intent_path(key)
        return Change.model_validate_json(path.read_text()) if path.is_file() else None

    def current(self, phase: int, step: str) -> Record | None:
        """The step's Record at its current generation, whatever target it was run for."""
        generation = self.generation(phase, step)
        folder = self.path / self._prefix(phase, step)
        found = sorted(folder.glob(f"*-g{generation}"), key=lambda p: p.stat().st_mtime)
        return self.read(f"{self._prefix(phase, step)}/{found[-1].name}") if found else None
