"""The video engine on real encoded files: sampling, the scorers, moments, the pipeline, `vidcap analyze`."""

from __future__ import annotations

import csv
import json
import subprocess
import threading
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from vidcap.captioner import Captioner
from vidcap.synthetic import Scene, SceneObject
from vidcap.video.opener import open_frames
from vidcap.video.novelty import CaptionedFrame, RobustScorer, SeedScorer, pick_moments
from vidcap.analysis.session import analyze
from vidcap.video.pipeline import AnalysisParams, analyze_frames
from vidcap.video.synth import Segment, random_segments, truth_path, write_video

from conftest import REPO, VIDCAP, cli_env


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCAP, *args], capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=600)


def scene(background: str, *objects: tuple[str, str, int]) -> Scene:
    return Scene(background, tuple(SceneObject(s, c, "large", col, (col + 0.5) / 3, 0.5) for s, c, col in objects))


@pytest.fixture(scope="module")
def known_changes(tmp_path_factory) -> Path:
    """20 s, 320x180 at 10 fps: a cut at 7 s, an object change (colour) at 14 s."""
    path = tmp_path_factory.mktemp("video") / "known.mp4"
    first = scene("grass", ("circle", "red", 0), ("square", "blue", 2))
    second = scene("night", ("star", "yellow", 1))
    third = scene("night", ("star", "red", 1))
    write_video(path, [Segment(first, 7.0), Segment(second, 7.0), Segment(third, 6.0)], fps=10, size=(320, 180))
    return path


@pytest.mark.parametrize("keyint", [5, 300])
def test_sampling_timestamps_with_short_and_long_keyframe_intervals(tmp_path, keyint):
    path = tmp_path / f"k{keyint}.mp4"
    write_video(path, random_segments(2, seed=keyint, min_seconds=6, max_seconds=6), fps=25, size=(160, 96),
                keyint=keyint)
    with av.open(str(path)) as c:  # the keyframe layout really is what we asked for
        keys = [p.pts for p in c.demux(c.streams.video[0]) if p.is_keyframe and p.pts is not None]
    assert len(keys) == (1 if keyint == 300 else 60)  # 12 s at 25 fps = 300 frames
    for every in (1.0, 0.7, 2.5):
        with open_frames(path, every) as source:
            times = [f.t for f in source.frames()]
        expected = [k * every for k in range(int(12 / every) + 1) if k * every < 12 - 1e-9]
        assert len(times) == len(expected)
        # each sample is the first frame at or after its target: within one frame (1/25 s) of it
        assert all(0 <= t - e < 1 / 25 + 1e-6 for t, e in zip(times, expected)), (times, expected)


def test_sampled_pixels_are_the_frames_at_those_times(tmp_path):
    """A colour per second: the sample at t must show the colour of second t, also after seeking."""
    path = tmp_path / "colours.mp4"
    colours = ["red", "green", "blue", "yellow", "purple", "white", "black", "orange"]
    write_video(path, [Segment(scene("paper", ("square", c, 1)), 1.0) for c in colours], fps=20, size=(64, 64),
                keyint=10)
    from vidcap.synthetic import COLOURS
    with open_frames(path, 2.0) as source:
        for frame in source.frames():
            centre = frame.pixels[32, 32].astype(int)
            expected = np.array(COLOURS[colours[round(frame.t)]])
            assert np.abs(centre - expected).max() < 40, (frame.t, centre, expected)


def test_timestamps_are_relative_to_a_nonzero_first_pts(tmp_path):
    src = tmp_path / "src.mp4"
    write_video(src, random_segments(1, seed=0, min_seconds=4, max_seconds=4), fps=10, size=(64, 64))
    shifted = tmp_path / "shifted.mkv"  # remux with every timestamp moved 5 s later
    with av.open(str(src)) as inp, av.open(str(shifted), "w") as out:
        istream = inp.streams.video[0]
        ostream = out.add_stream_from_template(istream)
        offset = int(5 / istream.time_base)
        for packet in inp.demux(istream):
            if packet.dts is None:
                continue
            packet.pts += offset
            packet.dts += offset
            packet.stream = ostream
            out.mux(packet)
    with av.open(str(shifted)) as c:
        assert c.streams.video[0].start_time * c.streams.video[0].time_base > 4.9
    with open_frames(shifted, 1.0) as source:
        assert [round(f.t, 3) for f in source.frames()] == [0.0, 1.0, 2.0, 3.0]


