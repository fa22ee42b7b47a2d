"""`vidcap serve`, `vidcap ui`, `vidcap archive`: the servers."""

from __future__ import annotations

import argparse
import logging
import threading

from vidcap.errors import VidcapError
from vidcap.limits import add_limit_arguments, limits_from_args
from vidcap.cli.common import Renamed, add_encoder


# ---- serve ------------------------------------------------------------------------------------------------


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server stack (TorchServe, gRPC service, old HTTP API, web UI)",
                       description="Start the stack on this machine (127.0.0.1 by default): TorchServe with the "
                                   "model archive (or the model in-process), the gRPC service, the old HTTP "
                                   "API and the web UI. Prints the URLs; Ctrl-C or SIGTERM stops everything.")
    p.add_argument("--model-host", "--backend", dest="model_host", choices=["torchserve", "inprocess"],
                   default="torchserve", action=Renamed,
                   help="where the model runs (default: torchserve; inprocess needs no Java; --backend, its old "
                        "name, warns)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--grpc-port", type=int, default=50051)
    p.add_argument("--http-port", type=int, default=8888)
    p.add_argument("--torchserve-port", type=int, default=18080,
                   help="TorchServe inference port; management +1, metrics +2, its gRPC +3 and +4")
    p.add_argument("--enable-model-api", action="store_true",
                   help="allow registering and unregistering models through TorchServe's management API")
    p.add_argument("--torchserve-url", help="use a running TorchServe (its inference URL) instead of starting one")
    p.add_argument("--torchserve-key-file", help="with --torchserve-url: its key_file.json")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--media-dir", help="folder whose videos gRPC clients may analyse by path")
    p.add_argument("--library", "--index", metavar="DB", dest="library", action=Renamed,
                   help="the library database: the videos gRPC Search and GET /v1/search find, and the jobs with "
                        "their results (default: where vidcap index writes; --index, its old name, warns)")
    p.add_argument("--allow-source", action="append", default=[], metavar="PATTERN",
                   help="live sources callers may name: a URL pattern whose scheme, host (or *.domain) and port must "
                        "match exactly and whose path is a shell pattern (e.g. 'rtsp://cameras.example/*'), or a "
                        "device ('/dev/video0'); repeat for more. None by default: the server opens no URL or "
                        "device for its callers (docs/live.md, docs/security.md)")
    p.add_argument("--work-dir", help="run folder and upload spools, on disk (default: ~/.cache/vidcap)")
    p.add_argument("--ui-port", type=int, default=7860, help="web UI port (default: 7860)")
    p.add_argument("--no-ui", action="store_true", help="do not start the web UI")
    p.add_argument("--ui-concurrency", type=int, default=4,
                   help="analyses the web UI runs at once; more users wait in its queue (default: 4)")
    add_encoder(p)
    load = p.add_argument_group("load")
    load.add_argument("--max-analyses", type=int, default=2,
                      help="videos analysed at once, by every door together (default: 2)")
    load.add_argument("--max-queued", type=int, default=16,
                      help="videos waiting for a slot (they see their place); more are refused (default: 16)")
    load.add_argument("--max-uploads", type=int, default=16,
                      help="uploads received at once, by every door together; an upload takes an analysis slot "
                           "only once it is on disk (default: 16)")
    load.add_argument("--max-job-watchers", type=int, default=32, help="WatchJob streams at once (default: 32)")
    load.add_argument("--max-per-client", type=int, default=4,
                      help="of the uploads and of the job watchers, those one client address may hold at once "
                           "(default: 4)")
    load.add_argument("--max-jobs", type=int, default=100, help="jobs queued or running; more are refused "
                                                                "(default: 100)")
    load.add_argument("--max-job-disk-gb", type=float, default=20,
                      help="disk the uploads of queued and running jobs may hold (default: 20)")
    load.add_argument("--job-workers", type=int, default=1,
                      help="jobs analysed at once; each takes one of --max-analyses while it runs (default: 1)")
    load.add_argument("--video-workers", type=int, default=1,
                      help="TorchServe workers for videos; images have their own (default: 1)")
    load.add_argument("--torchserve-token-minutes", type=float, default=None,
                      help="lifetime of TorchServe's keys (default: its own, 60); vidcap renews them")
    _add_security(p)
    add_limit_arguments(p)
    p.set_defaults(run=_run_serve)


