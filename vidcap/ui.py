"""The vidcap web UI (Gradio): a client of the gRPC service, the old project's Shiny app done better.

    vidcap ui --grpc 127.0.0.1:50051            # against a running `vidcap serve`; http://127.0.0.1:7860
    (`vidcap serve` starts it with the rest of the stack)

Video tab: upload, parameters, one timeline that grows while the frames stream in (vidcap/ui_timeline.py: the
dissimilarity plot with a marker per moment, a card per moment, the table of captions, all linked to the player),
JSON/CSV/PNG, subtitle and chapter downloads, and *Add to library* (a job that keeps the video on the service).
Image tab: the caption and, for every word, its attention map laid over the image.
Live tab: what the service opens, up front; a live source (a stream or a camera the service allows): the plot,
the captions and the moments grow as they come, until Stop.
Library tab: how many videos the library holds (and how to fill it); search them (gRPC Search); hits with
pictures, a click plays the video from the hit.

Every failure reaches the page as a sentence under the field it concerns (or in the status line when it is the
service's own trouble), never as a traceback: the gRPC status of a bad upload carries the service's own message,
in the words of the page's fields, and a service that is down is named with its address.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no phoning home, no DNS look-ups
from vidcap.paths import default_work_dir, docs_dir  # noqa: E402

# Gradio keeps uploads in its temporary folder (/tmp/gradio, RAM-backed on many systems): keep them on disk.
os.environ.setdefault("GRADIO_TEMP_DIR", str(default_work_dir() / "ui-uploads"))

import atexit  # noqa: E402
import contextlib  # noqa: E402
import html  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from starlette.responses import FileResponse, HTMLResponse, JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from vidcap.attention_maps import attention_overlay  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from vidcap.domain import DomainSummary, summarize  # noqa: E402
from vidcap.images import load_image  # noqa: E402
from vidcap.limits import DEFAULT_LIMITS  # noqa: E402
from vidcap.serving.auth import LOOPBACK_HOSTS, RequestGuard  # noqa: E402
from vidcap import report  # noqa: E402
from vidcap.video import subtitles  # noqa: E402
from vidcap.fileio import VIDEO_SUFFIXES  # noqa: E402
from vidcap.video.novelty import METRICS, SCORERS, Moment  # noqa: E402
from vidcap.video.pipeline import Analysis, FrameResult  # noqa: E402
from vidcap.library.search import MAX_TOP  # noqa: E402
from vidcap.video.pyav_source import cut_clip, frames_at  # noqa: E402
from vidcap.wire import frame_from_proto, moment_from_proto  # noqa: E402
from vidcap.ui_timeline import TIMELINE_CSS, TIMELINE_SCRIPT, caption_table, moment_cards, timeline_svg  # noqa: E402

log = logging.getLogger("vidcap.ui")

SCORER_DEFAULT_METRIC = "scorer default"
LIVE_UPDATE_SECONDS = 0.4  # how often the page is refreshed while frames stream in
LIVE_TABLE_ROWS = 500  # rows sent on each live refresh; the full table comes with the last one
THUMBNAIL_SIDE = 320
CLIP_SECONDS = 120.0  # what a click on a search hit plays, from the hit's start
OVERLAY_SIDE = 384
UI_EXPORTS = {"vtt": ".captions.vtt", "srt": ".captions.srt", "chapters-vtt": ".chapters.vtt",
              "chapters": ".chapters.ffmetadata.txt", "chapter-list": ".chapters.txt"}  # file names the page offers
PICTURE_SECONDS = 86400  # how long the pictures of moments and hits are kept


@dataclass(kw_only=True)
class UIConfig:
    grpc_address: str = "127.0.0.1:50051"
    host: str = "127.0.0.1"
    port: int = 7860
    max_upload_mb: float = 500.0  # refused in the browser with a message, and by the server
    concurrency: int = 4  # analyses (and, separately, image captions) run at once; more users wait in the queue
    queue_size: int = 64  # users waiting beyond this are turned away with a message
    work_dir: str | None = None  # where results for download are written (default: a temporary folder)
    api_key: str | None = None  # the gRPC service's key; also the password of the login page (user "vidcap")
    tls_cert: Path | None = None  # serve the page over HTTPS; the gRPC service uses the same certificate
    tls_key: Path | None = None

    grpc_tls: bool = True  # with tls_cert: call the gRPC service over TLS too, trusting that certificate
    # The Host names the page is served under (vidcap.serving.auth.allowed_hosts; None: any): other names and
    # cross-site requests are refused, so that another web page cannot drive the UI.
    hosts: frozenset[str] | None = LOOPBACK_HOSTS

    def client(self, timeout: float | None = None) -> VidcapClient:
        tls_ca = self.tls_cert.read_bytes() if self.tls_cert and self.grpc_tls else None
        return VidcapClient(self.grpc_address, timeout=timeout, api_key=self.api_key, tls_ca=tls_ca)


# ---- talking to the service --------------------------------------------------------------------------------


FIELD_LABELS = {"every_n_seconds": "Every N seconds", "window": "Window", "metric": "Metric", "scorer": "Scorer",
                "beam": "Beam size"}  # the service's parameter names -> the labels of the fields that set them


def in_field_words(message: str) -> str:
    """A service message about a parameter, in the words of the field the user sees."""
    for name, label in FIELD_LABELS.items():
        message = re.sub(rf"\b{name}\b", label, message)
    return message[:1].upper() + message[1:]


def _service_problem(exc: grpc.RpcError, address: str) -> tuple[str, str]:
    """(where the page says it, what it says) for a failed call: a problem with a parameter goes under its field
    ("every_error"), one with the file under the upload ("video_error"), the service's own trouble in the status."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and "TorchServe" in details:
        return "status", f"The vidcap service's model host failed ({details}). Try again in a moment."
    if code == grpc.StatusCode.UNAVAILABLE:
        return "status", f"The vidcap service at {address} is not reachable. Is `vidcap serve` running? ({details})"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in details:
        return "status", in_field_words(details)
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED):
        log.info("refused: %s", details)
        return ("every_error" if "every_n_seconds" in details else "video_error"), in_field_words(details)
    log.error("the vidcap service failed: %s %s", code.name, details)
    return "status", f"The service failed: {code.name}: {details}"


