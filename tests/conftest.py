"""Shared fixtures: tiny models and datasets that the tests build themselves."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vidcap.model import CaptionModel, ModelConfig
from vidcap.synthetic import describe_scene, random_scene, render_scene
from vidcap.vocab import Vocabulary, tokenize

REPO = Path(__file__).resolve().parents[1]
VIDCAP = [sys.executable, "-m", "vidcap.cli"]
DEMO_MODEL = REPO / "model_store" / "vidcap-demo.pt"

torch.set_num_threads(2)


def _bench_module(name: str):
    """A module of bench/ (tests and benches share their helpers; bench/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Free loopback ports for the servers the tests start (free_port(socket.SOCK_DGRAM) for UDP; a block of
# consecutive ones for `vidcap serve` with TorchServe).
free_port, free_port_block = (getattr(_bench_module("ports"), name) for name in ("free_port", "free_port_block"))

# The integration tier: real processes and components (vidcap serve, TorchServe, Chromium, RTSP and UDP streams,
# Ray, SIGKILL restarts, a fresh virtual environment), real models beyond the demo model, and training runs.
# `pytest -m "not integration"` is the fast tier: the doors' parameter, error and serialisation matrix in this
# process (test_doors.py), the model, the pipeline, the rules. A test elsewhere marks itself
# (@pytest.mark.integration) when it starts a process.
INTEGRATION_MODULES = {
    "test_attack", "test_cli", "test_concurrency", "test_domain", "test_fetch", "test_gpu", "test_grpc",
    "test_http_api", "test_import", "test_imported_model", "test_install", "test_jobs", "test_library", "test_live",
    "test_pretrained", "test_reliability", "test_security", "test_torchserve", "test_train", "test_ui",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if item.module.__name__ in INTEGRATION_MODULES:
            item.add_marker(pytest.mark.integration)

# `vidcap serve` with the model in this process and no web UI: the gRPC service alone (its ready line, and the
# address in it, below). Every server the tests start is this one server with its one set of rules.
GRPC_READY = re.compile(r"vidcap gRPC service\s+(127\.0\.0\.1:\d+)")


def inprocess_server(work_dir: str | Path, *extra: str) -> list[str]:
    return [*VIDCAP, "serve", "--model-host", "inprocess", "--no-ui", "--grpc-port", "0", "--http-port", "0",
            "--work-dir", str(work_dir), *extra]


def grpc_address_of(stdout) -> str:
    """Read a starting `vidcap serve`'s standard output up to its gRPC line -> the address."""
    for line in stdout:
        match = GRPC_READY.search(line)
        if match:
            return match.group(1)
    raise AssertionError("vidcap serve ended before its gRPC service was ready")


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough to train in seconds on a CPU."""
    values = dict(backbone="resnet18", stages=2, image_size=48, encoded_size=3, embed_dim=32, attention_dim=32,
                  decoder_dim=64, dropout=0.0, max_caption_len=12)
    values.update(overrides)
    return ModelConfig(**values)


def tiny_model(words: list[str] | None = None, seed: int = 0, **overrides) -> CaptionModel:
    torch.manual_seed(seed)
    words = words or ["a", "red", "blue", "circle", "square", "on", "grass", "sand"]
    vocab = Vocabulary.build([words])
    return CaptionModel(tiny_config(**overrides), vocab).eval()


def synthetic_images(n: int, seed: int = 0, size: tuple[int, int] = (96, 64)) -> list[tuple[np.ndarray, list[str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        scene = random_scene(rng)
        out.append((render_scene(scene, *size), describe_scene(scene, rng, 5)))
    return out


def write_karpathy(root: Path, name: str = "coco", counts: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A tiny dataset in the Karpathy split format: dataset_<name>.json plus an image folder."""
    counts = counts or {"train": 6, "restval": 2, "val": 3, "test": 3}
    images, n = [], 0
    subdir = "val2014" if name == "coco" else ""
    (root / subdir).mkdir(parents=True, exist_ok=True)
    for split, count in counts.items():
        for pixels, captions in synthetic_images(count, seed + n):
            filename = f"img_{n:04d}.jpg"
            Image.fromarray(pixels).save(root / subdir / filename, quality=95)
            entry = {"filename": filename, "split": split, "imgid": n,
                     "sentences": [{"raw": c.capitalize() + ".", "tokens": tokenize(c)} for c in captions]}
            if subdir:
                entry["filepath"] = subdir
            images.append(entry)
            n += 1
    path = root / f"dataset_{name}.json"
    path.write_text(json.dumps({"images": images, "dataset": name}))
    return path


@pytest.fixture
def demo_model_path() -> Path:
    if not DEMO_MODEL.is_file():
        pytest.fail(f"the demo model is part of the repository and must exist at {DEMO_MODEL}")
    return DEMO_MODEL


def cli_env() -> dict[str, str]:
    """The environment of a vidcap process a test starts: the demo model, and a data folder of its own (the
    library and the jobs' database), never the user's."""
    env = dict(os.environ)
    env.pop("VIDCAP_MODEL", None)
    env["PYTHONPATH"] = str(REPO)
    env["VIDCAP_DATA"] = tempfile.mkdtemp(prefix="data-", dir=_DATA_ROOT)
    return env


_DATA_ROOT = tempfile.mkdtemp(prefix="vidcap-test-data-")
atexit.register(shutil.rmtree, _DATA_ROOT, True)


class UdpCamera(threading.Thread):
    """Synthetic scenes (`segments`) sent as H.264 MPEG-TS to udp://127.0.0.1 on a free port at real time, after
    `delay` seconds: a live source for tests. `url` is where to watch it; set `stop` to end it early."""

    def __init__(self, segments, fps: int = 10, size: tuple[int, int] = (160, 96), delay: float = 0.0, frames=None):
        super().__init__(daemon=True)
        from vidcap.video.synth import Effects, render_frames

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            self.url = f"udp://127.0.0.1:{s.getsockname()[1]}"
        self.frames = frames if frames is not None else render_frames(segments, fps, *size, Effects(), 0)
        self.fps, self.size, self.delay, self.stop = fps, size, delay, threading.Event()

    def run(self) -> None:
        from vidcap.video.synth import publish_live

        time.sleep(self.delay)
        publish_live(f"{self.url}?pkt_size=1316", self.frames, self.fps, *self.size, stop=self.stop)
