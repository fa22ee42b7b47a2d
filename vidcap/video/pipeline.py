"""The video pipeline: sample frames, caption them in batches, score their novelty, yield results as they exist.

Decoding runs in a thread that feeds a bounded queue, so it overlaps inference and memory stays bounded on
any length of video. The consumer takes whatever frames are ready (at least one, at most a batch), so the
first result comes out right away and later frames are batched whenever decoding runs ahead.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch

from vidcap.domain import DomainSummary
from vidcap.errors import InputError
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.model import Caption
from vidcap.video.cuts import CUT_SIGNALS
from vidcap.video.frames import Frame, FrameSource
from vidcap.video.opener import open_frames
from vidcap.video.resume import Resume, Sample
from vidcap.video.stills import StillFrames
from vidcap.video.novelty import (
    SCORERS,
    CaptionedFrame,
    Moment,
    colour_histogram,
    make_scorer,
    normalize_metric,
)


class FrameCaptioner(Protocol):
    """What the pipeline needs of a captioner: `vidcap.captioner.Captioner` has it, and so has the in-process
    model host (vidcap/analysis/hosts.py), which serialises the calls of concurrent analyses."""

    image_size: int
    device: torch.device
    ignored_words: frozenset[str]

    def caption(self, pixels: Sequence[np.ndarray] | torch.Tensor, beam_size: int | None = None
                ) -> list[Caption]: ...

    def typicality(self, captions: Sequence[Caption]) -> list[float | None]: ...


@dataclass
class AnalysisParams:
    every_n_seconds: float = 1.0
    window: int = 5  # previous sampled frames the current one is compared with
    metric: str | None = None  # euclidean | cosine; None: the scorer's default
    scorer: str = "robust"
    beam: int = 3
    batch_size: int = 8
    frame_source: str = "auto"  # auto | pyav | dali (vidcap/video/opener.py)
    min_gap: float | None = None  # seconds between moments; default: max(2 samples, 2 s)
    skip_still: bool = True  # a still frame reuses the last caption (vidcap/video/stills.py); False: caption all
    cuts: str = "frames"  # where cuts are found: see CUT_SIGNALS

    def validate(self, limits: Limits = DEFAULT_LIMITS) -> "AnalysisParams":
        limits.check_sampling(self.every_n_seconds)
        limits.check_window(self.window)
        limits.check_beam(self.beam)
        limits.check_batch_size(self.batch_size)
        if self.scorer not in SCORERS:
            raise InputError(f"unknown scorer {self.scorer!r}; choose one of {', '.join(SCORERS)}")
        if self.metric is not None:
            self.metric = normalize_metric(self.metric)
        if self.cuts not in CUT_SIGNALS:
            raise InputError(f"unknown cut signal {self.cuts!r}; choose one of {', '.join(CUT_SIGNALS)}")
        return self

    @property
    def moment_gap(self) -> float:
        return self.min_gap if self.min_gap is not None else max(2 * self.every_n_seconds, 2.0)


@dataclass
class FrameResult:
    index: int
    t: float
    caption: str
    score: float
    words: list[str]
    alternatives: list[str] = field(default_factory=list)
    pixels: np.ndarray | None = field(default=None, repr=False)  # the sampled frame, when asked for
    reused: bool = False  # a still frame: the caption (and features) of the last captioned frame
    in_domain: float | None = None  # how typical of the model's training images (vidcap/domain.py); None: unknown
    cut: float = 0.0  # the cut signal, 0..1 (vidcap/video/novelty.py: CUT_THRESHOLD)
    cut_times: list[float] = field(default_factory=list)  # where the new shots it found began, to the frame


@dataclass
class Analysis:
    video: str
    params: dict[str, Any]
    duration: float
    frames: list[FrameResult]
    moments: list[Moment]
    seconds: float  # wall time
    domain: DomainSummary | None = None  # what share of the frames the model's domain does not cover


_DONE = object()


class _FrameReader(threading.Thread):
    """Decodes frames into a bounded queue; errors travel through the queue to the consumer. The source is
    closed by whichever comes last, the consumer's `release` or the end of `run`: never under a running decode."""

    def __init__(self, source, capacity: int):
        super().__init__(daemon=True, name="vidcap-frames")
        self.source, self.queue, self.stop = source, queue.Queue(maxsize=capacity), threading.Event()
        self.dropped = 0
        self._closing = threading.Lock()
        self._released = self._finished = False

    def run(self) -> None:
        try:
            for frame in self.source.frames():
                if not self._put(frame):
                    return
            self._put(_DONE)
        except BaseException as exc:  # re-raised in the consumer
            self._put(exc)
        finally:
            with self._closing:
                self._finished = True
                if self._released:
                    self.source.close()

    def release(self, timeout: float = 5.0) -> None:
        """Stop reading and close the source now, or, if a decode is still running after `timeout`, as soon as
        it returns (a stop of the whole server must not wait on one slow frame)."""
        self.stop.set()
        getattr(self.source, "stop", lambda: None)()  # a live source's blocking read ends sooner
        if self.is_alive():
            self.join(timeout=timeout)
        with self._closing:
            self._released = True
            if self._finished or not self.is_alive():
                self.source.close()

    def _put(self, item: object) -> bool:
        """Wait for room in the queue; False when the consumer asked to stop meanwhile. A live source does not
        wait for anyone: when captioning falls behind, its oldest waiting frame is dropped (and counted)."""
        if getattr(self.source, "live", False) and isinstance(item, Frame):
            while self.queue.full():
                try:
                    self.queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    break
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def next_batch(self, size: int) -> tuple[list[Frame], bool]:
        """At least one frame (blocking), then whatever else is ready, up to size. -> (frames, finished)"""
        frames: list[Frame] = []
        item = self.queue.get()
        while True:
            if item is _DONE:
                return frames, True
            if isinstance(item, BaseException):
                raise item
            frames.append(item)
            if len(frames) == size:
                return frames, False
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return frames, False


