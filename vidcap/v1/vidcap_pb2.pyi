from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitJobRequest(_message.Message):
    __slots__ = ("video", "path", "params", "filename", "add_to_library")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_LIBRARY_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    path: str
    params: AnalysisParams
    filename: str
    add_to_library: bool
    def __init__(self, video: _Optional[bytes] = ..., path: _Optional[str] = ..., params: _Optional[_Union[AnalysisParams, _Mapping]] = ..., filename: _Optional[str] = ..., add_to_library: _Optional[bool] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "limit")
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    state: str
    limit: int
    def __init__(self, state: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("id", "state", "name", "created", "frames", "expected_frames", "duration", "eta_seconds", "error", "captioned", "runs", "params", "finished", "add_to_library")
    ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CAPTIONED_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_LIBRARY_FIELD_NUMBER: _ClassVar[int]
    id: str
    state: str
    name: str
    created: float
    frames: int
    expected_frames: int
    duration: float
    eta_seconds: float
    error: str
    captioned: int
    runs: int
    params: AnalysisParams
    finished: float
    add_to_library: bool
    def __init__(self, id: _Optional[str] = ..., state: _Optional[str] = ..., name: _Optional[str] = ..., created: _Optional[float] = ..., frames: _Optional[int] = ..., expected_frames: _Optional[int] = ..., duration: _Optional[float] = ..., eta_seconds: _Optional[float] = ..., error: _Optional[str] = ..., captioned: _Optional[int] = ..., runs: _Optional[int] = ..., params: _Optional[_Union[AnalysisParams, _Mapping]] = ..., finished: _Optional[float] = ..., add_to_library: _Optional[bool] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ...) -> None: ...

class JobEvent(_message.Message):
    __slots__ = ("job", "frame", "moment", "summary")
    JOB_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    MOMENT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    job: Job
    frame: FrameResult
    moment: Moment
    summary: Summary
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ..., frame: _Optional[_Union[FrameResult, _Mapping]] = ..., moment: _Optional[_Union[Moment, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ...) -> None: ...

class ExportJobRequest(_message.Message):
    __slots__ = ("id", "format")
    ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    id: str
    format: str
    def __init__(self, id: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ExportJobResponse(_message.Message):
    __slots__ = ("text", "filename", "media_type")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    MEDIA_TYPE_FIELD_NUMBER: _ClassVar[int]
    text: str
    filename: str
    media_type: str
    def __init__(self, text: _Optional[str] = ..., filename: _Optional[str] = ..., media_type: _Optional[str] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeServiceRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServiceInfo(_message.Message):
    __slots__ = ("allowed_sources", "jobs", "library", "library_videos", "library_stretches")
    ALLOWED_SOURCES_FIELD_NUMBER: _ClassVar[int]
    JOBS_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_VIDEOS_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_STRETCHES_FIELD_NUMBER: _ClassVar[int]
    allowed_sources: _containers.RepeatedScalarFieldContainer[str]
    jobs: bool
    library: bool
    library_videos: int
    library_stretches: int
    def __init__(self, allowed_sources: _Optional[_Iterable[str]] = ..., jobs: _Optional[bool] = ..., library: _Optional[bool] = ..., library_videos: _Optional[int] = ..., library_stretches: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "source", "trained_on", "architecture", "reported", "domain_profile")
    class ReportedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    REPORTED_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_PROFILE_FIELD_NUMBER: _ClassVar[int]
    name: str
    source: str
    trained_on: str
    architecture: str
    reported: _containers.ScalarMap[str, str]
    domain_profile: bool
    def __init__(self, name: _Optional[str] = ..., source: _Optional[str] = ..., trained_on: _Optional[str] = ..., architecture: _Optional[str] = ..., reported: _Optional[_Mapping[str, str]] = ..., domain_profile: _Optional[bool] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "top")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    query: str
    top: int
    def __init__(self, query: _Optional[str] = ..., top: _Optional[int] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("path", "start", "end", "caption", "score")
    PATH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    path: str
    start: float
    end: float
    caption: str
    score: float
    def __init__(self, path: _Optional[str] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., caption: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits",)
    HITS_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ...) -> None: ...

class CaptionImageRequest(_message.Message):
    __slots__ = ("image", "beam", "with_embeddings", "with_feature", "with_attention")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    BEAM_FIELD_NUMBER: _ClassVar[int]
    WITH_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    WITH_FEATURE_FIELD_NUMBER: _ClassVar[int]
    WITH_ATTENTION_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    beam: int
    with_embeddings: bool
    with_feature: bool
    with_attention: bool
    def __init__(self, image: _Optional[bytes] = ..., beam: _Optional[int] = ..., with_embeddings: _Optional[bool] = ..., with_feature: _Optional[bool] = ..., with_attention: _Optional[bool] = ...) -> None: ...

class Vector(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class CaptionImageResponse(_message.Message):
    __slots__ = ("caption", "words", "log_prob", "embeddings", "feature", "attention", "attention_size")
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    LOG_PROB_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_SIZE_FIELD_NUMBER: _ClassVar[int]
    caption: str
    words: _containers.RepeatedScalarFieldContainer[str]
    log_prob: float
    embeddings: _containers.RepeatedCompositeFieldContainer[Vector]
    feature: Vector
    attention: _containers.RepeatedCompositeFieldContainer[Vector]
    attention_size: int
    def __init__(self, caption: _Optional[str] = ..., words: _Optional[_Iterable[str]] = ..., log_prob: _Optional[float] = ..., embeddings: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., feature: _Optional[_Union[Vector, _Mapping]] = ..., attention: _Optional[_Iterable[_Union[Vector, _Mapping]]] = ..., attention_size: _Optional[int] = ...) -> None: ...

class AnalysisParams(_message.Message):
    __slots__ = ("every_n_seconds", "window", "metric", "scorer", "beam", "no_skip", "cuts")
    EVERY_N_SECONDS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    BEAM_FIELD_NUMBER: _ClassVar[int]
    NO_SKIP_FIELD_NUMBER: _ClassVar[int]
    CUTS_FIELD_NUMBER: _ClassVar[int]
    every_n_seconds: float
    window: int
    metric: str
    scorer: str
    beam: int
    no_skip: bool
    cuts: str
    def __init__(self, every_n_seconds: _Optional[float] = ..., window: _Optional[int] = ..., metric: _Optional[str] = ..., scorer: _Optional[str] = ..., beam: _Optional[int] = ..., no_skip: _Optional[bool] = ..., cuts: _Optional[str] = ...) -> None: ...

class AnalyzeVideoRequest(_message.Message):
    __slots__ = ("video", "path", "live_source", "params", "filename")
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LIVE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    video: bytes
    path: str
    live_source: str
    params: AnalysisParams
    filename: str
    def __init__(self, video: _Optional[bytes] = ..., path: _Optional[str] = ..., live_source: _Optional[str] = ..., params: _Optional[_Union[AnalysisParams, _Mapping]] = ..., filename: _Optional[str] = ...) -> None: ...

class VideoChunk(_message.Message):
    __slots__ = ("params", "filename", "data", "add_to_library")
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_LIBRARY_FIELD_NUMBER: _ClassVar[int]
    params: AnalysisParams
    filename: str
    data: bytes
    add_to_library: bool
    def __init__(self, params: _Optional[_Union[AnalysisParams, _Mapping]] = ..., filename: _Optional[str] = ..., data: _Optional[bytes] = ..., add_to_library: _Optional[bool] = ...) -> None: ...

class Queued(_message.Message):
    __slots__ = ("position",)
    POSITION_FIELD_NUMBER: _ClassVar[int]
    position: int
    def __init__(self, position: _Optional[int] = ...) -> None: ...

class VideoInfo(_message.Message):
    __slots__ = ("duration", "expected_frames")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    duration: float
    expected_frames: int
    def __init__(self, duration: _Optional[float] = ..., expected_frames: _Optional[int] = ...) -> None: ...

class FrameResult(_message.Message):
    __slots__ = ("index", "t", "caption", "score", "alternatives", "reused", "in_domain", "cut", "cut_times")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    IN_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    CUT_FIELD_NUMBER: _ClassVar[int]
    CUT_TIMES_FIELD_NUMBER: _ClassVar[int]
    index: int
    t: float
    caption: str
    score: float
    alternatives: _containers.RepeatedScalarFieldContainer[str]
    reused: bool
    in_domain: float
    cut: float
    cut_times: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, index: _Optional[int] = ..., t: _Optional[float] = ..., caption: _Optional[str] = ..., score: _Optional[float] = ..., alternatives: _Optional[_Iterable[str]] = ..., reused: _Optional[bool] = ..., in_domain: _Optional[float] = ..., cut: _Optional[float] = ..., cut_times: _Optional[_Iterable[float]] = ...) -> None: ...

class Moment(_message.Message):
    __slots__ = ("t", "score", "caption", "previous_caption", "index", "reason")
    T_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CAPTION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_CAPTION_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    t: float
    score: float
    caption: str
    previous_caption: str
    index: int
    reason: str
    def __init__(self, t: _Optional[float] = ..., score: _Optional[float] = ..., caption: _Optional[str] = ..., previous_caption: _Optional[str] = ..., index: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class Summary(_message.Message):
    __slots__ = ("duration", "frames", "moments", "wall_seconds", "metric", "scorer", "reused_frames", "out_of_domain_share", "domain_warning", "trained_on")
    DURATION_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    MOMENTS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    SCORER_FIELD_NUMBER: _ClassVar[int]
    REUSED_FRAMES_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_DOMAIN_SHARE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_WARNING_FIELD_NUMBER: _ClassVar[int]
    TRAINED_ON_FIELD_NUMBER: _ClassVar[int]
    duration: float
    frames: int
    moments: _containers.RepeatedCompositeFieldContainer[Moment]
    wall_seconds: float
    metric: str
    scorer: str
    reused_frames: int
    out_of_domain_share: float
    domain_warning: str
    trained_on: str
    def __init__(self, duration: _Optional[float] = ..., frames: _Optional[int] = ..., moments: _Optional[_Iterable[_Union[Moment, _Mapping]]] = ..., wall_seconds: _Optional[float] = ..., metric: _Optional[str] = ..., scorer: _Optional[str] = ..., reused_frames: _Optional[int] = ..., out_of_domain_share: _Optional[float] = ..., domain_warning: _Optional[str] = ..., trained_on: _Optional[str] = ...) -> None: ...

class Notice(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: str
    def __init__(self, message: _Optional[str] = ...) -> None: ...

class AnalyzeVideoResponse(_message.Message):
    __slots__ = ("notice", "started", "frame", "summary", "queued", "moment")
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    MOMENT_FIELD_NUMBER: _ClassVar[int]
    notice: Notice
    started: VideoInfo
    frame: FrameResult
    summary: Summary
    queued: Queued
    moment: Moment
    def __init__(self, notice: _Optional[_Union[Notice, _Mapping]] = ..., started: _Optional[_Union[VideoInfo, _Mapping]] = ..., frame: _Optional[_Union[FrameResult, _Mapping]] = ..., summary: _Optional[_Union[Summary, _Mapping]] = ..., queued: _Optional[_Union[Queued, _Mapping]] = ..., moment: _Optional[_Union[Moment, _Mapping]] = ...) -> None: ...
