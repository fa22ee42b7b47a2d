"""Novelty scorers: how unlike the previous frames is this frame? And the moments picked from the scores.

`seed` is exactly the old project's metric: the mean word embedding of the frame's caption against the mean of
the previous N frames' mean embeddings, Euclidean or cosine. Its known flaw: the captioner reacts to small image
changes (a flash, a shake, noise, a synonym), so similar frames get flagged. `robust` fixes that with measured
changes (docs/novelty.md): content words only, the beam's n-best captions averaged, region features blended in,
the nearest past frame instead of the mean of the past, and persistence (a change must still be there one
sample later; a flash is gone by then), which delays each score by one sample.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from vidcap.errors import InputError

METRICS = ("euclidean", "cosine")
METRIC_ALIASES = {"euclidian": "euclidean"}  # the old API's spelling

# Words that carry no content of their own: articles, prepositions, fillers of the caption grammar and of COCO.
STOP_WORDS = frozenset(
    "a an the of on in at to and is are there its it this that with from by for as next between "
    "picture image photo some one two three four five shapes shape left right middle centre center front "
    "against floating sits sitting standing near top bottom side".split()
)


@dataclass
class CaptionedFrame:
    """What a scorer sees of one sampled frame."""

    t: float
    words: list[str]
    embeddings: np.ndarray  # (len(words), E)
    alternatives: list[tuple[list[str], np.ndarray]] = field(default_factory=list)  # other beams: words, embeddings
    feature: np.ndarray | None = None  # pooled visual feature (C,)
    regions: np.ndarray | None = None  # region features (P, C)


def normalize_metric(metric: str) -> str:
    metric = METRIC_ALIASES.get(metric.lower(), metric.lower())
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose euclidean (or euclidian) or cosine")
    return metric


def distance(a: np.ndarray, b: np.ndarray, metric: str) -> float:
    if metric == "euclidean":
        return float(np.linalg.norm(a - b))
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        return 0.0 if na == nb else 1.0
    return float(1.0 - np.dot(a, b) / (na * nb))


class NoveltyScorer(ABC):
    """Scores frames in order. `push` takes the next frame and returns the scores that became final, as
    (frame number, score) pairs; `finish` returns the rest. A scorer with lookahead L finalises frame i once
    frame i+L has arrived."""

    NAME = ""
    lookahead = 0
    default_metric = "euclidean"
    min_moment_score = 0.0  # scores below this are never moments, however quiet the video

    def __init__(self, window: int = 5, metric: str | None = None):
        if window < 1:
            raise InputError(f"window must be at least 1, got {window}")
        self.window = window
        self.metric = normalize_metric(metric or self.default_metric)

    @abstractmethod
    def push(self, frame: CaptionedFrame) -> list[tuple[int, float]]: ...

    def finish(self) -> list[tuple[int, float]]:
        return []


class SeedScorer(NoveltyScorer):
    """The old project's dissimilarity, exactly: mean word embedding of the caption vs the mean of the previous
    N frames' mean embeddings. The first frame has no history and scores 0."""

    NAME = "seed"

    def __init__(self, window: int = 5, metric: str | None = None):
        super().__init__(window, metric)
        self._history: deque[np.ndarray] = deque(maxlen=window)
        self._n = 0

    def push(self, frame: CaptionedFrame) -> list[tuple[int, float]]:
        vector = _mean(frame.embeddings)
        score = distance(vector, np.mean(self._history, axis=0), self.metric) if self._history else 0.0
        self._history.append(vector)
        self._n += 1
        return [(self._n - 1, score)]


