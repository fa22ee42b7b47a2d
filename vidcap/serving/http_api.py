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
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import make_asgi_app
from starlette.concurrency import run_in_threadpool

from vidcap.errors import InputError, PermissionDeniedError, UnavailableError, VidcapError, public_message, status_of
from vidcap.fileio import media_path, upload_name
from vidcap.library.job_store import LIST_LIMIT
from vidcap.library.search import DEFAULT_TOP, MAX_TOP, search_library
from vidcap.limits import DEFAULT_LIMITS, MIB, Limits
from vidcap.serving import metrics
from vidcap.serving.admission import Admission
from vidcap.serving.auth import LOOPBACK_HOSTS, RequestGuard
from vidcap.analysis.hosts import ModelHost
from vidcap.analysis.session import AnalysisSession
from vidcap.serving.http_guards import BearerKey, BodyGuard, Refused, client_of
from vidcap.serving.http_schemas import (FrameModel, JobList, JobModel, JobResults, JobSubmission, MomentModel,
                                         SearchHit, SearchResponse, job_model)
from vidcap.serving.http_uploads import received_form
from vidcap.serving.job_runner import JobRunner, job_analysis
from vidcap.video.pipeline import AnalysisParams
from vidcap.video.subtitles import EXPORTS, export
from vidcap.wire import analysis_params, domain_to_json, flag, frame_to_json, moment_to_json, old_api_params

log = logging.getLogger("vidcap.http")

