"""The stack on real TorchServe (Java): the archive, inference and management APIs, gRPC and HTTP on top."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
import yaml
from PIL import Image

from vidcap.captioner import Captioner
from vidcap.analysis.session import analyze
from vidcap.video.pipeline import AnalysisParams, analyze_frames
from vidcap.video.synth import Effects, random_segments, write_video

from vidcap.client import VidcapClient
from vidcap.library.job_store import JobStore
from vidcap.serving.hosts import TorchServeHost
from vidcap.serving.job_runner import JobRunner

from conftest import free_port_block, REPO, VIDCAP, UdpCamera, cli_env, synthetic_images


pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs a Java runtime")


def test_archive_holds_the_checkpoint_handler_and_config(tmp_path):
    result = subprocess.run([*VIDCAP, "archive", "--out", str(tmp_path), "--batch-size", "4", "--encoder",
                             "openvino-f32"], capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(tmp_path / "vidcap.mar") as mar:
        names = set(mar.namelist())
        assert {"vidcap_handler.py", "vidcap-demo.pt", "model-config.yaml", "MAR-INF/MANIFEST.json"} <= names
        config = yaml.safe_load(mar.read("model-config.yaml"))
        assert config["batchSize"] == 4 and config["handler"]["encoder"] == "openvino-f32"
        assert config["handler"]["limits"]["max_beam"] == 20  # the handler checks what the services check
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        assert manifest["model"]["handler"] == "vidcap_handler.py"
    with zipfile.ZipFile(tmp_path / "vidcap-video.mar") as mar:  # videos: their own model and worker
        config = yaml.safe_load(mar.read("model-config.yaml"))
        assert config["batchSize"] == 1 and config["handler"]["encoder"] == "openvino-f32"
        assert json.loads(mar.read("MAR-INF/MANIFEST.json"))["model"]["modelName"] == "vidcap-video"


def start_serve(*args: str) -> dict:
    """`vidcap serve ARGS` (TorchServe model host, no UI) on free ports, once it has printed its TorchServe line:
    its addresses, key file and run folder. Fails the test with its stderr if it exits first."""
    base = free_port_block(16)
    grpc_port, http_port, ts_port = base, base + 1, base + 2
    proc = subprocess.Popen([*VIDCAP, "serve", "--grpc-port", str(grpc_port), "--http-port", str(http_port),
                             "--torchserve-port", str(ts_port), "--no-ui", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli_env())
    out = []
    while not any(line.startswith("TorchServe") for line in out):
        line = proc.stdout.readline()
        if not line:
            pytest.fail("vidcap serve exited: " + proc.stderr.read()[-3000:])
        out.append(line)
    keys = Path(re.search(r"keys in (\S+)", out[-1]).group(1))
    return {"grpc": f"127.0.0.1:{grpc_port}", "http": f"http://127.0.0.1:{http_port}",
            "inference": f"http://127.0.0.1:{ts_port}", "management": f"http://127.0.0.1:{ts_port + 1}",
            "keys": keys, "run_dir": keys.parents[1], "proc": proc, "banner": out}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    media = tmp_path_factory.mktemp("media")
    write_video(media / "clip.mp4", random_segments(3, seed=12, min_seconds=4, max_seconds=4), fps=10,
                size=(160, 96))
    info = start_serve("--model-host", "torchserve", "--media-dir", str(media), "--encoder", "torch",
                       "--allow-source", "udp://127.0.0.1:*")
    assert not any("web UI" in line for line in info["banner"])  # --no-ui
    yield {**info, "media": media}
    proc = info["proc"]
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def token(stack, kind: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {json.loads(stack['keys'].read_text())[kind]['key']}"}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(synthetic_images(1, seed=21, size=(160, 112))[0][0]).save(path)
    return path


def test_grpc_through_torchserve_matches_in_process(stack, image):
    # The worker runs the encoder runtime `vidcap serve --encoder` put in the archive's model-config.yaml.
    worker_log = (stack["run_dir"] / "torchserve" / "logs" / "model_log.log").read_text()
    assert "encoder runtime: torch on cpu" in worker_log
    captioner = Captioner.load(encoder="torch")
    expected_image = captioner.caption_files([image])[0]
    in_process = analyze(captioner, stack["media"] / "clip.mp4", AnalysisParams(every_n_seconds=1.0, window=3))
    expected_video = [f.caption for f in in_process.frames]
    with VidcapClient(stack["grpc"], timeout=300) as client:
        response = client.caption_image(image.read_bytes(), beam=3, embeddings=True, attention=True)
        assert response.caption == expected_image.text
        assert len(response.embeddings) == len(response.words) == len(response.attention)
        streamed = list(client.analyze_file(stack["media"] / "clip.mp4", every_n_seconds=1.0, window=3))
        frames = [r.frame for r in streamed if r.WhichOneof("kind") == "frame"]
        assert streamed[0].WhichOneof("kind") == "started" and streamed[-1].WhichOneof("kind") == "summary"
        assert [f.caption for f in frames] == expected_video
        assert [round(f.t) for f in frames] == list(range(12))
        # One path: the worker's frames give the moments the in-process analysis gives (tests/test_one_path.py
        # has every other door).
        assert [round(f.score, 4) for f in frames] == [round(f.score, 4) for f in in_process.frames]
        assert [(round(m.t, 3), m.reason, m.caption) for m in streamed[-1].summary.moments] == [
            (round(m.t, 3), m.reason, m.caption) for m in in_process.moments]
        summary = streamed[-1].summary  # the worker's domain profile reaches the Summary: in domain, no warning
        assert all(f.HasField("in_domain") for f in frames) and "synthetic scenes" in summary.trained_on
        assert summary.HasField("out_of_domain_share") and summary.domain_warning == ""
        by_path = [r.frame.caption for r in client.analyze_path("clip.mp4", every_n_seconds=1.0, window=3)
                   if r.WhichOneof("kind") == "frame"]
        assert by_path == expected_video


def test_a_job_in_the_torchserve_worker_continues_after_a_stop(stack, tmp_path):
    """Jobs on the TorchServe model host: the worker streams each captioned sample back, and a new run sends the
    kept ones with the request, so the job continues where it stood without captioning a sample twice."""
    host = TorchServeHost(stack["inference"], stack["keys"], stack["media"], stack["management"])
    store = JobStore(tmp_path / "library.db")
    params = AnalysisParams(every_n_seconds=0.1, window=3)
    upload = tmp_path / "upload.mp4"  # outside the media folder: linked there for each run
    shutil.copyfile(stack["media"] / "clip.mp4", upload)
    runner = JobRunner(store, host).start()
    job = runner.submit_upload("clip.mp4", upload, params)
    deadline = time.monotonic() + 300
    while store.get(job.id).frames < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    paused = store.get(job.id)
    assert paused.state == "queued" and 10 <= paused.frames < paused.expected
    runner = JobRunner(store, host).start()
    while not store.get(job.id).ended and time.monotonic() < deadline:
        time.sleep(0.1)
    runner.stop()
    done = store.get(job.id)
    assert done.state == "done" and done.runs == 2, done.error
    frames = store.frames(job.id)
    expected = list(analyze_frames(stack["media"] / "clip.mp4", Captioner.load(encoder="torch"), params))
    assert [(f.index, f.caption, f.reused) for f in frames] == [(f.index, f.caption, f.reused) for f in expected]
    assert done.captioned == sum(not f.reused for f in frames)  # none twice
    assert not (stack["media"] / ".uploads" / f"job-{job.id}").exists() and not upload.exists()


def test_a_live_stream_in_the_torchserve_worker(stack, image):
    """The worker opens an allowed live source itself and streams its frames; a cancelled call frees it."""
    camera = UdpCamera(random_segments(4, seed=3, min_seconds=4, max_seconds=4))
    camera.start()
    try:
        with VidcapClient(stack["grpc"], timeout=120) as client:
            with pytest.raises(grpc.RpcError) as info:
                list(client.analyze_live("udp://10.9.9.9:5000"))
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            call = client.analyze_live(camera.url, every_n_seconds=1.0)
            frames = []
            for response in call:
                if response.WhichOneof("kind") == "frame":
                    frames.append(response.frame)
                    if len(frames) == 4:
                        call.cancel()
                        break
            assert [round(f.t) for f in frames] == [0, 1, 2, 3]
            # the only video worker is free again (the stream goes on for 10 s more): a file is analysed at once
            started = time.monotonic()
            assert any(r.WhichOneof("kind") == "summary" for r in client.analyze_path("clip.mp4", every_n_seconds=4))
            assert time.monotonic() - started < 8 and camera.is_alive()
    finally:
        camera.stop.set()
        camera.join(timeout=30)


def test_files_naming_other_files_are_refused_in_the_worker_too(stack, tmp_path):
    """The TorchServe worker opens uploads itself: a playlist or concat list naming a file outside the media folder
    or a URL is refused there by the same rule, whether it comes through vidcap's doors or straight to TorchServe."""
    secret = tmp_path / "secret.ts"
    write_video(secret, random_segments(1, seed=2, min_seconds=2, max_seconds=2), fps=10, size=(160, 96))
    tricks = {"list.m3u8": f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:2.0,\nfile://{secret}\n#EXT-X-ENDLIST\n",
              "list.ffconcat": f"ffconcat version 1.0\nfile '{secret}'\n",
              "remote.m3u8": "#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:2.0,\nhttp://127.0.0.1:9/a.ts\n#EXT-X-ENDLIST\n"}
    for name, text in tricks.items():
        (tmp_path / name).write_text(text)
        with (tmp_path / name).open("rb") as f:
            answer = httpx.post(f"{stack['http']}/get_video_captions", files={"video": (name, f)}, timeout=120)
        assert answer.status_code == 400 and "not a video file vidcap opens" in answer.json()["error"], answer.text
        with VidcapClient(stack["grpc"], timeout=120) as client, pytest.raises(grpc.RpcError) as info:
            list(client.analyze_file(tmp_path / name, every_n_seconds=1.0))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a video" in info.value.details()
        shutil.copy(tmp_path / name, stack["media"] / name)  # straight to TorchServe, naming it in the media folder
        direct = httpx.post(f"{stack['inference']}/predictions/vidcap-video", json={"video_path": name},
                            headers=token(stack, "inference"), timeout=120)
        assert direct.status_code == 400 and "not a video file vidcap opens" in direct.text, direct.text


