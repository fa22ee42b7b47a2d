"""One analysis session: what every door does with the frame results a model host gives.

Frames go in as they are scored; each moment comes out as soon as it is decided (vidcap/video/novelty.py's
`OnlinePicker`, the only moment picker); the end of the video decides the rest. Whether the frames stream to a
client one by one (gRPC, the web UI, jobs, live sources) or are read to the end first (`vidcap analyze FILE`,
`/get_video_captions`, `vidcap index`), the same frames give the same moments.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path

from vidcap.domain import DomainSummary, summarize
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.video.novelty import Moment, OnlinePicker, make_scorer
from vidcap.video.pipeline import Analysis, AnalysisParams, FrameResult
from vidcap.video.resume import Resume, Sample
from vidcap.vocab import FUNCTION_WORDS


class AnalysisSession:
    """Frame results in (`add`, in time order), moments out as they are decided; `finish` at the end of the
    video. ignored_words: what the model's captions say of every picture (`ModelHost.ignored_words`);
    trained_on: the model's training data in words, for the domain summary."""

    def __init__(self, params: AnalysisParams, ignored_words: frozenset[str] = FUNCTION_WORDS,
                 trained_on: str = ""):
        scorer = make_scorer(params.scorer, params.window, params.metric)  # for its settings only
        self.params, self.metric, self._trained_on = params, scorer.metric, trained_on
        self._host = None
        self._picker = OnlinePicker(params.moment_gap, params.every_n_seconds, scorer.min_moment_score,
                                    ignore=ignored_words)
        self.frames: list[FrameResult] = []
        self.finished = False

    def add(self, frame: FrameResult) -> list[Moment]:
        """The next scored frame -> the moments decided now (oldest first)."""
        self.frames.append(frame)
        return self._picker.take(frame)

    def finish(self) -> list[Moment]:
        """The end of the video: the moments its last frames decide. Not called for a video that stopped early
        (a cancelled job, a live source stopped by the user): what was decided stands, nothing is guessed."""
        if self.finished:
            return []
        self.finished = True
        return self._picker.finish()

    @classmethod
    def for_host(cls, params: AnalysisParams, host) -> "AnalysisSession":
        """A session for the frames of this model host: its words, and what it says it was trained on once the
        video started (the TorchServe host learns that from its worker's first answer)."""
        session = cls(params, host.ignored_words)
        session._host = host
        return session

    @property
    def trained_on(self) -> str:
        return self._host.trained_on if self._host is not None else self._trained_on

    @property
    def moments(self) -> list[Moment]:
        """Every moment decided so far."""
        return self._picker.moments

    @property
    def domain(self) -> DomainSummary | None:
        """What share of the frames the model's domain does not cover (None: the model has no domain profile)."""
        return summarize([f.in_domain for f in self.frames], self.trained_on)

    def analysis(self, video: str, duration: float, seconds: float) -> Analysis:
        return Analysis(str(video), {**asdict(self.params), "metric": self.metric}, duration, self.frames,
                        self.moments, seconds, self.domain)

    @classmethod
    def of(cls, frames: Iterable[FrameResult], params: AnalysisParams, ignored_words: frozenset[str] = FUNCTION_WORDS,
           trained_on: str = "", complete: bool = True) -> "AnalysisSession":
        """A session over frames already at hand (a job's stored frames, a finished upload): the moments they
        gave as they came, and with `complete` those the end of the video decides."""
        session = cls(params, ignored_words, trained_on)
        for frame in frames:
            session.add(frame)
        if complete:
            session.finish()
        return session


def analyze(host, video: str | Path, params: AnalysisParams = AnalysisParams(),
            on_frame: Callable[[FrameResult], None] | None = None,
            on_start: Callable[[float, int], None] | None = None, limits: Limits | None = None,
            resume: Resume | None = None, on_sample: Callable[[Sample], None] | None = None,
            done_frames: list[FrameResult] | None = None) -> Analysis:
    """A whole video file through a model host (`vidcap.analysis.hosts.ModelHost`; a `Captioner` is put in an
    `InProcessHost`) and one session: every frame, then the moments the end of the video decides. limits: the
    in-process host's (default: the server defaults). To continue a stopped analysis: `done_frames`, the results
    it gave, and `resume` (vidcap/video/pipeline.py's analyze_frames)."""
    from vidcap.analysis.hosts import as_host

    host = as_host(host, limits or DEFAULT_LIMITS)
    started = time.perf_counter()
    duration = [0.0]

    def start(d: float, n: int) -> None:
        duration[0] = d
        if on_start is not None:
            on_start(d, n)

    session = AnalysisSession.for_host(params, host)
    for frame in done_frames or []:
        session.add(frame)
    results = host.analyze(Path(video), params, on_start=start, resume=resume, on_sample=on_sample)
    try:
        for result in results:
            session.add(result)
            if on_frame is not None:
                on_frame(result)
    finally:
        results.close()
    session.finish()
    return session.analysis(str(video), duration[0], time.perf_counter() - started)
