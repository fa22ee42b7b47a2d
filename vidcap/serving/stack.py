"""`vidcap serve`: the server stack on one machine, 127.0.0.1 by default.

- `--model-host torchserve` (default): builds the model archive into a private run folder, starts TorchServe
  there (token authorization on, every address on loopback), and serves gRPC and the old HTTP API on top.
- `--model-host inprocess`: the model in this process; no Java needed.

The web UI (vidcap.ui, a gRPC client) runs in this process too, on port 7860, unless `ui_port` is None.

Ctrl-C or SIGTERM stops everything: health turns NOT_SERVING, calls in flight get a grace period, the HTTP
server drains, TorchServe and its workers are stopped, the run folder is removed. TorchServe is watched: when
its process dies, health turns NOT_SERVING until it has been restarted.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from PIL import Image

from vidcap.errors import VidcapError
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.paths import default_work_dir
from vidcap.serving.admission import Admission
from vidcap.serving.signals import stop_on_signals, wait_for_stop
from vidcap.serving.auth import Security
from vidcap.analysis.hosts import InProcessHost, ModelHost
from vidcap.serving.hosts import TorchServeHost
from vidcap.library.job_store import JobStore
from vidcap.library.shelf import Shelf
from vidcap.serving.job_runner import JobRunner
from vidcap.serving.grpc_service import SERVICE_NAME, VidcapServicer, build_server
from vidcap.serving.http_api import create_app
from vidcap.serving.torchserve import ArchiveSettings, TorchServe, TorchServePorts, build_archives

log = logging.getLogger("vidcap.serve")

SUPERVISE_SECONDS = 2.0  # how often TorchServe's process is checked


@dataclass(kw_only=True)  # built by name only: 26 fields cannot be told apart by position
class StackConfig:
    model_host: str = "torchserve"
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
    encoder: str = "auto"  # the encoder runtime (vidcap/encoders.py), in-process or in the TorchServe worker
    max_analyses: int = 2  # videos analysed at once, whatever door they came in by
    max_queued: int = 16  # videos waiting for a slot; beyond, RESOURCE_EXHAUSTED / 429 at once
    max_uploads: int = 16  # uploads being received at once (they take a slot once on disk)
    max_job_watchers: int = 32  # WatchJob streams at once
    max_per_client: int = 4  # of those uploads and of those watchers, from one client address
    max_jobs: int = 100  # jobs queued or running
    max_job_disk_bytes: int = 20 * 1024**3  # the disk their uploads may hold
    video_workers: int = 1  # TorchServe workers for videos (images have their own)
    work_dir: str | None = None  # the run folder and upload spools live below it (default: default_work_dir())
    torchserve_token_minutes: float | None = None  # TorchServe's key lifetime (its default: 60)
    security: Security = Security()
    library: str | None = None  # the database of the library (search) and of the jobs (default: vidcap index's)
    job_workers: int = 1  # jobs analysed at once (each also takes one of max_analyses while it runs)
    allowed_sources: tuple[str, ...] = ()  # live sources callers may name (vidcap/video/live.py); none by default


def run_stack(config: StackConfig, limits: Limits = DEFAULT_LIMITS, stop: threading.Event | None = None) -> None:
    stop = stop or threading.Event()
    stop_on_signals(stop)
    work_dir = Path(config.work_dir) if config.work_dir else default_work_dir()
    work_dir.mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix="serve-", dir=work_dir))
    torchserve = model_host = None
    startup = Startup()
    try:
        model_host, torchserve = _start_model_host(config, run_dir, limits, startup)
        _serve(config, model_host, limits, stop, torchserve, startup)
    finally:
        if torchserve is not None:
            torchserve.stop()
        if model_host is not None:
            model_host.close()
        shutil.rmtree(run_dir, ignore_errors=True)


class Startup:
    """Where the time to "ready" went, printed once every port answers and a first caption was served."""

    def __init__(self) -> None:
        self.began = self.last = time.perf_counter()
        self.parts: list[tuple[str, float]] = []

    def done(self, part: str) -> None:
        now = time.perf_counter()
        self.parts.append((part, now - self.last))
        self.last = now

    def report(self) -> str:
        parts = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.parts)
        return f"vidcap ready in {time.perf_counter() - self.began:.1f} s ({parts})"


def _first_caption(model_host: ModelHost) -> None:
    """One caption through the model host before saying "ready": the first request then finds a warm model."""
    image = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 140, 60)).save(image, format="PNG")
    model_host.caption_image(image.getvalue(), beam=1, max_pixels=64 * 64)


def _start_model_host(config: StackConfig, run_dir: Path, limits: Limits, startup: Startup
                      ) -> tuple[ModelHost, TorchServe | None]:
    if config.model_host == "inprocess":
        from vidcap.captioner import Captioner

        model_host = InProcessHost(Captioner.load(config.model, device=config.device, encoder=config.encoder),
                                   spool_dir=run_dir / "uploads", limits=limits)
        startup.done("model loaded")
        return model_host, None
    media = Path(config.media_dir or run_dir / "media")
    media.mkdir(parents=True, exist_ok=True)
    if config.torchserve_url:
        if not config.torchserve_key_file:
            raise VidcapError("--torchserve-url needs --torchserve-key-file (TorchServe's key_file.json)")
        return TorchServeHost(config.torchserve_url, config.torchserve_key_file, media), None
    print("building the model archives and starting TorchServe...", flush=True)
    build_archives(config.model, run_dir / "model_store", ArchiveSettings(encoder=config.encoder, limits=limits,
                                                                          allowed_sources=config.allowed_sources),
                   video_workers=config.video_workers)
    startup.done("archives")
    p = config.torchserve_port
    ports = TorchServePorts(inference=p, management=p + 1, metrics=p + 2, grpc_inference=p + 3,
                            grpc_management=p + 4, worker_base=p + 10)
    torchserve = TorchServe(run_dir / "torchserve", ports, run_dir / "model_store", media, config.enable_model_api,
                            token_minutes=config.torchserve_token_minutes)
    torchserve.start()
    startup.done("TorchServe and its workers")
    model_host = TorchServeHost(torchserve.inference_url, torchserve.key_file, media, torchserve.management_url)
    return model_host, torchserve


class Health:
    """SERVING or NOT_SERVING, for the gRPC health service and the HTTP API's /healthz alike."""

    def __init__(self, grpc_health):
        self._grpc, self.serving = grpc_health, True

    def set(self, serving: bool) -> None:
        from grpc_health.v1 import health_pb2

        self.serving = serving
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            self._grpc.set(name, status)


