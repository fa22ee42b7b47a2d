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
from vidcap.vocab import FUNCTION_WORDS
from vidcap.video.cuts import MIN_HOLD, MIN_SHOT_SECONDS, Cut, Thumbnails, came_back, find_cuts, transition_time

METRICS = ("euclidean", "cosine")
METRIC_ALIASES = {"euclidian": "euclidean"}  # the old API's spelling

@dataclass
class CaptionedFrame:
    """What a scorer sees of one sampled frame."""

    t: float
    words: list[str]
    embeddings: np.ndarray  # (len(words), E)
    alternatives: list[tuple[list[str], np.ndarray]] = field(default_factory=list)  # other beams: words, embeddings
    feature: np.ndarray | None = None  # pooled visual feature (C,)
    regions: np.ndarray | None = None  # region features (P, C)
    colours: np.ndarray | None = None  # colour histogram of the frame (`colour_histogram`), a pixel-level signal
    lead_in: Thumbnails | None = None  # the frames since the previous sample, for cuts to the frame (cuts.py)


COLOUR_BINS = 6  # per RGB channel: 216 joint bins
COLOUR_SIDE = 160  # the histogram reads a grid of about this many pixels along the longer side
DARK = 24  # rows and columns at a picture's edge darker than this everywhere are letterbox (or pillarbox) bars
MAX_GAIN = 4.0  # a dark picture is brightened at most this much to mean grey (a fade to black stays dark)


