"""The TorchServe model host: the model in a TorchServe worker, behind the same interface as the in-process one
(vidcap/analysis/hosts.py's `ModelHost`). Images go through TorchServe's dynamic batching; videos are decoded
inside the worker from a media folder shared with it, and stream back line by line (vidcap/worker_protocol.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vidcap import worker_protocol as protocol
from vidcap.analysis.hosts import ModelHost, OnNotice, OnSample, OnStart
from vidcap.errors import UnavailableError, InputError, InputTooLargeError
from vidcap.model import Caption
from vidcap.serving.torchserve import IMAGE_MODEL, VIDEO_MODEL, read_keys, renew_key
from vidcap.video.pipeline import AnalysisParams, FrameResult
from vidcap.video.resume import Resume
from vidcap.video.sources import SourcePolicy
from vidcap.worker_protocol import CANCEL_FOLDER

log = logging.getLogger("vidcap.host")


class TorchServeHost(ModelHost):
    """Images go to the image model (dynamic batching), videos to the video model (its own worker, so images
    never wait behind a video). Expired TorchServe keys are renewed and the request retried once."""

    NAME = "torchserve"

    def __init__(self, inference_url: str, key_file: str | Path, media_dir: str | Path,
                 management_url: str | None = None, timeout: float = 3600.0):
        import httpx

        self.inference_url = inference_url.rstrip("/")
        self.management_url = (management_url or _next_port(self.inference_url)).rstrip("/")
        self.key_file, self.media_dir = Path(key_file), Path(media_dir).resolve()
        self.spool_dir = self.media_dir / ".uploads"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.cancel_dir = self.media_dir / CANCEL_FOLDER
        self.cancel_dir.mkdir(parents=True, exist_ok=True)
        self.http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        self._renewing = threading.Lock()

    def _key(self) -> str:
        # Read on every call: TorchServe rewrites the key file when a key is renewed or it restarts.
        try:
            return read_keys(self.key_file)["inference"]
        except (OSError, ValueError, KeyError) as exc:
            raise UnavailableError("TorchServe's keys are not readable (is it starting?)") from exc

    def _renew(self, used_key: str) -> None:
        """Renew the inference key once, however many requests found it expired at the same moment."""
        import httpx

        with self._renewing:
            if self._key() != used_key:
                return  # another request renewed it meanwhile
            try:
                renew_key(self.management_url, self.key_file, "inference")
            except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
                raise UnavailableError(f"TorchServe's key expired and could not be renewed: {exc}") from exc
            log.info("renewed TorchServe's expired inference key")

    @contextlib.contextmanager
    def _post(self, model: str, **kwargs) -> Iterator:
        """A streamed POST to /predictions/MODEL; an expired key is renewed and the request sent once more."""
        for attempt in range(2):
            key = self._key()
            with _unavailable_on_connection_errors(), self.http.stream(
                    "POST", f"{self.inference_url}/predictions/{model}",
                    headers={"Authorization": f"Bearer {key}"}, **kwargs) as response:
                if response.status_code in (400, 401) and attempt == 0:
                    response.read()
                    if _token_refused(response):
                        self._renew(key)
                        continue
                yield response
                return

    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption:
        _check_pixels(data, max_pixels)
        with self._post(IMAGE_MODEL, content=data, params={"beam": beam}) as response:
            response.read()
            return protocol.caption_from_reply(_json_or_error(response))

    def analyze(self, path: Path, params: AnalysisParams, on_start: OnStart | None = None,
                resume: Resume | None = None, on_sample: OnSample | None = None) -> Iterator[FrameResult]:
        path = Path(path).resolve()
        if not path.is_relative_to(self.media_dir):
            raise InputError("the TorchServe model host reads videos from its media folder only")
        relative = str(path.relative_to(self.media_dir))
        return self._stream(lambda call: protocol.video_request(params, call, video_path=relative, resume=resume,
                                                               samples=on_sample is not None), on_start, on_sample)

    def analyze_live(self, source: str, params: AnalysisParams, on_notice: OnNotice | None = None,
                     stop: threading.Event | None = None, policy: SourcePolicy | None = None,
                     on_start: OnStart | None = None) -> Iterator[FrameResult]:
        """The worker opens the source (its archive's allow-list checks it again, before every connect:
        TorchServe can be called directly)."""
        return self._stream(lambda call: protocol.video_request(params, call, live_source=source), on_start,
                            on_notice=on_notice, stop=stop)

    def _stream(self, request: Callable[[str], dict], on_start: OnStart | None = None,
                on_sample: OnSample | None = None, on_notice: OnNotice | None = None,
                stop: threading.Event | None = None) -> Iterator[FrameResult]:
        """request: the call's request for its id (the name of its cancel marker)."""
        call = uuid.uuid4().hex
        if stop is not None:  # the worker watches the cancel marker, also while its source is silent
            threading.Thread(target=lambda: stop.wait() and self._cancel(call), daemon=True,
                             name="vidcap-live-stop").start()
        done = False
        try:
            with self._post(VIDEO_MODEL, json=request(call)) as response:
                if response.status_code != 200:
                    response.read()
                    _json_or_error(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    kind, value = protocol.read_line(_json_line(line))
                    if kind == "frame":
                        yield value
                    elif kind == "sample" and on_sample is not None:
                        on_sample(value)
                    elif kind == "notice" and on_notice is not None:
                        on_notice(value)
                    elif kind == "started":
                        self.trained_on = value.trained_on or self.trained_on
                        if on_start is not None:
                            on_start(value.duration, value.expected_frames)
                    elif kind == "done":
                        done = True
                    elif kind == "error":
                        raise InputError(value)
                    elif kind == "unknown":  # TorchServe's own error body, e.g. its worker died
                        raise UnavailableError(_torchserve_failure(value))
            if not done:
                raise UnavailableError("the TorchServe worker stopped in the middle of the video (it may "
                                              "have crashed); try again")
        finally:
            if not done:  # cancelled or failed: tell the worker to stop (it reads the media folder)
                self._cancel(call)

    def close(self) -> None:
        """At shutdown: no cancel markers left (no worker is running any more), no empty folders of ours."""
        for marker in self.cancel_dir.glob("*"):
            marker.unlink(missing_ok=True)
        for folder in (self.cancel_dir, self.spool_dir):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: a spool still in use stays

    def _cancel(self, call: str) -> None:
        with contextlib.suppress(OSError):
            (self.cancel_dir / call).touch()
            now = time.time()
            for marker in self.cancel_dir.iterdir():  # markers of calls that had ended anyway
                if now - marker.stat().st_mtime > CANCEL_MARKER_SECONDS:
                    marker.unlink(missing_ok=True)


CANCEL_MARKER_SECONDS = 120.0


def _next_port(url: str) -> str:
    """TorchServe's management API listens one port above its inference API (our layout and its default)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{(parts.port or 80) + 1}"


def _token_refused(response) -> bool:
    return "Token Authorization failed" in response.text


def _torchserve_failure(body: dict) -> str:
    return f"TorchServe failed: {body.get('message') or body.get('type') or body}"


def _json_line(line: str) -> dict:
    try:
        message = json.loads(line)
    except ValueError:
        raise UnavailableError(f"TorchServe sent an unreadable line: {line[:100]!r}") from None
    return message if isinstance(message, dict) else {"message": str(message)[:100]}


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    import httpx

    try:
        yield
    except (httpx.TransportError, OSError) as exc:
        raise UnavailableError(f"TorchServe is unreachable: {exc}") from exc


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse oversized images before sending them (reads the header only)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Image.DecompressionBombError as exc:
        raise InputTooLargeError(f"image is too large to decode safely: {exc}") from None
    except (UnidentifiedImageError, OSError):
        return  # not an image: the worker answers with the precise error
    if width * height > max_pixels:
        raise InputTooLargeError(f"image is {width}x{height} = {width * height} pixels, above the limit of "
                                 f"{max_pixels}")


def _json_or_error(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:200]}
    if _token_refused(response):  # even after renewal: the server's fault, not the client's
        raise UnavailableError("TorchServe refused vidcap's key; try again")
    if response.status_code == 413:
        raise InputTooLargeError(body.get("error") or "request too large")
    if 400 <= response.status_code < 500 and "error" in body:  # our handler's verdict on the input
        raise InputError(body["error"])
    if response.status_code != 200:
        raise UnavailableError(f"TorchServe answered {response.status_code}: {body.get('message') or body}")
    return body
