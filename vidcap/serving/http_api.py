"""The HTTP API (port 8888 in the stack): the old project's endpoints, kept as they were so its clients keep
working, and typed /v1 endpoints (search, jobs) that /docs and /openapi.json describe.

    POST /get_captions        file field `image` -> {"caption"}
    POST /get_image_caption   file field `image` -> {"caption", "words", "word_embeddings", "cnn_output"}
    POST /get_video_captions  file field `video`; `every_n_second`, `metric` (euclidian | euclidean | cosine),
                              `rolling_window_size` as query or form fields, optional `scorer` (default: seed,
                              the old metric) -> {"frames": [{"t", "caption", "dissimilarity"}], "moments": [...]}

    GET  /v1/search?q=...&top=K   the library (`vidcap index`): {"query", "hits": [{"path", "start", "end",
                              "caption", "score"}]}, best first; typed, so /docs and /openapi.json describe it
    POST /v1/jobs             a video analysed in the background (multipart `video`, or `path` in the media
                              folder; JSON too for `path`) -> 201 with the job; GET /v1/jobs lists them,
                              GET /v1/jobs/{id} its progress, GET /v1/jobs/{id}/results its frames and moments,
                              GET /v1/jobs/{id}/export/{vtt|srt|chapters|chapters-vtt|chapter-list} subtitles and
                              chapters, DELETE /v1/jobs/{id} cancels it (404: no such job)
    GET  /healthz             {"status": "serving"} (200), or 503 while the model host (TorchServe) is down
    GET  /metrics             Prometheus metrics

Errors are JSON `{"error": "..."}` with the status of `vidcap.errors.STATUSES`: 400 bad input, 401 no or a wrong API
key, 403 a path outside the media folder, 404 no such job, 413 above a limit, 429 busy (every analysis slot taken
and the queue full), 503 the model host (or the job database) is unavailable (not the client's fault).
Uploads are written to disk as they arrive; a client that hangs up stops its analysis within a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import make_asgi_app
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from pydantic import BaseModel, Field

from vidcap.errors import (InputError, PermissionDeniedError, UnavailableError, VidcapError, public_message,
                           status_of)
from vidcap.fileio import media_path, upload_name
from vidcap.library.job_store import LIST_LIMIT
from vidcap.serving.job_runner import JobRunner, job_analysis
from vidcap.video.subtitles import EXPORTS, export
from vidcap.library.search import DEFAULT_TOP, MAX_TOP, search_library
from vidcap.limits import DEFAULT_LIMITS, MIB, Limits
from vidcap.serving import metrics
from vidcap.serving.admission import Admission, Budget
from vidcap.serving.auth import LOOPBACK_HOSTS, REFUSED, RequestGuard
from vidcap.serving.hosts import ModelHost
from vidcap.video.pipeline import AnalysisParams, FrameResult, pick_moments
from vidcap.domain import summarize
from vidcap.wire import (analysis_params, domain_to_json, flag, frame_to_json, job_to_json, moment_to_json,
                         old_api_params)

log = logging.getLogger("vidcap.http")

DISCONNECT_POLL_SECONDS = 0.5
MAX_FIELD_BYTES = 64 * 1024  # a text field of a form (parameters); files go to disk
MAX_JSON_BYTES = 64 * 1024  # a JSON body (a job naming a media path), and any body of a route that takes none


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class BodyGuard:
    """Each route's own body limit, enforced while the body streams in (Content-Length first, then the bytes counted),
    and a minimum upload rate: a client that has sent less than `min_rate` bytes a second on average, once `grace`
    seconds have passed, is cut off (408). A body over its limit is answered 413 without being read to the end."""

    def __init__(self, app, limit_of: Callable[[dict], int], min_rate: float, grace: float):
        self.app, self.limit_of, self.min_rate, self.grace = app, limit_of, min_rate, grace

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_of(scope)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await _send_json(send, 413, {"error": _too_large(scope, limit)}, _CLOSE)
        received, began, complete = 0, asyncio.get_running_loop().time(), False
        started = False

        async def guarded_receive():
            nonlocal received, complete
            if complete:  # the body is in: what follows is the wait for a disconnect, however long the work takes
                return await receive()
            # The deadline for the next bytes: by then the average since the start must not be below min_rate.
            wait = began + self.grace + received / self.min_rate - asyncio.get_running_loop().time()
            try:
                message = await asyncio.wait_for(receive(), timeout=max(wait, 0.001))
            except asyncio.TimeoutError:
                raise _Refused(408, f"upload slower than {self.min_rate / 1024:g} KiB/s on average: cut off") \
                    from None
            received += len(message.get("body", b""))
            complete = message.get("type") != "http.request" or not message.get("more_body", False)
            if received > limit:
                raise _Refused(413, _too_large(scope, limit))
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except _Refused as refused:
            log.info("refused %s %s from %s: %s", scope.get("method"), scope.get("path"), _client(scope), refused)
            metrics.ERRORS.labels("http", str(refused.status)).inc()
            if not started:
                await _send_json(send, refused.status, {"error": str(refused)}, _CLOSE)


_CLOSE = [(b"connection", b"close")]  # the rest of a refused body is not read: this connection is done


def _too_large(scope: dict, limit: int) -> str:
    return f"request body above the limit of {limit} bytes for {scope.get('method')} {scope.get('path')}"


def _client(scope: dict) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


class BearerKey:
    """Every request but the health check needs `Authorization: Bearer KEY` (when the server has a key)."""

    OPEN_PATHS = ("/healthz",)

    def __init__(self, app, key: str):
        self.app, self.key = app, key

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path") not in self.OPEN_PATHS:
            given = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.key}".encode()):
                return await _send_json(send, status_of(REFUSED)[1], {"error": str(REFUSED)},
                                        [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


async def _send_json(send, status: int, body: dict, headers: list | None = None) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": data})


# ---- uploads straight to disk --------------------------------------------------------------------------------


@dataclass
class Form:
    files: dict[str, tuple[str, Path]] = field(default_factory=dict)  # field -> (client's file name, local path)
    fields: dict[str, str] = field(default_factory=dict)

    def file(self, name: str) -> tuple[str, Path]:
        """The file in field `name`, or the only file sent."""
        found = self.files.get(name) or (next(iter(self.files.values())) if len(self.files) == 1 else None)
        if found is None:
            raise InputError(f"no file in the form field {name!r}")
        return found


@contextlib.asynccontextmanager
async def received_form(request: Request, folder: Path | None, uploads: Budget) -> AsyncIterator[Form]:
    """A multipart form whose files are written to a private folder as they arrive (never whole in memory);
    the folder is removed afterwards, also when the client disconnects mid-upload. While it arrives it holds one
    of the server's upload places (`uploads`), not an analysis slot."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise InputError("expected a multipart form upload (Content-Type: multipart/form-data)")
    private = Path(tempfile.mkdtemp(prefix="vidcap-upload-", dir=folder))
    try:
        form = Form()
        with uploads.enter(request.client.host if request.client else ""):
            part = _PartWriter(form, private)
            parser = MultipartParser(options[b"boundary"], part.callbacks())
            try:
                async for chunk in request.stream():
                    parser.write(chunk)
                parser.finalize()
            except ClientDisconnect:
                raise InputError("the client disconnected during the upload") from None
            except (VidcapError, _Refused):
                raise
            except Exception as exc:  # the parser's own errors for malformed bodies
                raise InputError(f"malformed multipart form: {exc}") from None
            finally:
                part.close()
        yield form
    finally:
        shutil.rmtree(private, ignore_errors=True)