def test_seed_scorer_matches_a_hand_computed_example():
    e = {w: np.array(v, dtype=float) for w, v in {"a": [1, 0], "b": [0, 1], "c": [1, 1], "d": [3, 0]}.items()}
    captions = [["a", "b"], ["c"], ["d"]]
    frames = [CaptionedFrame(float(i), ws, np.stack([e[w] for w in ws])) for i, ws in enumerate(captions)]
    means = [np.array([0.5, 0.5]), np.array([1.0, 1.0]), np.array([3.0, 0.0])]
    euclid = SeedScorer(window=2, metric="euclidian")
    scores = [s for f in frames for _, s in euclid.push(f)]
    expected = [0.0, float(np.linalg.norm(means[1] - means[0])), float(np.linalg.norm(means[2] - (means[0] + means[1]) / 2))]
    assert scores == pytest.approx(expected)
    cosine = SeedScorer(window=1, metric="cosine")
    scores = [s for f in frames for _, s in cosine.push(f)]
    cos = lambda a, b: 1 - a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert scores == pytest.approx([0.0, cos(means[1], means[0]), cos(means[2], means[1])])


def test_robust_scorer_ignores_a_one_frame_flash_but_not_a_lasting_change():
    e = {"red": [1.0, 0.0], "blue": [0.0, 1.0], "circle": [0.5, 0.5]}
    def frame(colour): return CaptionedFrame(0.0, ["a", colour, "circle"], np.array([[9.0, 9.0], e[colour], e["circle"]]))
    scorer = RobustScorer(window=3)
    seq = ["red"] * 4 + ["blue"] + ["red"] * 4 + ["blue"] * 4  # a flash at 4, a lasting change at 9
    scores = dict(p for c in seq for p in scorer.push(frame(c)))
    scores.update(scorer.finish())
    assert sorted(scores) == list(range(len(seq)))
    assert scores[4] < 0.01  # the flash: the next frame is back to red
    assert scores[9] > 0.3
    seed = SeedScorer(window=3, metric="euclidean")
    seed_scores = [s for c in seq for _, s in seed.push(frame(c))]
    assert seed_scores[4] > 0.3 and seed_scores[4] == pytest.approx(seed_scores[9])  # the old metric: same alarm


def test_moments_threshold_gap_and_returning_captions():
    times = [float(t) for t in range(20)]
    scores = [0.01] * 20
    captions = ["a red circle"] * 5 + ["a blue star"] * 5 + ["a red circle"] * 1 + ["a green cross"] * 9
    scores[5], scores[6] = 0.9, 0.5  # one change, reported by two adjacent samples
    scores[10] = 0.8  # back to the first caption right after: no lasting change
    scores[11] = 0.85
    moments = pick_moments(times, scores, captions, min_gap=2.0, every_n_seconds=1.0, min_score=0.1)
    assert [(m.t, m.caption, m.previous_caption) for m in moments] == [
        (5.0, "a blue star", "a red circle"), (11.0, "a green cross", "a red circle")]
    assert pick_moments(times, [0.02] * 20, captions, 2.0, 1.0, min_score=0.1) == []


def test_moments_the_caption_misses_are_kept_but_a_scene_coming_back_is_not():
    times = [float(t) for t in range(30)]
    scores = [0.01] * 30
    # The caption names two of three objects; the third changes at 5 and again at 9 (the scorer's region
    # features saw it): both are moments, although no caption changed.
    captions = ["three shapes a red star on the left and a blue cross on the right"] * 30
    scores[5], scores[9] = 0.6, 0.5
    # 15: a new caption; 17: the old one is back, within the look-ahead -> no lasting change, neither is a moment.
    captions[15:17] = ["a green circle on grass"] * 2
    scores[15], scores[17] = 0.9, 0.9
    # 22: a new caption; 25: back, after the look-ahead (22 was given out) but within twice min_gap: the return
    # is no moment.
    captions[22:25] = ["a green circle on grass"] * 3
    scores[22], scores[25] = 0.9, 0.9
    moments = pick_moments(times, scores, captions, min_gap=2.0, every_n_seconds=1.0, min_score=0.1)
    assert [m.t for m in moments] == [5.0, 9.0, 22.0]


@pytest.fixture(scope="module")
def captioner() -> Captioner:
    return Captioner.load()


def test_pipeline_finds_the_known_changes(known_changes, captioner):
    analysis = analyze(captioner, known_changes, AnalysisParams(every_n_seconds=1.0, window=3))
    assert [round(f.t) for f in analysis.frames] == list(range(20))
    truth = json.loads(truth_path(known_changes).read_text())["changes"]
    found = [m.t for m in analysis.moments]
    for change in truth:
        assert any(abs(t - change["t"]) <= 1.0 for t in found), (found, truth)
    assert len(found) == len(truth), [(m.t, m.caption) for m in analysis.moments]