def _supervise(torchserve: TorchServe, health: Health, stop: threading.Event) -> None:
    """Restart TorchServe when its process dies (its workers it restarts itself), NOT_SERVING meanwhile."""
    while not stop.wait(SUPERVISE_SECONDS):
        if torchserve.alive():
            continue
        log.error("TorchServe exited (status %s); restarting it", torchserve.process.returncode)
        health.set(False)
        while not stop.is_set():
            try:
                torchserve.stop()  # its workers, if any outlived it
                torchserve.start()
                break
            except VidcapError as exc:
                log.error("TorchServe did not restart: %s; trying again", exc)
                stop.wait(5.0)
        if not stop.is_set():
            log.info("TorchServe is back")
            health.set(True)


def _serve(config: StackConfig, model_host: ModelHost, limits: Limits, stop: threading.Event,
           torchserve: TorchServe | None, startup: Startup) -> None:
    security = config.security
    media_dir = config.media_dir or model_host.media_dir  # never the in-process host's private upload spool
    if media_dir and not security.allows_media_paths(config.host):
        log.warning("media folder access by path is off: this server is reachable beyond loopback without a key")
        media_dir = None
    admission = Admission(config.max_analyses, config.max_queued, config.max_uploads, config.max_job_watchers,
                          config.max_per_client)
    store = JobStore(config.library)
    jobs = JobRunner(store, model_host, admission, limits, workers=config.job_workers, max_waiting=config.max_jobs,
                     max_upload_bytes=config.max_job_disk_bytes, shelf=Shelf(store.path, _model_path(config.model)))
    servicer = VidcapServicer(model_host, media_dir, limits, admission=admission, library=config.library, jobs=jobs,
                              allowed_sources=config.allowed_sources, card=_card(config.model))
    grpc_server, grpc_health, bound = build_server(servicer, f"{config.host}:{config.grpc_port}",
                                                   security.grpc_interceptors(), security.grpc_credentials())
    ui_grpc = f"{_loopback(config.host)}:{bound}"
    if security.tls:  # the web UI in this process calls over loopback: no certificate name to match there
        ui_grpc = f"127.0.0.1:{grpc_server.add_insecure_port('127.0.0.1:0')}"
    health = Health(grpc_health)
    app = create_app(model_host, limits, admission, security.api_key, healthy=lambda: health.serving,
                     library=config.library, jobs=jobs, media_dir=media_dir, hosts=security.hosts)
    tls = {"ssl_certfile": str(security.tls_cert), "ssl_keyfile": str(security.tls_key)} if security.tls else {}
    http = uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.http_port, log_level="warning",
                                         lifespan="off", timeout_graceful_shutdown=5, **tls))
    http.install_signal_handlers = lambda: None  # the stack handles the signals for every server
    grpc_server.start()
    http_thread = threading.Thread(target=http.run, name="vidcap-http", daemon=True)
    http_thread.start()
    while not http.started and http_thread.is_alive() and not stop.is_set():
        stop.wait(0.05)
    if not http_thread.is_alive():
        grpc_server.stop(0)
        raise OSError(f"cannot start the HTTP API on {config.host}:{config.http_port}")
    http_port = http.servers[0].sockets[0].getsockname()[1] if http.servers else config.http_port  # port 0: the OS's
    startup.done("gRPC and HTTP")
    try:
        ui = _start_ui(config, ui_grpc, limits)
        if ui is not None:
            startup.done("web UI")
    except OSError:  # e.g. the port is taken: stop what started, say why
        http.should_exit = True
        grpc_server.stop(0)
        raise
    supervisor = None
    if torchserve is not None:
        supervisor = threading.Thread(target=_supervise, args=(torchserve, health, stop), name="vidcap-supervisor",
                                      daemon=True)
        supervisor.start()
    scheme = "https" if security.tls else "http"
    print(f"vidcap gRPC service  {config.host}:{bound}  (model host: {model_host.NAME}"
          f"{', TLS' if security.tls else ''}{', API key' if security.api_key else ''})", flush=True)
    print(f"vidcap HTTP API      {scheme}://{config.host}:{http_port}  (POST /get_captions, "
          f"/get_image_caption, /get_video_captions)", flush=True)
    if ui is not None:
        print(f"vidcap web UI        {scheme}://{config.host}:{config.ui_port}", flush=True)
    if torchserve is not None:
        print(f"TorchServe           inference {torchserve.inference_url}, management {torchserve.management_url}, "
              f"keys in {torchserve.key_file}", flush=True)
    try:
        _first_caption(model_host)
        startup.done("first caption")
    except VidcapError as exc:  # keep serving: health and the next requests say what is wrong
        log.error("the first caption failed: %s", exc)
    jobs.start()  # after the first caption: a job continued from before must not delay "ready"
    print(startup.report(), flush=True)
    wait_for_stop(stop)
    print("stopping...", flush=True)
    grpc_health.enter_graceful_shutdown()
    jobs.stop()  # running jobs are paused, to continue at the next start
    if ui is not None:
        ui.close()
    http.should_exit = True
    grpc_server.stop(grace=5).wait()
    http_thread.join(timeout=10)
    if supervisor is not None:
        supervisor.join(timeout=SUPERVISE_SECONDS + 1)


def _model_path(model: str | None) -> Path:
    from vidcap.captioner import default_model_path

    return Path(model) if model else default_model_path()


def _card(model: str | None):
    """The model card of the checkpoint this stack serves (read here: the TorchServe worker has the weights)."""
    from vidcap.card import describe
    from vidcap.model import load_checkpoint

    path = _model_path(model)
    return describe(load_checkpoint(path), path)


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def _start_ui(config: StackConfig, grpc_address: str, limits: Limits):
    if config.ui_port is None:
        return None
    try:
        from vidcap.ui import UIConfig, launch
    except ImportError as exc:  # the ui extra is not installed: the rest of the stack still serves
        print(f"web UI off ({exc.name} is not installed: pip install 'vidcap[ui]')", flush=True)
        return None
    security = config.security
    ui_config = UIConfig(grpc_address=grpc_address, host=config.host, port=config.ui_port,
                         max_upload_mb=limits.max_upload_bytes / 1024**2, concurrency=config.ui_concurrency,
                         api_key=security.api_key, tls_cert=security.tls_cert, tls_key=security.tls_key,
                         grpc_tls=False, hosts=security.hosts)
    return launch(ui_config, block=False)
