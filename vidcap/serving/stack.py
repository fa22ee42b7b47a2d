"""`vidcap serve`: the server stack on one machine, 127.0.0.1 by default.

- `--backend torchserve` (default): builds the model archive into a private run folder, starts TorchServe
  there (token authorization on, every address on loopback), and serves gRPC and the old HTTP API on top.
- `--backend inprocess`: the model in this process; no Java needed.

The web UI (vidcap.ui, a gRPC client) runs in this process too, on port 7860, unless `ui_port` is None.

Ctrl-C or SIGTERM stops everything: health turns NOT_SERVING, calls in flight get a grace period, the HTTP
server drains, TorchServe and its workers are stopped, the run folder is removed.
"""

from __future__ import annotations

import logging
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from vidcap.errors import VidcapError
from vidcap.serving.backends import CaptionBackend, InProcessBackend, TorchServeBackend
from vidcap.serving.grpc_service import ServiceLimits, VidcapServicer, build_server
from vidcap.serving.http_api import create_app
from vidcap.serving.torchserve import ArchiveSettings, TorchServe, TorchServePorts, build_archive

log = logging.getLogger("vidcap.serve")


@dataclass
class StackConfig:
    backend: str = "torchserve"
    host: str = "127.0.0.1"
    grpc_port: int = 50051
    http_port: int = 8888
    torchserve_port: int = 18080  # inference; management +1, metrics +2, its gRPC +3/+4, workers from +10
    model: str | None = None
    device: str = "auto"
    media_dir: str | None = None
    enable_model_api: bool = False
    torchserve_url: str | None = None  # use a TorchServe that runs elsewhere (docker compose) instead of starting one
    torchserve_key_file: str | None = None  # its key_file.json
    ui_port: int | None = 7860  # None: no web UI
    ui_concurrency: int = 4
    encoder: str = "auto"  # the encoder backend (vidcap/encoders.py), in-process or in the TorchServe worker


def run_stack(config: StackConfig, limits: ServiceLimits = ServiceLimits(), stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    run_dir = Path(tempfile.mkdtemp(prefix="vidcap-serve-"))
    torchserve = None
    try:
        backend, torchserve = _start_backend(config, run_dir)
        _serve(config, backend, limits, stop, torchserve)
    finally:
        if torchserve is not None:
            torchserve.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def _start_backend(config: StackConfig, run_dir: Path) -> tuple[CaptionBackend, TorchServe | None]:
    if config.backend == "inprocess":
        from vidcap.captioner import Captioner

        return InProcessBackend(Captioner.load(config.model, device=config.device, encoder=config.encoder)), None
    media = Path(config.media_dir or run_dir / "media")
    media.mkdir(parents=True, exist_ok=True)
    if config.torchserve_url:
        if not config.torchserve_key_file:
            raise VidcapError("--torchserve-url needs --torchserve-key-file (TorchServe's key_file.json)")
        return TorchServeBackend(config.torchserve_url, config.torchserve_key_file, media), None
    print("building the model archive and starting TorchServe...", flush=True)
    build_archive(config.model, run_dir / "model_store", ArchiveSettings(encoder=config.encoder))
    p = config.torchserve_port
    ports = TorchServePorts(inference=p, management=p + 1, metrics=p + 2, grpc_inference=p + 3,
                            grpc_management=p + 4, worker_base=p + 10)
    torchserve = TorchServe(run_dir / "torchserve", ports, run_dir / "model_store", media, config.enable_model_api)
    torchserve.start()
    backend = TorchServeBackend(torchserve.inference_url, torchserve.run_dir / "key_file.json", media)
    return backend, torchserve


def _serve(config: StackConfig, backend: CaptionBackend, limits: ServiceLimits, stop: threading.Event,
           torchserve: TorchServe | None) -> None:
    media_dir = config.media_dir or (str(backend.spool_dir.parent) if backend.spool_dir else None)
    grpc_server, health, bound = build_server(VidcapServicer(backend, media_dir, limits),
                                              f"{config.host}:{config.grpc_port}")
    http = uvicorn.Server(uvicorn.Config(create_app(backend, limits), host=config.host, port=config.http_port,
                                         log_level="warning", lifespan="off"))
    http.install_signal_handlers = lambda: None  # the stack handles the signals for every server
    grpc_server.start()
    http_thread = threading.Thread(target=http.run, name="vidcap-http", daemon=True)
    http_thread.start()
    while not http.started and http_thread.is_alive() and not stop.is_set():
        stop.wait(0.05)
    if not http_thread.is_alive():
        grpc_server.stop(0)
        raise OSError(f"cannot start the HTTP API on {config.host}:{config.http_port}")
    try:
        ui = _start_ui(config, bound, limits)
    except OSError:  # e.g. the port is taken: stop what started, say why
        http.should_exit = True
        grpc_server.stop(0)
        raise
    print(f"vidcap gRPC service  {config.host}:{bound}  (backend: {backend.NAME})", flush=True)
    print(f"vidcap HTTP API      http://{config.host}:{config.http_port}  (POST /get_captions, /get_image_caption, "
          f"/get_video_captions)", flush=True)
    if ui is not None:
        print(f"vidcap web UI        http://{config.host}:{config.ui_port}", flush=True)
    if torchserve is not None:
        print(f"TorchServe           inference {torchserve.inference_url}, management {torchserve.management_url}, "
              f"keys in {torchserve.run_dir / 'key_file.json'}", flush=True)
    stop.wait()
    print("stopping...", flush=True)
    health.enter_graceful_shutdown()
    if ui is not None:
        ui.close()
    http.should_exit = True
    grpc_server.stop(grace=5).wait()
    http_thread.join(timeout=10)


def _start_ui(config: StackConfig, grpc_port: int, limits: ServiceLimits):
    if config.ui_port is None:
        return None
    try:
        from vidcap.ui import UIConfig, launch
    except ImportError as exc:  # the ui extra is not installed: the rest of the stack still serves
        print(f"web UI off ({exc.name} is not installed: pip install 'vidcap[ui]')", flush=True)
        return None
    grpc_host = "127.0.0.1" if config.host in ("0.0.0.0", "::", "") else config.host
    ui_config = UIConfig(f"{grpc_host}:{grpc_port}", config.host, config.ui_port,
                         max_upload_mb=limits.max_upload_bytes / 1024**2, concurrency=config.ui_concurrency)
    return launch(ui_config, block=False)