def colour_histogram(pixels) -> np.ndarray:
    """(H, W, 3) uint8 RGB (numpy or a tensor on any device) -> its joint colour histogram, summing to 1. What a
    pixel detector sees: a cut or a fade to another shot changes it, a pan or zoom within one shot, a shake or
    sensor noise barely do, whatever the model knows about the footage. Black bars are left out, the picture's
    brightness is brought to mean grey first (auto-exposure drifting is not a new shot), and each pixel is shared
    between the two nearest levels of each channel, so that a colour near a level's edge does not jump between
    bins as the light changes a little."""
    step = max(1, max(pixels.shape[:2]) // COLOUR_SIDE)  # every step-th pixel: the same histogram, far cheaper
    grid = pixels[::step, ::step]
    grid = grid.cpu().numpy() if hasattr(grid, "cpu") else np.asarray(grid)
    image = _without_bars(grid).astype(np.float32)
    luma = float((image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).mean())
    gain = min(MAX_GAIN, 128.0 / max(luma, 1.0)) * COLOUR_BINS / 256
    lows, highs = [], []
    for c in range(3):
        position = np.clip(image[..., c].ravel() * gain - 0.5, 0, COLOUR_BINS - 1)
        low = np.minimum(position.astype(np.intp), COLOUR_BINS - 2)
        lows.append(low)
        highs.append(position - low)  # (1 - high) to the level below, high to the one above
    base = (lows[0] * COLOUR_BINS + lows[1]) * COLOUR_BINS + lows[2]
    counts = np.zeros(COLOUR_BINS ** 3)
    for r in (0, 1):
        for g in (0, 1):
            for b in (0, 1):
                weight = _share(highs[0], r) * _share(highs[1], g) * _share(highs[2], b)
                offset = (r * COLOUR_BINS + g) * COLOUR_BINS + b
                counts += np.bincount(base + offset, weight, minlength=COLOUR_BINS ** 3)
    return counts / max(counts.sum(), 1e-9)


def _share(high: np.ndarray, upper: int) -> np.ndarray:
    return high if upper else 1 - high


def _without_bars(image: np.ndarray) -> np.ndarray:
    """The picture without the black bars along its edges (at most a third of each side; a picture dark all over,
    a fade to black, is kept whole)."""
    brightest = image.max(axis=2)
    dark_rows, dark_cols = brightest.max(axis=1) < DARK, brightest.max(axis=0) < DARK
    if dark_rows.all():
        return image
    top, bottom = _run(dark_rows), _run(dark_rows[::-1])
    left, right = _run(dark_cols), _run(dark_cols[::-1])
    return image[top: len(dark_rows) - bottom, left: len(dark_cols) - right]


def _run(dark: np.ndarray) -> int:
    """How many leading entries are dark, at most a third of them."""
    limit = len(dark) // 3
    return limit if dark[:limit].all() else int(np.argmin(dark[:limit]))


def colour_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Hellinger distance between two colour histograms, 0 (the same colours) .. 1 (no colour in common)."""
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a * b))))))


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

    def cut_of(self, index: int) -> "CutSignal":
        """Frame `index`'s cut signal (see RobustScorer), once its score is final; taken once. Nothing for
        scorers without one (the seed scorer is the old metric, exactly)."""
        return NO_CUT


@dataclass(frozen=True)
class CutSignal:
    """How much a sample looks like the first of a new shot (0..1; a cut at CUT_THRESHOLD and above), and where the
    new shots began, to the frame (seconds; empty where the frames between the samples are not at hand)."""

    strength: float = 0.0
    times: tuple[float, ...] = ()

NO_CUT = CutSignal()


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
                 nearest: bool = True, regions_top_k: int = 1, ignore: frozenset[str] = FUNCTION_WORDS,
                 frame_cuts: bool = True, cuts: list[Cut] | None = None):
        """ignore: the words a caption's content leaves out (`ignored_words` of the model); frame_cuts: find cuts in
        the frames between the samples where a frame source kept them (else the colour signal alone); cuts: found
        beforehand by another detector (`make_scorer`), the cut signal then."""
        super().__init__(window, metric)
        self.ignore = ignore
        self.regions_top_k = regions_top_k
        self.content_only, self.use_beams, self.visual_weight, self.nearest = content_only, use_beams, visual_weight, nearest
        self.lookahead = 1 if persistence else 0
        self.frame_cuts, self.external_cuts = frame_cuts, cuts
        self._past: deque[_Kept] = deque(maxlen=window)
        self._pending: deque[tuple[_Kept, list[_Kept]]] = deque()  # a frame waiting for its score, and its past
        self._cuts: dict[int, CutSignal] = {}
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
        keep = [i for i, w in enumerate(words) if w not in self.ignore]
        return embeddings[keep] if keep else embeddings

    def push(self, frame: CaptionedFrame) -> list[tuple[int, float]]:
        kept = _Kept(self._describe(frame), frame.colours, frame.t, frame.lead_in)
        self._pending.append((kept, list(self._past)))
        self._past.append(kept)
        return self._drain(final=False)

    def cut_of(self, index: int) -> CutSignal:
        return self._cuts.pop(index, NO_CUT)

    def finish(self) -> list[tuple[int, float]]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[tuple[int, float]]:
        out = []
        while len(self._pending) > self.lookahead or (final and self._pending):
            own, past = self._pending.popleft()
            ahead = self._pending[0][0] if self.lookahead and self._pending else None
            past_descriptions, past_colours = [p.description for p in past], [p.colours for p in past]
            score = self._novelty(own.description, past_descriptions)
            colour = _colour_novelty(own.colours, past_colours)
            if ahead is not None:  # does the change persist in the next frame?
                score = min(score, self._novelty(ahead.description, past_descriptions))
                colour = min(colour, _colour_novelty(ahead.colours, past_colours))
            self._cuts[self._n_done] = self._cut(colour, own, past, ahead)
            out.append((self._n_done, score))
            self._n_done += 1
        return out

    def _cut(self, colour: float, own: "_Kept", past: list["_Kept"], ahead: "_Kept | None") -> CutSignal:
        """The sample's cut signal: its colour novelty, or a cut found in the frames before it (vidcap/video/
        cuts.py), whichever is stronger; and where the new shots began: those cuts' first frames, or, for a
        change of colours without one (a fade), where the frames cross over from the old picture to the new."""
        if self.external_cuts is not None:
            start = past[-1].t if past else float("-inf")
            found = [c for c in self.external_cuts if start < c.t <= own.t]
            return CutSignal(max((c.strength for c in found), default=0.0), tuple(c.t for c in found))
        if not self.frame_cuts or own.lead_in is None:
            return CutSignal(colour)
        frames = Thumbnails.join([p.lead_in for p in past[-2:]] + [own.lead_in, ahead.lead_in if ahead else None])
        found = find_cuts(frames, past[-1].t if past else float("-inf"), own.t)
        if found:
            own.jumped = True
            strength = max(min(1.0, CUT_THRESHOLD * c.strength / MIN_HOLD) for c in found)
            return CutSignal(max(colour, strength), tuple(c.t for c in found))
        if past and past[-1].jumped:  # the change goes on from a cut the sample before placed: not a new one
            return _no_cut(colour)
        old = past[-2] if len(past) >= 2 else (past[-1] if past else None)
        if colour < CUT_THRESHOLD or old is None or old.lead_in is None:
            return CutSignal(colour)
        new = ahead if ahead is not None and ahead.lead_in is not None else own
        crossed = transition_time(frames, old.lead_in.thumbs[-1], new.lead_in.thumbs[-1], old.t, own.t)
        if came_back(frames, old.lead_in.thumbs[-1], new.lead_in.thumbs[-1], own.t if crossed is None else crossed):
            return _no_cut(colour)  # light (flashes), not a new shot
        return CutSignal(colour, () if crossed is None else (crossed,))

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


@dataclass
class _Kept:
    """A frame as the robust scorer keeps it: its description (text and visual vectors), colours, time, lead-in."""

    description: tuple
    colours: np.ndarray | None
    t: float
    lead_in: Thumbnails | None
    jumped: bool = False  # a cut was found in its lead-in


def _no_cut(colour: float) -> CutSignal:
    """A colour change that is no cut: kept below the cut threshold, and below the half of it that would mark the
    sample as the start of a fade (`_began_before`)."""
    return CutSignal(min(colour, 0.99 * CUT_THRESHOLD / 2))


def _colour_novelty(colours: np.ndarray | None, past: list[np.ndarray | None]) -> float:
    """Colour distance to the nearest of the past frames: unlike anything in the window, as for the scores."""
    known = [p for p in past if p is not None]
    if colours is None or not known:
        return 0.0
    return min(colour_distance(colours, p) for p in known)


def _mean(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.asarray(embeddings, dtype=np.float64)
    return embeddings.mean(axis=0) if len(embeddings) else np.zeros(embeddings.shape[-1])


SCORERS: dict[str, type[NoveltyScorer]] = {"seed": SeedScorer, "robust": RobustScorer}
DEFAULT_SCORER = "robust"


def make_scorer(name: str = DEFAULT_SCORER, window: int = 5, metric: str | None = None,
                ignore: frozenset[str] = FUNCTION_WORDS, cuts: list[Cut] | None = None) -> NoveltyScorer:
    """cuts: found beforehand by another shot detector (each with its confidence, 0.5..1); the robust scorer takes
    them for its cut signal instead of finding its own."""
    if name not in SCORERS:
        raise InputError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    if name == RobustScorer.NAME:
        return RobustScorer(window=window, metric=metric, ignore=ignore, cuts=cuts)
    return SCORERS[name](window=window, metric=metric)


def score_all(scorer: NoveltyScorer, frames: list[CaptionedFrame]) -> list[float]:
    """Score a whole sequence at once (offline); the cut signals are then in `cuts_all(scorer, len(frames))`."""
    scored = dict(pair for frame in frames for pair in scorer.push(frame))
    scored.update(scorer.finish())
    return [scored[i] for i in range(len(frames))]


def cuts_all(scorer: NoveltyScorer, n: int) -> list[CutSignal]:
    return [scorer.cut_of(i) for i in range(n)]


# ---- moments ------------------------------------------------------------------------------------------------


@dataclass
class Moment:
    t: float
    score: float
    caption: str
    previous_caption: str
    index: int  # which sampled frame
    reason: str = ""  # why: "cut" (the picture changed: colours), "caption change" or "visual change" (regions)


CUT_THRESHOLD = 0.45  # colour novelty (Hellinger, 0..1) at or above which a frame is a cut, whatever the model
# knows: measured on bench/novelty.py, cuts between photographs reach 0.59 and more (p10), pans and zooms within
# one stay under 0.41 (p99), and no synthetic-scene video, flicker included, goes above 0.11.


TRUSTED_WINDOW = 30  # samples: where most of the last this many are outside the model's domain, captions mean little


class _Trust:
    """Can a sample's caption be trusted to mark a change? No where more than UNTRUSTED_SHARE of the last
    TRUSTED_WINDOW samples (itself included) are outside the model's domain (vidcap/domain.py); unknown counts as
    inside. Causal: the picker feeds it sample by sample."""

    def __init__(self):
        from vidcap.domain import OUT_OF_DOMAIN, UNTRUSTED_SHARE  # not at import: vidcap.domain imports torch

        self._limit, self._share = OUT_OF_DOMAIN, UNTRUSTED_SHARE
        self._outside: deque[bool] = deque(maxlen=TRUSTED_WINDOW)

    def push(self, in_domain: float | None) -> bool:
        self._outside.append(in_domain is not None and in_domain < self._limit)
        return sum(self._outside) <= self._share * len(self._outside)


def _began_before(cut_signal: float) -> bool:
    """A gradual transition (a fade): the sample before the cut already shows part of the change, so the moment
    is placed there, where the transition began, rather than where it ends."""
    return cut_signal >= CUT_THRESHOLD / 2


def _threshold(s: np.ndarray, min_score: float, sensitivity: float) -> float:
    median = float(np.median(s))
    spread = 1.4826 * float(np.median(np.abs(s - median)))
    return max(median + sensitivity * spread, min_score, 1e-9)


def _reason(cut: float, caption: str, before: str, ignore: frozenset[str]) -> str:
    if cut >= CUT_THRESHOLD:
        return "cut"
    return "visual change" if _same(caption, before, ignore) else "caption change"


class OnlinePicker:
    """The moment picker: moments decided as the scores arrive, from the past and at most `max_lookahead` samples
    ahead, and what is left at the end of the video by `finish`. Every door uses it (through
    vidcap/analysis/session.py), whether its results stream or not, so a video gets the same moments at every door.

    - The threshold is median + sensitivity x robust spread of the scores of the last `history` samples, never
      below min_score. A peak is a score at or above it, at least its predecessor and above its successor.
    - A cut is a sample whose cut signal (the colours, or cuts found to the frame) is at or above CUT_THRESHOLD
      and a peak of that signal, or that found cuts to the frame: a pixel-level change that a model which does
      not know the footage may miss. A cut's moment is the first frame of each new shot, with the caption and
      score of the first sample in it; cuts found to the frame are kept however close (a montage cuts every
      second); a fade's moment is placed where it began.
    - Of peaks closer than min_gap a cut, else the higher, wins, looking as far ahead as the look-ahead allows
      (min_gap, but at most max_lookahead samples); a peak within min_gap after a cut is no moment. A moment
      given out is never taken back.
    - A caption change undone within the look-ahead or within twice min_gap (A -> B -> A) is no lasting change:
      the return is no moment, nor (where it comes within the look-ahead) the first change. Cuts are exempt.
      A peak whose caption did not change stays ("visual change"): the scorer's region features saw what the
      caption left out.
    - Where the footage is outside the model's domain (most of the last TRUSTED_WINDOW samples), only cuts are
      moments: its captions and features say little there.
    Each moment says why it was found (`reason`) and is decided `lookahead` samples after its frame's score (plus
    the scorer's own look-ahead)."""

    def __init__(self, min_gap: float, every_n_seconds: float, min_score: float = 0.0, sensitivity: float = 5.0,
                 max_lookahead: int = 3, history: int = 600, ignore: frozenset[str] = FUNCTION_WORDS):
        self.min_gap, self.min_score, self.sensitivity, self.ignore = min_gap, min_score, sensitivity, ignore
        self.lookahead = max(1, min(max_lookahead, math.ceil(min_gap / every_n_seconds - 1e-9)))
        self._scores: deque[float] = deque(maxlen=history)
        # the decided frame before the undecided ones, then those; at first, a placeholder before the first frame
        self._frames: list[_Scored] = [_Scored(-1, float("-inf"), float("-inf"), "", NO_CUT, True)]
        self._last_candidate: Moment | None = None  # the latest peak, given out or not (for the came-back rule)
        self._caption_before = ""  # the caption of the frame before the decided one (where a fade began)
        self._trust = _Trust()
        self._last_given: Moment | None = None
        self.moments: list[Moment] = []  # every moment given out so far

    def take(self, frame) -> list[Moment]:
        """`push` of a scored frame result (vidcap/video/pipeline.py's FrameResult, or anything with its fields)."""
        return self.push(frame.index, frame.t, frame.score, frame.caption,
                         CutSignal(frame.cut, tuple(frame.cut_times)), frame.in_domain)

    def push(self, index: int, t: float, score: float, caption: str, cut: CutSignal | float = NO_CUT,
             in_domain: float | None = None) -> list[Moment]:
        """The next frame's final score (its cut signal, its typicality) -> the moments decided now (oldest
        first)."""
        self._scores.append(score)
        cut = cut if isinstance(cut, CutSignal) else CutSignal(float(cut))
        self._frames.append(_Scored(index, t, score, caption, cut, self._trust.push(in_domain)))
        decided = []
        while len(self._frames) >= self.lookahead + 2:  # [predecessor, candidate, lookahead...]
            decided += self._decide()
            self._caption_before = self._frames.pop(0).caption
        return decided

    def finish(self) -> list[Moment]:
        """The end of the video: decide what is left with the look-ahead there is."""
        decided = []
        while len(self._frames) >= 2:
            decided += self._decide()
            self._caption_before = self._frames.pop(0).caption
        return decided

    def _decide(self) -> list[Moment]:
        before, now, ahead = self._frames[0], self._frames[1], self._frames[2:]
        signal = now.cut.strength
        if signal >= CUT_THRESHOLD and now.cut.times:
            return self._give_cuts(before, now)
        cut = signal >= CUT_THRESHOLD and signal >= before.cut.strength and not (
            ahead and signal <= ahead[0].cut.strength)
        threshold = _threshold(np.fromiter(self._scores, dtype=np.float64), self.min_score, self.sensitivity)
        peak = now.score >= threshold and now.score >= before.score and not (
            ahead and now.score <= ahead[0].score) and now.trusted
        if not (cut or peak):
            return []
        last = self._last_given
        if last is not None and now.t - last.t < self.min_gap and (
                (last.reason == "cut" and not cut) or ((last.reason == "cut" or not cut) and now.score <= last.score)):
            return []  # a cut, or a stronger moment, close by was given out already (a cut wins over any peak; a
            # weaker moment cannot hide this one)
        if not cut and any(((other.score > now.score and other.trusted) or other.cut.strength >= CUT_THRESHOLD)
                           and other.t - now.t < self.min_gap for other in ahead):
            return []  # a higher peak or a cut is coming within min_gap
        previous_caption = before.caption if before.index >= 0 else ""
        moment = Moment(now.t, float(now.score), now.caption, previous_caption, now.index,
                        _reason(signal, now.caption, previous_caption, self.ignore))
        if cut and before.index >= 0 and _began_before(before.cut.strength):  # a fade: where it began
            moment = Moment(before.t, float(before.score), before.caption, self._caption_before, before.index, "cut")
        previous, self._last_candidate = self._last_candidate, moment
        if not cut:
            if previous is not None and _came_back(previous, now.caption, self.ignore) and \
                    now.t - previous.t < 2 * self.min_gap:
                return []  # the scene came back
            if not _same(now.caption, previous_caption, self.ignore) and any(
                    _same(c.caption, previous_caption, self.ignore) and c.score >= threshold for c in ahead):
                return []  # it is coming back within the look-ahead, as a change of its own (not a caption that
                # wavers between two words for one scene: the scorer sees no change there)
        self._last_given = moment
        self.moments.append(moment)
        return [moment]

    def _give_cuts(self, before: "_Scored", now: "_Scored") -> list[Moment]:
        """Cuts found to the frame: a moment at each new shot's first frame, with the caption and score of the
        first sample in that shot (the one before `now`, where a fade crossed over before it)."""
        given = []
        for t in now.cut.times:
            moment = self._cut_at(before, now, t)
            last = given[-1] if given else (self.moments[-1] if self.moments else None)
            if last is not None and t < last.t + (MIN_SHOT_SECONDS if last.reason == "cut" else 1e-9):
                continue  # given out already (one transition seen from two samples)
            given.append(moment)
        if given:
            self._last_candidate = self._last_given = given[-1]
            self.moments += given
        return given


    def _cut_at(self, before: "_Scored", now: "_Scored", t: float) -> Moment:
        """A cut at `t`, with the caption and score of the first sample at or after it (`now`, or the one before)."""
        if before.index >= 0 and t <= before.t + 1e-6:
            return Moment(t, float(before.score), before.caption, self._caption_before, before.index, "cut")
        return Moment(t, float(now.score), now.caption, before.caption if before.index >= 0 else "", now.index, "cut")


