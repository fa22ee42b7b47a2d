"""Synthetic test videos with known changes, rendered with the synthetic-scenes renderer and encoded with PyAV.

A video is a list of segments; each segment shows one scene (objects drifting a little) for some seconds.
Where one segment follows another there is a change: a "cut" (a new scene) or an "object" change (one object
changed colour or shape, everything else the same). The truth file lists them, so detectors can be scored.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import av
import numpy as np

from vidcap.errors import InputError
from vidcap.synthetic import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, SceneObject, random_scene, render_scene

FLASH_SECONDS = 0.1  # a flicker is ~3 frames at 30 fps
FLASH_BRIGHTNESS = 60


@dataclass(frozen=True)
class Segment:
    scene: Scene
    duration: float


@dataclass(frozen=True)
class Effects:
    flicker: float | None = None  # a brightness flash every this many seconds
    shake: int = 0  # random camera translation up to this many pixels, every frame
    noise: float = 0.0  # sensor noise sigma (0-255 scale)
    drift: bool = False  # slow camera pan and slow lighting change
    still: bool = False  # objects stay put (a parked camera on a still scene); by default they wander a little
    exposure: float = 0.0  # auto-exposure drifting: the picture brightens and darkens by up to this share, slowly
    bars: float = 0.0  # letterbox: black bars of this share of the height at the top and at the bottom


def truth_path(video: str | Path) -> Path:
    """v.mp4 -> v.truth.json"""
    video = Path(video)
    return video.with_name(video.stem + ".truth.json")


def vocab_text() -> str:
    return "\n".join([
        f"backgrounds: {', '.join(BACKGROUNDS)}",
        f"shapes:      {', '.join(SHAPES)}",
        f"colours:     {', '.join(COLOURS)}",
        f"sizes:       {', '.join(SIZES)}",
        "columns:     0 (left), 1 (middle), 2 (right)",
    ])


# ---- building the segment list -----------------------------------------------------------------------------


def segments_from_script(script: dict) -> list[Segment]:
    """{"scenes": [{"duration": 5, "background": "grass",
                    "objects": [{"shape": "circle", "colour": "red", "size": "large", "column": 0}, ...]}, ...]}"""
    try:
        entries = script["scenes"]
        if not entries:
            raise InputError("the script has no scenes")
        return [_segment_from_entry(entry, i) for i, entry in enumerate(entries)]
    except (KeyError, TypeError) as exc:
        raise InputError(f"bad scene script: missing or malformed {exc}") from None


def _segment_from_entry(entry: dict, i: int) -> Segment:
    background = entry["background"]
    if background not in BACKGROUNDS:
        raise InputError(f"scene {i}: unknown background {background!r} (see `vidcap synth-video --vocab`)")
    duration = float(entry["duration"])
    if not duration > 0:
        raise InputError(f"scene {i}: duration must be positive")
    objects, used = [], set()
    for j, o in enumerate(entry.get("objects", [])):
        for key, table in (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES)):
            if o.get(key, "large" if key == "size" else None) not in table:
                raise InputError(f"scene {i} object {j}: unknown {key} {o.get(key)!r}")
        column = int(o.get("column", j if len(entry["objects"]) > 1 else 1))
        if column not in (0, 1, 2) or column in used:
            raise InputError(f"scene {i} object {j}: column must be a free one of 0, 1, 2")
        used.add(column)
        objects.append(SceneObject(o["shape"], o["colour"], o.get("size", "large"), column, (column + 0.5) / 3,
                                   float(o.get("y", 0.5))))
    if not 1 <= len(objects) <= 3:
        raise InputError(f"scene {i}: needs 1 to 3 objects")
    return Segment(Scene(background, tuple(sorted(objects, key=lambda o: o.column)), i), duration)


def random_segments(n: int, seed: int, min_seconds: float = 4.0, max_seconds: float = 9.0,
                    object_change_rate: float = 0.35) -> list[Segment]:
    """n segments of random length; each after the first is a cut or (sometimes) an object change."""
    if n < 1:
        raise InputError("--random needs at least 1 scene")
    rng = np.random.default_rng(seed)
    segments = [Segment(random_scene(rng), float(rng.uniform(min_seconds, max_seconds)))]
    while len(segments) < n:
        previous = segments[-1].scene
        scene = change_one_object(previous, rng) if rng.random() < object_change_rate else random_scene(rng)
        if scene.background == previous.background and scene.objects == previous.objects:
            continue
        segments.append(Segment(scene, float(rng.uniform(min_seconds, max_seconds))))
    return segments


def change_one_object(scene: Scene, rng: np.random.Generator) -> Scene:
    """The same scene with one object's colour or shape changed."""
    i = int(rng.integers(len(scene.objects)))
    obj = scene.objects[i]
    if rng.random() < 0.5:
        allowed = [c for c in COLOURS if c != obj.colour and c not in BACKGROUNDS[scene.background][1]]
        new = replace(obj, colour=str(rng.choice(allowed)))
    else:
        new = replace(obj, shape=str(rng.choice([s for s in SHAPES if s != obj.shape])))
    objects = list(scene.objects)
    objects[i] = new
    return replace(scene, objects=tuple(objects))


