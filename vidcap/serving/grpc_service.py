"""The vidcap gRPC service (proto/vidcap/v1/vidcap.proto): a thin servicer over the captioner and the pipeline.

    python -m vidcap.serving.grpc_service --port 50051 --media-dir ./media

Errors map to status codes in one place (`_status_for`): bad input is INVALID_ARGUMENT, over a limit is
RESOURCE_EXHAUSTED, a path outside the media folder is PERMISSION_DENIED; the server keeps serving.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vidcap.errors import BackendUnavailableError, InputError, InputTooLargeError, VidcapError
from vidcap.fileio import media_path, spooled_upload
from vidcap.images import DEFAULT_MAX_PIXELS
from vidcap.serving import metrics
from vidcap.serving.backends import CaptionBackend, InProcessBackend
from vidcap.v1 import vidcap_pb2 as pb
from vidcap.v1 import vidcap_pb2_grpc as pb_grpc
from vidcap.video.pipeline import AnalysisParams, pick_moments

log = logging.getLogger("vidcap.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Vidcap"].full_name


@dataclass
class ServiceLimits:
    max_upload_bytes: int = 2 * 1024**3  # a video sent as bytes or chunks
    max_video_seconds: float = 4 * 3600.0
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    max_image_bytes: int = 32 * 1024**2


class PermissionDeniedError(VidcapError):
    """A path outside the media folder."""


class VidcapServicer(pb_grpc.VidcapServicer):
    def __init__(self, backend: CaptionBackend, media_dir: str | Path | None = None,
                 limits: ServiceLimits = ServiceLimits(), spool_dir: str | Path | None = None):
        self.backend, self.limits = backend, limits
        self.media_dir = Path(media_dir).resolve() if media_dir else None
        self.spool_dir = spool_dir or backend.spool_dir

    # ---- images --------------------------------------------------------------------------------------------

    def CaptionImage(self, request: pb.CaptionImageRequest, context: grpc.ServicerContext) -> pb.CaptionImageResponse:
        with _errors_to_status(context):
            if len(request.image) > self.limits.max_image_bytes:
                raise InputTooLargeError(f"image is {len(request.image)} bytes, above the limit of "
                                         f"{self.limits.max_image_bytes}")
            caption = self.backend.caption_image(request.image, request.beam or 3, self.limits.max_image_pixels)
            metrics.IMAGES.labels("grpc").inc()
            response = pb.CaptionImageResponse(caption=caption.text, words=caption.words, log_prob=caption.log_prob,
                                               attention_size=caption.attention.shape[-1])
            if request.with_embeddings:
                response.embeddings.extend(pb.Vector(values=row) for row in caption.embeddings.tolist())
            if request.with_feature:
                response.feature.values.extend(caption.feature.tolist())
            if request.with_attention:
                response.attention.extend(pb.Vector(values=m.flatten().tolist()) for m in caption.attention)
            return response

    # ---- videos --------------------------------------------------------------------------------------------

    def AnalyzeVideo(self, request: pb.AnalyzeVideoRequest, context: grpc.ServicerContext
                     ) -> Iterator[pb.AnalyzeVideoResponse]:
        with _errors_to_status(context):
            params = _params(request.params)
            if request.WhichOneof("source") == "path":
                yield from self._analyze(self._media_path(request.path), params, context)
                return
            if not request.video:
                raise InputError("no video: set `video` (bytes) or `path`")
            with spooled_upload(request.filename, self.spool_dir) as spool:
                spool.write(request.video)
                spool.close()
                yield from self._analyze(Path(spool.name), params, context)

    def AnalyzeVideoUpload(self, request_iterator: Iterator[pb.VideoChunk], context: grpc.ServicerContext
                           ) -> Iterator[pb.AnalyzeVideoResponse]:
        with _errors_to_status(context):
            first = next(request_iterator, None)
            if first is None:
                raise InputError("empty upload")
            params = _params(first.params)
            with spooled_upload(first.filename, self.spool_dir) as spool:
                size = 0
                for chunk in itertools.chain([first], request_iterator):
                    size += len(chunk.data)
                    if size > self.limits.max_upload_bytes:
                        raise InputTooLargeError(f"upload above the limit of {self.limits.max_upload_bytes} bytes")
                    spool.write(chunk.data)
                spool.close()
                yield from self._analyze(Path(spool.name), params, context)

    def _analyze(self, path: Path, params: AnalysisParams, context: grpc.ServicerContext
                 ) -> Iterator[pb.AnalyzeVideoResponse]:
        info: list[pb.VideoInfo] = []

        def started(duration: float, expected: int) -> None:
            if duration > self.limits.max_video_seconds:
                raise InputTooLargeError(f"video is {duration:.0f} s long, above the limit of "
                                         f"{self.limits.max_video_seconds:.0f} s")
            info.append(pb.VideoInfo(duration=duration, expected_frames=expected))

        results = self.backend.analyze(path, params, on_start=started)
        frames = []
        completed = False
        metrics.VIDEOS_IN_FLIGHT.labels("grpc").inc()
        try:
            for result in results:
                if not frames:
                    yield pb.AnalyzeVideoResponse(started=info[0])
                if not context.is_active():
                    return
                frames.append(result)
                metrics.FRAMES.labels("grpc").inc()
                yield pb.AnalyzeVideoResponse(frame=pb.FrameResult(
                    index=result.index, t=result.t, caption=result.caption, score=result.score,
                    alternatives=result.alternatives))
            completed = True
        finally:
            # Reached on cancellation too: gRPC closes this generator (GeneratorExit at the yield) or we return
            # above. Closing `results` stops the decoder thread and the captioning.
            results.close()
            metrics.VIDEOS_IN_FLIGHT.labels("grpc").dec()
            if not completed:
                log.info("client cancelled or failed after %d frames; stopped the analysis of %s", len(frames),
                         path.name)
        moments, metric = pick_moments(frames, params)
        metrics.MOMENTS.labels("grpc").inc(len(moments))
        yield pb.AnalyzeVideoResponse(summary=pb.Summary(
            duration=info[0].duration if info else 0.0, frames=len(frames), metric=metric, scorer=params.scorer,
            moments=[pb.Moment(t=m.t, score=m.score, caption=m.caption, previous_caption=m.previous_caption,
                               index=m.index) for m in moments]))

    def _media_path(self, relative: str) -> Path:
        return media_path(self.media_dir, relative, PermissionDeniedError, "send the video as bytes")


def _params(message: pb.AnalysisParams) -> AnalysisParams:
    return AnalysisParams(
        every_n_seconds=message.every_n_seconds or 1.0,
        window=message.window or 5,
        metric=message.metric or None,
        scorer=message.scorer or "robust",
        beam=message.beam or 3,
    ).validate()


class _errors_to_status:
    """Map vidcap's errors to gRPC status codes with their one-line messages; log anything unexpected."""

    def __init__(self, context: grpc.ServicerContext):
        self.context = context

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, GeneratorExit):
            return False
        code = _status_for(exc)
        if code is None:
            return False  # grpc's own abort exception: let it through
        metrics.ERRORS.labels("grpc", code.name.lower()).inc()
        if code == grpc.StatusCode.INTERNAL:
            log.exception("internal error", exc_info=exc)
        self.context.abort(code, str(exc) if code != grpc.StatusCode.INTERNAL else f"internal error: {exc}")
        return False


