"""Saying when captions can't be trusted: the demo model's domain profile tells rendered scenes from real
photographs, and every door (CLI, gRPC, HTTP) says so for footage it was not trained on."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vidcap.captioner import Captioner
from vidcap.domain import OUT_OF_DOMAIN, DomainProfile
from vidcap.synthetic import random_scene, render_scene
from vidcap.video.photo_footage import PHOTOS, load_photo, random_shots, write_photo_video
from vidcap.video.synth import random_segments, write_video

from conftest import free_port, DEMO_MODEL, REPO, VIDCAP, cli_env, tiny_model


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCAP, *args], capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=600)


@pytest.fixture(scope="module")
def captioner() -> Captioner:
    return Captioner.load(DEMO_MODEL)


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("footage")
    write_photo_video(folder / "photos.mp4", random_shots(3, seed=4), fps=10, size=(320, 180), noise=3.0)
    write_video(folder / "scenes.mp4", random_segments(3, seed=4), fps=10, size=(320, 180))
    return {"photos": folder / "photos.mp4", "scenes": folder / "scenes.mp4"}


def test_the_demo_model_tells_rendered_scenes_from_real_photographs(captioner):
    assert captioner.domain is not None and "synthetic scenes" in captioner.domain.trained_on
    rng = np.random.default_rng(123)  # scenes the profile never saw, at sizes it was not fitted at
    scenes = [render_scene(random_scene(rng), w, h) for w, h in [(640, 360), (320, 240), (1280, 720)] * 20]
    scene_typicality = np.array(captioner.typicality(captioner.caption(scenes)))
    photo_typicality = np.array(captioner.typicality(captioner.caption([load_photo(p) for p in PHOTOS])))
    assert np.mean(scene_typicality < OUT_OF_DOMAIN) <= 0.1, scene_typicality
    assert np.mean(photo_typicality < OUT_OF_DOMAIN) >= 0.8, photo_typicality
    assert np.median(scene_typicality) > 0.2  # typical, not just barely inside


def test_analyze_warns_on_photo_footage_and_not_on_rendered_scenes(footage, tmp_path):
    photos = run("analyze", str(footage["photos"]), "--json", str(tmp_path / "p.json"), "--no-progress")
    assert photos.returncode == 0, photos.stderr
    assert "WARNING: captions are not meaningful for this footage" in photos.stdout
    assert "docs/training.md" in photos.stdout
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["domain"]["out_of_domain_share"] > 0.8 and data["domain"]["warning"]
    assert sum(f["in_domain"] < OUT_OF_DOMAIN for f in data["frames"]) > 0.8 * len(data["frames"])
    scenes = run("analyze", str(footage["scenes"]), "--json", str(tmp_path / "s.json"), "--no-progress")
    assert scenes.returncode == 0, scenes.stderr
    assert "WARNING" not in scenes.stdout
    assert json.loads((tmp_path / "s.json").read_text())["domain"]["warning"] == ""


def test_caption_warns_about_a_photograph(tmp_path):
    from PIL import Image

    Image.fromarray(load_photo("astronaut")).save(tmp_path / "astronaut.jpg")
    result = run("caption", str(tmp_path / "astronaut.jpg"), str(REPO / "examples" / "yellow-star-at-night.jpg"))
    assert result.returncode == 0, result.stderr
    assert "1 of 2 images (astronaut.jpg) are unlike anything the model was trained on" in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_grpc_summary_and_the_old_http_api_carry_the_warning(footage, tmp_path):
    """`vidcap serve` (in-process model): the gRPC Summary and the old HTTP API's answer both say it."""

    import httpx

    from vidcap.client import VidcapClient

    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen([*VIDCAP, "serve", "--model-host", "inprocess", "--grpc-port", str(grpc_port),
                             "--http-port", str(http_port), "--no-ui", "--media-dir", str(footage["photos"].parent),
                             "--work-dir", str(tmp_path / "work")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli_env())
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "HTTP API" in lines[1], (lines, proc.stderr.read() if proc.poll() is not None else "")
        with VidcapClient(f"127.0.0.1:{grpc_port}", timeout=120) as client:
            responses = list(client.analyze_path("photos.mp4"))
            frames = [r.frame for r in responses if r.WhichOneof("kind") == "frame"]
            summary = responses[-1].summary
            assert summary.HasField("out_of_domain_share") and summary.out_of_domain_share > 0.8
            assert "not meaningful" in summary.domain_warning and "synthetic scenes" in summary.trained_on
            assert frames and all(f.HasField("in_domain") for f in frames)
            scenes = list(client.analyze_path("scenes.mp4"))[-1].summary
            assert scenes.out_of_domain_share < 0.2 and scenes.domain_warning == ""
        with footage["photos"].open("rb") as f:
            response = httpx.post(f"http://127.0.0.1:{http_port}/get_video_captions",
                                  files={"video": ("photos.mp4", f, "video/mp4")}, timeout=120)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["domain"]["warning"] and body["domain"]["out_of_domain_share"] > 0.8
        assert all(0.0 <= frame["in_domain"] <= 1.0 for frame in body["frames"])
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_calibrate_adds_a_profile_to_a_checkpoint_without_changing_its_weights(tmp_path):
    model = tiny_model(stages=3, image_size=64, encoded_size=4)
    model.save(tmp_path / "m.pt")
    before = Captioner.load(tmp_path / "m.pt", encoder="torch")
    assert before.domain is None and before.typicality(before.caption([load_photo("coffee")])) == [None]
    result = run("calibrate", str(tmp_path / "m.pt"), "--images", "60")
    assert result.returncode == 0, result.stderr
    after = Captioner.load(tmp_path / "m.pt", encoder="torch")
    assert isinstance(after.domain, DomainProfile) and len(after.domain.held_out) == 200
    image = load_photo("coffee")
    assert after.caption([image])[0].words == before.caption([image])[0].words
    assert 0.0 <= after.typicality(after.caption([image]))[0] <= 1.0
    missing = run("calibrate", str(tmp_path / "nope.pt"))
    assert missing.returncode == 2 and "not found" in missing.stderr
