"""A stack you can leave running: expiring TorchServe keys, a crowd, cancelled calls, killed workers and a killed
TorchServe, all against a real `vidcap serve` (TorchServe, gRPC, HTTP) on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidcap.client import VidcapClient
from vidcap.video.synth import random_segments, write_video


from test_torchserve import start_serve

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs a Java runtime")

TOKEN_MINUTES = 0.1  # TorchServe's keys expire every 6 s: every test below crosses several expiries


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    write_video(folder / "clip.mp4", random_segments(3, seed=12, min_seconds=4, max_seconds=4), fps=10,
                size=(160, 96))
    write_video(folder / "long.mp4", random_segments(10, seed=13, min_seconds=9, max_seconds=9), fps=10,
                size=(160, 96))
    return folder


@pytest.fixture(scope="module")
def stack(media, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    info = start_serve("--media-dir", str(media), "--encoder", "torch", "--work-dir", str(work),
                       "--max-analyses", "1", "--max-queued", "1", "--torchserve-token-minutes", str(TOKEN_MINUTES))
    info["work"] = work
    yield info
    if info["proc"].poll() is None:
        info["proc"].send_signal(signal.SIGTERM)
        info["proc"].wait(timeout=90)


def frames_of(stream) -> list:
    return [r.frame for r in stream if r.WhichOneof("kind") == "frame"]


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
    return reply.status


def worker_pid(stack, model: str) -> int:
    """The pid of a model's TorchServe worker (the management API says; its key may need renewing)."""
    for _ in range(60):
        key = json.loads(stack["keys"].read_text())["management"]["key"]
        reply = httpx.get(f"{stack['management']}/models/{model}", headers={"Authorization": f"Bearer {key}"},
                          timeout=10)
        if reply.status_code == 200:
            workers = [w for w in reply.json()[0]["workers"] if w["status"] == "READY" and w.get("pid")]
            if workers:
                return int(workers[0]["pid"])
        elif "Token Authorization failed" in reply.text:
            api = json.loads(stack["keys"].read_text())["API"]["key"]
            httpx.post(f"{stack['management']}/token", params={"type": "management"},
                       headers={"Authorization": f"Bearer {api}"}, timeout=10)
        time.sleep(1)
    raise AssertionError(f"no READY worker of {model}")


def test_expired_keys_are_renewed_and_every_door_keeps_serving(stack, media, tmp_path):
    """Keys expire every 6 s; across two expiries (a renewed key is renewed again) images and videos keep working
    over gRPC and HTTP."""
    image = tmp_path / "scene.png"
    from PIL import Image

    from conftest import synthetic_images

    Image.fromarray(synthetic_images(1, seed=3, size=(160, 112))[0][0]).save(image)
    first_key = json.loads(stack["keys"].read_text())["inference"]["key"]
    with VidcapClient(stack["grpc"], timeout=120) as client:
        for _ in range(2):
            time.sleep(TOKEN_MINUTES * 60 + 1)  # past the key's expiry
            assert client.caption_image(image.read_bytes()).caption
            with image.open("rb") as f:
                reply = httpx.post(f"{stack['http']}/get_captions", files={"image": f}, timeout=120)
            assert reply.status_code == 200, reply.text
        assert len(frames_of(client.analyze_path("clip.mp4", every_n_seconds=1.0))) == 12
    assert json.loads(stack["keys"].read_text())["inference"]["key"] != first_key  # renewed, not reused


def test_an_image_does_not_wait_behind_a_video(stack, tmp_path):
    """Images have their own TorchServe model and worker: one is answered while a video is being analysed."""
    from PIL import Image

    from conftest import synthetic_images

    image = synthetic_images(1, seed=4, size=(160, 112))[0][0]
    Image.fromarray(image).save(tmp_path / "i.png")
    with VidcapClient(stack["grpc"], timeout=300) as client:
        stream = client.analyze_path("long.mp4", every_n_seconds=0.2)  # 450 samples: many seconds of work
        seen = 0
        for response in stream:
            if response.WhichOneof("kind") == "frame":
                seen += 1
                if seen == 3:
                    break
        assert client.caption_image((tmp_path / "i.png").read_bytes()).caption
        rest = frames_of(stream)  # the video was still running when the image was answered
        assert len(rest) > 50, len(rest)


