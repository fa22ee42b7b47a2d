"""Output files are written whole or not at all."""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder and rename, so no half-written output is left behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".partial-" + path.name)
    try:
        tmp.write_bytes(data if isinstance(data, bytes) else data.encode())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def inside(folder: Path, relative: str) -> Path | None:
    """folder/relative resolved, or None when it points outside the folder ("../", absolute paths, links)."""
    path = (folder / relative).resolve()
    return path if path.is_relative_to(folder.resolve()) else None
