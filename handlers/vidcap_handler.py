"""TorchServe handler for vidcap: a thin adapter over the in-process model host (`vidcap.analysis.hosts`), the same
host `vidcap analyze`, `vidcap index` and `vidcap serve --model-host inprocess` use.

- Image requests (the body is an encoded image; `?beam=K` optional) go through TorchServe's dynamic batching
  and are captioned together in one batched beam search.
- Video requests (a JSON body `{"video_path": ..., "call": ..., "every_n_seconds": ..., "window": ..., "metric":
  ..., "scorer": ..., "beam": ...}`, the path inside the media folder shared with the worker, `$VIDCAP_MEDIA_DIR`)
  are decoded inside the worker and answered with one streamed JSON line per sampled frame, so a GPU worker keeps
  frames on the GPU from decode to caption; the last line is `{"done": true, ...}`. A file named after the call in
  the media folder's `.cancel/` stops it (the client went away). With `"samples": true` each captioned sample
  comes too (`{"sample": ...}`), and `"resume"` continues a stopped analysis from such samples
  (vidcap/video/resume.py): how the server's jobs continue after a restart without captioning anything twice.
  `{"live_source": URL, ...}` instead of a path analyses a live stream the archive's `allowed_sources` allow,
  with `{"notice": ...}` lines when it reconnects.
- Parameters and sizes are checked against the limits in the archive's model-config.yaml (`handler: limits:`),
  the same `vidcap.limits.Limits` the gRPC service and the HTTP API check, since TorchServe can be called directly.

Needs the `vidcap` package importable in the worker's Python (TorchServe started from vidcap's environment).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import torch
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from vidcap.analysis.hosts import InProcessHost
from vidcap.captioner import Captioner
from vidcap.errors import InputError, VidcapError, public_message, status_of
from vidcap.fileio import media_path
from vidcap.images import load_image
from vidcap.limits import Limits
from vidcap.video.sources import SourcePolicy
from vidcap import worker_protocol as protocol
from vidcap.wire import analysis_params

log = logging.getLogger("vidcap.handler")


class VidcapHandler(BaseHandler):
    def initialize(self, context) -> None:
        properties = context.system_properties
        gpu = properties.get("gpu_id")
        device = f"cuda:{gpu}" if torch.cuda.is_available() and gpu is not None else "cpu"
        if device != "cpu":  # the GPU TorchServe gave this worker, also for whatever uses "the current" one
            torch.cuda.set_device(int(gpu))
        checkpoint = Path(properties["model_dir"]) / context.manifest["model"]["serializedFile"]
        handler_config = (getattr(context, "model_yaml_config", None) or {}).get("handler") or {}
        self.limits = Limits.from_dict(handler_config.get("limits"))
        self.host = InProcessHost(Captioner.load(checkpoint, device=device, encoder=handler_config.get("encoder",
                                                                                                      "auto")),
                                  limits=self.limits)
        self.allowed_sources = list(handler_config.get("allowed_sources") or [])  # live sources (vidcap serve
        # --allow-source); none by default
        self.media_dir = Path(os.environ.get("VIDCAP_MEDIA_DIR", "")).resolve() if os.environ.get(
            "VIDCAP_MEDIA_DIR") else None
        self.initialized = True

    def handle(self, data: list[dict], context) -> list[str]:
        outputs: list[str | None] = [None] * len(data)
        images: dict[int, tuple] = {}
        for i, row in enumerate(data):
            body = row.get("data") if row.get("data") is not None else row.get("body")
            try:
                request = _json_request(body)
                if request is not None:
                    outputs[i] = self._video(request, i, context)
                else:
                    self.limits.check_image_bytes(len(body or b""))
                    images[i] = (load_image(bytes(body or b""), self.limits.max_image_pixels), self._beam(row))
            except VidcapError as exc:
                outputs[i] = self._error(exc, i, context)
        for beam in {b for _, b in images.values()}:  # one batched beam search per beam size in the batch
            indices = [i for i, (_, b) in images.items() if b == beam]
            captions = self.host.caption([images[i][0] for i in indices], beam)
            for i, caption in zip(indices, captions):
                outputs[i] = protocol.caption_reply(caption)
        return outputs

    def _video(self, request: dict, index: int, context) -> str:
        live = request.get("live_source")
        policy = SourcePolicy(self.allowed_sources)
        if live is not None:  # checked here too (and before every connect): TorchServe can be called directly
            policy.check(str(live))
        path = None if live is not None else self._media_path(str(request.get("video_path", "")))
        params = analysis_params(request.get("every_n_seconds"), request.get("window"), request.get("metric"),
                                 request.get("scorer"), request.get("beam"), self.limits,
                                 no_skip=request.get("no_skip"), cuts=request.get("cuts"))
        cancel = self._cancel_marker(request.get("call"))
        # Keyed by the request's row in the batch: TorchServe marks that row's headers "more to come". Keyed by 0,
        # a second video in one batch marked the first row instead, and its own stream never ended.
        reply = {index: context.request_ids[index]}

        def send(line: str, message: str) -> None:
            send_intermediate_predict_response({index: line}, reply, message, 200, context)

        def started(duration: float, expected: int) -> None:
            send(protocol.started_line(duration, expected, self.host.trained_on), "started")

        def sample(captioned) -> None:  # kept by the caller, so that its job can continue after a restart
            send(protocol.sample_line(captioned), "sample")

        def notice(message: str) -> None:  # a live source reconnecting
            send(protocol.notice_line(message), "notice")

        count, stopped = 0, threading.Event()
        if live is not None:
            stopped = _set_when_present(cancel)
            results = self.host.analyze_live(str(live), params, on_notice=notice, stop=stopped, policy=policy,
                                             on_start=started)
        else:
            results = self.host.analyze(path, params, on_start=started, resume=protocol.request_resume(request),
                                        on_sample=sample if request.get("samples") else None)
        try:
            for result in results:
                if cancel is not None and cancel.exists():  # the client went away: free the worker
                    cancel.unlink(missing_ok=True)
                    log.info("call %s cancelled by its client after %d frames", request.get("call"), count)
                    return protocol.error_line("cancelled by the client")
                send(protocol.frame_line(result), "frame")
                count += 1
        finally:
            results.close()
            stopped.set()  # ends the cancel watch of a live source
        return protocol.done_line(count)

    def _cancel_marker(self, call) -> Path | None:
        if self.media_dir is None or not call:
            return None
        if not str(call).isalnum():
            raise InputError("call must be letters and digits")
        return self.media_dir / protocol.CANCEL_FOLDER / str(call)

    def _media_path(self, relative: str) -> Path:
        return media_path(self.media_dir, relative, InputError, "set VIDCAP_MEDIA_DIR")

    @staticmethod
    def _error(exc: VidcapError, index: int, context) -> str:
        message = public_message(exc)  # no worker paths in what reaches a client
        context.set_response_status(status_of(exc)[1], message, index)
        return protocol.error_line(message).rstrip("\n")

    def _beam(self, row: dict) -> int:
        value = row.get("beam")
        text = value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) else value
        return analysis_params(beam=text, limits=self.limits).beam


def _set_when_present(marker: Path | None, poll_seconds: float = 0.5) -> threading.Event:
    """An event set once the cancel marker appears: a live source that receives nothing still stops."""
    event = threading.Event()

    def watch() -> None:
        while marker is not None and not event.wait(poll_seconds):
            if marker.exists():
                event.set()

    threading.Thread(target=watch, daemon=True, name="vidcap-cancel-watch").start()
    return event


def _json_request(body) -> dict | None:
    if isinstance(body, dict):
        return body
    if isinstance(body, (bytes, bytearray)) and body[:1] == b"{":
        try:
            return json.loads(body)
        except ValueError:
            raise InputError("malformed JSON request") from None
    return None

