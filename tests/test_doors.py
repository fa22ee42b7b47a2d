"""Every door's parameters, errors and answer shapes, in this process and in seconds: the HTTP app through FastAPI's
test client, the gRPC servicer on a loopback port of this process, both over a fake model host (what the model
says is not the point here; the doors' own work is). The real processes, TorchServe and the browser are the
`integration` tier's (test_http_api.py, test_grpc.py, test_torchserve.py, test_ui.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from vidcap.client import VidcapClient
from vidcap.images import load_image
from vidcap.limits import Limits
from vidcap.model import Caption
from vidcap.serving.grpc_service import VidcapServicer, build_server
from vidcap.analysis.hosts import ModelHost
from vidcap.serving.http_api import create_app
from vidcap.video.opener import open_frames
from vidcap.video.pipeline import AnalysisParams, FrameResult
from vidcap.video.synth import random_segments, write_video

LIMITS = Limits(max_upload_bytes=4 * 1024**2, max_image_pixels=1_000_000)


class FakeHost(ModelHost):
    """Reads what it is given as the real hosts do (an image, a video's sample times), captions nothing: every
    image is "a red circle", every sample "a red circle" or "a blue square" by turns."""

    NAME = "fake"

    def __init__(self, spool: Path):
        self.spool_dir = spool

    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption:
        load_image(data, max_pixels)  # refuses what is no image, or too large, in the real hosts' words
        words = "a red circle".split()
        return Caption(words=words, token_ids=[], log_prob=-1.0, attention=torch.full((3, 2, 2), 0.25),
                       embeddings=torch.ones(3, 4), feature=torch.ones(8), regions=torch.empty(0))

    def analyze(self, path: Path, params: AnalysisParams, on_start=None, resume=None, on_sample=None
                ) -> Iterator[FrameResult]:
        with open_frames(path, params.every_n_seconds, "pyav") as source:
            times = source.sample_times()
            if on_start is not None:
                on_start(source.duration, len(times))
        for i, t in enumerate(times):
            caption = "a red circle" if i % 4 < 2 else "a blue square"
            yield FrameResult(i, t, caption, 0.0, caption.split(), [])

    def analyze_live(self, source, params, on_notice=None, stop=None, policy=None, on_start=None
                     ) -> Iterator[FrameResult]:
        return iter(())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("doors")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(folder / "red.png")
    write_video(folder / "clip.mp4", random_segments(2, seed=8, min_seconds=2, max_seconds=2), fps=10, size=(96, 64))
    (folder / "junk.png").write_text("not an image")
    (folder / "junk.mp4").write_text("not a video")
    Image.new("RGB", (1200, 1000)).save(folder / "huge.png")
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> FakeHost:
    return FakeHost(tmp_path_factory.mktemp("spool"))


@pytest.fixture(scope="module")
def http(host, tmp_path_factory) -> TestClient:
    app = create_app(host, LIMITS, library=tmp_path_factory.mktemp("lib") / "library.db", hosts=None)
    return TestClient(app, base_url="http://127.0.0.1")


@pytest.fixture(scope="module")
def rpc(host, tmp_path_factory) -> Iterator[VidcapClient]:
    servicer = VidcapServicer(host, limits=LIMITS, library=tmp_path_factory.mktemp("lib") / "library.db",
                              allowed_sources=["rtsp://u:pw@cam.example/*"])
    server, _, port = build_server(servicer, "127.0.0.1:0")
    server.start()
    with VidcapClient(f"127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.stop(0)


def _post(http: TestClient, route: str, field: str, path: Path, **params):
    with path.open("rb") as f:
        return http.post(route, files={field: (path.name, f)}, params=params)


# ---- HTTP ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route, field, name, params, status, text", [
    ("/get_captions", "image", "junk.png", {}, 400, "cannot read"),
    ("/get_captions", "image", "huge.png", {}, 413, "pixels"),
    ("/get_image_caption", "image", "red.png", {"beam": 1000000}, 400, "beam must be between 1 and 20"),
    ("/get_video_captions", "video", "junk.mp4", {}, 400, "cannot open"),
    ("/get_video_captions", "video", "clip.mp4", {"every_n_second": -2}, 400, "every_n_second must be at least 0.04"),
    ("/get_video_captions", "video", "clip.mp4", {"rolling_window_size": 4000000000}, 400,
     "rolling_window_size must be between 1 and"),
    ("/get_video_captions", "video", "clip.mp4", {"rolling_window_size": "x"}, 400, "whole number"),
    ("/get_video_captions", "video", "clip.mp4", {"metric": "manhattan"}, 400, "unknown metric"),
])
def test_http_parameter_and_error_matrix(http, files, route, field, name, params, status, text):
    response = _post(http, route, field, files[name], **params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json") and text in response.text


def test_http_answers_in_the_old_shapes(http, files):
    caption = _post(http, "/get_captions", "image", files["red.png"])
    assert caption.status_code == 200 and caption.json()["caption"] == "a red circle"
    rich = _post(http, "/get_image_caption", "image", files["red.png"]).json()
    assert len(rich["word_embeddings"]) == 3 and len(rich["cnn_output"]) == 8
    for metric in ("euclidian", "cosine"):
        video = _post(http, "/get_video_captions", "video", files["clip.mp4"], every_n_second=0.5, metric=metric)
        body = video.json()
        assert video.status_code == 200 and len(body["frames"]) == 8, body
        assert [f["caption"] for f in body["frames"]][:4] == ["a red circle"] * 2 + ["a blue square"] * 2
    assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize("body, status", [({"path": "../x.mp4"}, 503), ({}, 503), ([1], 503)])
def test_http_jobs_without_a_runner_say_so(http, body, status):
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == status and "runs no jobs" in response.json()["error"]


def test_http_search_of_a_missing_library_and_bad_queries(http):
    assert http.get("/v1/search", params={"q": "red circle", "top": 1000}).status_code == 400
    missing = http.get("/v1/search", params={"q": "red circle"})
    assert missing.status_code == 400 and "no library" in missing.json()["error"]


# ---- gRPC ----------------------------------------------------------------------------------------------------


def _code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if not hasattr(result, "caption"):
            list(result)
    return info.value.code(), info.value.details()


def test_grpc_parameter_and_error_matrix(rpc, files):
    video = files["clip.mp4"].read_bytes()
    image = files["red.png"].read_bytes()
    cases = [
        (lambda: rpc.caption_image(b"not an image"), grpc.StatusCode.INVALID_ARGUMENT, "cannot read"),
        (lambda: rpc.caption_image(image, beam=21), grpc.StatusCode.INVALID_ARGUMENT, "beam must be between 1 and 20"),
        (lambda: rpc.analyze_bytes(b"garbage" * 100, "x.mp4"), grpc.StatusCode.INVALID_ARGUMENT, "cannot open"),
        (lambda: rpc.analyze_bytes(b""), grpc.StatusCode.INVALID_ARGUMENT, "no video"),
        (lambda: rpc.analyze_bytes(video, every_n_seconds=1e-9), grpc.StatusCode.INVALID_ARGUMENT,
         "every_n_seconds must be at least 0.04"),
        (lambda: rpc.analyze_bytes(video, window=4000000000), grpc.StatusCode.INVALID_ARGUMENT, "window must be"),
        (lambda: rpc.analyze_bytes(video, scorer="magic"), grpc.StatusCode.INVALID_ARGUMENT, "unknown scorer"),
        (lambda: rpc.analyze_bytes(video, metric="l1"), grpc.StatusCode.INVALID_ARGUMENT, "unknown metric"),
        (lambda: rpc.analyze_bytes(video, cuts="histogram"), grpc.StatusCode.INVALID_ARGUMENT, "unknown cut signal"),
        (lambda: rpc.analyze_path("clip.mp4"), grpc.StatusCode.PERMISSION_DENIED, ""),
        (lambda: rpc.analyze_live("/etc/passwd"), grpc.StatusCode.INVALID_ARGUMENT, "send a file as an upload"),
        (lambda: rpc.analyze_live("rtsp://other.example/x"), grpc.StatusCode.PERMISSION_DENIED,
         "does not open rtsp://other.example/x"),
        (lambda: rpc.search("red circle", top=1000), grpc.StatusCode.INVALID_ARGUMENT, "top must be"),
        (lambda: rpc.job("nope"), grpc.StatusCode.UNAVAILABLE, "runs no jobs"),
        (lambda: rpc.analyze_bytes(b"\0" * (5 * 1024**2)), grpc.StatusCode.RESOURCE_EXHAUSTED, ""),
    ]
    for call, code, text in cases:
        got, details = _code(call)
        assert got == code and text in details, (got, details, text)


def test_grpc_answers_stream_in_order_and_describe_the_service(rpc, files):
    responses = list(rpc.analyze_bytes(files["clip.mp4"].read_bytes(), "clip.mp4", every_n_seconds=0.5))
    kinds = [r.WhichOneof("kind") for r in responses]
    assert kinds[0] == "started" and kinds[-1] == "summary" and kinds.count("frame") == 8
    frames = [r.frame for r in responses if r.frame.caption]
    assert [f.index for f in frames] == list(range(8)) and frames[2].caption == "a blue square"
    assert responses[-1].summary.frames == 8
    info = rpc.describe_service()
    assert list(info.allowed_sources) == ["rtsp://u:***@cam.example/*"] and not info.jobs
    assert rpc.caption_image(files["red.png"].read_bytes()).caption == "a red circle"
