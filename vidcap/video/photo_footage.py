"""Camera-like test footage from real photographs, with a truth file of its cuts.

No camera footage can be downloaded where vidcap is built, but real photographs ship inside scikit-image
(`skimage.data`: an astronaut, a cat, coffee, a rocket, ...). A shot here is one photograph filmed by a moving
camera: a slow pan across it, a zoom in or out, or a camera held still, framed wide or close, by a hand-held camera
that shakes or not; shots follow each other by a hard cut, a cross-fade, a dissolve or a fade through black. A
still shot can be lit by a flash, a strobe or a camera flash. Sensor noise and the encoder's compression come on
top. The truth file (`v.truth.json`, as for synthetic scenes) lists each transition's time (a gradual one's middle)
and kind, so detectors can be scored on footage that none of them was made for.

    vidcap synth-video photos.mp4 --photos 12 --seed 1
    vidcap synth-video crops.mp4 --photos 40 --footage crops    # the hard cases: see FOOTAGE
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from vidcap.errors import InputError
from vidcap.video.synth import encode_frames, truth_path

# Colour photographs bundled in scikit-image's wheel (nothing is downloaded); "camera" and "moon" are grey.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
          "camera", "moon", "coins")
MOTIONS = ("pan", "zoom-in", "zoom-out", "still")
# Photographs that share a palette (grey textures; warm browns; dark), for cuts that a colour histogram cannot see.
PALETTES = (("brick", "grass", "gravel", "moon", "camera", "coins", "clock", "cell"),
            ("chelsea", "coffee", "retina", "stereo_motorcycle"),
            ("hubble_deep_field", "rocket", "cell"))
ALL_PHOTOS = tuple(dict.fromkeys(PHOTOS + sum(PALETTES, ())))
TRANSITIONS = ("cut", "fade", "dissolve", "black")  # fade: a cross-fade; black: a fade out to black and in again
LIGHTS = ("flash", "strobe", "camera-flash")


@dataclass(frozen=True)
class Light:
    """A flash on a shot, from `start` seconds into it: "flash" (brighter for 2 frames), "strobe" (every other
    frame bright for `seconds`), "camera-flash" (a white-out fading over 5 frames)."""

    kind: str
    start: float
    seconds: float = 0.0


@dataclass(frozen=True)
class Shot:
    photo: str
    motion: str
    duration: float
    transition: str = "cut"  # how this shot begins: one of TRANSITIONS
    fade_seconds: float = 0.0
    framing: tuple[float, float, float] = (0.5, 0.5, 1.0)  # centre x, centre y (0..1 of the photo), zoom (1: wide)
    shake: float = 0.0  # a hand-held camera: random jumps of up to this many pixels a frame
    motion_seconds: float | None = None  # the camera's pan or zoom takes this long (None: the whole shot)
    lights: tuple[Light, ...] = field(default_factory=tuple)


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photograph from skimage.data."""
    try:
        import skimage.data
    except ImportError:
        raise InputError("photo footage needs scikit-image (pip install scikit-image)") from None
    if name not in ALL_PHOTOS:
        raise InputError(f"unknown photo {name!r}; choose from {', '.join(ALL_PHOTOS)}")
    pixels = getattr(skimage.data, name)()
    if isinstance(pixels, tuple):  # a stereo pair: its left view
        pixels = pixels[0]
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.ascontiguousarray(pixels[..., :3]).astype(np.uint8)


def random_shots(n: int, seed: int, min_seconds: float = 4.0, max_seconds: float = 9.0,
                 fade_rate: float = 0.3) -> list[Shot]:
    """n shots of random photographs (never the same one twice in a row), motions and lengths; a shot after the
    first begins with a cross-fade (0.5-1 s) with probability fade_rate, else with a hard cut."""
    if n < 1:
        raise InputError("--photos needs at least 1 shot")
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    for i in range(n):
        choices = [p for p in PHOTOS if not shots or p != shots[-1].photo]
        fade = i > 0 and rng.random() < fade_rate
        shots.append(Shot(str(rng.choice(choices)), str(rng.choice(MOTIONS)),
                          float(rng.uniform(min_seconds, max_seconds)), "fade" if fade else "cut",
                          float(rng.uniform(0.5, 1.0)) if fade else 0.0))
    return shots