def test_pipeline_yields_the_first_frame_before_the_video_is_decoded(tmp_path, captioner):
    path = tmp_path / "long.mp4"
    write_video(path, random_segments(4, seed=3, min_seconds=15, max_seconds=15), fps=10, size=(160, 96))
    decoded = []
    from vidcap.video import pyav_source
    original = pyav_source.PyAVFrameSource._to_rgb

    def counting(self, frame):
        decoded.append(frame.pts)
        return original(self, frame)

    pyav_source.PyAVFrameSource._to_rgb = counting
    try:
        results = analyze_frames(path, captioner, AnalysisParams(every_n_seconds=0.5, scorer="seed", batch_size=4))
        first = next(results)
        decoded_at_first = len(decoded)
        results.close()  # stops decoding
        assert not [t for t in threading.enumerate() if t.name == "vidcap-frames"]
    finally:
        pyav_source.PyAVFrameSource._to_rgb = original
    assert first.index == 0 and first.t == 0.0
    assert decoded_at_first < 120 // 2  # far fewer than the 120 samples of the whole video
    assert len(decoded) < 120


@pytest.mark.integration  # starts vidcap processes
def test_analyze_cli_writes_json_csv_plot_and_summary(known_changes, tmp_path):
    out = tmp_path / "out"
    result = run("analyze", str(known_changes), "--every", "1", "--window", "3", "--json", str(out / "a.json"),
                 "--csv", str(out / "a.csv"), "--plot", str(out / "a.png"))
    assert result.returncode == 0, result.stderr
    data = json.loads((out / "a.json").read_text())
    assert set(data) >= {"video", "params", "frames", "moments"}
    assert data["params"]["every_n_seconds"] == 1.0 and data["params"]["scorer"] == "robust"
    assert len(data["frames"]) == 20 and {"t", "caption", "score"} <= set(data["frames"][0])
    assert data["moments"] and {"t", "score", "caption", "previous_caption"} <= set(data["moments"][0])
    rows = list(csv.DictReader((out / "a.csv").open()))
    assert len(rows) == 20 and sum(int(r["moment"]) for r in rows) == len(data["moments"])
    assert [r["reason"] for r in rows if r["moment"] == "1"] == [m["reason"] for m in data["moments"]]
    assert all(m["reason"] in result.stdout for m in data["moments"])
    assert (out / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{len(data['moments'])} moments" in result.stdout
    seed = run("analyze", str(known_changes), "--scorer", "seed", "--metric", "euclidian", "--json",
               str(out / "s.json"), "--no-progress")
    assert seed.returncode == 0 and json.loads((out / "s.json").read_text())["params"]["metric"] == "euclidean"


@pytest.mark.parametrize("suffix", [".mkv", ".webm", ".mov"])
def test_other_containers(tmp_path, suffix, captioner):
    path = tmp_path / f"v{suffix}"
    write_video(path, random_segments(1, seed=1, min_seconds=3, max_seconds=3), fps=10, size=(96, 64))
    results = list(analyze_frames(path, captioner, AnalysisParams(every_n_seconds=1.0, scorer="seed")))
    assert [round(r.t) for r in results] == [0, 1, 2]


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory, known_changes) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video")
    (folder / "truncated.mp4").write_bytes(known_changes.read_bytes()[:3000])
    with av.open(str(folder / "audio.m4a"), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    return folder


BAD_ANALYZE_CALLS = [
    (["empty.mp4"], "0 bytes"),
    (["text.mp4"], "cannot open"),
    (["truncated.mp4"], "cannot"),
    (["audio.m4a"], "no video stream"),
    (["missing.mp4"], "not found"),
    (["KNOWN", "--every", "0"], "--every must be at least 0.04"),
    (["KNOWN", "--every", "-1"], "--every must be at least 0.04"),
    (["KNOWN", "--every", "1e-9"], "--every must be at least 0.04"),
    (["KNOWN", "--beam", "1000000"], "--beam must be between 1 and 20"),
    (["KNOWN", "--every", "100"], "longer than the video"),
    (["KNOWN", "--window", "0"], "window"),
    (["KNOWN", "--metric", "manhattan"], "unknown metric"),
]


@pytest.mark.parametrize("args, message", BAD_ANALYZE_CALLS, ids=[" ".join(a) for a, _ in BAD_ANALYZE_CALLS])
def test_bad_videos_and_parameters_are_clean_errors(args, message, bad_videos, known_changes, tmp_path, capsys):
    """`vidcap analyze`'s error matrix, in this process (the real command line: test below)."""
    from vidcap.cli import main as vidcap_main

    video = str(known_changes) if args[0] == "KNOWN" else str(bad_videos / args[0])
    out = tmp_path / "out.json"
    assert vidcap_main(["analyze", video, *args[1:], "--json", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vidcap analyze: error: ") and message in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))


@pytest.mark.integration  # starts vidcap processes
def test_the_command_line_answers_bad_input_in_one_line(bad_videos, known_changes, tmp_path):
    out = tmp_path / "out.json"
    result = run("analyze", str(bad_videos / "text.mp4"), "--json", str(out), "--no-progress")
    assert result.returncode == 2 and result.stderr.startswith("vidcap analyze: error: "), result.stderr
    assert "cannot open" in result.stderr and "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not out.exists() and not list(tmp_path.glob(".partial-*"))
    bad_scorer = run("analyze", str(known_changes), "--scorer", "nope")
    assert bad_scorer.returncode == 2 and "invalid choice" in bad_scorer.stderr and "Traceback" not in bad_scorer.stderr


@pytest.mark.integration  # starts vidcap processes
def test_synth_video_cli_truth_and_vocab(tmp_path):
    script = {"scenes": [
        {"duration": 3, "background": "sand", "objects": [{"shape": "circle", "colour": "red", "column": 0}]},
        {"duration": 3, "background": "sand", "objects": [{"shape": "square", "colour": "red", "column": 0}]},
        {"duration": 3, "background": "sky", "objects": [{"shape": "star", "colour": "black"}]},
    ]}
    (tmp_path / "s.json").write_text(json.dumps(script))
    result = run("synth-video", str(tmp_path / "v.mp4"), "--script", str(tmp_path / "s.json"), "--fps", "10",
                 "--size", "128x96", "--flicker", "2", "--shake", "3", "--noise", "4", "--drift")
    assert result.returncode == 0, result.stderr
    truth = json.loads((tmp_path / "v.truth.json").read_text())
    assert truth["duration"] == 9 and truth["changes"] == [{"t": 3.0, "kind": "object"}, {"t": 6.0, "kind": "cut"}]
    with av.open(str(tmp_path / "v.mp4")) as c:
        s = c.streams.video[0]
        assert (s.width, s.height) == (128, 96) and s.frames == 90
    vocab = run("synth-video", "--vocab")
    assert "circle" in vocab.stdout and "grass" in vocab.stdout and "red" in vocab.stdout
    bad = run("synth-video", str(tmp_path / "b.mp4"), "--script", str(tmp_path / "nope.json"))
    assert bad.returncode == 2 and not (tmp_path / "b.mp4").exists()
    script["scenes"][0]["background"] = "mars"
    (tmp_path / "bad.json").write_text(json.dumps(script))
    bad = run("synth-video", str(tmp_path / "b.mp4"), "--script", str(tmp_path / "bad.json"))
    assert bad.returncode == 2 and "unknown background" in bad.stderr


def test_uploads_are_spooled_under_a_safe_version_of_their_own_name(tmp_path):
    from vidcap.fileio import spooled_upload, upload_name

    assert upload_name("holiday.mkv") == "holiday.mkv"
    assert upload_name("../../etc/passwd") == "passwd.mp4"
    assert upload_name("My Holiday (2).MOV") == "My_Holiday_2_.MOV"
    assert upload_name("") == "upload.mp4" and upload_name(".hidden") == "hidden.mp4"
    with spooled_upload("a b.webm", tmp_path) as spool:
        spool.write(b"x")
        spool.close()
        path = Path(spool.name)
        assert path.name == "a_b.webm" and path.parent.parent == tmp_path and path.read_bytes() == b"x"
    assert not path.parent.exists()  # the private folder is gone


def test_frames_at_seeks_to_the_frames_the_sampler_would_give(tmp_path):
    from vidcap.video.pyav_source import PyAVFrameSource, frames_at

    path = tmp_path / "v.mp4"
    write_video(path, random_segments(3, seed=2, min_seconds=3, max_seconds=3), fps=10, size=(160, 96), keyint=12)
    with PyAVFrameSource(path, 0.5) as source:
        sampled = {round(f.t, 3): f.pixels for f in source.frames()}
    grabbed = frames_at(path, [6.0, 0.0, 3.5, 99.0])  # any order; past the end gives the last frame
    assert [round(f.t, 3) for f in grabbed] == [6.0, 0.0, 3.5, 8.9]
    for f in grabbed[:3]:
        assert np.array_equal(f.pixels, sampled[round(f.t, 3)])
    small = frames_at(path, [1.0], max_side=80)[0]
    assert small.pixels.shape == (48, 80, 3)


def test_skipping_unreferenced_frames_far_from_a_target_changes_no_sampled_frame(tmp_path, monkeypatch):
    import vidcap.video.pyav_source as pyav_source

    path = tmp_path / "b.mp4"  # x264 defaults: B-frames, one keyframe in 12 s
    write_video(path, random_segments(3, seed=4, min_seconds=4, max_seconds=4), fps=25, size=(160, 96), keyint=300)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONREF"
        assert sum(1 for _ in container.decode(stream)) < 300  # the file has frames the decoder can skip

    def sample(every: float) -> list[tuple[float, np.ndarray]]:
        with pyav_source.PyAVFrameSource(path, every, size=(64, 64)) as source:
            return [(f.t, f.pixels) for f in source.frames()]

    for every in (0.37, 1.0, 2.5):
        skipping = sample(every)
        monkeypatch.setattr(pyav_source, "_SKIP_MARGIN_SECONDS", float("inf"))
        decoding_all = sample(every)
        monkeypatch.undo()
        assert [t for t, _ in skipping] == [t for t, _ in decoding_all]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(skipping, decoding_all))


def test_a_core_is_left_to_decoding_only_while_decoding_is_what_limits():
    from vidcap.video.pipeline import _Balance

    saved = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        balance = _Balance()  # before any evidence: decoding usually limits
        assert torch.get_num_threads() == 1
        balance.observe(queue_was_empty=False, backlog=8, batch_size=8)  # frames waiting: inference limits...
        assert torch.get_num_threads() == 1  # ...but one sign is not enough
        balance.observe(queue_was_empty=False, backlog=8, batch_size=8)
        assert torch.get_num_threads() == 2
        other = _Balance()  # a second analysis that is decode-bound takes the core again
        assert torch.get_num_threads() == 1
        other.close()
        assert torch.get_num_threads() == 2
        balance.observe(queue_was_empty=True, backlog=0, batch_size=8)
        balance.observe(queue_was_empty=True, backlog=0, batch_size=8)
        assert torch.get_num_threads() == 1
        balance.close()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)


def _write_repeatedly(target: str, version: int) -> None:
    from vidcap.fileio import write_atomic

    for _ in range(20):
        write_atomic(target, bytes([version]) * 2_000_000)


def test_concurrent_atomic_writes_of_one_file_leave_one_whole_version(tmp_path):
    """Two TorchServe workers may export the same encoder at once: every writer must rename a whole file."""
    import multiprocessing

    target = tmp_path / "trunk.onnx"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_repeatedly, args=(str(target), n)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=60)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0]
    assert target.read_bytes() in [bytes([n]) * 2_000_000 for n in range(4)]
    assert not list(tmp_path.glob(".partial-*"))