class RobustScorer(NoveltyScorer):
    """Novelty that does not fire on flicker, shake or noise (measured in bench/novelty.py, docs/novelty.md).

    A frame is described by the mean embedding of its caption's content words, averaged over the beam's n-best
    captions, together with its encoder region features (visual_weight; compared region by region, the mean of
    the regions_top_k most changed ones, so a change to one small object counts: a small object fills about one
    of the 7x7 regions, so the default is the single most changed region; regions_top_k = 0 compares the pooled
    feature instead). Its novelty is its distance
    to the *nearest* of the previous N frames ("unlike anything in the window", so a frame after a change has a
    neighbour from the new scene and scores low, and an outlier in the past hides nothing), taken as the smaller
    of the frame's own and the next frame's distance to that past: a real change persists, a flash does not."""

    NAME = "robust"
    default_metric = "cosine"
    min_moment_score = 0.12

    def __init__(self, window: int = 5, metric: str | None = None, content_only: bool = True,
                 use_beams: bool = True, persistence: bool = True, visual_weight: float = 0.5,
                 nearest: bool = True, regions_top_k: int = 1):
        super().__init__(window, metric)
        self.regions_top_k = regions_top_k
        self.content_only, self.use_beams, self.visual_weight, self.nearest = content_only, use_beams, visual_weight, nearest
        self.lookahead = 1 if persistence else 0
        self._past: deque[tuple[np.ndarray, np.ndarray | None]] = deque(maxlen=window)
        self._pending: deque[tuple[tuple[np.ndarray, np.ndarray | None], list]] = deque()
        self._n_done = 0

    def _describe(self, frame: CaptionedFrame) -> tuple[np.ndarray, np.ndarray | None]:
        captions = [(frame.words, frame.embeddings)]
        if self.use_beams:
            captions += frame.alternatives
        vectors = [_mean(self._content(words, emb)) for words, emb in captions]
        weights = np.array([2.0] + [1.0] * (len(vectors) - 1))  # the best caption counts double
        text = np.average(np.stack(vectors), axis=0, weights=weights)
        visual = None
        if self.visual_weight > 0:
            if self.regions_top_k and frame.regions is not None:
                regions = np.asarray(frame.regions, dtype=np.float64)
                visual = regions / (np.linalg.norm(regions, axis=1, keepdims=True) + 1e-9)
            else:
                visual = frame.feature
        return text, visual

    def _content(self, words: list[str], embeddings: np.ndarray) -> np.ndarray:
        if not self.content_only:
            return embeddings
        keep = [i for i, w in enumerate(words) if w not in STOP_WORDS]
        return embeddings[keep] if keep else embeddings

    def push(self, frame: CaptionedFrame) -> list[tuple[int, float]]:
        description = self._describe(frame)
        self._pending.append((description, list(self._past)))
        self._past.append(description)
        return self._drain(final=False)

    def finish(self) -> list[tuple[int, float]]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[tuple[int, float]]:
        out = []
        while len(self._pending) > self.lookahead or (final and self._pending):
            description, past = self._pending[0]
            score = self._novelty(description, past)
            if self.lookahead and len(self._pending) > 1:
                score = min(score, self._novelty(self._pending[1][0], past))  # does the change persist?
            self._pending.popleft()
            out.append((self._n_done, score))
            self._n_done += 1
        return out

    def _novelty(self, description, past) -> float:
        if not past:
            return 0.0
        if self.nearest:
            return min(self._distance(description, p) for p in past)
        mean_text = np.mean([p[0] for p in past], axis=0)
        mean_visual = np.mean([p[1] for p in past], axis=0) if description[1] is not None else None
        return self._distance(description, (mean_text, mean_visual))

    def _distance(self, a, b) -> float:
        text = distance(a[0], b[0], self.metric)
        if a[1] is None or b[1] is None:
            return text
        if a[1].ndim == 2:  # region by region: the mean of the k regions that changed most
            per_region = 1.0 - np.sum(a[1] * b[1], axis=1)
            visual = float(np.mean(np.sort(per_region)[-self.regions_top_k:]))
        else:
            visual = distance(a[1], b[1], "cosine")
        return (1 - self.visual_weight) * text + self.visual_weight * visual


