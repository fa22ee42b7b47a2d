"""One video through every door gives the same frames and the same moments: `vidcap analyze`, the gRPC stream,
the old HTTP API, a job (watched, and exported), `vidcap index`, and the web UI's call (its JSON download). Each
door drives one analysis session (vidcap/analysis/session.py) over one model host; the TorchServe worker's side
of this is in test_torchserve.py (integration). The real demo model, in this process."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vidcap.analysis.hosts import InProcessHost
from vidcap.analysis.session import analyze
from vidcap.captioner import Captioner
from vidcap.cli import main as vidcap_main
from vidcap.client import VidcapClient
from vidcap.library.job_store import JobStore
from vidcap.serving.grpc_service import VidcapServicer, build_server
from vidcap.serving.http_api import create_app
from vidcap.serving.job_runner import JobRunner, job_analysis
from vidcap.video.novelty import make_scorer
from vidcap.video.pipeline import AnalysisParams
from vidcap.video.synth import random_segments, write_video

EVERY = 0.5
METRIC = make_scorer("robust").metric  # the old API's own default is the old project's scorer and metric


def frame_row(t, caption, score, reused) -> tuple:
    return round(t, 3), caption, round(score, 4), bool(reused)


def moment_row(t, reason, caption, previous_caption) -> tuple:
    return round(t, 3), reason, caption, previous_caption


def from_json(body: dict) -> tuple[list, list]:
    return ([frame_row(f["t"], f["caption"], f.get("score", f.get("dissimilarity")), f["reused"])
             for f in body["frames"]],
            [moment_row(m["t"], m["reason"], m["caption"], m["previous_caption"]) for m in body["moments"]])


def from_results(frames, moments) -> tuple[list, list]:
    return ([frame_row(f.t, f.caption, f.score, f.reused) for f in frames],
            [moment_row(m.t, m.reason, m.caption, m.previous_caption) for m in moments])


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """Scenes of 3-5 s, one a sample apart from the next at most: changes, and frames in between."""
    path = tmp_path_factory.mktemp("one-path") / "scenes.mp4"
    write_video(path, random_segments(4, seed=31, min_seconds=3, max_seconds=5), fps=10, size=(160, 96))
    return path


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> InProcessHost:
    return InProcessHost(Captioner.load(encoder="torch"), spool_dir=tmp_path_factory.mktemp("spool"))


@pytest.fixture(scope="module")
def expected(host, video) -> tuple[list, list]:
    analysis = analyze(host, video, AnalysisParams(every_n_seconds=EVERY))
    frames, moments = from_results(analysis.frames, analysis.moments)
    assert len(frames) >= 28 and len(moments) >= 3  # something to agree on: every scene change, at least
    return frames, moments


@pytest.fixture(scope="module")
def servers(host, tmp_path_factory):
    """The gRPC service (with jobs) and the HTTP app, over the same host, in this process."""
    folder = tmp_path_factory.mktemp("servers")
    runner = JobRunner(JobStore(folder / "library.db"), host).start()
    servicer = VidcapServicer(host, library=folder / "library.db", jobs=runner)
    server, _, port = build_server(servicer, "127.0.0.1:0")
    server.start()
    http = TestClient(create_app(host, library=folder / "library.db", jobs=runner, hosts=None),
                      base_url="http://127.0.0.1")
    yield {"grpc": f"127.0.0.1:{port}", "http": http, "runner": runner}
    server.stop(0)
    runner.stop()


def test_the_command_line(video, expected, tmp_path):
    out = tmp_path / "a.json"
    assert vidcap_main(["analyze", str(video), "--every", str(EVERY), "--encoder", "torch", "--json", str(out),
                        "--no-progress"]) == 0
    assert from_json(json.loads(out.read_text())) == expected


def test_the_grpc_stream_as_it_streams_and_in_its_summary(video, expected, servers):
    with VidcapClient(servers["grpc"], timeout=120) as client:
        responses = list(client.analyze_file(video, every_n_seconds=EVERY))
    frames = [r.frame for r in responses if r.WhichOneof("kind") == "frame"]
    streamed = [r.moment for r in responses if r.WhichOneof("kind") == "moment"]
    assert from_results(frames, streamed) == expected
    assert from_results(frames, responses[-1].summary.moments) == expected


def test_the_old_http_api(video, expected, servers):
    with video.open("rb") as f:
        response = servers["http"].post("/get_video_captions", files={"video": (video.name, f)},
                                        params={"every_n_second": EVERY, "scorer": "robust", "metric": METRIC})
    assert response.status_code == 200, response.text
    assert from_json(response.json()) == expected


def test_a_job_watched_and_exported(video, expected, servers):
    with VidcapClient(servers["grpc"], timeout=120) as client:
        job = client.submit_job_file(video, every_n_seconds=EVERY)
        events = list(client.watch_job(job.id))
    frames = [e.frame for e in events if e.WhichOneof("kind") == "frame"]
    watched = [e.moment for e in events if e.WhichOneof("kind") == "moment"]
    assert [e.job.state for e in events if e.WhichOneof("kind") == "job"][-1] == "done"
    assert from_results(frames, watched) == expected
    runner = servers["runner"]
    exported = job_analysis(runner.store, runner.store.get(job.id), runner.model_host)
    assert from_results(exported.frames, exported.moments) == expected


def test_vidcap_index(video, expected, tmp_path):
    library = tmp_path / "library.db"
    assert vidcap_main(["index", str(video.parent), "--library", str(library), "--every", str(EVERY),
                        "--encoder", "torch", "--no-progress"]) == 0
    with sqlite3.connect(library) as db:
        frames = db.execute("SELECT t, caption, score, reused FROM frames ORDER BY t").fetchall()
        moments = db.execute("SELECT t, reason, caption, previous_caption FROM moments ORDER BY t").fetchall()
    assert ([frame_row(*f) for f in frames], [moment_row(*m) for m in moments]) == expected


def test_the_web_ui_s_call(video, expected, servers, tmp_path):
    from vidcap.ui import VIDEO_OUTPUTS, UIConfig, VidcapUI

    ui = VidcapUI(UIConfig(grpc_address=servers["grpc"], work_dir=str(tmp_path)))
    *_, last = ui.analyze(str(video), EVERY, 5, "", "robust")
    downloads = last[VIDEO_OUTPUTS.index("downloads")]
    report = next(Path(p) for p in downloads if p.endswith(".vidcap.json"))
    assert from_json(json.loads(report.read_text())) == expected