def test_a_source_is_never_closed_under_a_running_decode():
    """Stopping while one decode is slow (a server shutting down): the source is closed when that decode
    returns, not under it."""
    from vidcap.video.pipeline import _FrameReader

    class SlowSource:
        def __init__(self):
            self.decoding, self.closed_while_decoding, self.closed = threading.Event(), False, threading.Event()
            self.may_finish = threading.Event()

        def frames(self):
            self.decoding.set()
            self.may_finish.wait(10)  # one slow frame
            self.decoding.clear()
            yield "frame"

        def close(self):
            self.closed_while_decoding = self.closed_while_decoding or self.decoding.is_set()
            self.closed.set()

    source = SlowSource()
    reader = _FrameReader(source, capacity=2)
    reader.start()
    assert source.decoding.wait(5)
    reader.release(timeout=0.2)  # gives up waiting: the decode is still running
    assert not source.closed.is_set()
    source.may_finish.set()
    assert source.closed.wait(5) and not source.closed_while_decoding


# ---- still frames ----------------------------------------------------------------------------------------------


def test_still_frames_are_told_apart_from_noise_flashes_shakes_and_small_changes():
    from vidcap.synthetic import render_scene
    from vidcap.video.stills import StillFrames

    rng = np.random.default_rng(0)
    base = render_scene(scene("grass", ("circle", "red", 0), ("square", "blue", 2)), 112, 112).astype(float)

    def noisy(image: np.ndarray, sigma: float = 4.0) -> np.ndarray:  # what sigma 12 at 360p leaves at the model's size
        return np.clip(image + rng.normal(0, sigma, image.shape), 0, 255).astype(np.uint8)

    stills = StillFrames()
    assert not stills.is_still(noisy(base))  # the first frame is always captioned
    assert all(stills.is_still(noisy(base)) for _ in range(20))  # sensor noise alone: still
    assert not stills.is_still(noisy(base + 60))  # a flash is captioned (and becomes the reference)
    assert not stills.is_still(noisy(base))  # so is the frame after it
    assert not stills.is_still(noisy(np.roll(base, 2, axis=1)))  # a shake of 2 pixels
    small = scene("grass", ("circle", "red", 0), ("square", "blue", 2))
    changed = Scene(small.background, (small.objects[0], SceneObject("square", "blue", "small", 2, 5 / 6, 0.5)))
    stills.is_still(render_scene(small, 112, 112))
    assert not stills.is_still(render_scene(changed, 112, 112))  # one object shrinking