@dataclass
class _Scored:
    """A scored frame as the online picker holds it."""

    index: int
    t: float
    score: float
    caption: str
    cut: CutSignal
    trusted: bool


def pick_moments(times: list[float], scores: list[float], captions: list[str], min_gap: float,
                 every_n_seconds: float, min_score: float = 0.0, cuts: list[CutSignal | float] | None = None,
                 in_domain: list[float | None] | None = None, ignore: frozenset[str] = FUNCTION_WORDS
                 ) -> list[Moment]:
    """The moment picker run over a whole score sequence, finished at its end (the tests and the benches; the
    doors feed it frame by frame through vidcap/analysis/session.py)."""
    picker = OnlinePicker(min_gap, every_n_seconds, min_score, ignore=ignore)
    for i, (t, score, caption) in enumerate(zip(times, scores, captions)):
        picker.push(i, t, score, caption, cuts[i] if cuts else 0.0, in_domain[i] if in_domain else None)
    picker.finish()
    return picker.moments


def _came_back(previous: Moment, caption: str, ignore: frozenset[str]) -> bool:
    """previous was a caption change A -> B, and `caption` says A again."""
    return (not _same(previous.caption, previous.previous_caption, ignore)
            and _same(caption, previous.previous_caption, ignore))


def _same(a: str, b: str, ignore: frozenset[str]) -> bool:
    """The same content words (the model's ignored words left out)."""
    return [w for w in a.split() if w not in ignore] == [w for w in b.split() if w not in ignore]