def change_kind(before: Scene, after: Scene) -> str | None:
    """'object' when exactly one object changed colour or shape and nothing else did, None when nothing
    changed, else 'cut'."""
    if before.background == after.background and before.objects == after.objects:
        return None
    if before.background != after.background or len(before.objects) != len(after.objects):
        return "cut"
    differing = [(a, b) for a, b in zip(before.objects, after.objects) if (a.shape, a.colour) != (b.shape, b.colour)]
    same_layout = all(a.column == b.column and a.size == b.size for a, b in zip(before.objects, after.objects))
    return "object" if len(differing) == 1 and same_layout else "cut"


def truth_of(segments: list[Segment]) -> dict:
    changes, t = [], 0.0
    for before, after in zip(segments, segments[1:]):
        t += before.duration
        kind = change_kind(before.scene, after.scene)
        if kind:
            changes.append({"t": round(t, 6), "kind": kind})
    return {"duration": round(sum(s.duration for s in segments), 6), "changes": changes}


# ---- rendering and encoding --------------------------------------------------------------------------------


def render_frames(segments: list[Segment], fps: float, width: int, height: int, effects: Effects,
                  seed: int = 0) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    pan = int(0.03 * width) if effects.drift else 0  # the slow pan's amplitude in pixels
    margin = effects.shake + pan
    noise_bank = [rng.normal(0, effects.noise, (height, width, 3)).astype(np.float32) for _ in range(6)] \
        if effects.noise > 0 else []
    total = sum(s.duration for s in segments)
    n_frames = int(round(total * fps))
    ends = np.cumsum([s.duration for s in segments])
    phases = rng.uniform(0, 2 * math.pi, size=(len(segments), 3, 2))
    for f in range(n_frames):
        t = f / fps
        i = min(int(np.searchsorted(ends, t, side="right")), len(segments) - 1)
        scene = segments[i].scene if effects.still else _drifted(segments[i].scene, t, phases[i])
        canvas = render_scene(scene, width + 2 * margin, height + 2 * margin)
        dx = dy = margin
        if effects.drift:
            dx += int(round(pan * math.sin(2 * math.pi * t / 20)))
        if effects.shake:
            dx += int(rng.integers(-effects.shake, effects.shake + 1))
            dy += int(rng.integers(-effects.shake, effects.shake + 1))
        frame = canvas[dy: dy + height, dx: dx + width].astype(np.float32)
        if effects.drift:
            frame += 12 * math.sin(2 * math.pi * t / 15)
        if effects.flicker and t > 0.5 and (t % effects.flicker) < FLASH_SECONDS:
            frame += FLASH_BRIGHTNESS
        if effects.exposure:  # two slow waves (periods of 7 and 11 s): a camera hunting for its exposure
            frame *= 1 + effects.exposure * (0.6 * math.sin(2 * math.pi * t / 7) + 0.4 * math.sin(2 * math.pi * t / 11))
        if noise_bank:
            frame += noise_bank[int(rng.integers(len(noise_bank)))]
        if effects.bars:  # added in post-production: clean black
            bar = int(round(effects.bars * height))
            frame[:bar] = 0
            frame[height - bar:] = 0
        yield np.clip(frame, 0, 255).astype(np.uint8)


def _drifted(scene: Scene, t: float, phases: np.ndarray) -> Scene:
    """Objects wander a little (about 1.5% of the frame) inside their scene."""
    objects = tuple(
        replace(o, x=o.x + 0.015 * math.sin(2 * math.pi * t / 3.1 + phases[j % 3, 0]),
                y=o.y + 0.015 * math.sin(2 * math.pi * t / 2.3 + phases[j % 3, 1]))
        for j, o in enumerate(scene.objects)
    )
    return replace(scene, objects=objects)


