"""`vidcap serve` as a whole: a real process with the gRPC service and the old HTTP API on loopback."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import grpc
import httpx
import pytest
from PIL import Image

from vidcap.video.synth import random_segments, write_video

from vidcap.client import VidcapClient

from conftest import free_port, REPO, VIDCAP, cli_env, synthetic_images



@pytest.fixture(scope="module")
def stack():
    grpc_port, http_port, ui_port = free_port(), free_port(), free_port()
    proc = subprocess.Popen([*VIDCAP, "serve", "--model-host", "inprocess", "--grpc-port", str(grpc_port),
                             "--http-port", str(http_port), "--ui-port", str(ui_port),
                             "--max-upload-mb", "4", "--max-image-pixels", "1000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli_env())
    lines = [proc.stdout.readline() for _ in range(3)]
    assert "HTTP API" in lines[1], (lines, proc.stderr.read() if proc.poll() is not None else "")
    assert f"web UI        http://127.0.0.1:{ui_port}" in lines[2], lines
    yield f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", proc, f"http://127.0.0.1:{ui_port}"
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("files")
    Image.fromarray(synthetic_images(1, seed=4, size=(160, 112))[0][0]).save(folder / "scene.png")
    write_video(folder / "clip.mp4", random_segments(2, seed=8, min_seconds=4, max_seconds=4), fps=10,
                size=(160, 96))
    return {"image": folder / "scene.png", "video": folder / "clip.mp4"}


def post(url: str, field: str, path: Path, **params) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(url, files={field: (path.name, f)}, params=params, timeout=120)


def test_old_image_endpoints(stack, files):
    base = stack[0]
    caption = post(f"{base}/get_captions", "image", files["image"])
    assert caption.status_code == 200, caption.text
    detail = post(f"{base}/get_image_caption", "image", files["image"])
    body = detail.json()
    assert body["caption"] == caption.json()["caption"]
    assert len(body["word_embeddings"]) == len(body["words"]) > 0
    assert len(body["cnn_output"]) > 0


@pytest.mark.parametrize("metric", ["euclidian", "euclidean", "cosine"])
def test_old_video_endpoint(stack, files, metric):
    response = post(f"{stack[0]}/get_video_captions", "video", files["video"], every_n_second=1,
                    metric=metric, rolling_window_size=3)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [round(f["t"]) for f in body["frames"]] == list(range(8))
    assert body["frames"][0]["dissimilarity"] == 0.0  # the old metric: no history for the first frame
    assert body["params"]["scorer"] == "seed" and body["params"]["metric"] in ("euclidean", "cosine")
    assert all(set(f) == {"t", "caption", "dissimilarity", "reused", "in_domain"} for f in body["frames"])


def test_bad_requests_get_json_errors_and_the_stack_keeps_serving(stack, files, tmp_path):
    base = stack[0]
    (tmp_path / "junk.png").write_text("not an image")
    (tmp_path / "junk.mp4").write_text("not a video")
    big = tmp_path / "big.mp4"
    big.write_bytes(b"\0" * (5 * 1024**2))
    cases = [
        (post(f"{base}/get_captions", "image", tmp_path / "junk.png"), 400, "cannot read"),
        (post(f"{base}/get_video_captions", "video", tmp_path / "junk.mp4"), 400, "cannot open"),
        (post(f"{base}/get_video_captions", "video", files["video"], every_n_second=-2), 400,
         "every_n_second must be at least 0.04"),
        (post(f"{base}/get_video_captions", "video", files["video"], every_n_second=1e-9), 400,
         "every_n_second must be at least 0.04"),
        (post(f"{base}/get_video_captions", "video", files["video"], rolling_window_size=4000000000), 400,
         "rolling_window_size must be between 1 and 1000"),
        (post(f"{base}/get_image_caption", "image", files["image"], beam=1000000), 400,
         "beam must be between 1 and 20"),
        (post(f"{base}/get_video_captions", "video", files["video"], metric="manhattan"), 400, "unknown metric"),
        (post(f"{base}/get_video_captions", "video", files["video"], rolling_window_size="x"), 400, "whole number"),
        (post(f"{base}/get_video_captions", "video", big), 413, "limit"),
        (httpx.post(f"{base}/get_captions", content=b"plain body", timeout=30), 400, "error"),
    ]
    for response, status, text in cases:
        assert response.status_code == status, (response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert text in response.text
    Image.new("RGB", (1200, 1000)).save(tmp_path / "huge.png")
    assert post(f"{base}/get_captions", "image", tmp_path / "huge.png").status_code == 413
    assert post(f"{base}/get_captions", "image", files["image"]).status_code == 200


def test_prometheus_metrics_count_what_was_served(stack):
    text = httpx.get(f"{stack[0]}/metrics/", timeout=30).text
    def value(name: str) -> float:
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(match.group(1)) if match else 0.0
    assert value('vidcap_frames_analysed_total{api="http"}') >= 3 * 8  # three analyses of 8 frames above
    assert value('vidcap_images_captioned_total{api="http"}') >= 2
    assert value('vidcap_errors_total{api="http",kind="400"}') >= 5
    assert value('vidcap_errors_total{api="http",kind="413"}') >= 1
    assert value('vidcap_videos_in_flight{api="http"}') == 0


def test_grpc_and_the_web_ui_are_served_by_the_same_stack_and_sigterm_stops_everything(stack, files):
    base, address, proc, ui = stack
    with VidcapClient(address, timeout=60) as client:
        assert client.caption_image(files["image"].read_bytes()).caption
        with pytest.raises(grpc.RpcError) as refused:  # no --media-dir: no path reaches the upload spool
            list(client.analyze_path("uploads/anything.mp4"))
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no media folder" in refused.value.details()
    config = httpx.get(f"{ui}/config", timeout=10).json()
    assert config["title"] == "vidcap" and config["analytics_enabled"] is False
    endpoints = httpx.get(f"{ui}/gradio_api/info", timeout=10).json()["named_endpoints"]
    assert {"/analyze", "/caption_image"} <= set(endpoints)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for url in (base, ui):
        with pytest.raises(httpx.ConnectError):
            httpx.get(url, timeout=5)
    with VidcapClient(address, timeout=5) as client, pytest.raises(grpc.RpcError):
        client.caption_image(files["image"].read_bytes())