def crop_shots(n: int, seed: int) -> list[Shot]:
    """Cuts a colour histogram cannot see: each shot is another framing of the previous shot's photograph (half
    the time) or a photograph of the same palette; 2-5 s, still or slowly moving."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    for _ in range(n):
        if shots and rng.random() < 0.5:
            photo = shots[-1].photo
        else:
            group = PALETTES[int(rng.integers(len(PALETTES)))] if not shots else \
                next(g for g in PALETTES if shots[-1].photo in g)
            photo = str(rng.choice([p for p in group if not shots or p != shots[-1].photo]))
        framing = (float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7)), float(rng.choice([1.0, 1.6, 2.5])))
        if shots and shots[-1].photo == photo and framing[2] == shots[-1].framing[2]:
            framing = (1.0 - framing[0], 1.0 - framing[1], framing[2])  # another part of the photograph
        shots.append(Shot(photo, str(rng.choice(["still", "pan", "zoom-in"])), float(rng.uniform(2.0, 5.0)),
                          framing=framing, motion_seconds=10.0))
    return shots


def montage_shots(n: int, seed: int) -> list[Shot]:
    """A fast montage: shots of 0.3-2 s, a hand-held camera moving quickly, hard cuts."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    for _ in range(n):
        photo = str(rng.choice([p for p in ALL_PHOTOS if not shots or p != shots[-1].photo]))
        framing = (float(rng.uniform(0.35, 0.65)), float(rng.uniform(0.35, 0.65)), float(rng.choice([1.0, 1.5, 2.0])))
        shots.append(Shot(photo, str(rng.choice(["pan", "zoom-in", "zoom-out"])), float(rng.uniform(0.3, 2.0)),
                          framing=framing, shake=float(rng.uniform(2.0, 8.0)), motion_seconds=4.0))
    return shots


def transition_shots(n: int, seed: int) -> list[Shot]:
    """Gradual transitions: each shot after the first begins with a cross-fade, a dissolve or a fade through
    black of 0.5-2 s; shots of 4-8 s."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    for i in range(n):
        photo = str(rng.choice([p for p in ALL_PHOTOS if not shots or p != shots[-1].photo]))
        transition = str(rng.choice(TRANSITIONS[1:])) if i else "cut"
        shots.append(Shot(photo, str(rng.choice(MOTIONS)), float(rng.uniform(4.0, 8.0)), transition,
                          float(rng.uniform(0.5, 2.0)) if i else 0.0))
    return shots


def flash_shots(n: int, seed: int) -> list[Shot]:
    """Long still or slow shots (15-30 s) joined by hard cuts, each lit by 2-4 flashes, strobes (1-2 s) and camera
    flashes, none of which is a change."""
    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    for _ in range(n):
        photo = str(rng.choice([p for p in ALL_PHOTOS if not shots or p != shots[-1].photo]))
        duration = float(rng.uniform(15.0, 30.0))
        starts = np.sort(rng.uniform(1.5, duration - 3.0, size=int(rng.integers(2, 5))))
        lights = tuple(Light(str(rng.choice(LIGHTS)), float(t), float(rng.uniform(1.0, 2.0))) for t in starts)
        shots.append(Shot(photo, str(rng.choice(["still", "still", "pan"])), duration, motion_seconds=60.0,
                          lights=lights))
    return shots


# The kinds of footage `vidcap synth-video --photos N --footage KIND` makes: N shots of random_shots' mix, or of
# one hard case.
FOOTAGE = {"mixed": random_shots, "crops": crop_shots, "montage": montage_shots, "transitions": transition_shots,
           "flashes": flash_shots}


def truth_of(shots: list[Shot]) -> dict:
    changes, t = [], 0.0
    for shot, following in zip(shots, shots[1:]):
        t += shot.duration
        changes.append({"t": round(t, 6), "kind": following.transition})
    return {"duration": round(sum(s.duration for s in shots), 6), "changes": changes}


def _view(photo: np.ndarray, shot: Shot, progress: float, width: int, height: int,
          offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """What the camera sees `progress` (0..1) into a shot: a window of the output's aspect ratio over the photo,
    moved by `offset` output pixels (a hand-held camera's shake)."""
    ph, pw = photo.shape[:2]
    aspect = width / height
    full_w = min(pw, ph * aspect)  # the largest window of the output's aspect that fits
    move = min(1.0, progress)
    scale = {"pan": 0.7, "still": 0.85, "zoom-in": 1.0 - 0.4 * move, "zoom-out": 0.6 + 0.4 * move}[shot.motion]
    w = full_w * scale / shot.framing[2]
    h = w / aspect
    cx, cy = shot.framing[0] * pw, shot.framing[1] * ph
    if shot.motion == "pan":  # left to right across the free width
        cx = w / 2 + (pw - w) * (0.1 + 0.8 * move) if shot.framing[2] == 1.0 else cx - w * 0.3 + w * 0.6 * move
    x0 = float(np.clip(cx - w / 2 + offset[0] * w / width, 0, pw - w))
    y0 = float(np.clip(cy - h / 2 + offset[1] * h / height, 0, ph - h))
    box = (x0, y0, x0 + w, y0 + h)
    return np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR, box=box))