@pytest.fixture(scope="module")
def parked_camera(tmp_path_factory) -> Path:
    """36 s of a parked camera with sensor noise: a cut at 12 s and an object change at 24 s."""
    from vidcap.video.synth import Effects

    path = tmp_path_factory.mktemp("still") / "parked.mp4"
    first = scene("grass", ("circle", "red", 0), ("square", "blue", 2))
    second = scene("night", ("star", "yellow", 1))
    third = scene("night", ("star", "red", 1))
    write_video(path, [Segment(first, 12.0), Segment(second, 12.0), Segment(third, 12.0)], fps=10,
                size=(320, 180), effects=Effects(noise=12.0, still=True))
    return path


def test_still_frames_reuse_the_last_caption_and_every_change_is_still_captioned(parked_camera, captioner):
    skipping = analyze(captioner, parked_camera, AnalysisParams(every_n_seconds=1.0, window=3))
    every = analyze(captioner, parked_camera, AnalysisParams(every_n_seconds=1.0, window=3, skip_still=False))
    assert not any(f.reused for f in every.frames)
    reused = [f for f in skipping.frames if f.reused]
    assert len(reused) >= 0.8 * len(skipping.frames)
    fresh = [f.t for f in skipping.frames if not f.reused]
    for change in json.loads(truth_path(parked_camera).read_text())["changes"]:
        first_after = min(f.t for f in skipping.frames if f.t >= change["t"])
        assert first_after in fresh  # the first sample after each change is captioned afresh
    by_index = {f.index: f for f in skipping.frames}
    for f in reused:  # a reused caption is the previous sample's (the last captioned frame's, carried on)
        assert f.caption == by_index[f.index - 1].caption
    assert [round(m.t) for m in skipping.moments] == [round(m.t) for m in every.moments] == [12, 24]