def _every_problem(every: float | None) -> str:
    """What is wrong with the sampling step as typed (the service checks its own limit again)."""
    low = DEFAULT_LIMITS.min_every_n_seconds
    if every is None or not math.isfinite(every):
        return f"Every N seconds needs a number: how many seconds between the frames captioned (at least {low})."
    if every < low:
        return f"Every N seconds must be at least {low} (one frame per {low} s); it is {every:g}."
    return ""


VIDEO_OUTPUTS = ("timeline", "cards", "table", "status", "downloads", "video_error", "every_error", "add",
                 "add_status")


def _video_outputs(**values) -> tuple:
    """The Video tab's outputs in their order; what is not named stays as it is."""
    unknown = set(values) - set(VIDEO_OUTPUTS)
    assert not unknown, unknown
    return tuple(values.get(name, gr.skip()) for name in VIDEO_OUTPUTS)


# An error under a field goes when the user changes the field: in the page itself, so that it cannot land after the
# answer to a click that followed the change (a round trip to the server could).
CLEAR = "() => ''"
EARLY_FRAMES = 5  # frames with a domain verdict before the warning may show


def _domain_warning(run: "_Run", trained_on: str) -> str:
    """The out-of-domain warning, as soon as the first frames say so (the Summary's verdict at the end)."""
    domain = run.domain
    if domain is None:
        known = [f.in_domain for f in run.frames if f.in_domain is not None]
        if len(known) < EARLY_FRAMES:
            return ""
        domain = summarize(known, trained_on)
    text = domain.warning() if domain is not None else ""
    if not text:
        return ""
    text = html.escape(text).replace("(docs/training.md)", "(<a href='docs/training.md' target='_blank'>how to "
                                                            "train or import one</a>)")
    return f"<p id='domain-warning' class='vc-warning'><b>Warning:</b> {text}</p>"


def _videos(n: int) -> str:
    return f"{n} video{'s' if n != 1 else ''}"


def _error(message: str, element_id: str = "") -> str:
    """A message the page keeps next to the input it concerns (until that input changes)."""
    ident = f" id='{element_id}'" if element_id else ""
    return f"<p class='vc-field-error'{ident}>{html.escape(message)}</p>"


def image_input(**kwargs) -> gr.Image:
    """An image upload handed on as the file the browser sent: the service reads it (and says, in the words every
    door uses, when it is not an image), instead of Gradio's own reader failing with its exception and the path of
    its spool folder. (Set on the instance: a subclass of a Gradio component makes Gradio write a .pyi file next to
    this module, into site-packages when installed.)"""
    image = gr.Image(type="filepath", **kwargs)
    image.preprocess = lambda payload: None if payload is None else payload.path
    return image