def write_video(path: str | Path, segments: list[Segment], fps: float = 30.0, size: tuple[int, int] = (1280, 720),
                effects: Effects = Effects(), seed: int = 0, keyint: int | None = None) -> dict:
    """Encode H.264 (or the container's usual codec for .webm) and write the truth file next to the video.
    Written under temporary names and renamed at the end: a failure leaves nothing behind."""
    path = Path(path)
    width, height = size
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise InputError("--size must be at least 16x16 with even sides, e.g. 1280x720")
    if not fps > 0:
        raise InputError("--fps must be positive")
    truth = {**truth_of(segments), "fps": fps, "size": [width, height], "effects": asdict(effects),
             "scenes": [{"t": float(t), **asdict(s.scene)} for t, s in zip(
                 np.concatenate([[0.0], np.cumsum([s.duration for s in segments])[:-1]]), segments)]}
    tmp_video = path.with_name(".partial-" + path.name)
    tmp_truth = path.with_name(".partial-" + truth_path(path).name)
    try:
        encode_frames(tmp_video, render_frames(segments, fps, width, height, effects, seed), fps, width, height, keyint)
        tmp_truth.write_text(json.dumps(truth, indent=1))
        tmp_video.replace(path)
        tmp_truth.replace(truth_path(path))
    finally:
        tmp_video.unlink(missing_ok=True)
        tmp_truth.unlink(missing_ok=True)
    return truth


def encode_frames(path: Path, frames: Iterator[np.ndarray], fps: float, width: int, height: int,
                  keyint: int | None = None, crf: int = 23) -> None:
    """H.264 (VP9 for .webm) from RGB frames; keyint: a fixed keyframe interval; crf: x264's quality (lower is
    better, 23 its default)."""
    from fractions import Fraction

    webm = path.suffix.lower() == ".webm"
    with av.open(str(path), mode="w", format="webm" if webm else None) as container:
        stream = container.add_stream("libvpx-vp9" if webm else "libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if not webm:
            params = "keyint={0}:min-keyint={0}:scenecut=0".format(keyint) if keyint else ""
            stream.options = {"preset": "veryfast", "crf": str(crf), **({"x264-params": params} if params else {})}
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def publish_live(url: str, frames: Iterator[np.ndarray], fps: float, width: int, height: int,
                 stop: threading.Event | None = None, on_frame: Callable[[int, float], None] | None = None,
                 keyint: int | None = None) -> int:
    """Send RGB frames as an H.264 stream at real time: MPEG-TS to udp://127.0.0.1:PORT (or a file), or RTP
    announced to an RTSP server (rtsp://...): a live source for tests and benchmarks. on_frame(n, wall time) is called as frame n goes out. -> frames sent.

    A frame of another size than the first restarts the encoder (a resolution change mid-stream, as a camera
    switching modes sends)."""
    import time
    from fractions import Fraction

    keyint = keyint or max(1, round(fps))  # a keyframe a second: a receiver that joins late starts within one
    container = "rtsp" if url.startswith("rtsp://") else "mpegts"  # rtsp://: announced to an RTSP server
    out = av.open(url, mode="w", format=container)
    stream, n, start = None, 0, time.monotonic()
    try:
        for pixels in frames:
            if stop is not None and stop.is_set():
                break
            if stream is None or (pixels.shape[1], pixels.shape[0]) != (stream.width, stream.height):
                if stream is not None:
                    for packet in stream.encode():
                        out.mux(packet)
                    out.close()
                    out = av.open(url, mode="w", format=container)
                stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
                stream.width, stream.height, stream.pix_fmt = pixels.shape[1], pixels.shape[0], "yuv420p"
                stream.options = {"preset": "ultrafast", "tune": "zerolatency",
                                  "x264-params": f"keyint={keyint}:min-keyint={keyint}:scenecut=0"}
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = n
            due = start + n / fps
            time.sleep(max(0.0, due - time.monotonic()))
            for packet in stream.encode(frame):
                out.mux(packet)
            if on_frame is not None:
                on_frame(n, time.monotonic())
            n += 1
        if stream is not None:
            for packet in stream.encode():
                out.mux(packet)
    finally:
        out.close()
    return n
