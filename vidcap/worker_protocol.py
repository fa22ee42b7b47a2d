"""The line protocol between a TorchServe worker (handlers/vidcap_handler.py) and the host that calls it
(vidcap/serving/hosts.py, `TorchServeHost`): both sides import this module, so a key cannot be renamed on one side
only.

- An image request is the encoded image as the body (with `beam` beside it); the answer is one JSON object
  (`caption_reply`, read back by `caption_from_reply`).
- A video request is a JSON object (`video_request`): `video_path` (in the shared media folder) or `live_source`,
  the analysis parameters, `call` (the call's id: a file of that name in `CANCEL_FOLDER` asks the worker to stop it),
  and for a resumable call `samples` and `resume`. The answer streams one JSON object per line: `started`, then
  `frame` (and `sample` where asked, `notice` from a live source), and at the end `done` or `error`
  (`read_line` turns a line into its kind and value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from vidcap.model import Caption
from vidcap.video.pipeline import AnalysisParams, FrameResult
from vidcap.video.resume import Resume, Sample
from vidcap.wire import (frame_from_json, frame_to_json, params_to_json, resume_from_json, resume_to_json,
                         sample_from_json, sample_to_json)

CANCEL_FOLDER = ".cancel"  # in the media folder: a file named after a `call` asks the worker to stop it
KINDS = ("started", "frame", "sample", "notice", "done", "error")


# ---- requests ------------------------------------------------------------------------------------------------


def video_request(params: AnalysisParams, call: str, video_path: str | None = None, live_source: str | None = None,
                  resume: Resume | None = None, samples: bool = False) -> dict[str, Any]:
    request: dict[str, Any] = {**params_to_json(params), "call": call}
    if live_source is not None:
        request["live_source"] = live_source
    else:
        request["video_path"] = video_path
    if samples:
        request["samples"] = True
    if resume is not None:
        request["resume"] = resume_to_json(resume)
    return request


def request_resume(request: dict) -> Resume | None:
    return resume_from_json(request["resume"]) if request.get("resume") is not None else None


# ---- answers -------------------------------------------------------------------------------------------------


def _line(kind: str, value: Any) -> str:
    return json.dumps({kind: value}) + "\n"


def started_line(duration: float, expected: int, trained_on: str) -> str:
    return _line("started", {"duration": duration, "expected_frames": expected, "trained_on": trained_on})


def frame_line(result: FrameResult) -> str:
    return _line("frame", frame_to_json(result))


def sample_line(sample: Sample) -> str:
    return _line("sample", sample_to_json(sample))


def notice_line(message: str) -> str:
    return _line("notice", message)


def done_line(frames: int) -> str:
    return json.dumps({"done": True, "frames": frames}) + "\n"


def error_line(message: str) -> str:
    return _line("error", message)


@dataclass(frozen=True)
class Started:
    duration: float
    expected_frames: int
    trained_on: str


def read_line(line: str | dict) -> tuple[str, Any]:
    """One line of a video answer -> (kind, value): a Started, a FrameResult, a Sample, a notice's text, the
    number of frames at `done`, or an error's message; anything else (TorchServe's own error body) is ("unknown",
    the object)."""
    message = json.loads(line) if isinstance(line, str) else line
    kind = next((k for k in KINDS if k in message), None)
    if kind == "started":
        s = message["started"]
        return kind, Started(s["duration"], s["expected_frames"], s.get("trained_on") or "")
    if kind == "frame":
        return kind, frame_from_json(message["frame"])
    if kind == "sample":
        return kind, sample_from_json(message["sample"])
    if kind == "done":
        return kind, int(message.get("frames", 0))
    if kind in ("notice", "error"):
        return kind, str(message[kind])
    return "unknown", message


def caption_reply(caption: Caption) -> str:
    """A captioned image, as the worker answers it."""
    return json.dumps({"caption": caption.text, "words": caption.words, "log_prob": caption.log_prob,
                       "embeddings": caption.embeddings.tolist(), "feature": caption.feature.tolist(),
                       "attention": caption.attention.flatten(1).tolist(),
                       "attention_size": caption.attention.shape[-1]})


def caption_from_reply(body: dict) -> Caption:
    n, s = len(body["words"]), body["attention_size"]
    return Caption(words=body["words"], token_ids=[], log_prob=body["log_prob"],
                   attention=torch.tensor(body["attention"]).reshape(n, s, s),
                   embeddings=torch.tensor(body["embeddings"]), feature=torch.tensor(body["feature"]),
                   regions=torch.empty(0))