def _add_security(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("security (needed when --host is not a loopback address)")
    group.add_argument("--api-key-file", help="file holding the API key (or $VIDCAP_API_KEY); clients send "
                                              "'authorization: Bearer KEY'")
    group.add_argument("--tls-cert", help="PEM certificate chain: serve over TLS")
    group.add_argument("--tls-key", help="PEM private key of --tls-cert")
    group.add_argument("--insecure", action="store_true",
                       help="allow binding beyond loopback without an API key (anyone who reaches the port may "
                            "use the service)")
    group.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a further name browsers may reach this server by (the HTTP Host header; repeat for "
                            "more). Default: the --host address, and the loopback names when that is loopback; "
                            "requests naming any other host are refused (DNS rebinding)")


def _run_serve(args: argparse.Namespace) -> int:
    from vidcap.serving.auth import Security

    security = Security.load(args.host, args.api_key_file, args.tls_cert, args.tls_key, args.insecure,
                             args.allow_host)
    if args.max_analyses < 1 or args.max_queued < 0 or args.video_workers < 1 or args.job_workers < 1:
        raise VidcapError("--max-analyses, --video-workers and --job-workers must be at least 1, --max-queued at "
                          "least 0")
    from vidcap.video.sources import SourcePolicy

    SourcePolicy(args.allow_source)  # a pattern that cannot be read is said now, before anything starts
    from vidcap.serving.stack import StackConfig, run_stack

    logging.getLogger("vidcap").setLevel(logging.INFO)
    if min(args.max_uploads, args.max_job_watchers, args.max_jobs, args.max_per_client) < 1 or \
            args.max_job_disk_gb <= 0:
        raise VidcapError("--max-uploads, --max-job-watchers, --max-per-client and --max-jobs must be at least 1, "
                          "--max-job-disk-gb above 0")
    config = StackConfig(
        model_host=args.model_host, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        torchserve_port=args.torchserve_port, model=args.model, device=args.device, media_dir=args.media_dir,
        enable_model_api=args.enable_model_api, torchserve_url=args.torchserve_url,
        torchserve_key_file=args.torchserve_key_file, ui_port=None if args.no_ui else args.ui_port,
        ui_concurrency=args.ui_concurrency, encoder=args.encoder, max_analyses=args.max_analyses,
        max_queued=args.max_queued, max_uploads=args.max_uploads, max_job_watchers=args.max_job_watchers,
        max_per_client=args.max_per_client,
        max_jobs=args.max_jobs, max_job_disk_bytes=int(args.max_job_disk_gb * 1024**3),
        video_workers=args.video_workers, work_dir=args.work_dir,
        torchserve_token_minutes=args.torchserve_token_minutes, security=security, library=args.library,
        job_workers=args.job_workers, allowed_sources=tuple(args.allow_source))
    run_stack(config, limits_from_args(args))
    return 0


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="run the web UI against a running gRPC service",
                       description="The Gradio web UI alone, as a client of a vidcap gRPC service (`vidcap serve` "
                                   "starts it itself). Analytics off, no share links.")
    p.add_argument("--grpc", default="127.0.0.1:50051", help="the gRPC service (default: 127.0.0.1:50051)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=500, help="largest upload (default: 500)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="analyses run at once; more users wait in the queue (default: 4)")
    p.add_argument("--queue-size", type=int, default=64, help="users waiting beyond this are turned away")
    _add_security(p)
    p.set_defaults(run=_run_ui)


def _run_ui(args: argparse.Namespace) -> int:
    from vidcap.serving.auth import Security

    security = Security.load(args.host, args.api_key_file, args.tls_cert, args.tls_key, args.insecure,
                             args.allow_host)
    from vidcap.ui import UIConfig, launch

    config = UIConfig(grpc_address=args.grpc, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                      concurrency=args.concurrency, queue_size=args.queue_size, api_key=security.api_key,
                      tls_cert=security.tls_cert, tls_key=security.tls_key, hosts=security.hosts)
    from vidcap.serving.signals import stop_on_signals, wait_for_stop

    stop = threading.Event()
    stop_on_signals(stop)
    app = launch(config, block=False)
    print(f"vidcap web UI        http://{args.host}:{args.port}  (gRPC service {args.grpc})", flush=True)
    wait_for_stop(stop)
    app.close()
    return 0


def _add_archive(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archive", help="build the TorchServe model archives model_store/vidcap{,-video}.mar",
                       description="Package a checkpoint with handlers/vidcap_handler.py and a model-config.yaml "
                                   "as two TorchServe models: model_store/vidcap.mar for images (dynamic "
                                   "batching) and model_store/vidcap-video.mar for videos (their own workers, so "
                                   "an image never waits behind a video).")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--out", default=None, help="export folder (default: model_store/ of the checkout, or "
                                                "./model_store for an installed vidcap)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batch-delay", type=int, default=20, help="milliseconds (default: 20)")
    p.add_argument("--video-workers", type=int, default=1, help="workers of the video model (default: 1)")
    add_encoder(p)
    p.set_defaults(run=_run_archive)


def _run_archive(args: argparse.Namespace) -> int:
    from vidcap.serving.torchserve import ArchiveSettings, build_archives

    settings = ArchiveSettings(batch_size=args.batch_size, max_batch_delay_ms=args.max_batch_delay,
                               encoder=args.encoder)
    for path in build_archives(args.model, args.out, settings, args.video_workers):
        print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_serve(sub)
    _add_archive(sub)
    _add_ui(sub)
