"""The old project's HTTP API, kept so its clients keep working (port 8888 in the stack).

    POST /get_captions        file field `image` -> {"caption"}
    POST /get_image_caption   file field `image` -> {"caption", "words", "word_embeddings", "cnn_output"}
    POST /get_video_captions  file field `video`; `every_n_second`, `metric` (euclidian | euclidean | cosine),
                              `rolling_window_size` as query or form fields, optional `scorer` (default: seed,
                              the old metric) -> {"frames": [{"t", "caption", "dissimilarity"}], "moments": [...]}

Errors are JSON `{"error": "..."}`: 400 for bad input, 413 above the upload limit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from starlette.concurrency import run_in_threadpool

from vidcap.errors import BackendUnavailableError, InputError, InputTooLargeError, VidcapError
from vidcap.fileio import spooled_upload
from vidcap.serving import metrics
from vidcap.serving.backends import CaptionBackend
from vidcap.serving.grpc_service import ServiceLimits
from vidcap.video.pipeline import AnalysisParams, pick_moments


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies above `limit` bytes with 413, before reading them whole."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and int(length) > self.limit:
            return await _send_json(send, 413, {"error": f"upload above the limit of {self.limit} bytes"})
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, {"error": f"upload above the limit of {self.limit} bytes"})


async def _send_json(send, status: int, body: dict) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def create_app(backend: CaptionBackend, limits: ServiceLimits = ServiceLimits()) -> "BodyLimit":
    """The FastAPI app, wrapped so that oversized bodies are refused before they are read."""
    app = FastAPI(title="vidcap (old HTTP API)", description=__doc__)

    @app.exception_handler(VidcapError)
    async def vidcap_error(_: Request, exc: VidcapError) -> JSONResponse:
        status = 413 if isinstance(exc, InputTooLargeError) else 503 if isinstance(exc, BackendUnavailableError) else 400
        metrics.ERRORS.labels("http", str(status)).inc()
        return JSONResponse({"error": str(exc)}, status_code=status)

    app.mount("/metrics", make_asgi_app())

    async def upload(request: Request, field: str) -> tuple[UploadFile, dict[str, str]]:
        """The file in `field` (or the only file sent), and the other fields merged with the query string."""
        try:
            form = await request.form()
        except Exception as exc:  # malformed multipart bodies raise parser-specific errors
            raise InputError(f"expected a multipart form upload: {exc}") from None
        files = {k: v for k, v in form.multi_items() if hasattr(v, "read")}
        file = files.get(field) or (next(iter(files.values())) if len(files) == 1 else None)
        if file is None:
            raise InputError(f"no file in the form field {field!r}")
        fields = {**dict(request.query_params), **{k: v for k, v in form.multi_items() if isinstance(v, str)}}
        return file, fields

    def caption_of(file: UploadFile, beam: int = 3):
        return backend.caption_image(file.file.read(), beam, limits.max_image_pixels)

    @app.post("/get_captions")
    async def get_captions(request: Request) -> dict:
        file, _ = await upload(request, "image")
        caption = await run_in_threadpool(caption_of, file)
        metrics.IMAGES.labels("http").inc()
        return {"caption": caption.text}

    @app.post("/get_image_caption")
    async def get_image_caption(request: Request) -> dict:
        file, fields = await upload(request, "image")
        caption = await run_in_threadpool(caption_of, file, _int(fields, "beam", 3))
        metrics.IMAGES.labels("http").inc()
        return {"caption": caption.text, "words": caption.words, "word_embeddings": caption.embeddings.tolist(),
                "cnn_output": caption.feature.tolist()}

    @app.post("/get_video_captions")
    async def get_video_captions(request: Request) -> dict:
        file, fields = await upload(request, "video")
        params = AnalysisParams(
            every_n_seconds=_float(fields, "every_n_second", 1.0),
            window=_int(fields, "rolling_window_size", 5),
            metric=fields.get("metric") or "euclidean",
            scorer=fields.get("scorer") or "seed",
        ).validate()
        metrics.VIDEOS_IN_FLIGHT.labels("http").inc()
        try:
            frames = await run_in_threadpool(_analyze_upload, file, backend, params)
        finally:
            metrics.VIDEOS_IN_FLIGHT.labels("http").dec()
        metrics.FRAMES.labels("http").inc(len(frames))
        moments, metric = pick_moments(frames, params)
        metrics.MOMENTS.labels("http").inc(len(moments))
        return {
            "video": file.filename,
            "params": {"every_n_second": params.every_n_seconds, "metric": metric,
                       "rolling_window_size": params.window, "scorer": params.scorer},
            "frames": [{"t": f.t, "caption": f.caption, "dissimilarity": f.score} for f in frames],
            "moments": [{"t": m.t, "score": m.score, "caption": m.caption, "previous_caption": m.previous_caption}
                        for m in moments],
        }

    return BodyLimit(app, limits.max_upload_bytes)


def _analyze_upload(file: UploadFile, backend: CaptionBackend, params: AnalysisParams) -> list:
    with spooled_upload(file.filename or "", backend.spool_dir) as spool:
        shutil.copyfileobj(file.file, spool)
        spool.close()
        return list(backend.analyze(Path(spool.name), params))


def _float(fields: dict[str, str], name: str, default: float) -> float:
    try:
        return float(fields[name]) if fields.get(name) not in (None, "") else default
    except ValueError:
        raise InputError(f"{name} must be a number, got {fields[name]!r}") from None


def _int(fields: dict[str, str], name: str, default: int) -> int:
    try:
        return int(fields[name]) if fields.get(name) not in (None, "") else default
    except ValueError:
        raise InputError(f"{name} must be a whole number, got {fields[name]!r}") from None
