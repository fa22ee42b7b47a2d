"""Cuts to the frame: where, between two samples, a new shot begins.

A frame source decodes most frames between two samples anyway (to reach the next sample); of each it keeps a
thumbnail of the luma, 32x18 points (`Thumbnails`, ~600 bytes a frame, ~0.07 ms to take), handed on with the next
sample as its lead-in. From those the cut detector reads, frame by frame:

- **a jump**: the thumbnail differs from the previous frame's far more than the frames around it differ from
  theirs (`JUMP_RATIO` times the local median: a hand-held camera or a pan moves every frame, a cut once), and by
  at least `MIN_JUMP`;
- **that lasts**: every frame of the next `HOLD_SECONDS` is unlike every frame of the `BEFORE_SECONDS` before the
  jump (the median point's difference, `MIN_HOLD` or more: what a flash, a strobe or a camera flash never does,
  they return to the picture they interrupted; nor does one object of a scene changing), and the last frame at
  hand, a second or so on, has not gone back to it.

Differences are taken on levelled thumbnails (each less its own mean, over its own contrast) without the black
bars along their edges, so a change of exposure is not a change of picture, and a jump is forgiven a shift of one
point (a shaking camera). A jump that lasts is a cut at its first frame; its strength (the
lasting difference, 0..1) joins the colour signal of vidcap/video/novelty.py. A gradual transition (a fade) has
no jump: when the colour signal finds one, `transition_time` places it where the frames become more like the new
shot than the old one, its middle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The cut signals an analysis can use (AnalysisParams.cuts): "frames" (the default: colours at the samples, and the
# frames between them, as this module reads them), "colour" (colours at the samples alone: no thumbnail of each
# decoded frame is taken) and "transnetv2" (the learnt shot detector, over every frame of a file before the analysis
# starts: slower, for files; vidcap/video/transnet.py).
CUT_SIGNALS = ("frames", "colour", "transnetv2")

THUMB_W, THUMB_H = 32, 18  # points of a thumbnail; each the mean of POOLxPOOL pixels spread over its cell
POOL = 3  # 9 pixels a point: sensor noise and fine texture (which a shaking camera moves) average out
MIN_JUMP = 0.1  # how unlike the frame before a frame must be (levelled thumbnails, `differences`) to begin a cut
JUMP_RATIO = 3.0  # ... and this many times the median difference of the frames around it
HOLD_SECONDS = 0.25  # a cut lasts: the frames this long after it all differ from those BEFORE_SECONDS before it
BEFORE_SECONDS = 0.5  # (longer than a flash: the end of a flash is not a cut back to the picture it lit)
MIN_HOLD = 0.15  # ... by this much: above what one object of a scene changing or a flash leaves (<= 0.09)
LATER_SECONDS = 0.5  # ... and so does the last frame at hand, when it is at least this far on
BASELINE_SECONDS = 1.0  # the frames around a jump whose differences make its local baseline
MIN_SHOT_SECONDS = 0.25  # two cuts closer than this are one (the stronger)
MAX_FRAMES = 4096  # a lead-in keeps at most this many thumbnails (the latest): a long sampling step stays bounded

_YUV_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray", "yuv411p",
             "yuv410p", "yuv440p", "yuvj440p"}


@dataclass
class Thumbnails:
    """Thumbnails of consecutive decoded frames: times (m,) in seconds, thumbs (m, THUMB_H, THUMB_W) uint8."""

    times: np.ndarray
    thumbs: np.ndarray

    def __len__(self) -> int:
        return len(self.times)

    @classmethod
    def empty(cls) -> "Thumbnails":
        return cls(np.zeros(0), np.zeros((0, THUMB_H, THUMB_W), np.uint8))

    @classmethod
    def join(cls, parts: list["Thumbnails | None"]) -> "Thumbnails":
        parts = [p for p in parts if p is not None and len(p)]
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.times for p in parts]), np.concatenate([p.thumbs for p in parts]))


class ThumbnailLog:
    """What a frame source keeps of the frames it decodes between two samples."""

    def __init__(self) -> None:
        self._times: list[float] = []
        self._thumbs: list[np.ndarray] = []

    def add(self, t: float, thumb: np.ndarray) -> None:
        self._times.append(t)
        self._thumbs.append(thumb)
        if len(self._times) > MAX_FRAMES:
            del self._times[0], self._thumbs[0]

    def take(self) -> Thumbnails | None:
        """The thumbnails since the last take (the sample's own last), and start afresh."""
        if not self._times:
            return None
        out = Thumbnails(np.asarray(self._times, dtype=np.float64), np.stack(self._thumbs))
        self._times, self._thumbs = [], []
        return out


def _points(plane: np.ndarray) -> np.ndarray:
    """(H, W[, C]) -> the (POOL*THUMB_H, POOL*THUMB_W[, C]) pixels a thumbnail reads: every k-th row and column,
    centred (a strided view: nothing is copied)."""
    h, w = plane.shape[:2]
    rows, cols = POOL * THUMB_H, POOL * THUMB_W
    sy, sx = max(1, h // rows), max(1, w // cols)
    if h < rows or w < cols:  # a tiny picture: repeat its pixels
        return plane[np.linspace(0, h - 1, rows).astype(np.intp)][:, np.linspace(0, w - 1, cols).astype(np.intp)]
    oy, ox = (h - sy * rows) // 2 + sy // 2, (w - sx * cols) // 2 + sx // 2
    return plane[oy: oy + sy * rows: sy, ox: ox + sx * cols: sx]


def _pool(points: np.ndarray) -> np.ndarray:
    """(POOL*H, POOL*W) pixels -> (H, W) uint8, each point the mean of its POOLxPOOL."""
    pooled = points.reshape(THUMB_H, POOL, THUMB_W, POOL).sum(axis=(1, 3), dtype=np.uint16)
    return ((pooled + POOL * POOL // 2) // (POOL * POOL)).astype(np.uint8)


def luma_thumbnail(frame) -> np.ndarray:
    """A decoded PyAV frame -> its thumbnail, read straight from the luma plane where the format has one (no
    conversion of the whole picture: ~0.1 ms at 720p)."""
    if frame.format.name not in _YUV_8BIT:
        frame = frame.reformat(format="gray")
    plane = frame.planes[0]
    luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, :frame.width]
    return _pool(_points(luma))


BLACK = 24  # luma below which an edge row or column is a black bar
FLAT = 0.006  # contrast (mean absolute deviation of luma, 0..1) under which a picture is as good as black
CONTRAST_FLOOR = 0.03  # of the 0..1 luma scale: below it a picture is flat (sensor noise, compression: a dark
# or plain picture), and differences are read against this


def _without_bars(thumbs: np.ndarray) -> np.ndarray:
    """(n, H, W) thumbnails without the rows and columns along the edges that are black in every one of them
    (letterbox or pillarbox bars: they stay the same across a cut, and would hide part of it); at most a third of
    each side."""
    dark = thumbs.max(axis=0) < BLACK
    rows, cols = dark.all(axis=1), dark.all(axis=0)
    top, bottom = _leading(rows), _leading(rows[::-1])
    left, right = _leading(cols), _leading(cols[::-1])
    return thumbs[:, top: thumbs.shape[1] - bottom, left: thumbs.shape[2] - right]


def _leading(flags: np.ndarray) -> int:
    limit = len(flags) // 3
    return limit if flags[:limit].all() else int(np.argmin(flags[:limit]))


def _flat(thumbs: np.ndarray) -> np.ndarray:
    """Which thumbnails show no picture to speak of: a contrast under FLAT (black, or nearly: the middle of a fade
    through black; a star field is not flat)."""
    luma = thumbs.astype(np.float32) / 255.0
    return np.abs(luma - luma.mean(axis=(1, 2), keepdims=True)).mean(axis=(1, 2)) < FLAT


def _levelled(thumbs: np.ndarray) -> np.ndarray:
    """(n, H, W) thumbnails -> their luma less its mean, scaled by the picture's contrast (its mean absolute
    deviation, at least CONTRAST_FLOOR): a dark shot cut to another dark shot differs as much as two bright ones
    do."""
    luma = thumbs.astype(np.float32) / 255.0
    luma -= luma.mean(axis=(1, 2), keepdims=True)
    return luma / np.maximum(np.abs(luma).mean(axis=(1, 2), keepdims=True), CONTRAST_FLOOR)


def differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Levelled thumbnails (n, P) and (m, P) -> (n, m) mean absolute differences, 0 (the same picture) .. about
    1 (unrelated pictures) .. 2."""
    return np.abs(a[:, None, :] - b[None, :, :]).mean(axis=2) / 2


@dataclass(frozen=True)
class Cut:
    t: float  # the first frame of the new shot
    strength: float  # how unlike the frames before it the frames after it stay, 0..1


def find_cuts(frames: Thumbnails, start: float, end: float) -> list[Cut]:
    """The cuts whose first frame lies in (start, end]: `frames` holds the thumbnails of those frames and, for
    context, of the frames around them (at least HOLD_SECONDS after end, where the video goes on)."""
    if len(frames) < 2:
        return []
    thumbs = _without_bars(frames.thumbs)
    levelled, flat = _levelled(thumbs), _flat(thumbs)
    times = frames.times
    inside = (times[1:] > start) & (times[1:] <= end)
    if not (inside & (np.abs(levelled[1:] - levelled[:-1]).mean(axis=(1, 2)) / 2 >= MIN_JUMP)).any():
        return []  # no frame differs enough from the one before (moving it can only make the difference smaller)
    jumps = _jumps(levelled)  # jumps[j - 1]: frame j against frame j - 1
    found: list[Cut] = []
    for j in range(1, len(times)):
        if not start < times[j] <= end or jumps[j - 1] < MIN_JUMP or flat[j] or flat[j - 1]:
            continue  # (into or out of a flat picture: a fade through black, which the colours place)
        around = (np.abs(times[1:] - times[j]) <= BASELINE_SECONDS) & (np.abs(np.arange(1, len(times)) - j) > 1)
        baseline = float(np.median(jumps[around])) if around.any() else 0.0
        if jumps[j - 1] < JUMP_RATIO * baseline:
            continue
        first = min(j - 1, int(np.searchsorted(times, times[j] - BEFORE_SECONDS)))  # at least the frame before
        points = levelled.reshape(len(levelled), -1)
        before, after = points[first:j], points[(times >= times[j]) & (times <= times[j] + HOLD_SECONDS)]
        strength = float(_spread_differences(after, before).min())
        if strength < MIN_HOLD:
            continue
        if times[-1] >= times[j] + LATER_SECONDS and \
                differences(points[-1:], before).min() < 0.5 * differences(points[j:j + 1], before).min():
            continue  # the last frame at hand, a second or so on, is back to the picture before: a strobe ended
        if found and times[j] - found[-1].t < MIN_SHOT_SECONDS:
            if strength > found[-1].strength:
                found[-1] = Cut(float(times[j]), strength)
            continue
        found.append(Cut(float(times[j]), strength))
    return found


def _spread_differences(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """As `differences`, but the median point's difference: a new shot changes most of the picture, one object
    of a scene changing (or moving) a small part, which this leaves out. (So does a cut between two parts of a
    star field, whose points are mostly black in both: such a cut is left to the colours.)"""
    return np.median(np.abs(a[:, None, :] - b[None, :, :]), axis=2) / 2


def _jumps(levelled: np.ndarray) -> np.ndarray:
    """Each frame against the one before, the smaller difference of the picture as it is and moved by one point
    (1/32 of the width) either way: a shaking camera moves the picture a little every frame, a cut replaces it."""
    now, before = levelled[1:, 1:-1, 1:-1], levelled[:-1]
    h, w = levelled.shape[1:]
    best = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            moved = before[:, 1 + dy: h - 1 + dy, 1 + dx: w - 1 + dx]
            d = np.abs(now - moved).mean(axis=(1, 2)) / 2
            best = d if best is None else np.minimum(best, d)
    return best


SAME_PICTURE = 0.05  # a mean difference of levelled thumbnails under which two pictures are one (light changed)


def came_back(frames: Thumbnails, old: np.ndarray, new: np.ndarray, since: float) -> bool:
    """Whether a frame from `since` on is back to the picture `old`: under half as unlike it as `new` is (a flash,
    a strobe, two camera flashes a second apart: the picture between them is the old one). A new shot stays away;
    so does a scene whose objects changed on the same background, however small the change."""
    later = frames.thumbs[frames.times >= since]
    if not len(later):
        return False
    thumbs = _without_bars(np.concatenate([old[None], new[None], later]))
    levelled = _levelled(thumbs).reshape(len(thumbs), -1)
    away = differences(levelled[1:], levelled[:1])[:, 0]
    return bool(away[1:].min() < 0.5 * away[0] or away[0] < SAME_PICTURE)


def transition_time(frames: Thumbnails, old: np.ndarray, new: np.ndarray, start: float, end: float) -> float | None:
    """Where a gradual transition from the picture `old` to `new` (thumbnails) crosses over: the frame in
    (start, end] after the last one that is more like `old` than `new` (so that a frame that looks like the new
    picture by chance, a shaking camera's, does not place it early). None without frames there."""
    inside = (frames.times > start) & (frames.times <= end)
    if not inside.any():
        return None
    levelled = _levelled(frames.thumbs[inside]).reshape(int(inside.sum()), -1)
    ends = _levelled(np.stack([old, new])).reshape(2, -1)
    d = differences(levelled, ends)
    like_old = np.nonzero(d[:, 0] < d[:, 1])[0]
    times = frames.times[inside]
    first_new = like_old[-1] + 1 if len(like_old) else 0
    return float(times[first_new]) if first_new < len(times) else None