def _mean(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    return embeddings.mean(axis=0) if len(embeddings) else np.zeros(embeddings.shape[-1])


SCORERS: dict[str, type[NoveltyScorer]] = {"seed": SeedScorer, "robust": RobustScorer}
DEFAULT_SCORER = "robust"


def make_scorer(name: str = DEFAULT_SCORER, window: int = 5, metric: str | None = None) -> NoveltyScorer:
    if name not in SCORERS:
        raise InputError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    return SCORERS[name](window=window, metric=metric)


def score_all(scorer: NoveltyScorer, frames: list[CaptionedFrame]) -> list[float]:
    """Score a whole sequence at once (offline)."""
    scored = dict(pair for frame in frames for pair in scorer.push(frame))
    scored.update(scorer.finish())
    return [scored[i] for i in range(len(frames))]


# ---- moments ------------------------------------------------------------------------------------------------


@dataclass
class Moment:
    t: float
    score: float
    caption: str
    previous_caption: str
    index: int  # which sampled frame


def find_moments(times: list[float], scores: list[float], captions: list[str], min_gap: float,
                 min_score: float = 0.0, sensitivity: float = 5.0) -> list[Moment]:
    """Peaks above an adaptive threshold (median + sensitivity * robust spread of the scores, and never below
    min_score), at least min_gap seconds apart (the higher peak wins). When the caption changed (A -> B) and
    changes back (B -> A) within twice min_gap, the scene came back: both are dropped. A peak whose caption did not
    change stays: the scorer's region features saw what the caption left out (one object of three changing its
    shape)."""
    if not scores:
        return []
    s = np.asarray(scores, dtype=np.float64)
    median = float(np.median(s))
    spread = 1.4826 * float(np.median(np.abs(s - median)))
    threshold = max(median + sensitivity * spread, min_score, 1e-9)
    peaks = [i for i in range(len(s)) if s[i] >= threshold and (i == 0 or s[i] >= s[i - 1])
             and (i == len(s) - 1 or s[i] > s[i + 1])]
    chosen: list[int] = []
    for i in sorted(peaks, key=lambda i: -s[i]):
        if all(abs(times[i] - times[j]) >= min_gap for j in chosen):
            chosen.append(i)
    moments: list[Moment] = []
    for i in sorted(chosen):
        before = captions[i - 1] if i > 0 else ""
        if moments and _came_back(moments[-1], captions[i]) and times[i] - moments[-1].t < 2 * min_gap:
            moments.pop()  # A -> B -> A in a short time: no lasting change
            continue
        moments.append(Moment(times[i], float(s[i]), captions[i], before, i))
    return moments


class OnlinePicker:
    """Moments decided as the scores arrive, from the past and at most `max_lookahead` samples ahead, for
    results that stream (the gRPC stream, the web UI, live sources): `find_moments`' rules, made causal.

    - The threshold is median + sensitivity x robust spread of the scores of the last `history` samples (the
      whole-video picker uses every score of the video), never below min_score.
    - A peak is a score at or above the threshold, at least its predecessor and above its successor.
    - Of peaks closer than min_gap the higher wins, looking as far ahead as the look-ahead allows
      (min_gap, but at most max_lookahead samples); a moment already given out is never taken back, so a higher
      peak that comes later within min_gap is given out too (the whole-video picker would keep only it).
    - A caption change undone within the look-ahead (A -> B -> A) is no moment, nor is its return; a return
      that comes later than that drops only the return (the first change has been given out).
    Each moment is decided `lookahead` samples after its frame's score (plus the scorer's own look-ahead)."""

    def __init__(self, min_gap: float, every_n_seconds: float, min_score: float = 0.0, sensitivity: float = 5.0,
                 max_lookahead: int = 3, history: int = 600):
        self.min_gap, self.min_score, self.sensitivity = min_gap, min_score, sensitivity
        self.lookahead = max(1, min(max_lookahead, math.ceil(min_gap / every_n_seconds - 1e-9)))
        self._scores: deque[float] = deque(maxlen=history)
        # (index, t, score, caption): the decided frame before the undecided ones, then those; at first, a
        # placeholder before the first frame
        self._frames: list[tuple[int, float, float, str]] = [(-1, float("-inf"), float("-inf"), "")]
        self._last_candidate: Moment | None = None  # the latest peak, given out or not (for the came-back rule)
        self._last_given: Moment | None = None
        self.moments: list[Moment] = []  # every moment given out so far

    def push(self, index: int, t: float, score: float, caption: str) -> list[Moment]:
        """The next frame's final score -> the moments decided now (oldest first)."""
        self._scores.append(score)
        self._frames.append((index, t, score, caption))
        decided = []
        while len(self._frames) >= self.lookahead + 2:  # [predecessor, candidate, lookahead...]
            decided += self._decide(1)
            self._frames.pop(0)
        return decided

    def finish(self) -> list[Moment]:
        """The end of the video: decide what is left with the look-ahead there is."""
        decided = []
        while len(self._frames) >= 2:
            decided += self._decide(1)
            self._frames.pop(0)
        return decided

    def _threshold(self) -> float:
        s = np.fromiter(self._scores, dtype=np.float64)
        median = float(np.median(s))
        spread = 1.4826 * float(np.median(np.abs(s - median)))
        return max(median + self.sensitivity * spread, self.min_score, 1e-9)

    def _decide(self, at: int) -> list[Moment]:
        index, t, score, caption = self._frames[at]
        before = self._frames[at - 1]
        ahead = self._frames[at + 1 :]
        if score < self._threshold() or score < before[2] or (ahead and score <= ahead[0][2]):
            return []
        if self._last_given is not None and t - self._last_given.t < self.min_gap and score <= self._last_given.score:
            return []  # a higher peak close by was given out already (a lower one given out cannot hide this one)
        if any(other[2] > score and other[1] - t < self.min_gap for other in ahead):
            return []  # a higher peak is coming within min_gap
        moment = Moment(t, float(score), caption, before[3] if before[0] >= 0 else "", index)
        previous, self._last_candidate = self._last_candidate, moment
        if previous is not None and _came_back(previous, caption) and t - previous.t < 2 * self.min_gap:
            return []  # the scene came back
        if not _same(caption, moment.previous_caption) and any(_same(c[3], moment.previous_caption) for c in ahead):
            return []  # it is coming back within the look-ahead
        self._last_given = moment
        self.moments.append(moment)
        return [moment]


def pick_online(times: list[float], scores: list[float], captions: list[str], min_gap: float,
                every_n_seconds: float, min_score: float = 0.0) -> list[Moment]:
    """The online picker run over a whole score sequence (to compare it with `find_moments`)."""
    picker = OnlinePicker(min_gap, every_n_seconds, min_score)
    for i, (t, score, caption) in enumerate(zip(times, scores, captions)):
        picker.push(i, t, score, caption)
    picker.finish()
    return picker.moments


def _came_back(previous: Moment, caption: str) -> bool:
    """previous was a caption change A -> B, and `caption` says A again."""
    return not _same(previous.caption, previous.previous_caption) and _same(caption, previous.previous_caption)


def _same(a: str, b: str) -> bool:
    content = lambda text: [w for w in text.split() if w not in STOP_WORDS]  # noqa: E731
    return content(a) == content(b)
