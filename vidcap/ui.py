"""The vidcap web UI (Gradio): a client of the gRPC service, the old project's Shiny app done better.

    vidcap ui --grpc 127.0.0.1:50051            # against a running `vidcap serve`; http://127.0.0.1:7860
    (`vidcap serve` starts it with the rest of the stack)

Video tab: upload, parameters, a dissimilarity plot that grows while the frames stream in, the table of
captions, the moments as thumbnails (a click plays the video from there), JSON/CSV/PNG, subtitle and chapter
downloads.
Image tab: the caption and, for every word, its attention map laid over the image.
Live tab: a live source (a stream or a camera the service allows): the plot, the captions and the moments grow
as they come, until Stop.
Library tab: search the videos indexed with `vidcap index` (gRPC Search); hits with thumbnails, a click plays the
video from the hit.

Every failure reaches the page as a sentence (gr.Error), never as a traceback: the gRPC status of a bad upload
carries the service's own message, and a service that is down is named with its address.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no phoning home, no DNS look-ups
from vidcap.paths import default_work_dir  # noqa: E402

# Gradio keeps uploads in its temporary folder (/tmp/gradio, RAM-backed on many systems): keep them on disk.
os.environ.setdefault("GRADIO_TEMP_DIR", str(default_work_dir() / "ui-uploads"))

import atexit  # noqa: E402
import html  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402
import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from vidcap.attention_maps import attention_overlay  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from vidcap.domain import DomainSummary  # noqa: E402
from vidcap.images import load_image  # noqa: E402
from vidcap.limits import DEFAULT_LIMITS  # noqa: E402
from vidcap.serving.auth import LOOPBACK_HOSTS, RequestGuard  # noqa: E402
from vidcap.video import report, subtitles  # noqa: E402
from vidcap.fileio import VIDEO_SUFFIXES  # noqa: E402
from vidcap.video.novelty import METRICS, SCORERS, Moment  # noqa: E402
from vidcap.video.pipeline import Analysis, FrameResult  # noqa: E402
from vidcap.library.search import MAX_TOP  # noqa: E402
from vidcap.video.pyav_source import cut_clip, frames_at  # noqa: E402
from vidcap.wire import frame_from_proto, moment_from_proto  # noqa: E402

log = logging.getLogger("vidcap.ui")

SCORER_DEFAULT_METRIC = "scorer default"
LIVE_UPDATE_SECONDS = 0.4  # how often the page is refreshed while frames stream in
LIVE_TABLE_ROWS = 500  # rows sent on each live refresh; the full table comes with the last one
THUMBNAIL_SIDE = 320
CLIP_SECONDS = 120.0  # what a click on a search hit plays, from the hit's start
OVERLAY_SIDE = 384


@dataclass
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


def user_error(message: str, title: str) -> gr.Error:
    """What the page shows for a user's mistake or a refused request: the sentence, no traceback in the
    operator's log (one line there instead)."""
    log.info("%s: %s", title, message)
    return gr.Error(message, title=title, print_exception=False)


