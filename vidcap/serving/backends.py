"""Captioning backends: where the model runs for the gRPC service and the HTTP API.

Two operations, so a backend can do video work next to its model: `caption_image` (encoded bytes in) and
`analyze` (a video file in, FrameResults out as they exist).
- `InProcessBackend`: the model in this process (no Java needed).
- `TorchServeBackend`: the model in a TorchServe worker; images go through TorchServe's dynamic batching,
  videos are decoded inside the worker from a media folder shared with it, and stream back line by line.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vidcap.captioner import Captioner
from vidcap.errors import BackendUnavailableError, InputError, InputTooLargeError
from vidcap.images import load_image
from vidcap.model import Caption
from vidcap.video.pipeline import AnalysisParams, FrameResult, analyze_frames

OnStart = Callable[[float, int], None]


class CaptionBackend(ABC):
    NAME = ""
    spool_dir: Path | None = None  # where uploaded videos must be written for this backend to read them

    @abstractmethod
    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption: ...

    @abstractmethod
    def analyze(self, path: Path, params: AnalysisParams, on_start: OnStart | None = None) -> Iterator[FrameResult]:
        """FrameResults in time order; closing the iterator stops the work."""


class InProcessBackend(CaptionBackend):
    """The model in this process. Calls are serialised: on a few CPU cores, interleaving whole batches keeps
    latency predictable, where concurrent forward passes would fight over the same cores."""

    NAME = "inprocess"

    def __init__(self, captioner: Captioner):
        self.captioner = captioner
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:  # with `caption`, what the video pipeline needs of a captioner
        return self.captioner.image_size

    def caption(self, pixels: Sequence[np.ndarray] | torch.Tensor, beam_size: int | None = None) -> list[Caption]:
        with self._lock:
            return self.captioner.caption(pixels, beam_size)

    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption:
        return self.caption([load_image(data, max_pixels)], beam)[0]

    def analyze(self, path: Path, params: AnalysisParams, on_start: OnStart | None = None) -> Iterator[FrameResult]:
        return analyze_frames(path, self, params, on_start=on_start)


class TorchServeBackend(CaptionBackend):
    NAME = "torchserve"

    def __init__(self, inference_url: str, key_file: str | Path, media_dir: str | Path, model: str = "vidcap",
                 timeout: float = 3600.0):
        import httpx

        self.url = f"{inference_url.rstrip('/')}/predictions/{model}"
        self.key_file, self.media_dir = Path(key_file), Path(media_dir).resolve()
        self.spool_dir = self.media_dir / ".uploads"
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.http = httpx.Client(timeout=timeout)

    def _headers(self) -> dict[str, str]:
        # Read on every call: TorchServe may rewrite the key file (tokens expire).
        key = json.loads(self.key_file.read_text())["inference"]["key"]
        return {"Authorization": f"Bearer {key}"}

    def caption_image(self, data: bytes, beam: int, max_pixels: int) -> Caption:
        _check_pixels(data, max_pixels)
        with _unavailable_on_connection_errors():
            response = self.http.post(self.url, content=data, params={"beam": beam}, headers=self._headers())
        body = _json_or_error(response)
        n, s = len(body["words"]), body["attention_size"]
        return Caption(words=body["words"], token_ids=[], log_prob=body["log_prob"],
                       attention=torch.tensor(body["attention"]).reshape(n, s, s),
                       embeddings=torch.tensor(body["embeddings"]), feature=torch.tensor(body["feature"]),
                       regions=torch.empty(0))

    def analyze(self, path: Path, params: AnalysisParams, on_start: OnStart | None = None) -> Iterator[FrameResult]:
        path = Path(path).resolve()
        if not path.is_relative_to(self.media_dir):
            raise InputError("the TorchServe backend reads videos from its media folder only")
        request = {"video_path": str(path.relative_to(self.media_dir)), "every_n_seconds": params.every_n_seconds,
                   "window": params.window, "metric": params.metric, "scorer": params.scorer, "beam": params.beam}
        with _unavailable_on_connection_errors(), \
                self.http.stream("POST", self.url, json=request, headers=self._headers()) as response:
            if response.status_code != 200:
                response.read()
                _json_or_error(response)
            for line in response.iter_lines():
                if not line.strip():
                    continue
                message = json.loads(line)
                if "error" in message:
                    raise InputError(message["error"])
                if "started" in message and on_start is not None:
                    on_start(message["started"]["duration"], message["started"]["expected_frames"])
                elif "frame" in message:
                    f = message["frame"]
                    yield FrameResult(f["index"], f["t"], f["caption"], f["score"], f["caption"].split(),
                                      f.get("alternatives", []))


@contextlib.contextmanager
def _unavailable_on_connection_errors() -> Iterator[None]:
    import httpx

    try:
        yield
    except (httpx.TransportError, OSError) as exc:
        raise BackendUnavailableError(f"TorchServe is unreachable: {exc}") from exc


def _check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse oversized images before sending them (reads the header only)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except (UnidentifiedImageError, OSError):
        return  # not an image: the worker answers with the precise error
    if width * height > max_pixels:
        raise InputTooLargeError(f"image is {width}x{height} = {width * height} pixels, above the limit of "
                                 f"{max_pixels}")


def _json_or_error(response) -> dict:
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    if response.status_code == 413:
        raise InputTooLargeError(body.get("error") or "request too large")
    if 400 <= response.status_code < 500:
        raise InputError(body.get("error") or body.get("message") or f"TorchServe answered {response.status_code}")
    if response.status_code != 200:
        raise BackendUnavailableError(f"TorchServe answered {response.status_code}: {body.get('message') or body}")
    return body
