"""TorchServe plumbing: build the model archive, write a loopback-only config, run and stop TorchServe.

The model code stays in `vidcap/`; the handler (`handlers/vidcap_handler.py`) is a thin adapter, so another
server could host the same model.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from vidcap.captioner import default_model_path
from vidcap.errors import VidcapError
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.model import load_checkpoint
from vidcap.paths import default_archive_dir, handler_file

HANDLER = handler_file()
# Two models from one checkpoint, each with its own worker: an image request never waits behind a whole video.
IMAGE_MODEL = "vidcap"  # images, dynamically batched
VIDEO_MODEL = "vidcap-video"  # videos, one per worker at a time, streamed line by line


@dataclass
class ArchiveSettings:
    name: str = IMAGE_MODEL
    batch_size: int = 8  # TorchServe's dynamic batching of image requests
    max_batch_delay_ms: int = 20
    response_timeout_s: int = 3600  # a long video is one request
    workers: int = 1
    encoder: str = "auto"  # the encoder runtime the worker uses (vidcap/encoders.py)
    limits: Limits = DEFAULT_LIMITS  # what the handler accepts (TorchServe can be called directly)
    allowed_sources: tuple[str, ...] = ()  # live sources the worker may open (vidcap serve --allow-source)

    def for_videos(self, workers: int = 1) -> "ArchiveSettings":
        """The video model: no batching (a batch would run its videos one after another), `workers` at once."""
        return replace(self, name=VIDEO_MODEL, batch_size=1, max_batch_delay_ms=1, workers=workers)


def build_archives(checkpoint: str | Path | None, export_dir: str | Path | None = None,
                   settings: ArchiveSettings = ArchiveSettings(),
                   video_workers: int = 1) -> list[Path]:
    """The image and the video archive of one checkpoint."""
    return [build_archive(checkpoint, export_dir, settings),
            build_archive(checkpoint, export_dir, settings.for_videos(video_workers))]


def build_archive(checkpoint: str | Path | None = None, export_dir: str | Path | None = None,
                  settings: ArchiveSettings = ArchiveSettings()) -> Path:
    """model_store/<name>.mar: the checkpoint, the handler and model-config.yaml."""
    checkpoint = Path(checkpoint) if checkpoint else default_model_path()
    load_checkpoint(checkpoint)  # refuse a broken checkpoint here, not in a worker
    archiver = shutil.which("torch-model-archiver", path=str(Path(sys.executable).parent)) or shutil.which(
        "torch-model-archiver")
    if archiver is None:
        raise VidcapError("torch-model-archiver is not installed (pip install 'vidcap[serving]')")
    export_dir = Path(export_dir) if export_dir else default_archive_dir()
    export_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "model-config.yaml"
        config.write_text(yaml.safe_dump({
            "minWorkers": settings.workers, "maxWorkers": settings.workers, "batchSize": settings.batch_size,
            "maxBatchDelay": settings.max_batch_delay_ms, "responseTimeout": settings.response_timeout_s,
            "handler": {"encoder": settings.encoder, "limits": settings.limits.to_dict(),
                        "allowed_sources": list(settings.allowed_sources)}}, sort_keys=False))
        result = subprocess.run([archiver, "--model-name", settings.name, "--version", "1.0", "--serialized-file",
                                 str(checkpoint), "--handler", str(HANDLER), "--config-file", str(config),
                                 "--export-path", str(export_dir), "--force",
                                 # Stored, not deflated: a checkpoint's float weights shrink by under 10%, and
                                 # deflating twice 200 MB (ResNet-101/152) added 10-20 s to every start.
                                 "--archive-format", "zip-store"], capture_output=True, text=True,
                                # The archiver stages files in $TMPDIR/<model name>: a private TMPDIR keeps two
                                # archives of one name built at once (two stacks starting) from colliding.
                                env={**os.environ, "TMPDIR": tmp})
    if result.returncode != 0:
        raise VidcapError(f"torch-model-archiver failed: {result.stderr.strip().splitlines()[-1:]}")
    return export_dir / f"{settings.name}.mar"


@dataclass
class TorchServePorts:
    inference: int = 18080
    management: int = 18081
    metrics: int = 18082
    grpc_inference: int = 17070
    grpc_management: int = 17071
    worker_base: int = 19000


def write_config(path: Path, ports: TorchServePorts, model_store: Path, enable_model_api: bool = False,
                 host: str = "127.0.0.1", max_request_mb: int = 64, token_minutes: float | None = None) -> Path:
    """config.properties binding every TorchServe address to `host` on non-default ports. Token
    authorization stays on (keys expire after `token_minutes`, TorchServe's default 60; the model host renews
    them); the model (un)registration API only with enable_model_api."""
    size = max_request_mb * 1024 * 1024
    lines = [
        f"inference_address=http://{host}:{ports.inference}",
        f"management_address=http://{host}:{ports.management}",
        f"metrics_address=http://{host}:{ports.metrics}",
        f"grpc_inference_address={host}",
        f"grpc_management_address={host}",
        f"grpc_inference_port={ports.grpc_inference}",
        f"grpc_management_port={ports.grpc_management}",
        f"initial_worker_port={ports.worker_base}",
        f"model_store={model_store}",
        "metrics_mode=prometheus",
        "default_workers_per_model=1",
        "number_of_netty_threads=2",
        "netty_client_threads=2",
        f"max_request_size={size}",
        f"max_response_size={size}",
        "allowed_urls=file://.*",  # no models from the network
        f"enable_model_api={'true' if enable_model_api else 'false'}",
    ]
    if token_minutes is not None:
        lines.append(f"token_expiration_min={token_minutes:g}")
    path.write_text("\n".join(lines) + "\n")
    return path


class TorchServe:
    """A TorchServe process in the foreground of its own run folder: its pid file (TMPDIR), logs and key file
    live there, so several can run side by side and nothing is left behind."""

    def __init__(self, run_dir: str | Path, ports: TorchServePorts = TorchServePorts(),
                 model_store: str | Path | None = None, media_dir: str | Path | None = None,
                 enable_model_api: bool = False, token_minutes: float | None = None,
                 models: tuple[str, ...] = (IMAGE_MODEL, VIDEO_MODEL)):
        self.run_dir, self.ports = Path(run_dir), ports
        self.model_store, self.media_dir = Path(model_store or default_archive_dir()).resolve(), media_dir
        self.enable_model_api, self.token_minutes, self.models = enable_model_api, token_minutes, models
        self.process: subprocess.Popen | None = None

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.inference}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.management}"

    def keys(self) -> dict[str, str]:
        """The tokens TorchServe wrote (inference, management, API)."""
        return read_keys(self.key_file)

    @property
    def key_file(self) -> Path:
        return self.run_dir / "key_file.json"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 180.0) -> "TorchServe":
        import httpx

        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "tmp").mkdir(exist_ok=True)
        self.key_file.unlink(missing_ok=True)  # a restart writes new keys: never read the old ones meanwhile
        config = write_config(self.run_dir / "config.properties", self.ports, self.model_store,
                              self.enable_model_api, token_minutes=self.token_minutes)
        env = {**os.environ, "TMPDIR": str(self.run_dir / "tmp"), "LOG_LOCATION": str(self.run_dir / "logs"),
               "METRICS_LOCATION": str(self.run_dir / "logs")}
        if self.media_dir:
            env["VIDCAP_MEDIA_DIR"] = str(Path(self.media_dir).resolve())
        torchserve = shutil.which("torchserve", path=str(Path(sys.executable).parent)) or "torchserve"
        self.process = subprocess.Popen(
            [torchserve, "--start", "--foreground", "--ncs", "--ts-config", str(config), "--model-store",
             str(self.model_store), "--models", *(f"{m}={m}.mar" for m in self.models)],
            cwd=self.run_dir, env=env, stdout=(self.run_dir / "torchserve.out").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise VidcapError(f"TorchServe exited at start; see {self.run_dir / 'torchserve.out'}")
            try:
                if all(self._ready(model) for model in self.models):
                    return self
            except (OSError, ValueError, KeyError, httpx.HTTPError):
                pass
            time.sleep(0.5)
        self.stop()
        raise VidcapError(f"TorchServe did not become ready in {timeout:.0f} s; see {self.run_dir}")

    def _ready(self, model: str) -> bool:
        import httpx

        status = httpx.get(f"{self.management_url}/models/{model}",
                           headers={"Authorization": f"Bearer {self.keys()['management']}"}, timeout=2)
        if status.status_code == 400 and "Token Authorization failed" in status.text:  # expired while loading
            renew_key(self.management_url, self.key_file, "management")
            return False
        return status.status_code == 200 and any(w.get("status") == "READY"
                                                 for m in status.json() for w in m.get("workers", []))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop Java and its Python workers: the whole process group, waiting until every member is gone (the
        workers outlive Java by a moment), SIGKILL after `timeout`."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _group_alive(group) and time.monotonic() < deadline:
            self.process.poll()  # reap Java so it does not linger as a zombie member
            time.sleep(0.1)
        if _group_alive(group):
            _signal_group(group, signal.SIGKILL)
        self.process.wait()

    def __enter__(self) -> "TorchServe":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_keys(key_file: str | Path, patience: float = 3.0) -> dict[str, str]:
    """The keys in TorchServe's key_file.json (inference, management, API). TorchServe rewrites the file in place
    when a key is renewed, so a read can catch it half written: read again for up to `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            data = json.loads(Path(key_file).read_text())
            return {kind: data[kind]["key"] for kind in ("inference", "management", "API")}
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def renew_key(management_url: str, key_file: Path, kind: str = "inference") -> None:
    """Ask TorchServe for a new `kind` key (it rewrites key_file.json and moves that key's expiry). The API key
    in the file never expires; it is what may ask."""
    import httpx

    api_key = read_keys(key_file)["API"]
    reply = httpx.post(f"{management_url.rstrip('/')}/token", params={"type": kind},
                       headers={"Authorization": f"Bearer {api_key}"}, timeout=10)
    reply.raise_for_status()


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except ProcessLookupError:
        pass


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
