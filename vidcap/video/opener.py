"""Opening a video with the best frame source installed here: the registry of frame sources (vidcap/video/frames.py
declares what one is). It imports the implementations; they import only the interface, so there is no circle.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from vidcap.errors import InputError
from vidcap.video.frames import FrameSource, VideoOpenError

log = logging.getLogger(__name__)


def available_sources() -> dict[str, type[FrameSource]]:
    """Frame sources that can run on this machine, best first."""
    from vidcap.video.pyav_source import PyAVFrameSource

    sources: dict[str, type[FrameSource]] = {}
    try:
        from vidcap.video.dali_source import DALIFrameSource, dali_unavailable_reason

        if dali_unavailable_reason() is None:
            sources["dali"] = DALIFrameSource
    except ImportError:
        pass
    sources["pyav"] = PyAVFrameSource
    return sources


def open_frames(path: str | Path, every_n_seconds: float, name: str = "auto",
                size: tuple[int, int] | None = None, device: torch.device | None = None) -> FrameSource:
    """Open a video with the named frame source, or the best available one ('auto'): DALI with a GPU, else PyAV.
    A DALI failure on a file falls back to PyAV with a warning; so does a variable-frame-rate file under 'auto'
    (DALI's reader is made for constant rates). device: the GPU a GPU source decodes on (the captioner's)."""
    sources = available_sources()
    explicit = name != "auto"
    if name == "auto":
        name = next(iter(sources))
    if name not in sources:
        if name == "dali":
            from vidcap.video.dali_source import dali_unavailable_reason

            raise InputError(f"DALI decoding is not available here: {dali_unavailable_reason()}")
        raise InputError(f"unknown frame source {name!r}; available: {', '.join(sources)}")
    if name == "pyav":
        return sources["pyav"](path, every_n_seconds, size)
    try:
        return sources[name](path, every_n_seconds, size, device=device, constant_rate_only=not explicit)
    except VideoOpenError as exc:
        log.warning("%s could not open %s (%s); falling back to PyAV", name, Path(path).name, exc)
        return sources["pyav"](path, every_n_seconds, size)
