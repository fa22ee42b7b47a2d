"""`vidcap serve`: the gRPC service and the old HTTP API in one process, on 127.0.0.1 by default.

Stops cleanly on Ctrl-C or SIGTERM: health turns NOT_SERVING, calls in flight get a grace period, the HTTP
server drains, nothing is left running.
"""

from __future__ import annotations

import logging
import signal
import threading

import uvicorn

from vidcap.captioner import Captioner
from vidcap.serving.backends import InProcessBackend
from vidcap.serving.grpc_service import ServiceLimits, VidcapServicer, build_server
from vidcap.serving.http_api import create_app

log = logging.getLogger("vidcap.serve")


def run_stack(host: str = "127.0.0.1", grpc_port: int = 50051, http_port: int = 8888, model: str | None = None,
              device: str = "auto", media_dir: str | None = None, limits: ServiceLimits = ServiceLimits()) -> None:
    backend = InProcessBackend(Captioner.load(model, device=device))
    grpc_server, health, bound = build_server(VidcapServicer(backend, media_dir, limits), f"{host}:{grpc_port}")
    http = uvicorn.Server(uvicorn.Config(create_app(backend, limits), host=host, port=http_port, log_level="warning",
                                         lifespan="off"))
    http.install_signal_handlers = lambda: None  # we handle the signals for both servers
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    grpc_server.start()
    http_thread = threading.Thread(target=http.run, name="vidcap-http", daemon=True)
    http_thread.start()
    while not http.started and http_thread.is_alive():
        stop.wait(0.05)
    if not http_thread.is_alive():
        grpc_server.stop(0)
        raise OSError(f"cannot start the HTTP API on {host}:{http_port}")
    print(f"vidcap gRPC service  {host}:{bound}", flush=True)
    print(f"vidcap HTTP API      http://{host}:{http_port}  (POST /get_captions, /get_image_caption, "
          f"/get_video_captions)", flush=True)
    stop.wait()
    print("stopping...", flush=True)
    health.enter_graceful_shutdown()
    http.should_exit = True
    grpc_server.stop(grace=5).wait()
    http_thread.join(timeout=10)
