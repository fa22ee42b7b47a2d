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

# Words that say nothing of what a picture shows, in any English caption: articles, prepositions, conjunctions,
# pronouns, forms of "to be", numbers. What a model's own captions add to those (the words its training captions say
# of every picture) comes with the model: `ignored_words` of its vocabulary and its checkpoint's filler words.
FUNCTION_WORDS = frozenset(
    "a an the of on in at to into onto and or but is are was were be been being there its it this that these those "
    "with from by for as next between near against some one two three four five six seven eight nine ten his her "
    "their them they he she we you while up over under above below behind beside inside around through out off".split()
)


def ignored_words(vocabulary: list[str], fillers: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """What the caption-change path leaves out of a model's captions: the function words its vocabulary holds, and
    its own filler words (a checkpoint's `filler_words`: vidcap/synthetic.py's for the demo model; none for COCO)."""
    return frozenset(w for w in vocabulary if w in FUNCTION_WORDS) | frozenset(fillers)


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


COLOUR_BINS = 6  # per RGB channel: 216 joint bins
COLOUR_SIDE = 320  # the histogram reads a grid of about this many pixels along the longer side


def colour_histogram(pixels) -> np.ndarray:
    """(H, W, 3) uint8 RGB (numpy or a tensor on any device) -> its joint colour histogram, summing to 1. What a
    pixel detector sees: a cut or a fade to another shot changes it, a pan or zoom within one shot, a shake or
    sensor noise barely do, whatever the model knows about the footage."""
    import torch

    image = pixels if isinstance(pixels, torch.Tensor) else torch.from_numpy(np.asarray(pixels))
    step = max(1, max(image.shape[:2]) // COLOUR_SIDE)  # every step-th pixel: the same histogram, 10x cheaper at 720p
    q = (image[::step, ::step].reshape(-1, 3).long() * COLOUR_BINS) // 256
    counts = torch.bincount(q[:, 0] * COLOUR_BINS**2 + q[:, 1] * COLOUR_BINS + q[:, 2], minlength=COLOUR_BINS**3)
    counts = counts.double().cpu().numpy()
    return counts / max(counts.sum(), 1.0)


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

    def cut_of(self, index: int) -> float:
        """Frame `index`'s cut signal (its colour novelty, see RobustScorer), once its score is final; taken
        once. 0 for scorers without one (the seed scorer is the old metric, exactly)."""
        return 0.0


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
                 nearest: bool = True, regions_top_k: int = 1, ignore: frozenset[str] = FUNCTION_WORDS):
        """ignore: the words a caption's content leaves out (`ignored_words` of the model)."""
        super().__init__(window, metric)
        self.ignore = ignore
        self.regions_top_k = regions_top_k
        self.content_only, self.use_beams, self.visual_weight, self.nearest = content_only, use_beams, visual_weight, nearest
        self.lookahead = 1 if persistence else 0
        # A frame as the scorer keeps it: (its description: text and visual vectors, its colour histogram).
        self._past: deque[tuple[tuple, np.ndarray | None]] = deque(maxlen=window)
        self._pending: deque[tuple[tuple, np.ndarray | None, list]] = deque()  # (description, colours, its past)
        self._cuts: dict[int, float] = {}
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
        description = self._describe(frame)
        self._pending.append((description, frame.colours, list(self._past)))
        self._past.append((description, frame.colours))
        return self._drain(final=False)

    def cut_of(self, index: int) -> float:
        return self._cuts.pop(index, 0.0)

    def finish(self) -> list[tuple[int, float]]:
        return self._drain(final=True)

    def _drain(self, final: bool) -> list[tuple[int, float]]:
        out = []
        while len(self._pending) > self.lookahead or (final and self._pending):
            description, colours, past = self._pending.popleft()
            past_descriptions, past_colours = [p[0] for p in past], [p[1] for p in past]
            score = self._novelty(description, past_descriptions)
            cut = _colour_novelty(colours, past_colours)
            if self.lookahead and self._pending:  # does the change persist in the next frame?
                score = min(score, self._novelty(self._pending[0][0], past_descriptions))
                cut = min(cut, _colour_novelty(self._pending[0][1], past_colours))
            self._cuts[self._n_done] = cut
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
                ignore: frozenset[str] = FUNCTION_WORDS) -> NoveltyScorer:
    if name not in SCORERS:
        raise InputError(f"unknown scorer {name!r}; choose one of {', '.join(SCORERS)}")
    if name == RobustScorer.NAME:
        return RobustScorer(window=window, metric=metric, ignore=ignore)
    return SCORERS[name](window=window, metric=metric)


def score_all(scorer: NoveltyScorer, frames: list[CaptionedFrame]) -> list[float]:
    """Score a whole sequence at once (offline); the cut signals are then in `cuts_all(scorer, len(frames))`."""
    scored = dict(pair for frame in frames for pair in scorer.push(frame))
    scored.update(scorer.finish())
    return [scored[i] for i in range(len(frames))]