class _PartWriter:
    """MultipartParser callbacks: file parts to disk under their sanitised names, text fields to the form."""

    def __init__(self, form: Form, folder: Path):
        self.form, self.folder = form, folder
        self.header_name, self.header_value, self.headers = b"", b"", {}
        self.out = None
        self.text = bytearray()

    def callbacks(self) -> dict[str, Callable]:
        return {"on_part_begin": self.begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value_data, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.data, "on_part_end": self.end}

    def begin(self) -> None:
        self.headers, self.text, self.name = {}, bytearray(), ""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def headers_finished(self) -> None:
        _, disposition = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = disposition.get(b"name", b"").decode(errors="replace")
        if b"filename" in disposition:
            filename = disposition[b"filename"].decode(errors="replace")
            path = self.folder / f"{len(self.form.files)}-{upload_name(filename)}"
            self.out = path.open("wb")
            self.form.files.setdefault(self.name, (filename, path))

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.out is not None:
            self.out.write(data[start:end])
        else:
            self.text += data[start:end]
            if len(self.text) > MAX_FIELD_BYTES:
                raise InputError(f"form field {self.name!r} is above {MAX_FIELD_BYTES} bytes")

    def end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        else:
            self.form.fields[self.name] = self.text.decode(errors="replace")

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