def _service_error(exc: grpc.RpcError, address: str) -> gr.Error:
    """The service's own sentence (the same every door gives), under a title that says whose problem it is."""
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE and "TorchServe" in details:
        return user_error(f"The vidcap service's captioning runtime failed ({details}). Try again in a moment.",
                          "Service unavailable")
    if code == grpc.StatusCode.UNAVAILABLE:
        return user_error(f"The vidcap service at {address} is not reachable. Is `vidcap serve` running? "
                          f"({details})", "Service unavailable")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in details:
        return user_error(details, "The service is busy")
    if code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.DEADLINE_EXCEEDED):
        return user_error(details, "Cannot analyse this file")
    log.error("the vidcap service failed: %s %s", code.name, details)
    return gr.Error(f"{code.name}: {details}", title="The service failed", print_exception=False)


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
            warning = ""
            if self.domain is not None and self.domain.warning():
                warning = f"<p id='domain-warning' style='color:#a40000'><b>Warning:</b> {html.escape(self.domain.warning())}</p>"
            return (f"<p><b>Done:</b> {n} frames{still} over {self.duration:.1f} s of video in {seconds:.1f} s; "
                    f"{len(self.moments)} moments ({self.params['scorer']}, {self.params['metric']}).</p>{warning}")
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

    # -- video --

    def analyze(self, video: str | None, every: float, window: float, metric: str, scorer: str,
                skip_still: bool = True) -> Iterator[tuple]:
        if not video:
            raise user_error("Upload a video first.", "No video")
        if not every or every <= 0:
            raise user_error("Every N seconds must be a positive number.", "Bad parameter")
        metric = "" if metric == SCORER_DEFAULT_METRIC else metric
        params = {"every_n_seconds": float(every), "window": int(window), "metric": metric, "scorer": scorer,
                  "no_skip": not skip_still}
        run = _Run(Path(video).name, dict(params))
        thumbnails: list[tuple[np.ndarray, str]] = []  # one per moment, shown as soon as the moment is decided
        last_update = 0.0
        try:
            with self.config.client() as client:
                for response in client.analyze_file(video, **params):
                    run.add(response)
                    kind = response.WhichOneof("kind")
                    if kind == "summary":
                        break
                    if kind == "moment":
                        thumbnails += self._thumbnails(video, run.moments[-1:])
                        yield (run.plot_data(), run.table(LIVE_TABLE_ROWS), run.status(), list(thumbnails),
                               gr.skip(), [m.t for m in run.moments])
                    elif time.perf_counter() - last_update >= LIVE_UPDATE_SECONDS or kind == "queued":
                        last_update = time.perf_counter()
                        yield (run.plot_data(), run.table(LIVE_TABLE_ROWS), run.status(), gr.skip(), gr.skip(),
                               gr.skip())
        except grpc.RpcError as exc:
            raise _service_error(exc, self.config.grpc_address) from None
        if len(thumbnails) != len(run.moments):  # a thumbnail could not be made: try them all once more
            thumbnails = self._thumbnails(video, run.moments)
        yield (run.plot_data(), run.table(), run.status(done=True), thumbnails, self._downloads(run.analysis()),
               [m.t for m in run.moments])

    def _thumbnails(self, video: str, moments: list[Moment]) -> list[tuple[np.ndarray, str]]:
        try:
            frames = frames_at(video, [m.t for m in moments], max_side=THUMBNAIL_SIDE)
        except Exception as exc:  # the service read the file, so this is unexpected: keep the results anyway
            log.warning("no thumbnails for %s: %s", video, exc)
            return []
        return [(f.pixels, f"{m.t:.1f} s · {m.reason} · {m.score:.2f} — {m.previous_caption or '(start)'} → "
                           f"{m.caption}")
                for f, m in zip(frames, moments)]

    def _downloads(self, analysis: Analysis) -> list[str]:
        folder = Path(tempfile.mkdtemp(prefix="run-", dir=self.work_dir))
        stem = Path(analysis.video).stem or "video"
        cues, chapters = subtitles.caption_stretches(analysis), subtitles.chapters(analysis)
        files = {f"{stem}.vidcap.json": report.to_json(analysis), f"{stem}.vidcap.csv": report.to_csv(analysis),
                 f"{stem}.vidcap.png": report.to_png(analysis),
                 f"{stem}.captions.vtt": subtitles.to_vtt(cues), f"{stem}.captions.srt": subtitles.to_srt(cues),
                 f"{stem}.chapters.vtt": subtitles.to_vtt(chapters),
                 f"{stem}.chapters.ffmetadata.txt": subtitles.to_ffmetadata(chapters),
                 f"{stem}.chapters.txt": subtitles.to_chapter_list(chapters)}
        for name, data in files.items():
            (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
        return [str(folder / name) for name in files]

    @staticmethod
    def show_captions(downloads: list[str] | None) -> gr.Video:
        """The analysed video's caption track, on the player (its CC button shows it)."""
        track = next((d for d in downloads or [] if str(d).endswith(".captions.vtt")), None)
        return gr.Video(subtitles=track) if track else gr.skip()

    @staticmethod
    def seek(moment_times: list[float], evt: gr.SelectData) -> gr.Video:
        """A click on a moment: move the player there (the page's script then starts playing)."""
        return gr.Video(playback_position=float(moment_times[evt.index]))

    # -- image --

    def caption_image(self, image: str | None, beam: float) -> tuple[str, list[tuple[np.ndarray, str]]]:
        if not image:
            raise user_error("Upload an image first.", "No image")
        data = Path(image).read_bytes()
        try:
            with self.config.client(timeout=120) as client:
                response = client.caption_image(data, beam=int(beam), attention=True)
        except grpc.RpcError as exc:
            raise _service_error(exc, self.config.grpc_address) from None
        pixels = _fit(load_image(data), OVERLAY_SIDE)
        size = response.attention_size
        overlays = [(attention_overlay(pixels, np.asarray(a.values, dtype=np.float32).reshape(size, size)), word)
                    for word, a in zip(response.words, response.attention)]
        return response.caption, overlays

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
            with gr.Tab("Library", id="library-tab"):
                self._library_tab()
        return app

    def _video_tab(self) -> None:
        with gr.Row():
            with gr.Column(scale=3):
                video = gr.Video(label=f"Video ({', '.join(s[1:] for s in VIDEO_SUFFIXES)})", sources=["upload"],
                                 elem_id="video-input", height=320)
            with gr.Column(scale=2):
                every = gr.Number(1.0, label="Every N seconds", minimum=DEFAULT_LIMITS.min_every_n_seconds,
                                  elem_id="every")
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
        plot = gr.LinePlot(x="t", y="score", x_title="time (s)", y_title="dissimilarity", height=260,
                           label="Dissimilarity over time", elem_id="score-plot")
        moments = gr.Gallery(label="Moments (click one to play the video from there)", columns=4, height="auto",
                             allow_preview=False, object_fit="contain", elem_id="moments")
        moment_times = gr.State([])
        table = gr.Dataframe(label="Captions", headers=["t (s)", "score", "caption", "moment", "still"], max_height=360,
                             interactive=False, elem_id="captions")
        downloads = gr.File(label="Download (JSON, CSV, plot, subtitles, chapters)", file_count="multiple",
                            interactive=False, elem_id="downloads")
        run.click(self.analyze, [video, every, window, metric, scorer, skip_still],
                  [plot, table, status, moments, downloads, moment_times], show_progress="minimal",
                  concurrency_id="analyze").success(self.show_captions, downloads, video)
        moments.select(self.seek, moment_times, video).then(
            None, js="() => { const v = document.querySelector('#video-input video'); if (v) { v.play(); } }")

    def _live_tab(self) -> None:
        with gr.Row():
            source = gr.Textbox(label="Live source: an rtsp://, udp:// or http(s):// stream (MPEG-TS, HLS), or a "
                                      "capture device; the service opens only what it allows (vidcap serve "
                                      "--allow-source)", placeholder="rtsp://camera.example/stream", scale=4,
                                elem_id="live-source")
            every = gr.Number(1.0, label="Every N seconds", minimum=DEFAULT_LIMITS.min_every_n_seconds, scale=1,
                              elem_id="live-every")
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
        watching = start.click(self.watch, [source, every], [plot, table, moments, status], show_progress="minimal",
                               concurrency_id="analyze")
        stop.click(None, cancels=[watching])

    def watch(self, source: str, every: float) -> Iterator[tuple]:
        """A live source, through the service: the plot, the captions and the moments grow until it ends or
        Stop (which cancels the call: the service stops reading the source)."""
        source = (source or "").strip()
        if not source:
            raise user_error("Enter a live source first.", "No source")
        if not every or every <= 0:
            raise user_error("Every N seconds must be a positive number.", "Bad parameter")
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
                                   _live_status(run, notice, ended=kind == "summary"))
                finally:
                    call.cancel()  # Stop, or the page closed: the service stops reading the source
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                raise _service_error(exc, self.config.grpc_address) from None

    def _library_tab(self) -> None:
        with gr.Row():
            query = gr.Textbox(label="Search the library (videos indexed with `vidcap index`)", scale=4,
                               placeholder="red star on grass", elem_id="search-query")
            top = gr.Number(10, label="Hits", minimum=1, maximum=MAX_TOP, precision=0, scale=1, elem_id="search-top")
            run = gr.Button("Search", variant="primary", scale=1, elem_id="search")
        found = gr.HTML(elem_id="search-status")
        hits = gr.Gallery(label="Hits (click one to play its video from there)", columns=4, height="auto",
                          allow_preview=False, object_fit="contain", elem_id="hits")
        hit_list = gr.State([])
        player = gr.Video(label="Playing", interactive=False, height=320, elem_id="hit-player")
        for trigger in (run.click, query.submit):
            trigger(self.search, [query, top], [found, hits, hit_list], concurrency_id="search")
        hits.select(self.play_hit, hit_list, player).then(
            None, js="() => { setTimeout(() => { const v = document.querySelector('#hit-player video'); "
                     "if (v) { v.play(); } }, 300); }")

    def search(self, query: str, top: float) -> tuple[str, list[tuple[np.ndarray, str]], list[dict]]:
        try:
            with self.config.client(timeout=60) as client:
                hits = list(client.search(query or "", int(top or 0)).hits)
        except grpc.RpcError as exc:
            raise _service_error(exc, self.config.grpc_address) from None
        gallery = []
        for hit in hits:
            label = f"{hit.score:.2f} · {Path(hit.path).name} · {hit.start:.1f}-{hit.end:.1f} s — {hit.caption}"
            gallery.append((self._thumbnail_at(hit.path, (hit.start + hit.end) / 2), label))
        status = (f"<p>{len(hits)} hit{'s' if len(hits) != 1 else ''} for <b>{html.escape(query)}</b>.</p>" if hits
                  else f"<p>No hits for <b>{html.escape(query)}</b>.</p>")
        return status, gallery, [{"path": h.path, "start": h.start, "end": h.end} for h in hits]

    def _thumbnail_at(self, path: str, t: float) -> np.ndarray:
        try:
            return frames_at(path, [t], max_side=THUMBNAIL_SIDE)[0].pixels
        except Exception as exc:  # the video lives where this UI cannot read it: a grey tile, the hit still shows
            log.info("no thumbnail for %s: %s", path, exc)
            return np.full((90, 160, 3), 128, dtype=np.uint8)

    def play_hit(self, hit_list: list[dict], evt: gr.SelectData) -> gr.Video:
        """A click on a hit: a copy of its video from the keyframe before the hit (no re-encoding, at most
        CLIP_SECONDS), played from the hit's start."""
        hit = hit_list[evt.index]
        clip = Path(tempfile.mkdtemp(prefix="clip-", dir=self.work_dir)) / f"{Path(hit['path']).stem}.mp4"
        try:
            position = cut_clip(hit["path"], hit["start"], hit["start"] + CLIP_SECONDS, clip)
        except Exception as exc:
            raise user_error(f"cannot play {Path(hit['path']).name} here: {exc}", "Not playable") from None
        return gr.Video(value=str(clip), playback_position=position)

    def _image_tab(self) -> None:
        with gr.Row():
            with gr.Column(scale=2):
                image = image_input(sources=["upload"], label="Image", elem_id="image-input", height=320)
                beam = gr.Slider(1, 10, value=3, step=1, label="Beam size (1 = greedy)", elem_id="beam")
                run = gr.Button("Caption", variant="primary", elem_id="caption-button")
            with gr.Column(scale=3):
                caption = gr.Textbox(label="Caption", interactive=False, elem_id="caption")
                maps = gr.Gallery(label="Where each word looked", columns=4, height="auto", object_fit="contain",
                                  elem_id="attention")
        run.click(self.caption_image, [image, beam], [caption, maps], concurrency_id="caption")


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
    app = VidcapUI(config).build()
    app.queue(default_concurrency_limit=config.concurrency, max_size=config.queue_size)
    # Beyond loopback with a key, browsers log in with it (user "vidcap"): the page can start analyses.
    auth = ("vidcap", config.api_key) if config.api_key else None
    tls = {"ssl_certfile": str(config.tls_cert), "ssl_keyfile": str(config.tls_key)} if config.tls_cert else {}
    app.launch(server_name=config.host, server_port=config.port, share=False, show_error=True, quiet=True,
               max_file_size=int(config.max_upload_mb * 1024**2), prevent_thread_lock=not block, inbrowser=False,
               footer_links=[], ssr_mode=False, auth=auth,
               app_kwargs={"middleware": [Middleware(RequestGuard, hosts=config.hosts)]}, **tls)
    return app
