"""The gRPC service as a client sees it: a real server process on loopback, the demo model, real video files."""

from __future__ import annotations

import filecmp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image

from vidcap.video.synth import random_segments, write_video

from vidcap.client import VidcapClient

from conftest import REPO, cli_env, grpc_address_of, inprocess_server, synthetic_images



@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    write_video(folder / "short.mp4", random_segments(3, seed=5, min_seconds=4, max_seconds=4), fps=10,
                size=(160, 96))
    write_video(folder / "long.mp4", random_segments(8, seed=6, min_seconds=10, max_seconds=10), fps=10,
                size=(160, 96))
    return folder


@pytest.fixture(scope="module")
def server(media, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            inprocess_server(log.parent / "work", "--media-dir", str(media), "--max-image-pixels", "1000000",
                             "--max-upload-mb", "5", "--max-sampled-frames", "500", "--max-window", "2000"),
            stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, env=cli_env())
        yield grpc_address_of(proc.stdout), proc, log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.fixture
def client(server):
    with VidcapClient(server[0], timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def image_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(synthetic_images(1, seed=9, size=(160, 112))[0][0]).save(path)
    return path.read_bytes()


def test_committed_stubs_match_the_proto(tmp_path):
    subprocess.run(["bash", "scripts/gen_proto.sh", str(tmp_path)], cwd=REPO, check=True,
                   env={**os.environ, "PYTHON": sys.executable})
    for name in ("vidcap_pb2.py", "vidcap_pb2.pyi", "vidcap_pb2_grpc.py"):
        assert filecmp.cmp(tmp_path / "vidcap" / "v1" / name, REPO / "vidcap" / "v1" / name, shallow=False), \
            f"vidcap/v1/{name} is stale: run scripts/gen_proto.sh"


def test_health_and_reflection(server):
    with grpc.insecure_channel(server[0]) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "vidcap.v1.Vidcap"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert "vidcap.v1.Vidcap" in names


def test_caption_image_matches_the_cli(client, image_bytes, tmp_path):
    response = client.caption_image(image_bytes, beam=3, embeddings=True, feature=True, attention=True)
    (tmp_path / "i.png").write_bytes(image_bytes)
    cli = subprocess.run([sys.executable, "-m", "vidcap.cli", "caption", str(tmp_path / "i.png")],
                         capture_output=True, text=True, cwd=REPO, env=cli_env())
    assert response.caption == cli.stdout.strip()
    n = len(response.words)
    assert n > 0 and len(response.embeddings) == n and len(response.attention) == n
    assert len(response.attention[0].values) == response.attention_size ** 2
    assert abs(sum(response.attention[0].values) - 1.0) < 1e-4
    assert len(response.feature.values) > 0
    plain = client.caption_image(image_bytes)
    assert plain.caption == response.caption and not plain.embeddings and not plain.attention


def test_bad_images_get_status_codes_and_the_server_keeps_serving(client, image_bytes):
    cases = [(b"", grpc.StatusCode.INVALID_ARGUMENT, "0 bytes"),
             (b"not an image", grpc.StatusCode.INVALID_ARGUMENT, "cannot read"),
             (image_bytes[: len(image_bytes) // 2], grpc.StatusCode.INVALID_ARGUMENT, "cannot read")]
    big = Path(os.environ.get("TMPDIR", "/tmp")) / "vidcap-big.png"
    Image.new("RGB", (1200, 1000)).save(big)
    cases.append((big.read_bytes(), grpc.StatusCode.RESOURCE_EXHAUSTED, "above the limit"))
    for data, code, text in cases:
        with pytest.raises(grpc.RpcError) as info:
            client.caption_image(data)
        assert info.value.code() == code and text in info.value.details()
    assert client.caption_image(image_bytes).caption


def test_streamed_analysis_one_message_per_sample_in_order(client, media):
    responses = list(client.analyze_bytes((media / "short.mp4").read_bytes(), "short.mp4", every_n_seconds=1.0,
                                          window=3))
    kinds = [r.WhichOneof("kind") for r in responses]
    assert kinds[0] == "started" and kinds[-1] == "summary" and set(kinds[1:-1]) <= {"frame", "moment"}
    assert responses[0].started.expected_frames == 12
    frames = [r.frame for r in responses if r.WhichOneof("kind") == "frame"]
    assert [round(f.t) for f in frames] == list(range(12)) and [f.index for f in frames] == list(range(12))
    summary = responses[-1].summary
    # Each moment streams as soon as it is decided: at most 3 samples (+1 for the scorer) after its frame, and
    # the Summary lists the same moments.
    streamed = [(i, r.moment) for i, r in enumerate(responses) if r.WhichOneof("kind") == "moment"]
    assert streamed and [m.t for _, m in streamed] == [m.t for m in summary.moments]
    assert all(m.reason in ("cut", "caption change", "visual change") for _, m in streamed)
    for position, moment in streamed:
        frames_before = kinds[:position].count("frame")
        assert frames_before <= moment.index + 1 + 3 + 1 or frames_before == 12, (moment.index, frames_before)
    assert summary.frames == 12 and summary.scorer == "robust" and summary.metric == "cosine"
    assert 11.5 < summary.duration < 12.5
    uploaded = [r.frame.caption for r in client.analyze_file(media / "short.mp4", every_n_seconds=1.0, window=3)
                if r.WhichOneof("kind") == "frame"]
    by_path = [r.frame.caption for r in client.analyze_path("short.mp4", every_n_seconds=1.0, window=3)
               if r.WhichOneof("kind") == "frame"]
    assert uploaded == by_path == [f.caption for f in frames]


def test_first_frame_arrives_long_before_the_stream_ends(client):
    started = time.perf_counter()
    stream = client.analyze_path("long.mp4", every_n_seconds=0.5, scorer="seed")
    first_frame_at = None
    count = 0
    for response in stream:
        if response.WhichOneof("kind") == "frame":
            count += 1
            first_frame_at = first_frame_at or time.perf_counter() - started
    total = time.perf_counter() - started
    assert count == 160
    assert first_frame_at < 0.25 * total, (first_frame_at, total)


def test_cancelling_a_stream_stops_the_work_on_the_server(client, server, image_bytes):
    stream = client.analyze_path("long.mp4", every_n_seconds=0.25)
    for response in stream:
        if response.WhichOneof("kind") == "frame" and response.frame.index >= 2:
            break
    stream.cancel()
    deadline = time.time() + 30
    while "client cancelled" not in server[2].read_text() and time.time() < deadline:
        time.sleep(0.2)
    assert "client cancelled" in server[2].read_text()
    assert client.caption_image(image_bytes).caption  # and it serves the next request


def test_client_cli_prints_captions_and_live_frames(server, media, image_bytes, tmp_path):
    (tmp_path / "i.png").write_bytes(image_bytes)
    cli = [sys.executable, str(REPO / "client" / "vidcap_client.py"), "--server", server[0]]
    caption = subprocess.run([*cli, "caption", str(tmp_path / "i.png")], capture_output=True, text=True, timeout=120)
    assert caption.returncode == 0 and len(caption.stdout.split()) >= 3
    analyze = subprocess.run([*cli, "analyze", str(media / "short.mp4"), "--every", "2"], capture_output=True,
                             text=True, timeout=300)
    lines = analyze.stdout.splitlines()
    assert analyze.returncode == 0 and lines[0].startswith("# 12.0 s, 6 frames")
    frames = [line for line in lines[1:] if not line.startswith(("#", "moment"))]
    assert [float(line.split()[0]) for line in frames] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    moments = [line for line in lines if line.startswith("moment")]  # printed as they are decided
    assert moments and lines[-1].startswith("# 6 frames") and f"{len(moments)} moments" in lines[-1]
    bad = subprocess.run([*cli, "analyze", "--path", "../etc/passwd"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "PERMISSION_DENIED" in bad.stderr


def test_bad_videos_and_parameters(client, media, image_bytes):
    def code_of(call):
        with pytest.raises(grpc.RpcError) as info:
            list(call())
        return info.value.code(), info.value.details()

    video = (media / "short.mp4").read_bytes()
    cases = [
        (lambda: client.analyze_bytes(b"garbage" * 100, "x.mp4"), grpc.StatusCode.INVALID_ARGUMENT, "cannot open"),
        (lambda: client.analyze_bytes(video[:2000], "x.mp4"), grpc.StatusCode.INVALID_ARGUMENT, "cannot"),
        (lambda: client.analyze_bytes(b""), grpc.StatusCode.INVALID_ARGUMENT, "no video"),
        (lambda: client.analyze_bytes(video, every_n_seconds=-1), grpc.StatusCode.INVALID_ARGUMENT, "at least 0.04"),
        # Bounds checked before any work: each of these once made the server allocate without limit.
        (lambda: client.analyze_bytes(video, every_n_seconds=1e-9), grpc.StatusCode.INVALID_ARGUMENT,
         "every_n_seconds must be at least 0.04"),
        (lambda: client.analyze_bytes(video, beam=1000000), grpc.StatusCode.INVALID_ARGUMENT,
         "beam must be between 1 and 20"),
        (lambda: client.analyze_bytes(video, window=4000000000), grpc.StatusCode.INVALID_ARGUMENT,
         "window must be between 1 and 2000"),
        (lambda: client.analyze_path("long.mp4", every_n_seconds=0.1), grpc.StatusCode.RESOURCE_EXHAUSTED,
         "800 frames would be sampled, above the limit of 500 per request (max_sampled_frames)"),
        (lambda: [client.caption_image(image_bytes, beam=21)], grpc.StatusCode.INVALID_ARGUMENT,
         "beam must be between 1 and 20"),
        (lambda: client.analyze_bytes(video, every_n_seconds=99), grpc.StatusCode.INVALID_ARGUMENT, "longer"),
        (lambda: client.analyze_bytes(video, scorer="magic"), grpc.StatusCode.INVALID_ARGUMENT, "unknown scorer"),
        (lambda: client.analyze_bytes(video, metric="l1"), grpc.StatusCode.INVALID_ARGUMENT, "unknown metric"),
        (lambda: client.analyze_path("../outside.mp4"), grpc.StatusCode.PERMISSION_DENIED, "outside"),
        (lambda: client.analyze_path("missing.mp4"), grpc.StatusCode.INVALID_ARGUMENT, "not found"),
        (lambda: client.analyze_bytes(b"\0" * (6 * 1024**2)), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]
    for call, code, text in cases:
        got, details = code_of(call)
        assert got == code and text in details, (got, details)
    big = media / "big.bin"
    big.write_bytes(os.urandom(6 * 1024**2))
    got, details = code_of(lambda: client.analyze_file(big))
    assert got == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in details
    # The message names the file the client sent, not where the server spooled it.
    got, details = code_of(lambda: client.analyze_bytes(b"garbage" * 100, "../My Holiday.mp4"))
    assert "My_Holiday.mp4" in details and "/" not in details and "vidcap-upload" not in details, details
    assert client.caption_image(image_bytes).caption


def test_a_limit_raised_on_the_server_is_the_limit_everywhere(client):
    """--max-window 2000 (default 1000): the pipeline under the service checks the server's limits, not its own
    defaults."""
    frames = [r.frame for r in client.analyze_path("short.mp4", window=1500) if r.WhichOneof("kind") == "frame"]
    assert len(frames) == 12