# ---- the app ---------------------------------------------------------------------------------------------------


class SearchHit(BaseModel):
    path: str = Field(description="the video on the server")
    start: float = Field(description="the stretch's start, in seconds of video")
    end: float
    caption: str
    score: float = Field(description="0..1: the share of the query's words the stretch names")


class SearchResponse(BaseModel):
    query: str
    hits: list[SearchHit]


class JobSubmission(BaseModel):
    """POST /v1/jobs: a multipart form with the video in `video`, or `path` naming one in the server's media
    folder (then also as a JSON object); the parameters as in /get_video_captions' newer names."""
    video: bytes | None = Field(None, description="the video file (multipart only)",
                                json_schema_extra={"format": "binary"})
    path: str | None = Field(None, description="instead of `video`: a path relative to the server's media folder")
    every_n_seconds: float | None = Field(None, description="sampling step in seconds (default 1)")
    window: int | None = Field(None, description="previous sampled frames each frame is compared with (default 5)")
    metric: str | None = Field(None, description="euclidean (or euclidian) or cosine; default: the scorer's")
    scorer: str | None = Field(None, description="robust (default) or seed (the old project's metric)")
    beam: int | None = Field(None, description="beam size (default 3)")
    no_skip: bool | None = Field(None, description="caption still frames too")
    cuts: str | None = Field(None, description="the cut signal: frames (default: cuts to the frame), colour (the "
                                               "samples' colours alone) or transnetv2 (the learnt shot detector)")
    add_to_library: bool | None = Field(None, description="once done, the video joins the server's library (search "
                                                          "finds it; an upload is kept for it)")


class JobParameters(BaseModel):
    every_n_seconds: float
    window: int
    metric: str = Field(description="empty: the scorer's default")
    scorer: str
    beam: int
    no_skip: bool
    cuts: str


class JobModel(BaseModel):
    id: str
    state: str = Field(description="queued | running | done | failed | cancelled")
    name: str = Field(description="the video")
    created: float = Field(description="seconds since the epoch")
    frames: int = Field(description="results so far")
    expected_frames: int = Field(description="frames that will be sampled; 0 until the job has started")
    duration: float = Field(description="seconds of video; 0 until the job has started")
    eta_seconds: float | None = Field(description="at the pace of the current run; null until known")
    error: str = Field(description="why it failed")
    captioned: int = Field(description="samples captioned (the others reused a still frame's caption)")
    runs: int = Field(description="more than 1: it continued after the server stopped")
    finished: float = Field(description="seconds since the epoch; 0 while it has not ended")
    add_to_library: bool = Field(description="once done, the video joins the server's library")
    params: JobParameters


class JobList(BaseModel):
    jobs: list[JobModel] = Field(description="newest first")


class FrameModel(BaseModel):
    index: int
    t: float = Field(description="seconds from the start of the video")
    caption: str
    score: float = Field(description="dissimilarity with the previous frames")
    alternatives: list[str] = Field(description="the other beams' captions")
    reused: bool = Field(description="a still frame: the caption of the last captioned one")
    in_domain: float | None = Field(description="how typical of the model's training images, 0..1")
    cut: float = Field(description="the cut signal, 0..1")
    cut_times: list[float] = Field(default_factory=list, description="where the new shots its cut signal found "
                                                                     "began, to the frame (seconds)")


class MomentModel(BaseModel):
    t: float
    score: float
    caption: str
    previous_caption: str
    index: int
    reason: str = Field(description="cut, caption change or visual change")