def test_a_full_queue_is_refused_at_once_and_queued_calls_see_their_place(stack):
    """--max-analyses 1 --max-queued 1: the second call waits and sees "place 1", the third is refused at once
    over gRPC and HTTP; cancelling the first frees its slot and the worker."""
    with VidcapClient(stack["grpc"], timeout=300) as client:
        first = client.analyze_path("long.mp4", every_n_seconds=0.2)
        assert next(r for r in first if r.WhichOneof("kind") == "frame")
        second = client.analyze_path("clip.mp4", every_n_seconds=1.0)
        assert next(iter(second)).queued.position == 1
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            list(client.analyze_path("clip.mp4"))
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in refused.value.details()
        reply = httpx.post(f"{stack['http']}/get_video_captions", params={"every_n_second": 1},
                           files={"video": ("x.mp4", b"\0" * 1000)}, timeout=30)
        assert reply.status_code == 429 and "busy" in reply.json()["error"]
        assert time.monotonic() - started < 10  # refused, not queued
        assert health(stack["grpc"]) == health_pb2.HealthCheckResponse.SERVING  # health answers whatever runs
        first.cancel()
        assert len(frames_of(second)) == 12  # the freed slot went to the queued call
    log = stack["run_dir"] / "torchserve" / "logs" / "model_log.log"
    deadline = time.monotonic() + 20
    while "cancelled by its client" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "cancelled by its client" in log.read_text()  # the worker stopped the cancelled video


def test_a_killed_video_worker_ends_the_stream_with_unavailable_and_the_next_call_works(stack):
    with VidcapClient(stack["grpc"], timeout=300) as client:
        stream = client.analyze_path("long.mp4", every_n_seconds=0.2)
        assert next(r for r in stream if r.WhichOneof("kind") == "frame")
        os.kill(worker_pid(stack, "vidcap-video"), signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as failed:
            frames_of(stream)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
        assert "TorchServe" in failed.value.details() and "/" not in failed.value.details()
        worker_pid(stack, "vidcap-video")  # TorchServe has started a new worker
        assert len(frames_of(client.analyze_path("clip.mp4", every_n_seconds=1.0))) == 12


def test_a_killed_torchserve_is_restarted_and_health_says_so(stack):
    java = subprocess.run(["pgrep", "-f", f"org.pytorch.serve.ModelServer.*{stack['run_dir']}"],
                          capture_output=True, text=True).stdout.split()
    if not java:  # the run folder is in TorchServe's config path, not always on its command line
        java = subprocess.run(["pgrep", "-f", "org.pytorch.serve.ModelServer"], capture_output=True,
                              text=True).stdout.split()
    pgid = os.getpgid(worker_pid(stack, "vidcap"))
    java = [pid for pid in java if os.getpgid(int(pid)) == pgid]
    assert len(java) == 1, java
    os.kill(int(java[0]), signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        statuses.append(health(stack["grpc"]))
        if statuses[-1] == health_pb2.HealthCheckResponse.SERVING and len(set(statuses)) > 1:
            break
        time.sleep(0.5)
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert statuses[-1] == health_pb2.HealthCheckResponse.SERVING
    with VidcapClient(stack["grpc"], timeout=300) as client:
        assert len(frames_of(client.analyze_path("clip.mp4", every_n_seconds=1.0))) == 12


def test_sigterm_while_videos_stream_ends_calls_cleanly_and_leaves_nothing(stack, media):
    results: list = []

    def watch() -> None:
        with VidcapClient(stack["grpc"], timeout=300) as client:
            try:
                results.append(len(frames_of(client.analyze_path("long.mp4", every_n_seconds=0.2))))
            except grpc.RpcError as exc:
                results.append(exc.code())

    threads = [threading.Thread(target=watch) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(4)
    stack["proc"].send_signal(signal.SIGTERM)
    assert stack["proc"].wait(timeout=90) == 0
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 2  # each call ended (with an error status or complete), none hangs
    assert subprocess.run(["pgrep", "-f", str(stack["run_dir"])], capture_output=True).stdout == b""
    assert list(stack["work"].iterdir()) == []  # run folder, spools: all gone
    assert sorted(p.name for p in media.iterdir()) == ["clip.mp4", "clip.truth.json", "long.mp4", "long.truth.json"]
