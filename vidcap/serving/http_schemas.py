"""The typed /v1 requests and answers (pydantic): what /docs and /openapi.json describe."""

from __future__ import annotations

from pydantic import BaseModel, Field

from vidcap.wire import job_to_json


class SearchHit(BaseModel):
    path: str = Field(description="the video on the server")
    start: float = Field(description="the stretch's start, in seconds of video")
    end: float
    caption: str
    score: float = Field(description="0..1: the share of the query's words the stretch names")


class SearchResponse(BaseModel):
    query: str
    hits: list[SearchHit]


class JobSubmission(BaseModel):
    """POST /v1/jobs: a multipart form with the video in `video`, or `path` naming one in the server's media
    folder (then also as a JSON object); the parameters as in /get_video_captions' newer names."""
    video: bytes | None = Field(None, description="the video file (multipart only)",
                                json_schema_extra={"format": "binary"})
    path: str | None = Field(None, description="instead of `video`: a path relative to the server's media folder")
    every_n_seconds: float | None = Field(None, description="sampling step in seconds (default 1)")
    window: int | None = Field(None, description="previous sampled frames each frame is compared with (default 5)")
    metric: str | None = Field(None, description="euclidean (or euclidian) or cosine; default: the scorer's")
    scorer: str | None = Field(None, description="robust (default) or seed (the old project's metric)")
    beam: int | None = Field(None, description="beam size (default 3)")
    no_skip: bool | None = Field(None, description="caption still frames too")
    cuts: str | None = Field(None, description="the cut signal: frames (default: cuts to the frame), colour (the "
                                               "samples' colours alone) or transnetv2 (the learnt shot detector)")
    add_to_library: bool | None = Field(None, description="once done, the video joins the server's library (search "
                                                          "finds it; an upload is kept for it)")


class JobParameters(BaseModel):
    every_n_seconds: float
    window: int
    metric: str = Field(description="empty: the scorer's default")
    scorer: str
    beam: int
    no_skip: bool
    cuts: str


class JobModel(BaseModel):
    id: str
    state: str = Field(description="queued | running | done | failed | cancelled")
    name: str = Field(description="the video")
    created: float = Field(description="seconds since the epoch")
    frames: int = Field(description="results so far")
    expected_frames: int = Field(description="frames that will be sampled; 0 until the job has started")
    duration: float = Field(description="seconds of video; 0 until the job has started")
    eta_seconds: float | None = Field(description="at the pace of the current run; null until known")
    error: str = Field(description="why it failed")
    captioned: int = Field(description="samples captioned (the others reused a still frame's caption)")
    runs: int = Field(description="more than 1: it continued after the server stopped")
    finished: float = Field(description="seconds since the epoch; 0 while it has not ended")
    add_to_library: bool = Field(description="once done, the video joins the server's library")
    params: JobParameters


class JobList(BaseModel):
    jobs: list[JobModel] = Field(description="newest first")


class FrameModel(BaseModel):
    index: int
    t: float = Field(description="seconds from the start of the video")
    caption: str
    score: float = Field(description="dissimilarity with the previous frames")
    alternatives: list[str] = Field(description="the other beams' captions")
    reused: bool = Field(description="a still frame: the caption of the last captioned one")
    in_domain: float | None = Field(description="how typical of the model's training images, 0..1")
    cut: float = Field(description="the cut signal, 0..1")
    cut_times: list[float] = Field(default_factory=list, description="where the new shots its cut signal found "
                                                                     "began, to the frame (seconds)")


class MomentModel(BaseModel):
    t: float
    score: float
    caption: str
    previous_caption: str
    index: int
    reason: str = Field(description="cut, caption change or visual change")


class JobResults(BaseModel):
    job: JobModel
    frames: list[FrameModel] = Field(description="so far, while it runs; what it gave before a cancel")
    moments: list[MomentModel]


def job_model(job) -> JobModel:
    return JobModel(**job_to_json(job))
