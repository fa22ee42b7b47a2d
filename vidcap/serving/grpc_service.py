"""The vidcap gRPC service (proto/vidcap/v1/vidcap.proto): a thin servicer over the captioner and the pipeline.
It runs inside `vidcap serve` (vidcap/serving/stack.py: keys, TLS, limits, budgets and Host checks set once for
every door); `vidcap serve --model-host inprocess --no-ui` is the gRPC service alone with the model in-process.

Errors map to status codes through one table (`vidcap.errors.STATUSES`, shared with the HTTP API and the CLI);
the server keeps serving.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vidcap.card import ModelCard
from vidcap.errors import (InputError, PermissionDeniedError, UnavailableError, UploadTooSlowError, public_message,
                           status_of)
from vidcap.fileio import media_path, spooled_upload
from vidcap.limits import DEFAULT_LIMITS, MIB, Limits
from vidcap.serving import metrics
from vidcap.serving.admission import Admission, client_address
from vidcap.analysis.hosts import ModelHost
from vidcap.analysis.session import AnalysisSession
from vidcap.v1 import vidcap_pb2 as pb
from vidcap.v1 import vidcap_pb2_grpc as pb_grpc
from vidcap.library.job_store import LIST_LIMIT
from vidcap.library.search import DEFAULT_TOP, search_library
from vidcap.library.shelf import library_counts
from vidcap.serving.job_runner import JobRunner, job_analysis
from vidcap.video.sources import SourcePolicy
from vidcap.video.subtitles import export
from vidcap.video.pipeline import AnalysisParams
from vidcap.wire import analysis_params, domain_to_proto_fields, frame_to_proto, job_to_proto, moment_to_proto

log = logging.getLogger("vidcap.grpc")

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Vidcap"].full_name
QUEUE_REPORT_SECONDS = 1.0  # how often a queued call checks that its client is still there
JOB_WATCH_SECONDS = 0.5  # WatchJob looks at the job at least this often (and at once when it changes here)


class VidcapServicer(pb_grpc.VidcapServicer):
    def __init__(self, model_host: ModelHost, media_dir: str | Path | None = None,
                 limits: Limits = DEFAULT_LIMITS, spool_dir: str | Path | None = None,
                 admission: Admission | None = None, library: str | Path | None = None,
                 jobs: JobRunner | None = None, allowed_sources: Sequence[str] = (), card: ModelCard | None = None):
        """library: the database `vidcap index` writes, for Search (default: its default place). jobs: the
        server's job runner (None: the job calls answer UNAVAILABLE). allowed_sources: the live sources callers may
        name (shell patterns; none by default: vidcap/video/live.py)."""
        self.model_host, self.limits, self.library, self.jobs, self.card = model_host, limits, library, jobs, card
        self.source_policy = SourcePolicy(allowed_sources)
        self.media_dir = Path(media_dir).resolve() if media_dir else None
        self.spool_dir = spool_dir or model_host.spool_dir
        self.admission = admission or Admission()

    # ---- images --------------------------------------------------------------------------------------------

    def CaptionImage(self, request: pb.CaptionImageRequest, context: grpc.ServicerContext) -> pb.CaptionImageResponse:
        with _errors_to_status(context):
            self.limits.check_image_bytes(len(request.image))
            beam = analysis_params(beam=request.beam, limits=self.limits).beam
            caption = self.model_host.caption_image(request.image, beam, self.limits.max_image_pixels)
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

    def DescribeModel(self, request: pb.DescribeModelRequest, context: grpc.ServicerContext) -> pb.ModelInfo:
        card = self.card
        if card is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "this server has no model card")
        return pb.ModelInfo(name=card.name, source=card.source, trained_on=card.trained_on,
                            architecture=card.architecture, reported=card.reported,
                            domain_profile=card.domain_profile)

    def DescribeService(self, request: pb.DescribeServiceRequest, context: grpc.ServicerContext
                        ) -> pb.ServiceInfo:
        with _errors_to_status(context):
            counts = library_counts(self.library)
            return pb.ServiceInfo(allowed_sources=self.source_policy.described(), jobs=self.jobs is not None,
                                  library=counts is not None, library_videos=counts[0] if counts else 0,
                                  library_stretches=counts[1] if counts else 0)

    # ---- the library -----------------------------------------------------------------------------------------

    def Search(self, request: pb.SearchRequest, context: grpc.ServicerContext) -> pb.SearchResponse:
        with _errors_to_status(context):
            hits = search_library(self.library, request.query, request.top or DEFAULT_TOP)
            return pb.SearchResponse(hits=[pb.SearchHit(path=h.path, start=h.start, end=h.end, caption=h.caption,
                                                        score=h.score) for h in hits])

    # ---- jobs ----------------------------------------------------------------------------------------------

    def SubmitJob(self, request: pb.SubmitJobRequest, context: grpc.ServicerContext) -> pb.Job:
        with _errors_to_status(context):
            jobs = self._job_runner()
            params = _params(request.params, self.limits)
            if request.WhichOneof("source") == "path":
                return job_to_proto(jobs.submit_path(self._media_path(request.path), params, request.filename or None,
                                                     request.add_to_library))
            if not request.video:
                raise InputError("no video: set `video` (bytes) or `path`")
            self.limits.check_upload_bytes(len(request.video))
            with spooled_upload(request.filename, self.spool_dir) as spool:
                spool.write(request.video)
                spool.close()
                return job_to_proto(jobs.submit_upload(request.filename, Path(spool.name), params,
                                                       request.add_to_library))

    def SubmitJobUpload(self, request_iterator: Iterator[pb.VideoChunk], context: grpc.ServicerContext) -> pb.Job:
        with _errors_to_status(context):
            jobs = self._job_runner()
            first = next(request_iterator, None)
            if first is None:
                raise InputError("empty upload")
            params = _params(first.params, self.limits)
            with spooled_upload(first.filename, self.spool_dir) as spool:
                self._receive(itertools.chain([first], request_iterator), spool, context)
                return job_to_proto(jobs.submit_upload(first.filename, Path(spool.name), params,
                                                       first.add_to_library))

    def GetJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.Job:
        with _errors_to_status(context):
            return job_to_proto(self._job_runner().store.get(request.id))

    def ListJobs(self, request: pb.ListJobsRequest, context: grpc.ServicerContext) -> pb.ListJobsResponse:
        with _errors_to_status(context):
            limit = min(request.limit or LIST_LIMIT, LIST_LIMIT)
            jobs = self._job_runner().store.list(request.state or None, limit)
            return pb.ListJobsResponse(jobs=[job_to_proto(j) for j in jobs])

    def CancelJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> pb.Job:
        with _errors_to_status(context):
            return job_to_proto(self._job_runner().cancel(request.id))

    def ExportJob(self, request: pb.ExportJobRequest, context: grpc.ServicerContext) -> pb.ExportJobResponse:
        with _errors_to_status(context):
            store = self._job_runner().store
            job = store.get(request.id)
            trained_on = self.card.trained_on if self.card else "its training images"
            text, kind = export(job_analysis(store, job, self.model_host, trained_on), request.format)
            return pb.ExportJobResponse(text=text, filename=Path(job.name).stem + kind.suffix,
                                        media_type=kind.media_type)

    def WatchJob(self, request: pb.JobRequest, context: grpc.ServicerContext) -> Iterator[pb.JobEvent]:
        with _errors_to_status(context):
            runner = self._job_runner()
            job = runner.store.get(request.id)
            # A budget of their own: idle watchers never starve other calls.
            with self.admission.watchers.enter(client_address(context.peer())):
                yield from self._watch(runner, job, context)

    def _watch(self, runner: JobRunner, job, context: grpc.ServicerContext) -> Iterator[pb.JobEvent]:
        session = self._session(job.params)
        shown = None
        while context.is_active():
            job = runner.store.get(job.id)  # the state first: once ended, every frame is stored
            if (job.state, job.frames, job.expected) != shown:
                shown = (job.state, job.frames, job.expected)
                yield pb.JobEvent(job=job_to_proto(job))
            for frame in runner.store.frames(job.id, after=session.frames[-1].index if session.frames else -1):
                yield pb.JobEvent(frame=frame_to_proto(frame))
                for moment in session.add(frame):
                    yield pb.JobEvent(moment=moment_to_proto(moment))
            if job.ended:
                if job.state == "done":
                    for moment in session.finish():
                        yield pb.JobEvent(moment=moment_to_proto(moment))
                yield pb.JobEvent(summary=_summary(session, job.duration or 0.0))
                return
            runner.wait_for_change(JOB_WATCH_SECONDS)

    def _job_runner(self) -> JobRunner:
        if self.jobs is None:
            raise UnavailableError("this server runs no jobs (vidcap serve does)")
        return self.jobs

    # ---- videos --------------------------------------------------------------------------------------------

    def AnalyzeVideo(self, request: pb.AnalyzeVideoRequest, context: grpc.ServicerContext
                     ) -> Iterator[pb.AnalyzeVideoResponse]:
        with _errors_to_status(context):
            params = _params(request.params, self.limits)
            if request.WhichOneof("source") == "live_source":
                self.source_policy.check(request.live_source)
                with self.admission.enter() as ticket:
                    if (yield from _queued(ticket, context)):
                        yield from self._analyze_live(request.live_source, params, context)
                return
            if request.WhichOneof("source") == "path":
                path = self._media_path(request.path)
                with self.admission.enter() as ticket:
                    if (yield from _queued(ticket, context)):
                        yield from self._analyze(path, params, context)
                return
            if not request.video:
                raise InputError("no video: set `video` (bytes) or `path`")
            self.limits.check_upload_bytes(len(request.video))
            self.limits.check_message_bytes(len(request.video), "the video")
            with self.admission.enter() as ticket:
                if not (yield from _queued(ticket, context)):
                    return
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
            params = _params(first.params, self.limits)
            # The upload first (one of the upload places), then a place in the queue: a slow uploader holds no
            # analysis slot.
            with spooled_upload(first.filename, self.spool_dir) as spool:
                self._receive(itertools.chain([first], request_iterator), spool, context)
                with self.admission.enter() as ticket:
                    if not (yield from _queued(ticket, context)):
                        return
                    yield from self._analyze(Path(spool.name), params, context)

    def _analyze(self, path: Path, params: AnalysisParams, context: grpc.ServicerContext
                 ) -> Iterator[pb.AnalyzeVideoResponse]:
        info: list[pb.VideoInfo] = []

        def started(duration: float, expected: int) -> None:
            self.limits.check_video(duration, expected)
            info.append(pb.VideoInfo(duration=duration, expected_frames=expected))

        results = self.model_host.analyze(path, params, on_start=started)
        session = self._session(params)  # each moment goes out as soon as it is decided
        completed = False
        metrics.VIDEOS_IN_FLIGHT.labels("grpc").inc()
        try:
            for result in results:
                if not session.frames:
                    yield pb.AnalyzeVideoResponse(started=info[0])
                if not context.is_active():
                    return
                metrics.FRAMES.labels("grpc").inc()
                yield pb.AnalyzeVideoResponse(frame=frame_to_proto(result))
                for moment in session.add(result):
                    yield pb.AnalyzeVideoResponse(moment=moment_to_proto(moment))
            for moment in session.finish():
                yield pb.AnalyzeVideoResponse(moment=moment_to_proto(moment))
            completed = True
        finally:
            # Reached on cancellation too: gRPC closes this generator (GeneratorExit at the yield) or we return
            # above. Closing `results` stops the frame reader thread and the captioning (in the TorchServe worker too).
            results.close()
            metrics.VIDEOS_IN_FLIGHT.labels("grpc").dec()
            if not completed:
                log.info("client cancelled or failed after %d frames; stopped the analysis of %s",
                         len(session.frames), path.name)
        metrics.MOMENTS.labels("grpc").inc(len(session.moments))
        yield pb.AnalyzeVideoResponse(summary=_summary(session, info[0].duration if info else 0.0))

    def _analyze_live(self, source: str, params: AnalysisParams, context: grpc.ServicerContext
                      ) -> Iterator[pb.AnalyzeVideoResponse]:
        """As _analyze, for a source that may be silent for a while: the results are read in a thread of their own,
        so notices (reconnecting) and a cancelled call get through while no frame comes."""
        events: queue.Queue = queue.Queue()
        stop = threading.Event()
        results = self.model_host.analyze_live(source, params, on_notice=lambda m: events.put(("notice", m)),
                                               stop=stop, policy=self.source_policy)

        def read() -> None:
            try:
                for result in results:
                    events.put(("frame", result))
                events.put(("end", None))
            except BaseException as exc:  # re-raised in the call's thread
                events.put(("error", exc))
            finally:
                results.close()

        threading.Thread(target=read, daemon=True, name="vidcap-live").start()
        session = self._session(params)
        metrics.VIDEOS_IN_FLIGHT.labels("grpc").inc()
        try:
            yield pb.AnalyzeVideoResponse(started=pb.VideoInfo())
            while True:
                try:
                    kind, item = events.get(timeout=QUEUE_REPORT_SECONDS)
                except queue.Empty:
                    if not context.is_active():
                        return
                    continue
                if kind == "end":
                    break
                if kind == "error":
                    raise item
                if kind == "notice":
                    yield pb.AnalyzeVideoResponse(notice=pb.Notice(message=item))
                    continue
                metrics.FRAMES.labels("grpc").inc()
                yield pb.AnalyzeVideoResponse(frame=frame_to_proto(item))
                for moment in session.add(item):
                    yield pb.AnalyzeVideoResponse(moment=moment_to_proto(moment))
            for moment in session.finish():
                yield pb.AnalyzeVideoResponse(moment=moment_to_proto(moment))
        finally:
            stop.set()  # the live source ends within its stall timeout, and with it the reading thread
            metrics.VIDEOS_IN_FLIGHT.labels("grpc").dec()
        metrics.MOMENTS.labels("grpc").inc(len(session.moments))
        yield pb.AnalyzeVideoResponse(summary=_summary(session, session.frames[-1].t if session.frames else 0.0))

    def _session(self, params: AnalysisParams) -> AnalysisSession:
        return AnalysisSession.for_host(params, self.model_host)

    def _receive(self, chunks: Iterator[pb.VideoChunk], spool, context: grpc.ServicerContext) -> None:
        """An upload in chunks into its spool file, each chunk and the total checked against the limits, holding
        one of the upload places; a client below the minimum upload rate is cut off."""
        with self.admission.uploads.enter(client_address(context.peer())), _RateGuard(context, self.limits) as guard:
            for chunk in chunks:
                self.limits.check_message_bytes(len(chunk.data), "an upload chunk")
                guard.received += len(chunk.data)
                guard.check()
                self.limits.check_upload_bytes(guard.received)
                spool.write(chunk.data)
        spool.close()

    def _media_path(self, relative: str) -> Path:
        return media_path(self.media_dir, relative, PermissionDeniedError, "send the video as bytes")


class _RateGuard:
    """An upload's minimum average rate (Limits.min_upload_bytes_per_second after upload_grace_seconds). Checked at
    each chunk, and by a timer for a client that sends nothing at all: that one's call is cancelled (a blocked read
    of the request stream can only be ended so)."""

    def __init__(self, context: grpc.ServicerContext, limits: Limits):
        self.context, self.limits = context, limits
        self.received, self.began = 0, time.monotonic()
        self.too_slow = False
        self._done = threading.Event()

    def _behind(self) -> bool:
        elapsed = time.monotonic() - self.began - self.limits.upload_grace_seconds
        return elapsed > 0 and self.received < elapsed * self.limits.min_upload_bytes_per_second

    def check(self) -> None:
        if self._behind() or self.too_slow:
            raise UploadTooSlowError(f"upload slower than {self.limits.min_upload_bytes_per_second / 1024:g} KiB/s "
                                     f"on average: cut off")

    def _watch(self) -> None:
        while not self._done.wait(1.0):
            if self._behind():
                self.too_slow = True
                log.info("cancelled an upload slower than %g bytes/s (%d bytes in %.0f s)",
                         self.limits.min_upload_bytes_per_second, self.received, time.monotonic() - self.began)
                self.context.cancel()
                return

    def __enter__(self) -> "_RateGuard":
        threading.Thread(target=self._watch, daemon=True, name="vidcap-upload-rate").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()


def _queued(ticket, context: grpc.ServicerContext) -> Generator[pb.AnalyzeVideoResponse, None, bool]:
    """Queued messages while the call waits for a slot (each time its place changes). Returns True once
    admitted, False when the client left meanwhile (its place is given up when the caller's `with` releases
    the ticket)."""
    reported = None
    while (position := ticket.wait(QUEUE_REPORT_SECONDS)) is not None:
        if not context.is_active():
            return False
        if position != reported:
            reported = position
            yield pb.AnalyzeVideoResponse(queued=pb.Queued(position=position))
    return True


def _params(message: pb.AnalysisParams, limits: Limits) -> AnalysisParams:
    return analysis_params(message.every_n_seconds, message.window, message.metric, message.scorer, message.beam,
                           limits, no_skip=message.no_skip, cuts=message.cuts)


class _errors_to_status:
    """Map vidcap's errors to gRPC status codes (vidcap.errors.STATUSES) with their one-line messages; log
    anything unexpected."""

    def __init__(self, context: grpc.ServicerContext):
        self.context = context

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, GeneratorExit) or isinstance(exc, grpc.RpcError):
            return False  # grpc's own abort exception: let it through
        name = status_of(exc)[0]
        metrics.ERRORS.labels("grpc", name.lower()).inc()
        if name == "INTERNAL":
            log.error("internal error", exc_info=exc)
        else:  # the caller's mistake or a refusal: one line for the operator, no traceback
            log.info("%s from %s: %s", name, self.context.peer(), public_message(exc))
        self.context.abort(grpc.StatusCode[name], public_message(exc))
        return False


# ---- the server ------------------------------------------------------------------------------------------


def build_server(servicer: VidcapServicer, address: str, interceptors: Sequence[grpc.ServerInterceptor] = (),
                 credentials: grpc.ServerCredentials | None = None
                 ) -> tuple[grpc.Server, health.HealthServicer, int]:
    """A started-ready server with the service, health checking and reflection. Returns the bound port."""
    # gRPC refuses a larger message itself (RESOURCE_EXHAUSTED) before it is read whole.
    limit = max(servicer.limits.max_message_bytes, servicer.limits.max_image_bytes) + MIB
    # A thread for every call that may last (running and queued analyses, uploads, job watchers: each kind bounded
    # by its own budget, refused beyond it), and spare ones, so images, job calls and health checks always find
    # one. No overall cap on calls: gRPC's would refuse health checks too once long calls fill it.
    admission = servicer.admission
    workers = admission.slots + admission.queue_size + admission.uploads.size + admission.watchers.size + 16
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers), interceptors=list(interceptors),
                         options=[("grpc.max_receive_message_length", min(limit, 2**31 - 1)),
                                  ("grpc.max_send_message_length", 64 * MIB)])
    pb_grpc.add_VidcapServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection([SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind the gRPC server to {address}")
    return server, health_servicer, port


def _summary(session: AnalysisSession, duration: float) -> pb.Summary:
    frames = session.frames
    return pb.Summary(
        duration=duration, frames=len(frames), metric=session.metric, scorer=session.params.scorer,
        moments=[moment_to_proto(m) for m in session.moments], reused_frames=sum(f.reused for f in frames),
        **domain_to_proto_fields(session.domain))