class _LeaveACoreForDecoding:
    """While videos are analysed and decoding is what limits them, run inference on one thread fewer, so the
    frame reader thread has a core.

    Measured on 2 cores (docs/performance.md): with the demo model, 2 torch threads + the frame reader thread gave
    13 sampled frames/s on 720p, 1 torch thread 27: OpenMP's spinning workers starve the frame reader. With ResNet-152
    inference is the bottleneck and all cores are 12% faster. So each analysis says which case it is in (`want`),
    from its frame queue: empty when it asks for frames means decoding limits, a backlog means inference does.
    torch's thread count is process-wide: concurrent analyses share one count of those that want the core, and
    the last one to stop wanting it restores the setting."""

    def __init__(self) -> None:
        self._lock, self._wanting, self._saved = threading.Lock(), 0, 0

    def want(self, wanted: bool) -> None:
        with self._lock:
            if wanted:
                if self._wanting == 0:
                    self._saved = torch.get_num_threads()
                    if self._saved > 1:
                        torch.set_num_threads(self._saved - 1)
                self._wanting += 1
            else:
                self._wanting -= 1
                if self._wanting == 0 and self._saved > 1:
                    torch.set_num_threads(self._saved)


_DECODING_CORE = _LeaveACoreForDecoding()


class _Balance:
    """One analysis's vote in _DECODING_CORE, moved by what its queue shows, with some hysteresis."""

    def __init__(self) -> None:
        self.score, self.wanting = 1, False  # start as before any evidence: decoding is usually the limit
        self._vote()

    def observe(self, queue_was_empty: bool, backlog: int, batch_size: int) -> None:
        if queue_was_empty:
            self.score = min(self.score + 1, 2)
        elif backlog >= batch_size:
            self.score = max(self.score - 1, -2)
        self._vote()

    def _vote(self) -> None:
        wanted = self.score > 0 if self.score != 0 else self.wanting
        if wanted != self.wanting:
            _DECODING_CORE.want(wanted)
            self.wanting = wanted

    def close(self) -> None:
        if self.wanting:
            _DECODING_CORE.want(False)
            self.wanting = False


