"""Where phasegate keeps things: config in the repository, local state under PHASEGATE_HOME.

Local state (the sandbox's pid and port, sandbox-written environment files, the embedded
Prefect home, checkpoint storage) never lives inside the repository.
"""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def phasegate_home() -> Path:
    """The local-state directory: $PHASEGATE_HOME, else ~/.phasegate; created on demand."""
    home = Path(os.environ.get("PHASEGATE_HOME") or Path.home() / ".phasegate")
    home.mkdir(parents=True, exist_ok=True)
    return home


def config_dir() -> Path:
    """The config folder: $PHASEGATE_CONFIG_DIR, else ./config when it exists, else the repo's."""
    if explicit := os.environ.get("PHASEGATE_CONFIG_DIR"):
        return Path(explicit)
    local = Path.cwd() / "config"
    if (local / "environments").is_dir():
        return local
    return REPO_ROOT / "config"


def generated_environments_dir() -> Path:
    """Environment files written by `phasegate sandbox up`, which know the sandbox's port."""
    path = phasegate_home() / "environments"
    path.mkdir(parents=True, exist_ok=True)
    return path


def display_path(path: Path) -> str:
    """A path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