@dataclass
class _Run:
    """What one analysis has received so far."""

    name: str
    params: dict
    duration: float = 0.0
    expected: int = 0
    frames: list[FrameResult] = field(default_factory=list)
    moments: list[Moment] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    queued: int = 0  # the place in the service's queue while every analysis slot is taken
    domain: DomainSummary | None = None  # from the Summary, when the model has a domain profile

    def add(self, response) -> None:
        kind = response.WhichOneof("kind")
        if kind == "started":
            self.duration, self.expected = response.started.duration, response.started.expected_frames
        elif kind == "queued":
            self.queued = response.queued.position
        elif kind == "frame":
            self.queued = 0
            self.frames.append(frame_from_proto(response.frame))
        elif kind == "moment":  # decided while the frames stream; the Summary lists them all again
            self.moments.append(moment_from_proto(response.moment))
        else:
            s = response.summary
            self.params.update(metric=s.metric, scorer=s.scorer)
            self.moments = [moment_from_proto(m) for m in s.moments]
            if s.HasField("out_of_domain_share"):
                self.domain = DomainSummary(s.out_of_domain_share, s.trained_on)

    def analysis(self) -> Analysis:
        return Analysis(self.name, self.params, self.duration, self.frames, self.moments,
                        time.perf_counter() - self.started, self.domain)

    def plot_data(self) -> pd.DataFrame:
        return pd.DataFrame({"t": [f.t for f in self.frames], "score": [f.score for f in self.frames]})

    def table(self, rows: int | None = None) -> pd.DataFrame:
        moments = {m.index: m.reason or "yes" for m in self.moments}
        frames = self.frames[-rows:] if rows else self.frames
        # Strings, so the table shows exactly these digits (it rounds numbers to its own taste).
        return pd.DataFrame({"t (s)": [f"{f.t:.2f}" for f in frames], "score": [f"{f.score:.4f}" for f in frames],
                             "caption": [f.caption for f in frames],
                             "moment": [moments.get(f.index, "") for f in frames],
                             "still": ["reused" if f.reused else "" for f in frames]})

    def status(self, done: bool = False) -> str:
        n, total = len(self.frames), max(self.expected, len(self.frames), 1)
        seconds = time.perf_counter() - self.started
        if done:
            reused = sum(f.reused for f in self.frames)
            still = f" ({reused} still, caption reused)" if reused else ""
            return (f"<p><b>Done:</b> {n} frames{still} over {self.duration:.1f} s of video in {seconds:.1f} s; "
                    f"{len(self.moments)} moments ({self.params['scorer']}, {self.params['metric']}).</p>")
        if self.queued:
            return (f"<p>Waiting for the service: every analysis slot is taken; place {self.queued} in its queue, "
                    f"{seconds:.0f} s</p>")
        return (f"<p><progress value='{n}' max='{total}'></progress> frame {n} of {total} "
                f"({100 * n / total:.0f}%), {seconds:.0f} s</p>")


# ---- the app -------------------------------------------------------------------------------------------------