def cuts_all(scorer: NoveltyScorer, n: int) -> list[float]:
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
    inside. Causal: both pickers feed it sample by sample."""

    def __init__(self):
        from vidcap.domain import OUT_OF_DOMAIN, UNTRUSTED_SHARE  # not at import: vidcap.domain imports torch

        self._limit, self._share = OUT_OF_DOMAIN, UNTRUSTED_SHARE
        self._outside: deque[bool] = deque(maxlen=TRUSTED_WINDOW)

    def push(self, in_domain: float | None) -> bool:
        self._outside.append(in_domain is not None and in_domain < self._limit)
        return sum(self._outside) <= self._share * len(self._outside)


def trusted_flags(in_domain: list[float | None]) -> list[bool]:
    """`_Trust` over a whole sequence."""
    trust = _Trust()
    return [trust.push(t) for t in in_domain]


def find_moments(times: list[float], scores: list[float], captions: list[str], min_gap: float,
                 min_score: float = 0.0, sensitivity: float = 5.0, cuts: list[float] | None = None,
                 in_domain: list[float | None] | None = None, ignore: frozenset[str] = FUNCTION_WORDS
                 ) -> list[Moment]:
    """Peaks above an adaptive threshold (median + sensitivity * robust spread of the scores, and never below
    min_score), and cuts (peaks of the cut signal at or above CUT_THRESHOLD: a pixel-level change that a model which
    does not know the footage may miss), at least min_gap seconds apart (a cut first, else the higher peak wins).
    When the caption changed (A -> B) and changes back (B -> A) within twice min_gap, the scene came back: both are
    dropped (not cuts: the captions of footage the model does not know say little). A peak whose caption did not
    change stays: the scorer's region features saw what the caption left out (one object of three changing its
    shape). Where the footage is outside the model's domain (`trusted_flags` of `in_domain`, the frames'
    typicality), only cuts are moments: its captions and features say little there. A cut whose previous sample
    already shows part of the change (a fade) is placed at that sample, where the transition began. Each moment says
    why it was found (`reason`)."""
    if not scores:
        return []
    s = np.asarray(scores, dtype=np.float64)
    c = np.zeros_like(s) if cuts is None else np.asarray(cuts, dtype=np.float64)
    threshold = _threshold(s, min_score, sensitivity)
    trusted = trusted_flags(in_domain) if in_domain is not None else [True] * len(s)
    peaks = [i for i in range(len(s)) if (s[i] >= threshold and _is_peak(s, i) and trusted[i]) or _is_cut(c, i)]
    chosen: list[int] = []
    for i in sorted(peaks, key=lambda i: (-_is_cut(c, i), -s[i])):
        if all(abs(times[i] - times[j]) >= min_gap for j in chosen):
            chosen.append(i)
    moments: list[Moment] = []
    for i in sorted(chosen):
        start = i - 1 if _is_cut(c, i) and i > 0 and _began_before(c[i - 1]) else i
        before = captions[start - 1] if start > 0 else ""
        reason = _reason(c[i], captions[i], before, ignore)
        if (moments and reason != "cut" and moments[-1].reason != "cut" and _came_back(moments[-1], captions[i], ignore)
                and times[i] - moments[-1].t < 2 * min_gap):
            moments.pop()  # A -> B -> A in a short time: no lasting change
            continue
        moments.append(Moment(times[start], float(s[i]), captions[i], before, start, reason))
    return moments


def _began_before(cut_signal: float) -> bool:
    """A gradual transition (a fade): the sample before the cut already shows part of the change, so the moment
    is placed there, where the transition began, rather than where it ends."""
    return cut_signal >= CUT_THRESHOLD / 2


def _threshold(s: np.ndarray, min_score: float, sensitivity: float) -> float:
    median = float(np.median(s))
    spread = 1.4826 * float(np.median(np.abs(s - median)))
    return max(median + sensitivity * spread, min_score, 1e-9)


def _is_peak(s: np.ndarray, i: int) -> bool:
    return (i == 0 or s[i] >= s[i - 1]) and (i == len(s) - 1 or s[i] > s[i + 1])


def _is_cut(c: np.ndarray, i: int) -> bool:
    return bool(c[i] >= CUT_THRESHOLD and _is_peak(c, i))


def _reason(cut: float, caption: str, before: str, ignore: frozenset[str]) -> str:
    if cut >= CUT_THRESHOLD:
        return "cut"
    return "visual change" if _same(caption, before, ignore) else "caption change"


class OnlinePicker:
    """Moments decided as the scores arrive, from the past and at most `max_lookahead` samples ahead, for
    results that stream (the gRPC stream, the web UI, live sources): `find_moments`' rules, made causal.

    - The threshold is median + sensitivity x robust spread of the scores of the last `history` samples (the
      whole-video picker uses every score of the video), never below min_score.
    - A peak is a score at or above the threshold, at least its predecessor and above its successor; a cut is a
      peak of the cut signal at or above CUT_THRESHOLD, whatever the scores.
    - Of peaks closer than min_gap a cut, else the higher, wins, looking as far ahead as the look-ahead allows
      (min_gap, but at most max_lookahead samples); a moment already given out is never taken back, so a higher
      peak or a cut that comes later within min_gap is given out too (the whole-video picker would keep one).
    - A caption change undone within the look-ahead (A -> B -> A, the return itself a peak-sized score) is no
      moment, nor is its return; a return that comes later than that drops only the return (the first change has
      been given out). Cuts are exempt.
    - As in `find_moments`: where the footage is outside the model's domain only cuts are moments, and a fade's
      moment is placed where it began.
    Each moment is decided `lookahead` samples after its frame's score (plus the scorer's own look-ahead)."""

    def __init__(self, min_gap: float, every_n_seconds: float, min_score: float = 0.0, sensitivity: float = 5.0,
                 max_lookahead: int = 3, history: int = 600, ignore: frozenset[str] = FUNCTION_WORDS):
        self.min_gap, self.min_score, self.sensitivity, self.ignore = min_gap, min_score, sensitivity, ignore
        self.lookahead = max(1, min(max_lookahead, math.ceil(min_gap / every_n_seconds - 1e-9)))
        self._scores: deque[float] = deque(maxlen=history)
        # (index, t, score, caption, cut, trusted): the decided frame before the undecided ones, then those; at
        # first, a placeholder before the first frame
        self._frames: list[tuple[int, float, float, str, float, bool]] = [
            (-1, float("-inf"), float("-inf"), "", 0.0, True)]
        self._last_candidate: Moment | None = None  # the latest peak, given out or not (for the came-back rule)
        self._caption_before = ""  # the caption of the frame before the decided one (where a fade began)
        self._trust = _Trust()
        self._last_given: Moment | None = None
        self.moments: list[Moment] = []  # every moment given out so far

    def push(self, index: int, t: float, score: float, caption: str, cut: float = 0.0,
             in_domain: float | None = None) -> list[Moment]:
        """The next frame's final score (its cut signal, its typicality) -> the moments decided now (oldest
        first)."""
        self._scores.append(score)
        self._frames.append((index, t, score, caption, cut, self._trust.push(in_domain)))
        decided = []
        while len(self._frames) >= self.lookahead + 2:  # [predecessor, candidate, lookahead...]
            decided += self._decide()
            self._caption_before = self._frames.pop(0)[3]
        return decided

    def finish(self) -> list[Moment]:
        """The end of the video: decide what is left with the look-ahead there is."""
        decided = []
        while len(self._frames) >= 2:
            decided += self._decide()
            self._caption_before = self._frames.pop(0)[3]
        return decided

    def _decide(self) -> list[Moment]:
        before, (index, t, score, caption, cut_signal, trusted), ahead = (self._frames[0], self._frames[1],
                                                                         self._frames[2:])
        cut = cut_signal >= CUT_THRESHOLD and cut_signal >= before[4] and not (ahead and cut_signal <= ahead[0][4])
        threshold = _threshold(np.fromiter(self._scores, dtype=np.float64), self.min_score, self.sensitivity)
        peak = score >= threshold and score >= before[2] and not (ahead and score <= ahead[0][2]) and trusted
        if not (cut or peak):
            return []
        last = self._last_given
        if last is not None and t - last.t < self.min_gap and (last.reason == "cut" or not cut) and score <= last.score:
            return []  # a stronger moment close by was given out already (a weaker one cannot hide this one)
        if not cut and any(((other[2] > score and other[5]) or other[4] >= CUT_THRESHOLD)
                           and other[1] - t < self.min_gap for other in ahead):
            return []  # a higher peak or a cut is coming within min_gap
        previous_caption = before[3] if before[0] >= 0 else ""
        reason = _reason(cut_signal, caption, previous_caption, self.ignore)
        if cut and before[0] >= 0 and _began_before(before[4]):  # a fade: the moment is where it began
            t, index, previous_caption = before[1], before[0], self._caption_before
        moment = Moment(t, float(score), caption, previous_caption, index, reason)
        previous, self._last_candidate = self._last_candidate, moment
        if not cut:
            if previous is not None and _came_back(previous, caption, self.ignore) and t - previous.t < 2 * self.min_gap:
                return []  # the scene came back
            if not _same(caption, previous_caption, self.ignore) and any(
                    _same(c[3], previous_caption, self.ignore) and c[2] >= threshold for c in ahead):
                return []  # it is coming back within the look-ahead, as a change of its own (not a caption that
                # wavers between two words for one scene: the scorer sees no change there)
        self._last_given = moment
        self.moments.append(moment)
        return [moment]


def pick_online(times: list[float], scores: list[float], captions: list[str], min_gap: float,
                every_n_seconds: float, min_score: float = 0.0, cuts: list[float] | None = None,
                in_domain: list[float | None] | None = None, ignore: frozenset[str] = FUNCTION_WORDS) -> list[Moment]:
    """The online picker run over a whole score sequence (to compare it with `find_moments`)."""
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