class JobResults(BaseModel):
    job: JobModel
    frames: list[FrameModel] = Field(description="so far, while it runs; what it gave before a cancel")
    moments: list[MomentModel]


def create_app(model_host: ModelHost, limits: Limits = DEFAULT_LIMITS, admission: Admission | None = None,
               api_key: str | None = None, healthy: Callable[[], bool] = lambda: True,
               library: str | Path | None = None, jobs: JobRunner | None = None, media_dir: str | Path | None = None,
               hosts: frozenset[str] | None = LOOPBACK_HOSTS):
    """The FastAPI app, wrapped so that web pages cannot drive it (Host and Origin checks: `hosts`, see
    vidcap.serving.auth.RequestGuard), oversized bodies are refused while they stream in, slow uploads are cut off
    (and, with an API key, requests without it refused). library: the database `vidcap index` writes (default: its
    default place). jobs: the server's job runner (/v1/jobs; None: those answer 503). media_dir: the folder jobs
    may name videos in by path."""
    app = FastAPI(title="vidcap HTTP API", description=__doc__)
    admission = admission or Admission()
    spool_dir = model_host.spool_dir

    @app.exception_handler(_Refused)
    async def refused(_: Request, exc: _Refused) -> JSONResponse:
        metrics.ERRORS.labels("http", str(exc.status)).inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers={"connection": "close"})

    @app.exception_handler(VidcapError)
    async def vidcap_error(request: Request, exc: VidcapError) -> JSONResponse:
        status = status_of(exc)[1]
        metrics.ERRORS.labels("http", str(status)).inc()
        log.info("%d for %s %s from %s: %s", status, request.method, request.url.path, _client(request.scope),
                 public_message(exc))  # one line for the operator, no traceback
        return JSONResponse({"error": public_message(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        metrics.ERRORS.labels("http", "500").inc()
        log.error("internal error", exc_info=exc)
        return JSONResponse({"error": public_message(exc)}, status_code=500)

    app.mount("/metrics", make_asgi_app())

    @app.get("/v1/search", response_model=SearchResponse)
    async def search(q: str = Query(description="what was seen, e.g. 'red star on grass'"),
                     top: int = Query(DEFAULT_TOP, description=f"hits to return, 1..{MAX_TOP}")) -> SearchResponse:
        hits = await run_in_threadpool(search_library, library, q, top)
        return SearchResponse(query=q, hits=[SearchHit(**asdict(h)) for h in hits])

    def job_runner() -> JobRunner:
        if jobs is None:
            raise UnavailableError("this server runs no jobs (vidcap serve does)")
        return jobs

    submission_schema = JobSubmission.model_json_schema()
    submission_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": submission_schema},
        "application/json": {"schema": {**submission_schema, "properties": {
            k: v for k, v in submission_schema["properties"].items() if k != "video"}}}}}}

    @app.post("/v1/jobs", response_model=JobModel, status_code=201, openapi_extra=submission_body)
    async def submit_job(request: Request) -> JobModel:
        """Submit a video: answered at once with the queued job."""
        runner = job_runner()
        if request.headers.get("content-type", "").startswith("application/json"):
            fields = await _json_object(request)
            if "video" in fields:
                raise InputError("send a video file as a multipart form; JSON names a `path`")
            params = _job_params(fields, limits)
            path = _media_file(media_dir, fields.get("path"), "upload the video as a multipart form")
            shelve = flag(fields.get("add_to_library"), "add_to_library")
            return _job_model(await run_in_threadpool(runner.submit_path, path, params, None, shelve))
        async with received_form(request, spool_dir, admission.uploads) as form:
            params = _job_params(form.fields, limits)
            shelve = flag(form.fields.get("add_to_library"), "add_to_library")
            if not form.files:
                path = _media_file(media_dir, form.fields.get("path"), "upload the video in the form field `video`")
                job = await run_in_threadpool(runner.submit_path, path, params, None, shelve)
            else:
                filename, spooled = form.file("video")
                limits.check_upload_bytes(spooled.stat().st_size)
                job = await run_in_threadpool(runner.submit_upload, filename, spooled, params, shelve)
        return _job_model(job)

    @app.get("/v1/jobs", response_model=JobList)
    async def list_jobs(state: str | None = Query(None, description="queued, running, done, failed or cancelled"),
                        limit: int = Query(LIST_LIMIT, description=f"newest first, 1..{LIST_LIMIT}")) -> JobList:
        if not 1 <= limit <= LIST_LIMIT:
            raise InputError(f"limit must be 1..{LIST_LIMIT}")
        found = await run_in_threadpool(job_runner().store.list, state or None, limit)
        return JobList(jobs=[_job_model(j) for j in found])

    @app.get("/v1/jobs/{job_id}", response_model=JobModel)
    async def get_job(job_id: str) -> JobModel:
        return _job_model(await run_in_threadpool(job_runner().store.get, job_id))

    @app.get("/v1/jobs/{job_id}/results", response_model=JobResults)
    async def job_results(job_id: str) -> JobResults:
        """Frames and moments: all of them once done, those so far while it runs or after a cancel."""
        store = job_runner().store

        def read() -> tuple:
            job = store.get(job_id)
            return job, job_analysis(store, job, model_host.ignored_words)

        job, analysis = await run_in_threadpool(read)
        return JobResults(job=_job_model(job), frames=[FrameModel(**frame_to_json(f)) for f in analysis.frames],
                          moments=[MomentModel(**moment_to_json(m)) for m in analysis.moments])

    @app.get("/v1/jobs/{job_id}/export/{kind}", response_class=PlainTextResponse,
             responses={200: {"content": {k.media_type: {} for k in EXPORTS.values()}}})
    async def export_job(job_id: str, kind: str) -> PlainTextResponse:
        """Subtitles and chapters of the job's results (so far, while it runs): vtt, srt, chapters (FFmpeg's
        FFMETADATA), chapters-vtt, chapter-list."""
        store = job_runner().store

        def render() -> tuple:
            job = store.get(job_id)
            return job, *export(job_analysis(store, job, model_host.ignored_words), kind)

        job, text, how = await run_in_threadpool(render)
        filename = upload_name(Path(job.name).stem + how.suffix)
        return PlainTextResponse(text, media_type=how.media_type,
                                 headers={"content-disposition": f'attachment; filename="{filename}"'})

    @app.delete("/v1/jobs/{job_id}", response_model=JobModel)
    async def cancel_job(job_id: str) -> JobModel:
        """Cancel a queued or running job; its results so far stay readable. An ended job is answered as it is."""
        return _job_model(await run_in_threadpool(job_runner().cancel, job_id))

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = healthy()
        return JSONResponse({"status": "serving" if ok else "not serving"}, status_code=200 if ok else 503)

    def caption_of(path: Path, beam: int):
        limits.check_image_bytes(path.stat().st_size)
        return model_host.caption_image(path.read_bytes(), beam, limits.max_image_pixels)

    async def image_request(request: Request):
        async with received_form(request, spool_dir, admission.uploads) as form:
            fields = {**dict(request.query_params), **form.fields}
            beam = analysis_params(beam=fields.get("beam"), limits=limits).beam
            caption = await run_in_threadpool(caption_of, form.file("image")[1], beam)
        metrics.IMAGES.labels("http").inc()
        return caption

    @app.post("/get_captions")
    async def get_captions(request: Request) -> dict:
        caption = await image_request(request)
        return {"caption": caption.text}

    @app.post("/get_image_caption")
    async def get_image_caption(request: Request) -> dict:
        caption = await image_request(request)
        return {"caption": caption.text, "words": caption.words, "word_embeddings": caption.embeddings.tolist(),
                "cnn_output": caption.feature.tolist()}

    @app.post("/get_video_captions")
    async def get_video_captions(request: Request):
        params = old_api_params(dict(request.query_params), limits)  # refuse bad parameters before the upload
        async with received_form(request, spool_dir, admission.uploads) as form:
            params = old_api_params({**dict(request.query_params), **form.fields}, limits)
            filename, path = form.file("video")
            limits.check_upload_bytes(path.stat().st_size)
            with admission.enter() as ticket:  # a slot once the video is on disk: slow uploaders hold none
                metrics.VIDEOS_IN_FLIGHT.labels("http").inc()
                try:
                    frames = await _until_disconnected(request, _AnalysisRun(model_host, path, params, limits, ticket))
                finally:
                    metrics.VIDEOS_IN_FLIGHT.labels("http").dec()
        if frames is None:
            return JSONResponse({"error": "the client disconnected"}, status_code=499)
        metrics.FRAMES.labels("http").inc(len(frames))
        moments, metric = pick_moments(frames, params, model_host.ignored_words)
        metrics.MOMENTS.labels("http").inc(len(moments))
        return {
            "video": filename,
            "params": {"every_n_second": params.every_n_seconds, "metric": metric,
                       "rolling_window_size": params.window, "scorer": params.scorer,
                       "no_skip": not params.skip_still},
            "frames": [{"t": f.t, "caption": f.caption, "dissimilarity": f.score, "reused": f.reused,
                        "in_domain": f.in_domain} for f in frames],
            "moments": [{"t": m.t, "score": m.score, "caption": m.caption, "previous_caption": m.previous_caption,
                         "reason": m.reason} for m in moments],
            "domain": domain_to_json(summarize([f.in_domain for f in frames], model_host.trained_on)),
        }

    def body_limit(scope: dict) -> int:
        """Each route's own: an image, a video, or a few parameters."""
        path = scope.get("path")
        if path in ("/get_captions", "/get_image_caption"):
            return limits.max_image_bytes + MIB  # the form around the image
        if path == "/get_video_captions" or (path == "/v1/jobs" and scope.get("method") == "POST" and
                                             _content_type(scope).startswith(b"multipart/")):
            return limits.max_upload_bytes + MIB
        return MAX_JSON_BYTES  # a JSON job submission; other routes take no body

    wrapped = BodyGuard(app, body_limit, limits.min_upload_bytes_per_second, limits.upload_grace_seconds)
    wrapped = BearerKey(wrapped, api_key) if api_key else wrapped
    return RequestGuard(wrapped, hosts)