def render_frames(shots: list[Shot], fps: float, width: int, height: int, noise: float = 0.0,
                  seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    photos = {name: load_photo(name) for name in {s.photo for s in shots}}
    starts = np.concatenate([[0.0], np.cumsum([s.duration for s in shots])])
    # the order in which a dissolve reveals pixels (its own generator: the other footage's noise stays as it was)
    dither = np.random.default_rng(seed + 2).random((height, width, 1)).astype(np.float32) \
        if any(s.transition == "dissolve" for s in shots) else None
    for f in range(int(round(starts[-1] * fps))):
        t = f / fps
        i = min(int(np.searchsorted(starts, t, side="right")) - 1, len(shots) - 1)
        shot = shots[i]
        offset = tuple(rng.uniform(-shot.shake, shot.shake, 2)) if shot.shake else (0.0, 0.0)
        frame = _view(photos[shot.photo], shot, (t - starts[i]) / (shot.motion_seconds or shot.duration), width,
                      height, offset)
        frame = frame.astype(np.float32)
        # A gradual transition straddles the boundary between two shots: the old shot's end, the new one's start.
        following = shots[i + 1] if i + 1 < len(shots) else None
        if following is not None and following.transition != "cut":
            into = t - (starts[i + 1] - following.fade_seconds / 2)
            if into >= 0:
                new = _view(photos[following.photo], following, 0.0, width, height).astype(np.float32)
                frame = _mix(frame, new, min(1.0, into / following.fade_seconds), following.transition, dither)
        if shot.transition != "cut" and i > 0 and t - starts[i] < shot.fade_seconds / 2:
            previous = shots[i - 1]
            old = _view(photos[previous.photo], previous, previous.duration / (previous.motion_seconds or previous.duration),
                        width, height).astype(np.float32)
            frame = _mix(old, frame, 0.5 + (t - starts[i]) / shot.fade_seconds, shot.transition, dither)
        frame = _lit(frame, shot.lights, t - starts[i], fps)
        if noise > 0:
            frame += rng.normal(0, noise, frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _mix(old: np.ndarray, new: np.ndarray, alpha: float, transition: str, dither: np.ndarray) -> np.ndarray:
    """A frame `alpha` (0..1) into a gradual transition from `old` to `new`."""
    if transition == "dissolve":  # pixel by pixel, in a random order
        return np.where(dither < alpha, new, old)
    if transition == "black":  # out to black over the first half, in from black over the second
        return old * max(0.0, 1 - 2 * alpha) if alpha < 0.5 else new * min(1.0, 2 * alpha - 1)
    return (1 - alpha) * old + alpha * new


def _lit(frame: np.ndarray, lights: tuple[Light, ...], t: float, fps: float) -> np.ndarray:
    """The frame under the shot's flashes, `t` seconds into the shot."""
    for light in lights:
        n = int(np.floor((t - light.start) * fps + 1e-6))  # frames since the light came on
        if light.kind == "flash" and 0 <= n < 2:
            frame = frame + 90.0
        elif light.kind == "strobe" and 0 <= n < light.seconds * fps and n % 2 == 0:
            frame = frame + 120.0
        elif light.kind == "camera-flash" and 0 <= n < 5:
            weight = 0.9 * (1 - n / 5)
            frame = (1 - weight) * frame + weight * 255.0
    return frame


def write_photo_video(path: str | Path, shots: list[Shot], fps: float = 30.0, size: tuple[int, int] = (1280, 720),
                      noise: float = 0.0, seed: int = 0, crf: int = 23) -> dict:
    """Encode H.264 and write the truth file next to it (temporary names, renamed at the end)."""
    path = Path(path)
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise InputError("--size must be at least 16x16 with even sides, e.g. 1280x720")
    truth = {**truth_of(shots), "fps": fps, "size": [width, height], "noise": noise, "crf": crf,
             "shots": [asdict(s) for s in shots]}
    lights, t = [], 0.0
    for shot in shots:
        lights += [{"t": round(t + light.start, 6), "kind": light.kind} for light in shot.lights]
        t += shot.duration
    if lights:
        truth["lights"] = lights  # not changes: what must stay quiet
    tmp_video = path.with_name(".partial-" + path.name)
    tmp_truth = path.with_name(".partial-" + truth_path(path).name)
    try:
        encode_frames(tmp_video, render_frames(shots, fps, width, height, noise, seed), fps, width, height, None, crf)
        tmp_truth.write_text(json.dumps(truth, indent=1))
        tmp_video.replace(path)
        tmp_truth.replace(truth_path(path))
    finally:
        tmp_video.unlink(missing_ok=True)
        tmp_truth.unlink(missing_ok=True)
    return truth