class VidcapUI:
    def __init__(self, config: UIConfig):
        self.config = config
        if config.work_dir:
            self.work_dir = Path(config.work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.work_dir = Path(tempfile.mkdtemp(prefix="vidcap-ui-"))
            atexit.register(shutil.rmtree, self.work_dir, ignore_errors=True)
        # The moments' pictures: the page loads them straight from here (launch's allowed_paths), by random names.
        self.picture_dir = self.work_dir / "pictures"
        self.picture_dir.mkdir(exist_ok=True)
        self._hit_pictures: dict[tuple[str, float], str] = {}
        self._pruned = time.time()
        self._model_trained_on: str | None = None
        self.loads: list[tuple] = []  # (function, output) to run when a page opens

    # -- video --

    def analyze(self, video: str | None, every: float | None, window: float, metric: str, scorer: str,
                skip_still: bool = True) -> Iterator[tuple]:
        """Stream one analysis into the Video tab: the timeline, the moment cards and the table grow as results
        come; a mistake in an input is said under that input (and stays there until the input changes)."""
        video_problem = "" if video else "Upload a video first (mp4, mkv, webm, mov, avi or m4v)."
        every_problem = _every_problem(every)
        if video_problem or every_problem:  # both said at once
            yield _video_outputs(video_error=_error(video_problem) if video_problem else "",
                                 every_error=_error(every_problem) if every_problem else "", downloads=None)
            return
        metric = "" if metric == SCORER_DEFAULT_METRIC else metric
        params = {"every_n_seconds": float(every), "window": int(window), "metric": metric, "scorer": scorer,
                  "no_skip": not skip_still}
        run = _Run(Path(video).name, dict(params))
        trained_on = self._trained_on()
        thumbnails: dict[float, str] = {}  # a moment's time -> its picture's URL: each written once
        yield _video_outputs(**self._views(run, thumbnails, trained_on), downloads=None, video_error="",
                             every_error="", add=gr.Button(interactive=False), add_status="")
        last_update = 0.0
        try:
            with self.config.client() as client:
                for response in client.analyze_file(video, **params):
                    run.add(response)
                    kind = response.WhichOneof("kind")
                    if kind == "summary":
                        break
                    if kind == "moment":
                        self._thumbnails(video, run.moments, thumbnails)
                    if kind in ("moment", "queued") or time.perf_counter() - last_update >= LIVE_UPDATE_SECONDS:
                        last_update = time.perf_counter()
                        yield _video_outputs(**self._views(run, thumbnails, trained_on, LIVE_TABLE_ROWS))
        except grpc.RpcError as exc:
            field, message = _service_problem(exc, self.config.grpc_address)
            yield _video_outputs(**{field: _error(message, "video-failure" if field == "status" else "")})
            return
        self._thumbnails(video, run.moments, thumbnails)  # the moments the end of the video decided
        yield _video_outputs(**self._views(run, thumbnails, trained_on, done=True),
                             downloads=self._downloads(run.analysis()), add=gr.Button(interactive=True))

    def _views(self, run: "_Run", thumbnails: dict[float, str], trained_on: str, rows: int | None = None,
               done: bool = False) -> dict:
        warning = _domain_warning(run, trained_on)
        return {"timeline": timeline_svg(run.frames, run.moments, run.duration),
                "cards": moment_cards(run.moments, thumbnails, waiting=not done),
                "table": caption_table(run.frames, run.moments, None if done else rows),
                "status": run.status(done) + warning}

    def _trained_on(self) -> str:
        """What the service's model was trained on (its card, asked once), for the warning while the frames come."""
        if self._model_trained_on is None:
            try:
                with self.config.client(timeout=10) as client:
                    self._model_trained_on = client.describe_model().trained_on
            except grpc.RpcError:
                return "its training images"  # asked again next time
        return self._model_trained_on

    def _thumbnails(self, video: str, moments: list[Moment], urls: dict[float, str]) -> None:
        """A picture for each moment that has none yet, written once under a name of its own (a file the browser
        may be reading is never written again)."""
        missing = [m for m in moments if round(m.t, 4) not in urls]
        if not missing:
            return
        try:
            frames = frames_at(video, [m.t for m in missing], max_side=THUMBNAIL_SIDE)
        except Exception as exc:  # the service read the file, so this is unexpected: keep the results anyway
            log.warning("no thumbnails for %s: %s", video, exc)
            return
        for frame, moment in zip(frames, missing):
            urls[round(moment.t, 4)] = self._picture_url(frame.pixels)

    def _picture_url(self, pixels: np.ndarray) -> str:
        from PIL import Image

        self._prune_pictures()
        path = self.picture_dir / f"{uuid.uuid4().hex}.jpg"
        partial = path.with_suffix(".part")
        Image.fromarray(pixels).save(partial, format="JPEG", quality=85)
        partial.replace(path)  # complete before any page can name it
        return f"gradio_api/file={path}"

    def _prune_pictures(self) -> None:
        """Pictures older than a day go (at most once an hour), as Gradio's own cache does with uploads."""
        now = time.time()
        if now - self._pruned < 3600:
            return
        self._pruned = now
        for picture in self.picture_dir.glob("*.jpg"):
            with contextlib.suppress(OSError):
                if now - picture.stat().st_mtime > PICTURE_SECONDS:
                    picture.unlink()
        self._hit_pictures = {k: v for k, v in self._hit_pictures.items() if Path(v).exists()}

    def add_to_library(self, video: str | None, every: float | None, window: float, metric: str, scorer: str,
                       skip_still: bool = True) -> Iterator[str]:
        """The analysed video as a job that adds it to the service's library (it survives a restart of the
        service), with its progress."""
        if not video:
            yield _error("Upload and analyse a video first.")
            return
        metric = "" if metric == SCORER_DEFAULT_METRIC else metric
        params = {"every_n_seconds": float(every or 1.0), "window": int(window), "metric": metric, "scorer": scorer,
                  "no_skip": not skip_still}
        name = html.escape(Path(video).name)
        try:
            with self.config.client() as client:
                job = client.submit_job_file(video, add_to_library=True, **params)
                yield f"<p>Adding {name} to the library: job {job.id} queued.</p>"
                for event in client.watch_job(job.id):
                    if event.WhichOneof("kind") != "job":
                        continue
                    job = event.job
                    if job.state == "running":
                        total = max(job.expected_frames, job.frames, 1)
                        yield (f"<p><progress value='{job.frames}' max='{total}'></progress> Adding {name} to the "
                               f"library: frame {job.frames} of {total} (job {job.id}).</p>")
                    elif job.state in ("done", "failed", "cancelled"):
                        break
                counts = client.describe_service()
        except grpc.RpcError as exc:
            yield _error(_service_problem(exc, self.config.grpc_address)[1])
            return
        if job.state != "done":
            why = f": {job.error}" if job.error else ""
            yield _error(f"Not added: the job {job.state}{why}.")
            return
        yield (f"<p id='added'><b>Added:</b> {name} is in the library, which now holds "
               f"{_videos(counts.library_videos)}. Find it in the Library tab.</p>")

    def _downloads(self, analysis: Analysis) -> list[str]:
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
        stem = Path(analysis.video).stem or "video"
        files = {f"{stem}.vidcap.json": report.to_json(analysis), f"{stem}.vidcap.csv": report.to_csv(analysis),
                 f"{stem}.vidcap.png": report.to_png(analysis),
                 **{f"{stem}{name}": subtitles.export(analysis, kind)[0] for kind, name in UI_EXPORTS.items()}}
        for name, data in files.items():
            (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        return [str(folder / name) for name in files]

    @staticmethod
    def show_captions(downloads: list[str] | None) -> gr.Video:
        """The analysed video's caption track, on the player (its CC button shows it)."""
        track = next((d for d in downloads or [] if str(d).endswith(".captions.vtt")), None)
        return gr.Video(subtitles=track) if track else gr.skip()

    # -- image --

    def caption_image(self, image: str | None, beam: float) -> tuple:
        """-> (caption, attention maps, the error under the upload)."""
        if not image:
            return "", [], _error("Upload an image first (JPEG, PNG, WebP, BMP, TIFF or GIF).")
        data = Path(image).read_bytes()
        try:
            with self.config.client(timeout=120) as client:
                response = client.caption_image(data, beam=int(beam), attention=True)
        except grpc.RpcError as exc:
            return "", [], _error(_service_problem(exc, self.config.grpc_address)[1])
        pixels = _fit(load_image(data), OVERLAY_SIDE)
        size = response.attention_size
        overlays = [(attention_overlay(pixels, np.asarray(a.values, dtype=np.float32).reshape(size, size)), word)
                    for word, a in zip(response.words, response.attention)]
        return response.caption, overlays, ""

    def model_card(self) -> str:
        """The service's model, as its card says (gRPC DescribeModel): name, source, training data, figures."""
        try:
            with self.config.client(timeout=10) as client:
                info = client.describe_model()
        except grpc.RpcError as exc:
            return f"**Model:** unknown (the service did not say: {exc.details()})"
        figures = ", ".join(f"{k} {v}" for k, v in sorted(info.reported.items())) or "none reported"
        checked = ("frames unlike what it knows are flagged" if info.domain_profile else
                   "no domain profile: frames are not checked against what it knows (`vidcap calibrate`)")
        return (f"**Model:** {html.escape(info.name)} · {html.escape(info.architecture)} · trained on "
                f"{html.escape(info.trained_on)} · from {html.escape(info.source)} · {html.escape(figures)} · "
                f"{checked}")

    # -- layout --

    def build(self) -> gr.Blocks:
        # delete_cache: uploads and results older than a day are removed hourly, and all of them at shutdown.
        with gr.Blocks(title="vidcap", analytics_enabled=False, delete_cache=(3600, 86400)) as app:
            gr.Markdown("# vidcap\nCaption the frames of a video with *Show, Attend and Tell* and find the moments "
                        "unlike what came before.")
            card = gr.Markdown(elem_id="model-card")
            app.load(self.model_card, None, card)
            with gr.Tab("Video", id="video-tab"):
                self._video_tab()
            with gr.Tab("Image", id="image-tab"):
                self._image_tab()
            with gr.Tab("Live", id="live-tab"):
                self._live_tab()
            with gr.Tab("Library", id="library-tab") as library:
                self._library_tab()
            library.select(self.library_intro, None, self.library_intro_output)  # what it holds now
            for function, output in self.loads:
                app.load(function, None, output)
        return app

    def _video_tab(self) -> None:
        with gr.Row():
            with gr.Column(scale=3):
                video = gr.Video(label=f"Video ({', '.join(s[1:] for s in VIDEO_SUFFIXES)})", sources=["upload"],
                                 elem_id="video-input", height=320)
                video_error = gr.HTML(elem_id="video-error", elem_classes="vc-field-error", padding=False)
            with gr.Column(scale=2):
                # No `minimum` here: Gradio would refuse a smaller value in its own words; _every_problem says it.
                every = gr.Number(1.0, label="Every N seconds", elem_id="every")
                every_error = gr.HTML(elem_id="every-error", elem_classes="vc-field-error", padding=False)
                window = gr.Slider(1, 30, value=5, step=1, label="Window (previous frames compared)",
                                   elem_id="window")
                scorer = gr.Radio(list(SCORERS), value="robust", label="Scorer", elem_id="scorer",
                                  info="robust: ignores flicker and shake; seed: the old project's metric")
                metric = gr.Radio([SCORER_DEFAULT_METRIC, *METRICS], value=SCORER_DEFAULT_METRIC, label="Metric",
                                  elem_id="metric")
                skip_still = gr.Checkbox(True, label="Reuse the caption of still frames", elem_id="skip-still",
                                         info="a frame that shows nothing new (beyond noise) is not captioned again")
                run = gr.Button("Analyze", variant="primary", elem_id="analyze")
        status = gr.HTML(elem_id="video-status")
        with gr.Row():
            with gr.Column(scale=3):
                timeline = gr.HTML(timeline_svg([], [], 0.0), elem_id="timeline", label="Dissimilarity over time",
                                   show_label=True, container=True)
                table = gr.HTML(caption_table([], []), elem_id="captions", label="Captions", show_label=True,
                                container=True)
            with gr.Column(scale=2):
                cards = gr.HTML(moment_cards([], {}, waiting=True), elem_id="moment-cards", show_label=True,
                                label="Moments (click one to play the video from there)", container=True)
        downloads = gr.File(label="Download (JSON, CSV, plot, subtitles, chapters)", file_count="multiple",
                            interactive=False, elem_id="downloads")
        with gr.Row():
            add = gr.Button("Add to library", interactive=False, elem_id="add-to-library", scale=1)
            add_status = gr.HTML("<p>After an analysis, <i>Add to library</i> keeps the video on the service and "
                                 "makes it searchable in the Library tab.</p>", elem_id="add-status", padding=False)
        inputs = [video, every, window, metric, scorer, skip_still]
        outputs = {"timeline": timeline, "cards": cards, "table": table, "status": status, "downloads": downloads,
                   "video_error": video_error, "every_error": every_error, "add": add, "add_status": add_status}
        run.click(self.analyze, inputs, [outputs[name] for name in VIDEO_OUTPUTS], show_progress="hidden",
                  concurrency_id="analyze").then(self.show_captions, downloads, video)
        add.click(self.add_to_library, inputs, add_status, show_progress="hidden", concurrency_id="analyze")
        # An error stays under its field until that field changes.
        for changed in (video.upload, video.clear):
            changed(None, None, video_error, js=CLEAR).then(lambda: gr.Button(interactive=False), None, add,
                                                            show_progress="hidden")
        every.input(None, None, every_error, js=CLEAR)

    def _live_tab(self) -> None:
        intro = gr.HTML(elem_id="live-intro")
        with gr.Row():
            with gr.Column(scale=4):
                source = gr.Textbox(label="Live source: an rtsp://, udp:// or http(s):// stream (MPEG-TS, HLS), or a "
                                          "capture device (/dev/videoN)", placeholder="rtsp://camera.example/stream",
                                    elem_id="live-source")
                source_error = gr.HTML(elem_id="live-source-error", elem_classes="vc-field-error", padding=False)
            with gr.Column(scale=1):
                every = gr.Number(1.0, label="Every N seconds", elem_id="live-every")
                every_error = gr.HTML(elem_id="live-every-error", elem_classes="vc-field-error", padding=False)
        with gr.Row():
            start = gr.Button("Watch", variant="primary", elem_id="live-start")
            stop = gr.Button("Stop", elem_id="live-stop")
        status = gr.HTML(elem_id="live-status")
        plot = gr.LinePlot(x="t", y="score", x_title="time (s)", y_title="dissimilarity", height=260,
                           label="Dissimilarity over time", elem_id="live-plot")
        moments = gr.Dataframe(label="Moments, as they are decided", headers=["t (s)", "why", "score", "before",
                                                                               "now"],
                               interactive=False, elem_id="live-moments")
        table = gr.Dataframe(label=f"Captions (the last {LIVE_TABLE_ROWS})", max_height=360, interactive=False,
                             headers=["t (s)", "score", "caption", "moment", "still"], elem_id="live-captions")
        self.loads.append((self.live_intro, intro))
        watching = start.click(self.watch, [source, every], [plot, table, moments, status, source_error, every_error],
                               show_progress="minimal", concurrency_id="analyze")
        stop.click(None, cancels=[watching])
        source.change(None, None, source_error, js=CLEAR)  # a textbox changes as it is typed in
        every.input(None, None, every_error, js=CLEAR)

    def live_intro(self) -> str:
        """Up front: which live sources this service opens (its --allow-source patterns), if any."""
        try:
            with self.config.client(timeout=10) as client:
                allowed = list(client.describe_service().allowed_sources)
        except grpc.RpcError as exc:
            return _error(_service_problem(exc, self.config.grpc_address)[1])
        files = "Video files are analysed in the Video tab (upload them there)."
        if not allowed:
            return ("<p id='live-allowed'><b>This service opens no live source.</b> Whoever runs it can allow "
                    "streams or cameras with <code>vidcap serve --allow-source PATTERN</code> (for example "
                    f"<code>rtsp://cameras.example/*</code> or <code>/dev/video0</code>). {files}</p>")
        patterns = "".join(f"<li><code>{html.escape(p)}</code></li>" for p in allowed)
        return (f"<div id='live-allowed'><b>This service opens live sources that match:</b><ul>{patterns}</ul>"
                f"{files}</div>")

    def watch(self, source: str, every: float | None) -> Iterator[tuple]:
        """A live source, through the service: the plot, the captions and the moments grow until it ends or
        Stop (which cancels the call: the service stops reading the source). -> (plot, captions, moments, status,
        the error under the source, the error under the step)."""
        source = (source or "").strip()
        if not source:
            yield (gr.skip(),) * 4 + (_error("Enter a live source first: a stream URL or a capture device."), "")
            return
        problem = _every_problem(every)
        if problem:
            yield (gr.skip(),) * 4 + ("", _error(problem))
            return
        run = _Run(source, {"every_n_seconds": float(every), "scorer": "robust", "metric": ""})
        notice, last_update = "", 0.0
        try:
            with self.config.client() as client:
                call = client.analyze_live(source, every_n_seconds=float(every))
                try:
                    for response in call:
                        kind = response.WhichOneof("kind")
                        if kind == "notice":
                            notice = response.notice.message
                        else:
                            run.add(response)
                            notice = "" if kind == "frame" else notice
                        if kind in ("moment", "notice", "summary") or \
                                time.perf_counter() - last_update >= LIVE_UPDATE_SECONDS:
                            last_update = time.perf_counter()
                            yield (run.plot_data(), run.table(LIVE_TABLE_ROWS), _moment_rows(run.moments),
                                   _live_status(run, notice, ended=kind == "summary"), "", "")
                finally:
                    call.cancel()  # Stop, or the page closed: the service stops reading the source
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED:
                return
            field, message = _service_problem(exc, self.config.grpc_address)
            if field == "status":
                yield (gr.skip(),) * 3 + (_error(message), gr.skip(), gr.skip())
            elif field == "every_error":
                yield (gr.skip(),) * 4 + ("", _error(message))
            else:
                yield (gr.skip(),) * 4 + (_error(message, "live-refused"), "")

    def _library_tab(self) -> None:
        intro = gr.HTML(elem_id="library-intro")
        with gr.Row():
            query = gr.Textbox(label="Search the library: what was seen, in words", scale=4,
                               placeholder="red star on grass", elem_id="search-query")
            top = gr.Number(10, label="Hits", minimum=1, maximum=MAX_TOP, precision=0, scale=1, elem_id="search-top")
            run = gr.Button("Search", variant="primary", scale=1, elem_id="search")
        found = gr.HTML(elem_id="search-status")
        hits = gr.Gallery(label="Hits (click one to play its video from there)", columns=4, height="auto",
                          allow_preview=False, object_fit="contain", elem_id="hits")
        hit_list = gr.State([])
        player = gr.Video(label="Playing", interactive=False, height=320, elem_id="hit-player")
        self.loads.append((self.library_intro, intro))
        self.library_intro_output = intro
        for trigger in (run.click, query.submit):
            trigger(self.search, [query, top], [found, hits, hit_list], concurrency_id="search").then(
                self.library_intro, None, intro)
        hits.select(self.play_hit, hit_list, player).then(
            None, js="() => { setTimeout(() => { const v = document.querySelector('#hit-player video'); "
                     "if (v) { v.play(); } }, 300); }")

    def _library_counts(self) -> tuple[bool, int, int]:
        """(the service has a library, videos in it, caption stretches)"""
        with self.config.client(timeout=10) as client:
            info = client.describe_service()
        return info.library, info.library_videos, info.library_stretches

    def library_intro(self) -> str:
        """What the library holds and how it fills: the first thing the Library tab says."""
        try:
            has_library, videos, stretches = self._library_counts()
        except grpc.RpcError as exc:
            return _error(_service_problem(exc, self.config.grpc_address)[1])
        if videos:
            return (f"<p id='library-count'>The library holds <b>{_videos(videos)}</b> ({stretches} caption "
                    f"stretches). Search it for what was seen; a click on a hit plays its video from there. More "
                    f"videos join it with <i>Add to library</i> after an analysis in the Video tab, or with "
                    f"<code>vidcap index FOLDER</code> on the service's machine.</p>")
        return ("<div id='library-count'><p><b>The library is empty.</b> Nothing can be found until videos are added. "
                "Analysing a video in the Video tab does not add it by itself:</p><ul>"
                "<li>press <i>Add to library</i> under an analysis in the Video tab (the service keeps the video), "
                "or</li><li>on the service's machine, index a folder: <code>vidcap index FOLDER</code> "
                "(<code>--library DB</code> where the service was started with one).</li></ul></div>")

    def search(self, query: str, top: float | None) -> tuple[str, list[tuple[str, str]], list[dict]]:
        """-> (what was found or what is wrong, the hits' pictures and labels, the hits)."""
        if not (query or "").strip():
            return _error("Type what you are looking for, e.g. red star on grass."), [], []
        try:
            with self.config.client(timeout=60) as client:
                hits = list(client.search(query or "", int(top or 0)).hits)
                if not hits and not client.describe_service().library_videos:  # asked only when nothing was found
                    return _error("The library is empty: there is nothing to search yet (see above how to add "
                                  "videos).", "search-empty"), [], []
        except grpc.RpcError as exc:
            return _error(in_field_words(_service_problem(exc, self.config.grpc_address)[1])), [], []
        gallery = []
        for hit in hits:
            label = f"{hit.score:.2f} · {Path(hit.path).name} · {hit.start:.1f}-{hit.end:.1f} s — {hit.caption}"
            gallery.append((self._hit_picture(hit.path, (hit.start + hit.end) / 2), label))
        status = (f"<p>{len(hits)} hit{'s' if len(hits) != 1 else ''} for <b>{html.escape(query)}</b>.</p>" if hits
                  else f"<p>No hits for <b>{html.escape(query)}</b>: no caption in the library says that.</p>")
        return status, gallery, [{"path": h.path, "start": h.start, "end": h.end} for h in hits]

    def _hit_picture(self, path: str, t: float) -> str:
        """A hit's picture as a file written once (the same hit found again shows the same file)."""
        key = (path, round(t, 3))
        if key not in self._hit_pictures:
            try:
                pixels = frames_at(path, [t], max_side=THUMBNAIL_SIDE)[0].pixels
            except Exception as exc:  # the video lives where this UI cannot read it: a grey tile, the hit shows
                log.info("no thumbnail for %s: %s", path, exc)
                pixels = np.full((90, 160, 3), 128, dtype=np.uint8)
            self._hit_pictures[key] = self._picture_url(pixels).removeprefix("gradio_api/file=")
        return self._hit_pictures[key]

    def play_hit(self, hit_list: list[dict], evt: gr.SelectData) -> gr.Video:
        """A click on a hit: a copy of its video from the keyframe before the hit (no re-encoding, at most
        CLIP_SECONDS), played from the hit's start."""
        hit = hit_list[evt.index]
        clip = Path(tempfile.mkdtemp(prefix="clip-", dir=self.work_dir)) / f"{Path(hit['path']).stem}.mp4"
        try:
            position = cut_clip(hit["path"], hit["start"], hit["start"] + CLIP_SECONDS, clip)
        except Exception as exc:
            log.info("cannot play %s: %s", hit["path"], exc)
            return gr.Video(value=None, label=f"Cannot play {Path(hit['path']).name} here: {exc}")
        return gr.Video(value=str(clip), playback_position=position)

    def _image_tab(self) -> None:
        with gr.Row():
            with gr.Column(scale=2):
                image = image_input(sources=["upload"], label="Image", elem_id="image-input", height=320)
                image_error = gr.HTML(elem_id="image-error", elem_classes="vc-field-error", padding=False)
                beam = gr.Slider(1, 10, value=3, step=1, label="Beam size (1 = greedy)", elem_id="beam")
                run = gr.Button("Caption", variant="primary", elem_id="caption-button")
            with gr.Column(scale=3):
                caption = gr.Textbox(label="Caption", interactive=False, elem_id="caption")
                maps = gr.Gallery(label="Where each word looked", columns=4, height="auto", object_fit="contain",
                                  elem_id="attention")
        run.click(self.caption_image, [image, beam], [caption, maps, image_error], concurrency_id="caption")
        image.change(None, None, image_error, js=CLEAR)


def _moment_rows(moments: list[Moment]) -> pd.DataFrame:
    return pd.DataFrame({"t (s)": [f"{m.t:.1f}" for m in moments], "why": [m.reason for m in moments],
                         "score": [f"{m.score:.2f}" for m in moments],
                         "before": [m.previous_caption or "(start)" for m in moments],
                         "now": [m.caption for m in moments]})


def _live_status(run: _Run, notice: str, ended: bool) -> str:
    seconds = time.perf_counter() - run.started
    if ended:
        text = f"<b>Ended:</b> {len(run.frames)} frames, {len(run.moments)} moments in {seconds:.0f} s."
    else:
        last = f", stream time {run.frames[-1].t:.0f} s" if run.frames else ""
        text = f"<b>Watching:</b> {len(run.frames)} frames{last}, {len(run.moments)} moments"
    if notice:
        text += f"<br><span id='live-notice'>{html.escape(notice)}</span>"
    return f"<p>{text}</p>"


DOC_PAGE = re.compile(r"^[a-z0-9-]+\.md$")
DOC_IMAGE = re.compile(r"^[a-z0-9-]+\.jpg$")


async def _doc_page(request) -> HTMLResponse | JSONResponse:
    """/docs/NAME.md: a page of vidcap's documentation (shipped with it), rendered, for the links the UI shows.
    Only names of the docs folder's own pages: nothing else on disk can be named."""
    from markdown_it import MarkdownIt

    name = request.path_params["name"]
    path = docs_dir() / name
    if not DOC_PAGE.match(name) or not path.is_file():
        return JSONResponse({"detail": f"no documentation page {name!r}"}, status_code=404)
    body = MarkdownIt("commonmark").enable("table").render(path.read_text())
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>vidcap: {html.escape(name)}</title>"
                        f"<style>body{{max-width:60rem;margin:2rem auto;font:16px/1.5 sans-serif;padding:0 1rem}}"
                        f"pre{{background:#f4f4f4;padding:.6rem;overflow-x:auto}}td,th{{border:1px solid #ddd;"
                        f"padding:.2rem .4rem}}table{{border-collapse:collapse}}img{{max-width:100%}}</style></head>"
                        f"<body>{body}</body></html>")


async def _doc_image(request) -> FileResponse | JSONResponse:
    name = request.path_params["name"]
    path = docs_dir() / "img" / name
    if not DOC_IMAGE.match(name) or not path.is_file():
        return JSONResponse({"detail": f"no documentation image {name!r}"}, status_code=404)
    return FileResponse(path, media_type="image/jpeg")


DOC_ROUTES = [Route("/docs/img/{name}", _doc_image), Route("/docs/{name}", _doc_page)]


def _fit(pixels: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    height, width = pixels.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def launch(config: UIConfig, block: bool = True) -> gr.Blocks:
    """Start the UI on config.host:config.port; with block=False it runs in threads (call .close() to stop)."""
    ui = VidcapUI(config)
    app = ui.build()
    app.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    # Beyond loopback with a key, browsers log in with it (user "vidcap"): the page can start analyses.
    auth = ("vidcap", config.api_key) if config.api_key else None
    tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)} if config.tls_cert else {}
    app.launch(server_name=config.host, server_port=config.port, share=False, show_error=True, quiet=True,
               max_file_size=int(config.max_upload_mb * 1024**2), prevent_thread_lock=not block, inbrowser=False,
               footer_links=[], ssr_mode=False, auth=auth, allowed_paths=[str(ui.picture_dir)],
               css=TIMELINE_CSS, head=TIMELINE_SCRIPT,
               app_kwargs={"middleware": [Middleware(RequestGuard, hosts=config.hosts)], "routes": DOC_ROUTES},
               **tls)
    return app
