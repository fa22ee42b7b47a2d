"""TorchServe handler for vidcap: a thin adapter over `vidcap.captioner` and `vidcap.video.pipeline`.

- Image requests (the body is an encoded image; `?beam=K` optional) go through TorchServe's dynamic batching
  and are captioned together in one batched beam search.
- Video requests (a JSON body `{"video_path": ..., "every_n_seconds": ..., "window": ..., "metric": ...,
  "scorer": ..., "beam": ...}`, the path inside the media folder shared with the worker, `$VIDCAP_MEDIA_DIR`)
  are decoded inside the worker and answered with one streamed JSON line per sampled frame, so a GPU worker keeps
  frames on the GPU from decode to caption; the last line is `{"done": true, ...}`.

Needs the `vidcap` package importable in the worker's Python (TorchServe started from vidcap's environment).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from vidcap.captioner import Captioner
from vidcap.errors import InputError, InputTooLargeError, VidcapError
from vidcap.fileio import media_path
from vidcap.images import load_image
from vidcap.video.pipeline import AnalysisParams, analyze_frames


class VidcapHandler(BaseHandler):
    def initialize(self, context) -> None:
        properties = context.system_properties
        gpu = properties.get("gpu_id")
        device = f"cuda:{gpu}" if torch.cuda.is_available() and gpu is not None else "cpu"
        checkpoint = Path(properties["model_dir"]) / context.manifest["model"]["serializedFile"]
        handler_config = (getattr(context, "model_yaml_config", None) or {}).get("handler") or {}
        self.captioner = Captioner.load(checkpoint, device=device, encoder=handler_config.get("encoder", "auto"))
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
                    images[i] = (load_image(bytes(body)), _beam(row))
            except VidcapError as exc:
                outputs[i] = self._error(exc, i, context)
        for beam in {b for _, b in images.values()}:  # one batched beam search per beam size in the batch
            indices = [i for i, (_, b) in images.items() if b == beam]
            captions = self.captioner.caption([images[i][0] for i in indices], beam)
            for i, caption in zip(indices, captions):
                outputs[i] = json.dumps({"caption": caption.text, "words": caption.words,
                                         "log_prob": caption.log_prob, "embeddings": caption.embeddings.tolist(),
                                         "feature": caption.feature.tolist(),
                                         "attention": caption.attention.flatten(1).tolist(),
                                         "attention_size": caption.attention.shape[-1]})
        return outputs

    def _video(self, request: dict, index: int, context) -> str:
        path = self._media_path(str(request.get("video_path", "")))
        params = AnalysisParams(every_n_seconds=float(request.get("every_n_seconds") or 1.0),
                                window=int(request.get("window") or 5), metric=request.get("metric") or None,
                                scorer=request.get("scorer") or "robust", beam=int(request.get("beam") or 3))
        # Keyed by the request's row in the batch: TorchServe marks that row's headers "more to come". Keyed by 0,
        # a second video in one batch marked the first row instead, and its own stream never ended.
        reply = {index: context.request_ids[index]}

        def send(line: str, message: str) -> None:
            send_intermediate_predict_response({index: line}, reply, message, 200, context)

        def started(duration: float, expected: int) -> None:
            send(json.dumps({"started": {"duration": duration, "expected_frames": expected}}) + "\n", "started")

        count = 0
        for result in analyze_frames(path, self.captioner, params, on_start=started):
            send(json.dumps({"frame": {"index": result.index, "t": result.t, "caption": result.caption,
                                       "score": result.score, "alternatives": result.alternatives}}) + "\n", "frame")
            count += 1
        return json.dumps({"done": True, "frames": count}) + "\n"

    def _media_path(self, relative: str) -> Path:
        return media_path(self.media_dir, relative, InputError, "set VIDCAP_MEDIA_DIR")

    @staticmethod
    def _error(exc: VidcapError, index: int, context) -> str:
        status = 413 if isinstance(exc, InputTooLargeError) else 400
        context.set_response_status(status, str(exc), index)
        return json.dumps({"error": str(exc)})


def _json_request(body) -> dict | None:
    if isinstance(body, dict):
        return body
    if isinstance(body, (bytes, bytearray)) and body[:1] == b"{":
        try:
            return json.loads(body)
        except ValueError:
            raise InputError("malformed JSON request") from None
    return None


def _beam(row: dict) -> int:
    value = row.get("beam")
    try:
        return max(1, int(value.decode() if isinstance(value, (bytes, bytearray)) else value)) if value else 3
    except ValueError:
        raise InputError("beam must be a whole number") from None
