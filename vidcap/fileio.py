"""Files: outputs written whole or not at all, the media folder, uploads spooled to disk."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from vidcap.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v")  # what the frame sources open, by name


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder and rename, so no half-written output is left behind. The
    temporary name is unique, so two processes writing the same file (two TorchServe workers exporting the
    same encoder) each rename a whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".partial-{os.getpid()}-{threading.get_ident()}-{path.name}")
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def require_file(path: str | Path, kind: str, error: type[Exception] = InputError) -> Path:
    """A file that exists and is not empty, else `error` saying which ("video not found: clip.mp4"). Cheap, so
    the CLI checks its arguments before loading a model."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{kind} not found: {path}")
    if path.stat().st_size == 0:
        raise error(f"empty {kind} file (0 bytes): {path}")
    return path


def media_path(folder: Path | None, relative: str, error: type[Exception], no_folder_hint: str) -> Path:
    """folder/relative resolved; `error` when there is no folder or the path leaves it ("../", absolute paths,
    links)."""
    if folder is None:
        raise error(f"no media folder here: {no_folder_hint}")
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise error(f"{relative!r} is outside the media folder")
    return path


@contextlib.contextmanager
def spooled_upload(filename: str, folder: str | Path | None = None) -> Iterator[BinaryIO]:
    """An open file for an uploaded video, under the client's own (sanitised) file name in a private folder
    that is removed afterwards, so error messages name the file the user knows. Close it before reading."""
    with tempfile.TemporaryDirectory(prefix="vidcap-upload-", dir=folder) as private:
        with (Path(private) / upload_name(filename)).open("wb") as spool:
            yield spool


def upload_name(filename: str) -> str:
    """A safe local name for an uploaded file: its base name, odd characters replaced, ".mp4" added when it has
    no suffix (the demuxer probes the content either way; the suffix only helps it)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(filename or "").name).lstrip(".")[-100:] or "upload"
    suffix = Path(name).suffix
    return name if suffix and len(suffix) <= 8 else name + ".mp4"