@pytest.mark.integration  # starts vidcap processes
def test_reused_frames_are_marked_in_json_csv_and_the_summary(parked_camera, tmp_path):
    out = tmp_path / "out"
    result = run("analyze", str(parked_camera), "--json", str(out / "a.json"), "--csv", str(out / "a.csv"),
                 "--no-progress")
    assert result.returncode == 0, result.stderr
    frames = json.loads((out / "a.json").read_text())["frames"]
    reused = sum(f["reused"] for f in frames)
    assert reused >= 0.8 * len(frames)
    assert sum(int(r["reused"]) for r in csv.DictReader((out / "a.csv").open())) == reused
    assert f"({reused} still, caption reused)" in result.stdout
    every = run("analyze", str(parked_camera), "--no-skip", "--json", str(out / "b.json"), "--no-progress")
    assert every.returncode == 0, every.stderr
    assert not any(f["reused"] for f in json.loads((out / "b.json").read_text())["frames"])


# ---- the sampling rule as arithmetic (what the GPU frame source uses) -------------------------------------------


def _variable_rate_video(path: Path, seconds: float = 8.0) -> Path:
    """H.264 whose frames last 20, 40 or 100 ms in turn (a phone's variable frame rate)."""
    from fractions import Fraction

    rng = np.random.default_rng(1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t, n = 0, 0
        while t < seconds * 1000:
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8), format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
            t, n = t + (20, 40, 100)[n % 3], n + 1
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("kind", ["30 fps", "29.97 fps", "variable"])
def test_sample_frame_indices_pick_the_frames_pyav_samples(tmp_path, kind):
    from vidcap.video.frames import is_constant_rate, sample_frame_indices
    from vidcap.video.pyav_source import presentation_times

    path = tmp_path / "v.mp4"
    if kind == "variable":
        _variable_rate_video(path)
    else:
        fps = 30.0 if kind == "30 fps" else 30000 / 1001
        write_video(path, random_segments(2, seed=5, min_seconds=6.1, max_seconds=6.1), fps=fps, size=(160, 96))
    times = presentation_times(path)
    assert is_constant_rate(times) == (kind != "variable")
    for every in (1.0, 0.7, 2.5):
        with open_frames(path, every, "pyav") as source:
            sampled = [f.t for f in source.frames()]
            targets = source.sample_times()
        picked = [times[i] for i in sample_frame_indices(times, targets)]
        assert len(picked) == len(sampled) and np.allclose(picked, sampled, atol=1e-6), (kind, every)