def _status_for(exc: BaseException) -> grpc.StatusCode | None:
    if isinstance(exc, InputTooLargeError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, PermissionDeniedError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, VidcapError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, grpc.RpcError):
        return None
    return grpc.StatusCode.INTERNAL


# ---- the server ------------------------------------------------------------------------------------------


def build_server(servicer: VidcapServicer, address: str, workers: int = 8) -> tuple[grpc.Server, health.HealthServicer, int]:
    """A started-ready server with the service, health checking and reflection. Returns the bound port."""
    limit = servicer.limits.max_upload_bytes + 1024**2
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers),
                         options=[("grpc.max_receive_message_length", min(limit, 2**31 - 1)),
                                  ("grpc.max_send_message_length", 64 * 1024**2)])
    pb_grpc.add_VidcapServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {address}")
    return server, health_servicer, port


def serve(backend: CaptionBackend, host: str = "127.0.0.1", port: int = 50051, media_dir: str | None = None,
          limits: ServiceLimits = ServiceLimits(), ready: threading.Event | None = None,
          stop: threading.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop` is set): then report NOT_SERVING, finish calls in flight, exit."""
    server, health_servicer, bound = build_server(VidcapServicer(backend, media_dir, limits), f"{host}:{port}")
    server.start()
    log.info("vidcap gRPC service on %s:%d", host, bound)
    print(f"vidcap gRPC service listening on {host}:{bound}", flush=True)
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    if ready is not None:
        ready.set()
    stop.wait()
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=5).wait()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="The vidcap gRPC service (in-process captioning).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--media-dir", help="folder whose videos may be analysed by path")
    p.add_argument("--max-upload-mb", type=float, default=2048)
    p.add_argument("--max-video-seconds", type=float, default=4 * 3600)
    p.add_argument("--max-image-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from vidcap.captioner import Captioner

    backend = InProcessBackend(Captioner.load(args.model, device=args.device))
    limits = ServiceLimits(int(args.max_upload_mb * 1024**2), args.max_video_seconds, args.max_image_pixels)
    serve(backend, args.host, args.port, args.media_dir, limits)


if __name__ == "__main__":
    main()
