"""Model hosts: the one way every door reaches the captioning model.

`ModelHost` is the declared interface: `caption_image` (encoded bytes in; `caption_images` for several),
`analyze` (a video file in, FrameResults out as they exist) and `analyze_live` (a live source), with what the doors
need to know of the model (`trained_on`, `ignored_words`, `typicality`) and where it reads uploads from. What a
door does with the frames is one `vidcap.analysis.session.AnalysisSession`.
- `InProcessHost`: the model in this process (`vidcap analyze`, `vidcap index`, `vidcap serve --model-host
  inprocess`, the tests).
- `TorchServeHost` (vidcap/serving/hosts.py): the model in a TorchServe worker.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from vidcap.captioner import Captioner
from vidcap.domain import DomainProfile
from vidcap.images import load_image
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.model import Caption
from vidcap.video.live import GIVE_UP_SECONDS, STALL_SECONDS, LiveSource
from vidcap.video.pipeline import AnalysisParams, FrameResult, analyze_frames
from vidcap.video.resume import Resume, Sample
from vidcap.video.sources import SourcePolicy
from vidcap.vocab import FUNCTION_WORDS

OnStart = Callable[[float, int], None]
OnSample = Callable[[Sample], None]
OnNotice = Callable[[str], None]


class ModelHost(ABC):
    NAME = ""
    spool_dir: Path | None = None  # where uploaded videos must be written for this model host to read them
    media_dir: Path | None = None  # the folder this model host reads videos from by path (TorchServe's worker)
    trained_on: str = ""  # what the model was trained on, in words (its domain profile's), once known
    ignored_words: frozenset[str] = FUNCTION_WORDS  # what the moment pickers leave out of its captions (the model's)

    @abstractmethod
    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption: ...

    def caption_images(self, images: Sequence[bytes | Path], beam: int, max_pixels: int) -> list[Caption]:
        """Several images, encoded or as files on this machine (read here): one caption each, in order."""
        return [self.caption_image(i if isinstance(i, bytes) else Path(i).read_bytes(), beam, max_pixels)
                for i in images]

    def typicality(self, captions: Sequence[Caption]) -> list[float | None]:
        """How typical of the model's training images each captioned image is (vidcap/domain.py); None where the
        model has no domain profile, or this model host cannot tell."""
        return [None] * len(captions)

    def close(self) -> None:
        """Release what the model host made on disk (called once the servers have stopped)."""

    @abstractmethod
    def analyze_live(self, source: str, params: AnalysisParams, on_notice: OnNotice | None = None,
                     stop: threading.Event | None = None, policy: SourcePolicy | None = None,
                     on_start: OnStart | None = None) -> Iterator[FrameResult]:
        """A live source (vidcap/video/live.py), already allowed by the caller: FrameResults as they come, until it
        ends, `stop` is set (from any thread: the results then end soon) or the iterator is closed; on_notice(message)
        reports reconnects. policy: checked again before every (re)connect. on_start(0, 0) once it is open."""

    @abstractmethod
    def analyze(self, path: Path, params: AnalysisParams, on_start: OnStart | None = None,
                resume: Resume | None = None, on_sample: OnSample | None = None) -> Iterator[FrameResult]:
        """FrameResults in time order; closing the iterator stops the work. on_sample and resume: see
        `vidcap.video.pipeline.analyze_frames` (how a job continues after a restart)."""


class InProcessHost(ModelHost):
    """The model in this process. Calls are serialised: on a few CPU cores, interleaving whole batches keeps
    latency predictable, where concurrent forward passes would fight over the same cores."""

    NAME = "inprocess"

    def __init__(self, captioner: Captioner, spool_dir: str | Path | None = None, limits: Limits = DEFAULT_LIMITS,
                 stall_seconds: float = STALL_SECONDS, give_up_seconds: float = GIVE_UP_SECONDS):
        """stall_seconds, give_up_seconds: how long a live source may be silent before it is reopened, and how
        long reconnecting may last (vidcap/video/live.py; the command line sets them)."""
        self.captioner, self.limits = captioner, limits
        self.live_timeouts = {"stall_seconds": stall_seconds, "give_up_seconds": give_up_seconds}
        self._lock = threading.Lock()
        if spool_dir is not None:
            self.spool_dir = Path(spool_dir)
            self.spool_dir.mkdir(parents=True, exist_ok=True)

    @property
    def image_size(self) -> int:  # with `device`, `ignored_words`, `caption` and `typicality`: the pipeline's
        return self.captioner.image_size  # FrameCaptioner, with the calls serialised

    @property
    def device(self) -> torch.device:
        return self.captioner.device

    @property
    def domain(self) -> DomainProfile | None:
        return self.captioner.domain

    @property
    def trained_on(self) -> str:
        return self.captioner.domain.trained_on if self.captioner.domain else ""

    @property
    def ignored_words(self) -> frozenset[str]:
        return self.captioner.ignored_words

    def typicality(self, captions: Sequence[Caption]) -> list[float | None]:
        return self.captioner.typicality(captions)

    def caption(self, pixels: Sequence[np.ndarray] | torch.Tensor, beam_size: int | None = None) -> list[Caption]:
        with self._lock:
            return self.captioner.caption(pixels, beam_size)

    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption:
        return self.caption([load_image(data, max_pixels)], beam)[0]

    def caption_images(self, images: Sequence[bytes | Path], beam: int, max_pixels: int) -> list[Caption]:
        """Every image read and checked (a file's error names it) before any is captioned, then in batches."""
        return self.caption([load_image(i, max_pixels) for i in images], beam)

    def analyze(self, path: Path, params: AnalysisParams, on_start: OnStart | None = None,
                resume: Resume | None = None, on_sample: OnSample | None = None) -> Iterator[FrameResult]:
        return analyze_frames(path, self, params, on_start=on_start, limits=self.limits, resume=resume,
                              on_sample=on_sample)

    def analyze_live(self, source: str, params: AnalysisParams, on_notice: OnNotice | None = None,
                     stop: threading.Event | None = None, policy: SourcePolicy | None = None,
                     on_start: OnStart | None = None) -> Iterator[FrameResult]:
        live = LiveSource(source, params.every_n_seconds, on_notice=on_notice, stopped=stop, policy=policy,
                          **self.live_timeouts)
        return analyze_frames(live, self, params, on_start=on_start, limits=self.limits)


def as_host(model: "ModelHost | Captioner", limits: Limits = DEFAULT_LIMITS) -> ModelHost:
    """A model host for a captioner loaded here (the command line, the benches), or the host itself."""
    return model if isinstance(model, ModelHost) else InProcessHost(model, limits=limits)