def test_a_video_far_above_torchserves_request_limit(stack, tmp_path):
    """TorchServe refuses request bodies above 6.5 MB by default; videos reach the worker as a path instead."""
    big = tmp_path / "big.mp4"
    write_video(big, random_segments(2, seed=30, min_seconds=3, max_seconds=3), fps=30, size=(1280, 720),
                effects=Effects(noise=40.0))  # sensor noise makes H.264 files large
    assert big.stat().st_size > 8 * 1024**2
    with VidcapClient(stack["grpc"], timeout=600) as client:
        frames = [r.frame for r in client.analyze_file(big, every_n_seconds=1.0) if r.WhichOneof("kind") == "frame"]
    assert [round(f.t) for f in frames] == [0, 1, 2, 3, 4, 5]
    assert not list((stack["media"] / ".uploads").iterdir())  # the spooled upload is gone


def test_old_http_api_through_torchserve(stack, image, tmp_path):
    with image.open("rb") as f:
        ok = httpx.post(f"{stack['http']}/get_captions", files={"image": f}, timeout=120)
    assert ok.status_code == 200 and ok.json()["caption"]
    (tmp_path / "junk.png").write_text("no image here")
    with (tmp_path / "junk.png").open("rb") as f:
        bad = httpx.post(f"{stack['http']}/get_captions", files={"image": f}, timeout=120)
    assert bad.status_code == 400 and "cannot read" in bad.json()["error"]


