"""Camera-like test footage from real photographs, with a truth file of its cuts.

No camera footage can be downloaded where vidcap is built, but real photographs ship inside scikit-image
(`skimage.data`: an astronaut, a cat, coffee, a rocket, ...). A shot here is one photograph filmed by a moving
camera: a slow pan across it, a zoom in or out, or a camera held still; shots follow each other by a hard cut or
by a cross-fade. Sensor noise and the encoder's compression come on top. The truth file (`v.truth.json`, as for
synthetic scenes) lists each transition's time (a cross-fade's middle) and kind ("cut" or "fade"), so detectors
can be scored on footage that none of them was made for.

    vidcap synth-video photos.mp4 --photos 12 --seed 1
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vidcap.errors import InputError
from vidcap.video.synth import encode_frames, truth_path

# Colour photographs bundled in scikit-image's wheel (nothing is downloaded); "camera" and "moon" are grey.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel",
          "camera", "moon", "coins")
MOTIONS = ("pan", "zoom-in", "zoom-out", "still")


@dataclass(frozen=True)
class Shot:
    photo: str
    motion: str
    duration: float
    transition: str = "cut"  # how this shot begins: "cut", or "fade" (a cross-fade from the previous shot)
    fade_seconds: float = 0.0


def load_photo(name: str) -> np.ndarray:
    """An RGB uint8 photograph from skimage.data."""
    try:
        import skimage.data
    except ImportError:
        raise InputError("photo footage needs scikit-image (pip install scikit-image)") from None
    if name not in PHOTOS:
        raise InputError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}")
    pixels = getattr(skimage.data, name)()
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


def truth_of(shots: list[Shot]) -> dict:
    changes, t = [], 0.0
    for shot, following in zip(shots, shots[1:]):
        t += shot.duration
        changes.append({"t": round(t, 6), "kind": following.transition})
    return {"duration": round(sum(s.duration for s in shots), 6), "changes": changes}


def _view(photo: np.ndarray, motion: str, progress: float, width: int, height: int) -> np.ndarray:
    """What the camera sees `progress` (0..1) into a shot: a window of the output's aspect ratio over the photo."""
    ph, pw = photo.shape[:2]
    aspect = width / height
    full_w = min(pw, ph * aspect)  # the largest window of the output's aspect that fits
    scale = {"pan": 0.7, "still": 0.85, "zoom-in": 1.0 - 0.4 * progress, "zoom-out": 0.6 + 0.4 * progress}[motion]
    w = full_w * scale
    h = w / aspect
    if motion == "pan":  # left to right across the free width, at mid height
        x0, y0 = (pw - w) * (0.1 + 0.8 * progress), (ph - h) / 2
    else:
        x0, y0 = (pw - w) / 2, (ph - h) / 2
    box = (x0, y0, x0 + w, y0 + h)
    return np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR, box=box))


def render_frames(shots: list[Shot], fps: float, width: int, height: int, noise: float = 0.0,
                  seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    photos = {name: load_photo(name) for name in {s.photo for s in shots}}
    starts = np.concatenate([[0.0], np.cumsum([s.duration for s in shots])])
    for f in range(int(round(starts[-1] * fps))):
        t = f / fps
        i = min(int(np.searchsorted(starts, t, side="right")) - 1, len(shots) - 1)
        shot = shots[i]
        frame = _view(photos[shot.photo], shot.motion, (t - starts[i]) / shot.duration, width, height)
        frame = frame.astype(np.float32)
        following = shots[i + 1] if i + 1 < len(shots) else None
        if following is not None and following.transition == "fade":  # the fade straddles the boundary
            into = t - (starts[i + 1] - following.fade_seconds / 2)
            if into >= 0:
                alpha = min(1.0, into / following.fade_seconds)
                frame = (1 - alpha) * frame + alpha * _view(photos[following.photo], following.motion, 0.0,
                                                            width, height)
        if shot.transition == "fade" and i > 0 and t - starts[i] < shot.fade_seconds / 2:
            alpha = 0.5 + (t - starts[i]) / shot.fade_seconds  # the fade's second half: mostly this shot
            previous = shots[i - 1]
            frame = alpha * frame + (1 - alpha) * _view(photos[previous.photo], previous.motion, 1.0, width, height)
        if noise > 0:
            frame += rng.normal(0, noise, frame.shape).astype(np.float32)
        yield np.clip(frame, 0, 255).astype(np.uint8)


def write_photo_video(path: str | Path, shots: list[Shot], fps: float = 30.0, size: tuple[int, int] = (1280, 720),
                      noise: float = 0.0, seed: int = 0, crf: int = 23) -> dict:
    """Encode H.264 and write the truth file next to it (temporary names, renamed at the end)."""
    path = Path(path)
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise InputError("--size must be at least 16x16 with even sides, e.g. 1280x720")
    truth = {**truth_of(shots), "fps": fps, "size": [width, height], "noise": noise, "crf": crf,
             "shots": [asdict(s) for s in shots]}
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