DISCONNECT_POLL_SECONDS = 0.5
MAX_JSON_BYTES = 64 * 1024  # a JSON body (a job naming a media path), and any body of a route that takes none


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
    door = _Door(model_host, limits, admission or Admission(), library, jobs, media_dir, healthy)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        metrics.ERRORS.labels("http", str(exc.status)).inc()
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers={"connection": "close"})

    @app.exception_handler(VidcapError)
    async def vidcap_error(request: Request, exc: VidcapError) -> JSONResponse:
        status = status_of(exc)[1]
        metrics.ERRORS.labels("http", str(status)).inc()
        log.info("%d for %s %s from %s: %s", status, request.method, request.url.path, client_of(request.scope),
                 public_message(exc))  # one line for the operator, no traceback
        return JSONResponse({"error": public_message(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, exc: Exception) -> JSONResponse:
        metrics.ERRORS.labels("http", "500").inc()
        log.error("internal error", exc_info=exc)
        return JSONResponse({"error": public_message(exc)}, status_code=500)

    app.mount("/metrics", make_asgi_app())

    _old_api(app, door)
    _library_and_jobs(app, door)

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




@dataclass
class _Door:
    """What the routes share: the model host, the limits and the admission of the server, where its library, jobs
    and media are."""

    model_host: ModelHost
    limits: Limits
    admission: Admission
    library: str | Path | None
    jobs: JobRunner | None
    media_dir: str | Path | None
    healthy: Callable[[], bool]

    @property
    def spool_dir(self) -> Path | None:
        return self.model_host.spool_dir


def _old_api(app: FastAPI, d: _Door) -> None:
    """The old project's endpoints, as its clients call them, and the health check."""
    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        ok = d.healthy()
        return JSONResponse({"status": "serving" if ok else "not serving"}, status_code=200 if ok else 503)

    def caption_of(path: Path, beam: int):
        d.limits.check_image_bytes(path.stat().st_size)
        return d.model_host.caption_image(path.read_bytes(), beam, d.limits.max_image_pixels)

    async def image_request(request: Request):
        async with received_form(request, d.spool_dir, d.admission.uploads) as form:
            fields = {**dict(request.query_params), **form.fields}
            beam = analysis_params(beam=fields.get("beam"), limits=d.limits).beam
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
        params = old_api_params(dict(request.query_params), d.limits)  # refuse bad parameters before the upload
        async with received_form(request, d.spool_dir, d.admission.uploads) as form:
            params = old_api_params({**dict(request.query_params), **form.fields}, d.limits)
            filename, path = form.file("video")
            d.limits.check_upload_bytes(path.stat().st_size)
            with d.admission.enter() as ticket:  # a slot once the video is on disk: slow uploaders hold none
                metrics.VIDEOS_IN_FLIGHT.labels("http").inc()
                try:
                    run = _AnalysisRun(d.model_host, path, params, d.limits, ticket)
                    session = await _until_disconnected(request, run)
                finally:
                    metrics.VIDEOS_IN_FLIGHT.labels("http").dec()
        if session is None:
            return JSONResponse({"error": "the client disconnected"}, status_code=499)
        frames, moments, metric = session.frames, session.moments, session.metric
        metrics.FRAMES.labels("http").inc(len(frames))
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
            "domain": domain_to_json(session.domain),
        }



def _library_and_jobs(app: FastAPI, d: _Door) -> None:
    """/v1: search the library, and jobs."""
    @app.get("/v1/search", response_model=SearchResponse)
    async def search(q: str = Query(description="what was seen, e.g. 'red star on grass'"),
                     top: int = Query(DEFAULT_TOP, description=f"hits to return, 1..{MAX_TOP}")) -> SearchResponse:
        hits = await run_in_threadpool(search_library, d.library, q, top)
        return SearchResponse(query=q, hits=[SearchHit(**asdict(h)) for h in hits])

    def job_runner() -> JobRunner:
        if d.jobs is None:
            raise UnavailableError("this server runs no jobs (vidcap serve does)")
        return d.jobs

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
            params = _job_params(fields, d.limits)
            path = _media_file(d.media_dir, fields.get("path"), "upload the video as a multipart form")
            shelve = flag(fields.get("add_to_library"), "add_to_library")
            return job_model(await run_in_threadpool(runner.submit_path, path, params, None, shelve))
        async with received_form(request, d.spool_dir, d.admission.uploads) as form:
            params = _job_params(form.fields, d.limits)
            shelve = flag(form.fields.get("add_to_library"), "add_to_library")
            if not form.files:
                path = _media_file(d.media_dir, form.fields.get("path"), "upload the video in the form field `video`")
                job = await run_in_threadpool(runner.submit_path, path, params, None, shelve)
            else:
                filename, spooled = form.file("video")
                d.limits.check_upload_bytes(spooled.stat().st_size)
                job = await run_in_threadpool(runner.submit_upload, filename, spooled, params, shelve)
        return job_model(job)

    @app.get("/v1/jobs", response_model=JobList)
    async def list_jobs(state: str | None = Query(None, description="queued, running, done, failed or cancelled"),
                        limit: int = Query(LIST_LIMIT, description=f"newest first, 1..{LIST_LIMIT}")) -> JobList:
        if not 1 <= limit <= LIST_LIMIT:
            raise InputError(f"limit must be 1..{LIST_LIMIT}")
        found = await run_in_threadpool(job_runner().store.list, state or None, limit)
        return JobList(jobs=[job_model(j) for j in found])

    @app.get("/v1/jobs/{job_id}", response_model=JobModel)
    async def get_job(job_id: str) -> JobModel:
        return job_model(await run_in_threadpool(job_runner().store.get, job_id))

    @app.get("/v1/jobs/{job_id}/results", response_model=JobResults)
    async def job_results(job_id: str) -> JobResults:
        """Frames and moments: all of them once done, those so far while it runs or after a cancel."""
        store = job_runner().store

        def read() -> tuple:
            job = store.get(job_id)
            return job, job_analysis(store, job, d.model_host)

        job, analysis = await run_in_threadpool(read)
        return JobResults(job=job_model(job), frames=[FrameModel(**frame_to_json(f)) for f in analysis.frames],
                          moments=[MomentModel(**moment_to_json(m)) for m in analysis.moments])

    @app.get("/v1/jobs/{job_id}/export/{kind}", response_class=PlainTextResponse,
             responses={200: {"content": {k.media_type: {} for k in EXPORTS.values()}}})
    async def export_job(job_id: str, kind: str) -> PlainTextResponse:
        """Subtitles and chapters of the job's results (so far, while it runs): vtt, srt, chapters (FFmpeg's
        FFMETADATA), chapters-vtt, chapter-list."""
        store = job_runner().store

        def render() -> tuple:
            job = store.get(job_id)
            return job, *export(job_analysis(store, job, d.model_host), kind)

        job, text, how = await run_in_threadpool(render)
        filename = upload_name(Path(job.name).stem + how.suffix)
        return PlainTextResponse(text, media_type=how.media_type,
                                 headers={"content-disposition": f'attachment; filename="{filename}"'})

    @app.delete("/v1/jobs/{job_id}", response_model=JobModel)
    async def cancel_job(job_id: str) -> JobModel:
        """Cancel a queued or running job; its results so far stay readable. An ended job is answered as it is."""
        return job_model(await run_in_threadpool(job_runner().cancel, job_id))



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



async def _json_object(request: Request) -> dict:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise InputError("malformed JSON body") from None
    if not isinstance(body, dict):
        raise InputError("the JSON body must be an object")
    return body


class _AnalysisRun:
    """One video's analysis session in a worker thread, stopped (queue wait included) when `stop` is set."""

    def __init__(self, model_host: ModelHost, path: Path, params: AnalysisParams, limits: Limits, ticket):
        self.model_host, self.path, self.params, self.limits, self.ticket = model_host, path, params, limits, ticket
        self.stop = threading.Event()

    def __call__(self) -> AnalysisSession | None:
        while self.ticket.wait(DISCONNECT_POLL_SECONDS) is not None:
            if self.stop.is_set():
                return None
        results = self.model_host.analyze(self.path, self.params, on_start=self.limits.check_video)
        session = AnalysisSession.for_host(self.params, self.model_host)
        try:
            for result in results:
                if self.stop.is_set():
                    return None
                session.add(result)
        finally:
            results.close()  # stops the frame reader, and the TorchServe worker
        session.finish()
        return session


async def _until_disconnected(request: Request, run: _AnalysisRun) -> AnalysisSession | None:
    """Run it; a client that hangs up stops it within a poll or a frame. None when it did."""
    task = asyncio.ensure_future(run_in_threadpool(run))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            run.stop.set()