def test_torchserve_apis_token_batching_and_scaling(stack, image):
    inference = f"{stack['inference']}/predictions/vidcap"
    assert httpx.post(inference, content=image.read_bytes(), timeout=60).status_code in (400, 401)  # token needed
    reply = httpx.post(inference, content=image.read_bytes(), headers=token(stack, "inference"), timeout=60)
    assert reply.status_code == 200 and reply.json()["caption"]
    management = stack["management"]
    headers = token(stack, "management")
    models = httpx.get(f"{management}/models", headers=headers, timeout=30).json()["models"]
    assert sorted(m["modelName"] for m in models) == ["vidcap", "vidcap-video"]
    described = httpx.get(f"{management}/models/vidcap", headers=headers, timeout=30).json()[0]
    assert described["batchSize"] == 8 and described["maxBatchDelay"] == 20
    scaled = httpx.put(f"{management}/models/vidcap", params={"min_worker": 2, "synchronous": "true"},
                       headers=headers, timeout=180)
    assert scaled.status_code == 200, scaled.text
    described = httpx.get(f"{management}/models/vidcap", headers=headers, timeout=30).json()[0]
    assert len(described["workers"]) == 2
    httpx.put(f"{management}/models/vidcap", params={"min_worker": 1, "max_worker": 1, "synchronous": "true"},
              headers=headers, timeout=180)
    register = httpx.post(f"{management}/models", params={"url": "vidcap.mar"}, headers=headers, timeout=30)
    assert register.status_code == 405  # the model API is off unless --enable-model-api


def test_concurrent_videos_all_end_over_grpc_and_http(stack):
    """Several videos at once reach the worker in one TorchServe batch; each stream must still end (a streamed
    reply once marked the wrong batch row as "more to come", so all but one hung after their last frame)."""
    clip = stack["media"] / "clip.mp4"

    def over_grpc(_: int) -> list:
        with VidcapClient(stack["grpc"], timeout=120) as client:
            return [r.WhichOneof("kind") for r in client.analyze_path("clip.mp4", every_n_seconds=0.5, window=3)]

    def over_http(_: int) -> httpx.Response:
        with clip.open("rb") as f:
            return httpx.post(f"{stack['http']}/get_video_captions", files={"video": ("clip.mp4", f)},
                              params={"every_n_second": 0.5}, timeout=120)

    with ThreadPoolExecutor(7) as pool:
        streams = list(pool.map(over_grpc, range(4)))
        replies = list(pool.map(over_http, range(3)))
    for kinds in streams:  # two analyses at once (--max-analyses 2): the others wait and say so
        kinds = [k for k in kinds if k != "queued"]
        assert kinds[0] == "started" and kinds[-1] == "summary" and kinds.count("frame") == 24
    assert any("queued" in kinds for kinds in streams)
    for reply in replies:
        assert reply.status_code == 200, reply.text
        assert len(reply.json()["frames"]) == 24


def test_sigterm_stops_torchserve_and_its_workers_and_cleans_up(stack):
    proc, run_dir = stack["proc"], stack["run_dir"]
    assert run_dir.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0
    leftovers = subprocess.run(["pgrep", "-f", str(run_dir)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    assert not run_dir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{stack['inference']}/ping", timeout=5)

