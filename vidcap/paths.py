"""Where vidcap's own files are: the TorchServe handler and the demo model; where it keeps its data.

In a source checkout they are `handlers/` and `model_store/` at the top of the repository; `pip install .` installs
the same files as package data (`vidcap.handlers`, `vidcap.model_store`), so an installed vidcap runs from any
folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE.parent


def _shipped(folder: str, name: str) -> Path:
    """REPO_ROOT/folder/name in a checkout; vidcap/folder/name (package data) in an install."""
    installed = PACKAGE / folder / name
    return installed if installed.exists() else REPO_ROOT / folder / name


def handler_file() -> Path:
    return _shipped("handlers", "vidcap_handler.py")


def demo_model() -> Path:
    return _shipped("model_store", "vidcap-demo.pt")


def docs_dir() -> Path:
    """docs/ of a checkout; vidcap/docs (package data) in an install."""
    return _shipped("docs", "")


def default_archive_dir() -> Path:
    """model_store/ of a checkout; ./model_store for an installed vidcap."""
    return REPO_ROOT / "model_store" if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd() / "model_store"


def default_work_dir() -> Path:
    """Where the servers keep run folders and uploads: on disk, not in a RAM-backed /tmp, since uploads of
    several GB are spooled there."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vidcap"


def default_data_dir() -> Path:
    """Where the library database lives unless told otherwise: $VIDCAP_DATA, else $XDG_DATA_HOME/vidcap, else
    ~/.local/share/vidcap."""
    if os.environ.get("VIDCAP_DATA"):
        return Path(os.environ["VIDCAP_DATA"])
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "vidcap"