class _CaptionsReusingStills:
    """Captions a batch of frames, except that a still frame takes the caption of the last captioned one (which
    may be earlier in the same batch, or in an earlier batch, or, on a resumed analysis, before the stop)."""

    def __init__(self, captioner: FrameCaptioner, beam: int, skip_still: bool, resume: Resume | None = None):
        self.captioner, self.beam = captioner, beam
        last = resume.captioned if resume is not None else None
        self.stills = None
        if skip_still:
            anchor = torch.from_numpy(last.signature) if last is not None and last.signature is not None else None
            self.stills = StillFrames(anchor=anchor)
        self.last: Caption | None = last.caption_object() if last is not None else None

    def caption(self, frames: list[Frame]) -> Iterator[tuple[Frame, Caption, bool, torch.Tensor | None]]:
        """-> (frame, caption, reused, the still-frame signature of a freshly captioned frame)"""
        fresh: list[Frame] = []
        signatures: list[torch.Tensor | None] = []
        source: list[int] = []  # per frame: which fresh frame's caption it gets; -1: the previous batch's last
        for frame in frames:
            if self.stills is not None and self.stills.is_still(frame.pixels):
                source.append(len(fresh) - 1)
            else:
                source.append(len(fresh))
                fresh.append(frame)
                signatures.append(self.stills.anchor if self.stills is not None else None)
        captions = self.captioner.caption([f.pixels for f in fresh], self.beam) if fresh else []
        for frame, i in zip(frames, source):
            reused = i < 0 or frame is not fresh[i]
            yield frame, (captions[i] if i >= 0 else self.last), reused, None if reused else signatures[i]
        if captions:
            self.last = captions[-1]


def captioned_frames(video: str | Path | FrameSource, captioner: FrameCaptioner, params: AnalysisParams,
                     keep_pixels: bool = False, on_start: Callable[[float, int], None] | None = None,
                     limits: Limits = DEFAULT_LIMITS) -> Iterator[tuple[Frame, Caption, bool]]:
    """Each sampled frame with its caption and whether that caption was reused (a still frame, see
    vidcap/video/stills.py; only with params.skip_still), in time order, as soon as its batch is captioned.
    Closing the iterator stops decoding. on_start(duration, expected frame count) is called once the video is
    open; the video's length and sample count are checked against `limits` before that."""
    for batch in _captioned_batches(video, captioner, params, keep_pixels, on_start, limits):
        for frame, caption, reused, _ in batch:
            yield frame, caption, reused