def _content_type(scope: dict) -> bytes:
    return dict(scope.get("headers") or []).get(b"content-type", b"").lower()


def _job_params(fields: dict, limits: Limits) -> AnalysisParams:
    return analysis_params(fields.get("every_n_seconds"), fields.get("window"), fields.get("metric"),
                           fields.get("scorer"), fields.get("beam"), limits, no_skip=fields.get("no_skip"),
                           cuts=fields.get("cuts"))


def _media_file(media_dir: str | Path | None, relative: object, hint: str) -> Path:
    if not relative or not isinstance(relative, str):
        raise InputError("no video: send a file in `video` or name one with `path`")
    return media_path(Path(media_dir) if media_dir else None, relative, PermissionDeniedError, hint)


def _job_model(job) -> JobModel:
    return JobModel(**job_to_json(job))


async def _json_object(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise InputError("malformed JSON body") from None
    if not isinstance(body, dict):
        raise InputError("the JSON body must be an object")
    return body


class _AnalysisRun:
    """One video's analysis in a worker thread, stopped (queue wait included) when `stop` is set."""

    def __init__(self, model_host: ModelHost, path: Path, params: AnalysisParams, limits: Limits, ticket):
        self.model_host, self.path, self.params, self.limits, self.ticket = model_host, path, params, limits, ticket
        self.stop = threading.Event()

    def __call__(self) -> list[FrameResult] | None:
        while self.ticket.wait(DISCONNECT_POLL_SECONDS) is not None:
            if self.stop.is_set():
                return None
        results = self.model_host.analyze(self.path, self.params, on_start=self.limits.check_video)
        frames = []
        try:
            for result in results:
                if self.stop.is_set():
                    return None
                frames.append(result)
        finally:
            results.close()  # stops the frame reader, and the TorchServe worker
        return frames


async def _until_disconnected(request: Request, run: _AnalysisRun) -> list[FrameResult] | None:
    """Run it; a client that hangs up stops it within a poll or a frame. None when it did."""
    task = asyncio.ensure_future(run_in_threadpool(run))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            run.stop.set()