def test_the_gpu_frame_list_names_one_frame_per_sample():
    from vidcap.video.dali_source import frame_list

    assert frame_list(Path("/m/v.mp4"), [0, 30, 61]) == "/m/v.mp4 0 0 1\n/m/v.mp4 0 30 31\n/m/v.mp4 0 61 62\n"


def test_photo_footage_has_real_pictures_a_moving_camera_and_a_truth_file(tmp_path):
    out = tmp_path / "photos.mp4"
    result = run("synth-video", str(out), "--photos", "4", "--seed", "3", "--size", "320x180", "--fps", "10")
    assert result.returncode == 0, result.stderr
    truth = json.loads(truth_path(out).read_text())
    assert len(truth["changes"]) == 3 and {c["kind"] for c in truth["changes"]} <= {"cut", "fade"}
    shots = truth["shots"]
    assert all(a["photo"] != b["photo"] for a, b in zip(shots, shots[1:]))
    starts = np.cumsum([0] + [s["duration"] for s in shots])
    with open_frames(out, 0.5) as source:
        frames = list(source.frames())
    assert abs(source.duration - truth["duration"]) < 0.2
    middle = [min(frames, key=lambda f: abs(f.t - (a + b) / 2)).pixels.astype(int) for a, b in zip(starts, starts[1:])]
    assert all(np.abs(a - b).mean() > 10 for a, b in zip(middle, middle[1:]))  # each shot shows another photo
    moving = [s for s in shots if s["motion"] != "still"]
    if moving:  # the camera moves within a moving shot: its first and last second differ
        i = shots.index(moving[0])
        first = min(frames, key=lambda f: abs(f.t - (starts[i] + 1.5))).pixels.astype(int)
        last = min(frames, key=lambda f: abs(f.t - (starts[i + 1] - 1.5))).pixels.astype(int)
        assert np.abs(first - last).mean() > 3
    bad = run("synth-video", str(tmp_path / "x.mp4"), "--photos", "2", "--shake", "5")
    assert bad.returncode == 2 and "--photos takes" in bad.stderr


# ---- moments decided as the video plays ------------------------------------------------------------------------


def test_the_picker_decides_each_change_within_three_samples_and_finds_it():
    from vidcap.video.novelty import OnlinePicker

    rng = np.random.default_rng(7)
    same = 0
    for _ in range(50):
        scores = list(np.abs(rng.normal(0.03, 0.02, 90)))
        captions, caption = [], "a red circle"
        changes = sorted(rng.choice(np.arange(3, 90), 6, replace=False))
        while min(np.diff(changes)) < 3:  # changes min_gap apart at least
            changes = sorted(rng.choice(np.arange(3, 90), 6, replace=False))
        for i in range(90):
            if i in changes:
                scores[i], caption = float(rng.uniform(0.3, 0.9)), f"scene {i}"
            captions.append(caption)
        times = [float(i) for i in range(90)]
        picker, decided = OnlinePicker(min_gap=2.0, every_n_seconds=1.0, min_score=0.12), []
        for i, (t, s, c) in enumerate(zip(times, scores, captions)):
            for m in picker.push(i, t, s, c):
                assert i - m.index <= 3  # decided from the past and at most 3 samples ahead
                decided.append(m)
        decided += picker.finish()
        assert [m.t for m in decided] == [m.t for m in picker.moments]
        assert {m.t for m in decided} <= {float(c) for c in changes}  # nothing but the changes
        same += [m.t for m in decided] == [float(c) for c in changes]
    assert same >= 48  # all of them, almost always (random scores may make a peak of noise)


def test_the_online_picker_drops_a_scene_that_comes_back_within_its_look_ahead():
    times = [float(i) for i in range(12)]
    scores = [0.0, 0.02, 0.01, 0.02, 0.8, 0.02, 0.7, 0.01, 0.02, 0.01, 0.02, 0.01]
    captions = ["a"] * 4 + ["b"] * 2 + ["a"] * 6  # A -> B -> A two samples later: no lasting change
    assert pick_moments(times, scores, captions, min_gap=2.0, every_n_seconds=1.0, min_score=0.12) == []
    captions = ["a"] * 4 + ["b"] * 2 + ["c"] * 6  # A -> B -> C: two changes
    assert [m.t for m in pick_moments(times, scores, captions, 2.0, 1.0, 0.12)] == [4.0, 6.0]


# ---- the cut signal: what a pixel detector sees, whatever the model knows ------------------------------------