def _captioned_batches(video: str | Path | FrameSource, captioner: FrameCaptioner, params: AnalysisParams,
                       keep_pixels: bool = False, on_start: Callable[[float, int], None] | None = None,
                       limits: Limits = DEFAULT_LIMITS, resume: Resume | None = None
                       ) -> Iterator[list[tuple[Frame, Caption, bool, torch.Tensor | None]]]:
    """Each batch as it is captioned: (frame, caption, reused, the still-frame signature of a fresh caption)."""
    params.validate(limits)
    size = (captioner.image_size, captioner.image_size)
    if isinstance(video, FrameSource):  # opened by the caller: a live source
        source = video
        source.size = None if keep_pixels else size
    else:
        source = open_frames(video, params.every_n_seconds, params.frame_source, size=None if keep_pixels else size,
                             device=captioner.device)
    if resume is not None and resume.samples:
        source.continue_after(resume.next_index - 1, resume.last_t)
    source.thumbnails = params.cuts == "frames"
    reader = _FrameReader(source, capacity=2 * params.batch_size)
    balance = None
    try:
        if not source.live:  # from the header alone: a bogus duration must not make us list billions of times
            limits.check_video(source.duration, int(source.duration // params.every_n_seconds) + 1)
            limits.check_decode(source.frame_size, source.frame_rate, source.duration)
        source.bound(limits.max_frame_pixels, limits.max_decode_pixels)
        if on_start is not None:
            on_start(source.duration, len(source.sample_times()))  # may refuse the video (limits); live: 0, 0
        reader.start()
        balance = _Balance()
        captions = _CaptionsReusingStills(captioner, params.beam, params.skip_still, resume)
        finished, first = False, True
        while not finished:
            queue_was_empty = reader.queue.empty()
            frames, finished = reader.next_batch(params.batch_size)
            if not first:  # the reader has just started: an empty queue says nothing yet
                balance.observe(queue_was_empty, reader.queue.qsize(), params.batch_size)
            first = False
            if frames:
                yield list(captions.caption(frames))
    finally:
        if balance is not None:
            balance.close()
        reader.release()


def analyze_frames(video: str | Path | FrameSource, captioner: FrameCaptioner,
                   params: AnalysisParams = AnalysisParams(),
                   keep_pixels: bool = False, on_start: Callable[[float, int], None] | None = None,
                   limits: Limits = DEFAULT_LIMITS, resume: Resume | None = None,
                   on_sample: Callable[[Sample], None] | None = None) -> Iterator[FrameResult]:
    """Yield one FrameResult per sampled frame, in time order, as soon as its score is final (a scorer with
    lookahead holds each frame until the next one is captioned). Closing the iterator stops decoding.

    on_sample(sample) is called with every captioned sample of a batch before any result of that batch is yielded:
    kept, the samples let a stopped analysis continue (`resume`, vidcap/video/resume.py) with the results it would
    have given, without captioning a sample twice. With `resume`, results start at frame `resume.scored`."""
    scorer = make_scorer(params.validate(limits).scorer, params.window, params.metric, captioner.ignored_words,
                         cuts=_external_cuts(video, params))
    waiting: dict[int, FrameResult] = {}
    first = 0  # the frame index of the scorer's first frame (its own count starts at 0)
    if resume is not None and resume.samples:
        first = resume.samples[0].index
        for sample in resume.samples:
            if sample.index >= resume.scored:
                waiting[sample.index] = _unscored(sample)
            yield from _emit(scorer.push(sample.captioned_frame()), waiting, scorer, first)
    for batch in _captioned_batches(video, captioner, params, keep_pixels, on_start, limits, resume):
        scored = []
        for frame, caption, reused, signature in batch:
            result = _result(frame, caption, keep_pixels, reused, captioner.typicality([caption])[0])
            scored.append((result, to_captioned_frame(frame, caption)))
            if on_sample is not None:  # the whole batch first: a caller that stops at any result keeps them all
                on_sample(_sample(result, scored[-1][1], signature))
        for result, captioned in scored:
            waiting[result.index] = result
            yield from _emit(scorer.push(captioned), waiting, scorer, first)
    yield from _emit(scorer.finish(), waiting, scorer, first)


def to_captioned_frame(frame: Frame, caption: Caption) -> CaptionedFrame:
    return CaptionedFrame(
        t=frame.t,
        words=caption.words,
        embeddings=caption.embeddings.numpy(),
        alternatives=[(w, e.numpy()) for w, e in zip(caption.alternatives, caption.alternative_embeddings)],
        feature=caption.feature.numpy(),
        regions=caption.regions.numpy(),
        colours=colour_histogram(frame.pixels),
        lead_in=frame.lead_in,
    )


def _external_cuts(video, params: AnalysisParams):
    """Cuts found before the analysis by another detector (TransNetV2), or None: the scorer finds its own."""
    if params.cuts != "transnetv2":
        return None
    if isinstance(video, FrameSource) and video.live:
        raise InputError("cuts=transnetv2 reads the whole file first: it is for files, not live sources")
    from vidcap.video.transnet import transnet_cuts

    return transnet_cuts(video.path if isinstance(video, FrameSource) else video)


def _result(frame: Frame, caption: Caption, keep_pixels: bool, reused: bool, in_domain: float | None
            ) -> FrameResult:
    pixels = None
    if keep_pixels:
        pixels = frame.pixels if isinstance(frame.pixels, np.ndarray) else frame.pixels.cpu().numpy()
    return FrameResult(frame.index, frame.t, caption.text, 0.0, caption.words,
                       [" ".join(a) for a in caption.alternatives], pixels, reused, in_domain)


def _emit(scored: list[tuple[int, float]], waiting: dict[int, FrameResult], scorer, first: int = 0
          ) -> Iterator[FrameResult]:
    """The scored frames' results; on a resumed analysis, those given before the stop are not given again."""
    for position, score in scored:
        cut = scorer.cut_of(position)
        result = waiting.pop(first + position, None)
        if result is not None:
            result.score, result.cut, result.cut_times = score, cut.strength, list(cut.times)
            yield result


def _unscored(sample: Sample) -> FrameResult:
    return FrameResult(sample.index, sample.t, sample.caption, 0.0, sample.words,
                       [" ".join(a) for a in sample.alternatives], None, sample.reused, sample.in_domain)


def _sample(result: FrameResult, frame: CaptionedFrame, signature: torch.Tensor | None) -> Sample:
    return Sample(index=result.index, t=result.t, caption=result.caption, words=result.words,
                  alternatives=[words for words, _ in frame.alternatives], reused=result.reused,
                  in_domain=result.in_domain, embeddings=frame.embeddings,
                  alternative_embeddings=[e for _, e in frame.alternatives], feature=frame.feature,
                  regions=frame.regions, colours=frame.colours, lead_in=frame.lead_in,
                  signature=signature.cpu().numpy() if signature is not None else None)
