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


def media_path(folder: Path | None, relative: str, error: type[Exception], no_folder_hint: str) -> Path:
    """folder/relative resolved; `error` when there is no folder or the path leaves it ("../", absolute paths,
    links)."""
    if folder is None:
        raise error(f"no media folder here: {no_folder_hint}")
    path = (folder / relative).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise error(f"{relative!r} is outside the media folder")
    return path