def test_a_cut_wins_over_a_nearby_caption_peak_and_is_never_taken_for_a_scene_coming_back():
    from vidcap.video.novelty import CUT_THRESHOLD

    times = [float(i) for i in range(14)]
    scores = [0.0, 0.02, 0.01, 0.02, 0.9, 0.3, 0.02, 0.01, 0.02, 0.5, 0.01, 0.02, 0.01, 0.02]
    cuts = [0.0, 0.05, 0.04, 0.05, 0.1, 0.7, 0.05, 0.04, 0.05, 0.6, 0.05, 0.04, 0.05, 0.03]
    # The caption changes a sample before the picture does (4, 5), and at 9 the first shot's caption is back
    # (a model that does not know the footage may well give two shots the same caption).
    captions = ["a"] * 4 + ["b"] * 5 + ["a"] * 5
    moments = pick_moments(times, scores, captions, 3.0, 1.0, 0.12, cuts=cuts)
    assert [(m.t, m.reason) for m in moments] == [(5.0, "cut"), (9.0, "cut")]
    # Without the cut signal the same scores read as A -> B -> A within twice min_gap; the return comes after the
    # look-ahead: the first change has been given out, only the return drops.
    assert [m.t for m in pick_moments(times, scores, captions, 3.0, 1.0, 0.12)] == [4.0]
    assert max(cuts) > CUT_THRESHOLD > 0.5 * max(cuts)


def test_cuts_between_photographs_are_found_and_named_whatever_the_captions(tmp_path, captioner):
    from vidcap.video.photo_footage import random_shots, write_photo_video

    shots = random_shots(6, seed=11, min_seconds=3.0, max_seconds=5.0)
    path = tmp_path / "photos.mp4"
    truth = write_photo_video(path, shots, fps=10, size=(320, 180), noise=3.0)["changes"]
    analysis = analyze(captioner, path, AnalysisParams(every_n_seconds=0.5, window=5))
    for change in truth:
        near = [m for m in analysis.moments if abs(m.t - change["t"]) <= 1.0]
        assert near, (change, [(m.t, m.reason) for m in analysis.moments])
        if change["kind"] == "cut":
            assert near[0].reason == "cut" and abs(near[0].t - change["t"]) <= 0.5
    assert len(analysis.moments) <= len(truth) + 1, [(m.t, m.reason) for m in analysis.moments]
    cut_frames = [f for f in analysis.frames if f.cut >= 0.45]
    assert cut_frames and all(any(abs(f.t - c["t"]) <= 1.0 for c in truth) for f in cut_frames)


def test_the_cut_signal_stays_low_on_flicker_shake_noise_and_a_moving_scene(tmp_path, captioner):
    from vidcap.video.novelty import CUT_THRESHOLD
    from vidcap.video.synth import Effects

    path = tmp_path / "rough.mp4"
    write_video(path, random_segments(1, seed=9, min_seconds=12, max_seconds=12), fps=10, size=(320, 180),
                effects=Effects(flicker=1.5, shake=10, noise=12.0), seed=2)
    analysis = analyze(captioner, path, AnalysisParams(every_n_seconds=0.25, window=5))
    assert len(analysis.frames) == 48
    assert max(f.cut for f in analysis.frames) < 0.5 * CUT_THRESHOLD
    assert not [m for m in analysis.moments if m.reason == "cut"]


def test_where_the_model_does_not_know_the_footage_only_cuts_are_moments():
    from vidcap.video.novelty import TRUSTED_WINDOW

    times = [float(i) for i in range(40)]
    scores = [0.02] * 40
    scores[10], scores[25] = 0.8, 0.7  # two caption changes...
    cuts = [0.05] * 40
    cuts[25] = 0.8  # ...the second also a cut
    captions = ["a"] * 10 + ["b"] * 15 + ["c"] * 15
    known, unknown = [0.5] * 40, [0.001] * 40
    for in_domain, expected in [(known, [(10.0, "caption change"), (25.0, "cut")]), (unknown, [(25.0, "cut")])]:
        moments = pick_moments(times, scores, captions, 2.0, 1.0, 0.12, cuts=cuts, in_domain=in_domain)
        assert [(m.t, m.reason) for m in moments] == expected
    # Trust follows the recent share of frames outside the domain (a few odd frames change nothing).
    mixed = [0.001 if i % 4 == 0 else 0.5 for i in range(40)]
    moments = pick_moments(times, scores, captions, 2.0, 1.0, 0.12, cuts=cuts, in_domain=mixed)
    assert [(m.t, m.reason) for m in moments] == [(10.0, "caption change"), (25.0, "cut")]
    # ...and comes back once the footage is known again.
    times, scores, captions = [float(i) for i in range(110)], [0.02] * 110, ["a"] * 100 + ["b"] * 10
    scores[100] = 0.8
    back = [0.001] * TRUSTED_WINDOW + [0.5] * 80
    assert [m.t for m in pick_moments(times, scores, captions, 2.0, 1.0, 0.12, in_domain=back)] == [100.0]
