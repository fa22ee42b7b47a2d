"""What crosses a door, in one place: request parameters off the wire, and results onto it.

Every door (the gRPC service, the old HTTP API, the TorchServe handler and its client, the CLI's JSON) turns
wire fields into `AnalysisParams` and a frame result or a moment into JSON or protobuf here, so defaults, bounds,
spellings and field names cannot drift apart. Errors map to statuses in `vidcap.errors`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from vidcap.domain import DomainSummary
from vidcap.errors import InputError
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.video.novelty import Moment
from vidcap.video.pipeline import Analysis, AnalysisParams, FrameResult
from vidcap.video.resume import Resume, Sample

DEFAULTS = AnalysisParams()


def analysis_params(every_n_seconds: Any = None, window: Any = None, metric: Any = None, scorer: Any = None,
                    beam: Any = None, limits: Limits = DEFAULT_LIMITS, default_scorer: str = DEFAULTS.scorer,
                    no_skip: Any = None, cuts: Any = None) -> AnalysisParams:
    """AnalysisParams from wire values: None, 0 and "" mean the default (proto3 cannot tell them apart); text is
    parsed with a message naming the field; every bound is checked before any work starts. no_skip: caption
    every sampled frame, still ones too (the default reuses a still frame's caption); cuts: the cut signal
    (vidcap/video/cuts.py's CUT_SIGNALS)."""
    return AnalysisParams(
        every_n_seconds=_number(every_n_seconds, "every_n_seconds", float, DEFAULTS.every_n_seconds),
        window=_number(window, "window", int, DEFAULTS.window),
        metric=str(metric) if metric else None,
        scorer=str(scorer) if scorer else default_scorer,
        beam=_number(beam, "beam", int, DEFAULTS.beam),
        skip_still=not flag(no_skip, "no_skip"),
        cuts=str(cuts) if cuts else DEFAULTS.cuts,
    ).validate(limits)


def old_api_params(fields: Mapping[str, str], limits: Limits = DEFAULT_LIMITS) -> AnalysisParams:
    """The old project's spellings (`every_n_second`, `rolling_window_size`, metric `euclidian`) and defaults
    (its own metric: scorer `seed`, euclidean). Messages name the fields as the old API spells them."""
    try:
        return analysis_params(fields.get("every_n_second"), fields.get("rolling_window_size"),
                               fields.get("metric") or "euclidean", fields.get("scorer") or "seed",
                               fields.get("beam"), limits, no_skip=fields.get("no_skip"))
    except InputError as exc:
        raise renamed(exc, OLD_API_NAMES) from None


OLD_API_NAMES = {"every_n_seconds": "every_n_second", "window": "rolling_window_size"}
CLI_NAMES = {"every_n_seconds": "--every", "window": "--window", "beam": "--beam", "batch_size": "--batch-size"}


def renamed(exc: InputError, names: Mapping[str, str]) -> InputError:
    """The same error, naming each parameter as this door spells it."""
    message = str(exc)
    for name, spelling in names.items():
        message = re.sub(rf"\b{name}\b", spelling, message)
    return type(exc)(message)


def params_to_json(params: AnalysisParams) -> dict[str, Any]:
    """What the TorchServe model host sends its handler (read back by `analysis_params(**...)`)."""
    return {"every_n_seconds": params.every_n_seconds, "window": params.window, "metric": params.metric,
            "scorer": params.scorer, "beam": params.beam, "no_skip": not params.skip_still, "cuts": params.cuts}


def flag(value: Any, name: str) -> bool:
    """A yes/no field: a bool, or the text a form sends (true/false, 1/0, yes/no, on/off)."""
    if value is None or value == "" or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InputError(f"{name} must be true or false, got {value!r}")


def _number(value: Any, name: str, kind: type, default: float | int) -> Any:
    if value is None or value == "" or value == 0:
        return default
    try:
        number = kind(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be {'a number' if kind is float else 'a whole number'}, got {value!r}") from None
    if kind is int and isinstance(value, float) and value != number:
        raise InputError(f"{name} must be a whole number, got {value!r}")
    return number


# ---- results -------------------------------------------------------------------------------------------------


def frame_to_json(frame: FrameResult) -> dict[str, Any]:
    return {"index": frame.index, "t": round(frame.t, 4), "caption": frame.caption, "score": frame.score,
            "alternatives": frame.alternatives, "reused": frame.reused,
            "in_domain": None if frame.in_domain is None else round(frame.in_domain, 4), "cut": round(frame.cut, 4),
            "cut_times": [round(t, 4) for t in frame.cut_times]}


def frame_from_json(data: Mapping[str, Any]) -> FrameResult:
    return FrameResult(int(data["index"]), float(data["t"]), data["caption"], float(data["score"]),
                       data["caption"].split(), list(data.get("alternatives", [])),
                       reused=bool(data.get("reused", False)), in_domain=data.get("in_domain"),
                       cut=float(data.get("cut", 0.0)), cut_times=[float(t) for t in data.get("cut_times", [])])


def moment_to_json(moment: Moment) -> dict[str, Any]:
    return {"t": round(moment.t, 4), "score": moment.score, "caption": moment.caption,
            "previous_caption": moment.previous_caption, "index": moment.index, "reason": moment.reason}


def frame_to_proto(frame: FrameResult):
    from vidcap.v1 import vidcap_pb2 as pb

    return pb.FrameResult(index=frame.index, t=frame.t, caption=frame.caption, score=frame.score,
                          alternatives=frame.alternatives, reused=frame.reused, in_domain=frame.in_domain,
                          cut=frame.cut, cut_times=frame.cut_times)


def frame_from_proto(message) -> FrameResult:
    return FrameResult(message.index, message.t, message.caption, message.score, message.caption.split(),
                       list(message.alternatives), reused=message.reused,
                       in_domain=message.in_domain if message.HasField("in_domain") else None, cut=message.cut,
                       cut_times=list(message.cut_times))


def domain_to_json(domain: DomainSummary | None) -> dict[str, Any] | None:
    """The share of frames outside the model's domain and, when most are, the warning (vidcap/domain.py)."""
    if domain is None:
        return None
    return {"out_of_domain_share": round(domain.out_of_domain_share, 4), "trained_on": domain.trained_on,
            "warning": domain.warning()}


def analysis_to_json(analysis: Analysis) -> dict[str, Any]:
    """A whole analysis, as `vidcap analyze --json`, the UI's download and the old HTTP API give it."""
    return {"video": analysis.video, "params": analysis.params, "duration": analysis.duration,
            "wall_seconds": round(analysis.seconds, 3), "domain": domain_to_json(analysis.domain),
            "frames": [frame_to_json(f) for f in analysis.frames],
            "moments": [moment_to_json(m) for m in analysis.moments]}


def domain_to_proto_fields(domain: DomainSummary | None) -> dict[str, Any]:
    """Summary fields; none when the model has no domain profile."""
    if domain is None:
        return {}
    return {"out_of_domain_share": domain.out_of_domain_share, "trained_on": domain.trained_on,
            "domain_warning": domain.warning()}


def moment_to_proto(moment: Moment):
    from vidcap.v1 import vidcap_pb2 as pb

    return pb.Moment(t=moment.t, score=moment.score, caption=moment.caption,
                     previous_caption=moment.previous_caption, index=moment.index, reason=moment.reason)


def moment_from_proto(message) -> Moment:
    return Moment(message.t, message.score, message.caption, message.previous_caption, message.index,
                  message.reason)


def sample_to_json(sample: Sample) -> str:
    return base64.b64encode(sample.to_bytes()).decode()


def sample_from_json(data: str) -> Sample:
    try:
        return Sample.from_bytes(base64.b64decode(data, validate=True))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise InputError(f"unreadable sample: {exc}") from None


def resume_to_json(resume: Resume) -> dict[str, Any]:
    return {"scored": resume.scored, "samples": [sample_to_json(s) for s in resume.samples],
            "captioned": sample_to_json(resume.captioned) if resume.captioned is not None else None}


def resume_from_json(data: Any) -> Resume:
    if not isinstance(data, Mapping) or not isinstance(data.get("samples"), list):
        raise InputError("resume must be an object with samples")
    captioned = data.get("captioned")
    return Resume(samples=[sample_from_json(s) for s in data["samples"]],
                  captioned=sample_from_json(captioned) if captioned else None,
                  scored=_number(data.get("scored"), "resume.scored", int, 0))


# ---- jobs ------------------------------------------------------------------------------------------------------


def params_to_proto(params: AnalysisParams):
    from vidcap.v1 import vidcap_pb2 as pb

    return pb.AnalysisParams(every_n_seconds=params.every_n_seconds, window=params.window, metric=params.metric or "",
                             scorer=params.scorer, beam=params.beam, no_skip=not params.skip_still, cuts=params.cuts)


def job_to_json(job) -> dict[str, Any]:
    """A job (vidcap.library.job_store.Job) as every door shows it."""
    return {"id": job.id, "state": job.state, "name": job.name, "created": job.created, "frames": job.frames,
            "expected_frames": job.expected or 0, "duration": job.duration or 0.0,
            "eta_seconds": None if job.eta_seconds is None else round(job.eta_seconds, 1), "error": job.error or "",
            "captioned": job.captioned, "runs": job.runs, "finished": job.finished or 0.0,
            "add_to_library": job.add_to_library,
            "params": {**params_to_json(job.params), "metric": job.params.metric or ""}}


def job_to_proto(job):
    from vidcap.v1 import vidcap_pb2 as pb

    fields = job_to_json(job)
    fields["params"] = params_to_proto(job.params)
    return pb.Job(**fields)
