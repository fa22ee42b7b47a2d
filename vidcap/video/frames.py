"""Frame sources: decode one frame every N seconds from a video file.

One small ABC (this module), one implementation per video library (PyAV on CPU: pyav_source.py, DALI on GPU:
dali_source.py), and a registry of what is installed (opener.py, `open_frames`), after PySceneDetect's video
backends. The implementations import this module; this module imports none of them. Times always come from the
frames' presentation timestamps, relative to the first frame of the stream, so they stay right on
variable-frame-rate files and on files whose first timestamp is not zero.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vidcap.errors import InputError
from vidcap.fileio import require_file
from vidcap.video.cuts import Thumbnails

log = logging.getLogger(__name__)



class VideoOpenError(InputError):
    """The file is not a readable video (missing, empty, corrupt, no video stream)."""


@dataclass
class Frame:
    index: int  # 0, 1, 2, ... in sampling order
    t: float  # seconds from the start of the video, from the frame's presentation timestamp
    pixels: np.ndarray | torch.Tensor  # (H, W, 3) uint8 RGB; a CUDA tensor from GPU frame sources
    # Thumbnails of the frames decoded since the previous sample, this one last (vidcap/video/cuts.py): where a cut
    # lies to the frame. None from sources that decode only the samples (DALI) or when not asked for.
    lead_in: Thumbnails | None = None


class FrameSource(ABC):
    """Samples frames at 0, N, 2N, ... seconds: for each target time, the first frame shown at or after it."""

    SOURCE_NAME: str = ""
    thumbnails = True  # keep `Frame.lead_in` (the pipeline turns it off where cuts are not located to the frame)

    def __init__(self, path: str | Path, every_n_seconds: float, size: tuple[int, int] | None = None):
        """size: (width, height) to scale frames to while decoding (None keeps the native size)."""
        if not every_n_seconds > 0:
            raise InputError(f"every_n_seconds must be positive, got {every_n_seconds}")
        self.path, self.every_n_seconds, self.size = Path(path), float(every_n_seconds), size
        self.resumed_after: tuple[int, float] | None = None  # (index, t) of the last sample a stopped run gave
        check_video_file(self.path)

    def continue_after(self, index: int, t: float) -> None:
        """Before `frames()`: start with the sample after this one (a stopped analysis continues), numbered on."""
        self.resumed_after = (index, t)

    @property
    @abstractmethod
    def duration(self) -> float:
        """Length of the video in seconds."""

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield the sampled frames in time order, as soon as each is decoded."""

    # The picture as the headers declare it, (width, height) and frames per second; None where unknown. Checked
    # against the limits before anything is decoded (vidcap.limits.Limits.check_decode).
    frame_size: tuple[int, int] | None = None
    frame_rate: float | None = None

    def bound(self, max_frame_pixels: int, max_decode_pixels: float) -> None:
        """Stop decoding (InputTooLargeError) at a frame above max_frame_pixels or once the decoded frames hold
        more than max_decode_pixels in all: headers can lie. Sources that cannot count ignore it."""

    def sample_times(self) -> list[float]:
        n = int(self.duration // self.every_n_seconds) + 1
        return [k * self.every_n_seconds for k in range(n) if k * self.every_n_seconds < self.duration]

    live = False  # a stream that does not end (vidcap/video/live.py): no duration, no sample list, no seeking

    def stop(self) -> None:
        """Ask `frames()`, running in another thread, to end soon (a live source's reads can block for a while)."""

    def close(self) -> None:
        """Release the video file and its codec; safe to call twice."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


SAME_TIME = 1e-6  # seconds: timestamps are rationals turned into floats


def sample_frame_indices(frame_times: Sequence[float], targets: Sequence[float]) -> list[int]:
    """The sampling rule every frame source follows, as plain arithmetic: for each target time, the first frame
    shown at or after it; one frame serves each target once (a frame later than several targets is taken once);
    targets past the last frame get none. frame_times: seconds from the first frame, in presentation order."""
    indices: list[int] = []
    k = 0
    for i, t in enumerate(frame_times):
        if k == len(targets):
            break
        if t < targets[k] - SAME_TIME:
            continue
        indices.append(i)
        while k < len(targets) and targets[k] <= t + SAME_TIME:
            k += 1
    return indices


def is_constant_rate(frame_times: Sequence[float], tolerance: float = 0.01) -> bool:
    """Whether every frame lasts as long as the median frame, within tolerance (29.97 fps is constant)."""
    if len(frame_times) < 3:
        return True
    steps = sorted(b - a for a, b in zip(frame_times, frame_times[1:]))
    typical = steps[len(steps) // 2]
    return typical > 0 and all(abs(step - typical) <= tolerance * typical for step in steps)


def check_video_file(path: Path) -> None:
    require_file(path, "video", VideoOpenError)
