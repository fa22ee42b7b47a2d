"""Bounds on everything a request can ask for, checked before any work or allocation.

One `Limits` serves every door (gRPC, the old HTTP API, the TorchServe handler, the CLI), so a request refused at
one is refused at all of them with the same one-line message naming the parameter and its limit. A value outside
its range is an `InputError` (INVALID_ARGUMENT / 400 / exit 2); a size above a limit (bytes, pixels, seconds,
sampled frames) is an `InputTooLargeError` (RESOURCE_EXHAUSTED / 413 / exit 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from vidcap.errors import InputError, InputTooLargeError

MIB = 1024**2


@dataclass(frozen=True)
class Limits:
    min_every_n_seconds: float = 0.04  # 25 samples per second: about every frame of most videos
    max_sampled_frames: int = 100_000  # per request: the video's length / the sampling step
    max_window: int = 1000
    max_beam: int = 20
    max_batch_size: int = 64
    max_image_pixels: int = 50_000_000
    max_frame_pixels: int = 8192 * 4320  # one video frame: 8K
    max_decode_pixels: float = 4e12  # all frames decoded for one video: 4 h of 4K at 30 frames/s
    max_image_bytes: int = 32 * MIB
    max_upload_bytes: int = 2048 * MIB  # a video sent as bytes, chunks or a form upload
    max_video_seconds: float = 4 * 3600.0
    # One gRPC message: an image, a video sent whole (AnalyzeVideo `video`), a chunk of an upload. Larger videos
    # go in chunks (AnalyzeVideoUpload), so no upload ever sits whole in memory.
    max_message_bytes: int = 32 * MIB
    # An upload slower than this on average (after the grace period) is cut off: it would hold its budget for ever.
    min_upload_bytes_per_second: float = 4096.0
    upload_grace_seconds: float = 20.0

    @classmethod
    def for_local_files(cls) -> "Limits":
        """The CLI on the user's own files: the same parameter ranges, no caps on sizes."""
        return cls(max_sampled_frames=10**9, max_image_bytes=2**62, max_upload_bytes=2**62, max_video_seconds=math.inf,
                   max_frame_pixels=2**31 - 1, max_decode_pixels=math.inf)

    def to_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, values: dict | None) -> "Limits":
        """Known keys only (a model-config.yaml may carry others)."""
        names = {f.name for f in fields(cls)}
        return replace(cls(), **{k: v for k, v in (values or {}).items() if k in names})

    # ---- request parameters ------------------------------------------------------------------------------

    def check_sampling(self, every_n_seconds: float) -> None:
        if not math.isfinite(every_n_seconds) or every_n_seconds < self.min_every_n_seconds:
            raise InputError(f"every_n_seconds must be at least {self.min_every_n_seconds} (one sample per "
                             f"{self.min_every_n_seconds} s), got {every_n_seconds}")

    def check_window(self, window: int) -> None:
        if not 1 <= window <= self.max_window:
            raise InputError(f"window must be between 1 and {self.max_window}, got {window}")

    def check_beam(self, beam: int) -> None:
        if not 1 <= beam <= self.max_beam:
            raise InputError(f"beam must be between 1 and {self.max_beam}, got {beam}")

    def check_batch_size(self, batch_size: int) -> None:
        if not 1 <= batch_size <= self.max_batch_size:
            raise InputError(f"batch_size must be between 1 and {self.max_batch_size}, got {batch_size}")

    # ---- sizes -------------------------------------------------------------------------------------------

    def check_video(self, duration: float, sampled_frames: int) -> None:
        """Once the video's header is read, before a frame is decoded."""
        if duration > self.max_video_seconds:
            raise InputTooLargeError(f"video is {duration:.0f} s long, above the limit of "
                                     f"{self.max_video_seconds:.0f} s (max_video_seconds)")
        if sampled_frames > self.max_sampled_frames:
            raise InputTooLargeError(f"{sampled_frames} frames would be sampled, above the limit of "
                                     f"{self.max_sampled_frames} per request (max_sampled_frames): sample less "
                                     f"often (every_n_seconds)")

    def check_decode(self, frame_size: tuple[int, int] | None, frame_rate: float | None, duration: float) -> None:
        """From the headers, before a frame is decoded (the frame source counts again as it decodes)."""
        if frame_size is None:
            return
        width, height = frame_size
        if width * height > self.max_frame_pixels:
            raise InputTooLargeError(f"video frames are {width}x{height}, above the limit of {self.max_frame_pixels} "
                                     f"pixels (max_frame_pixels)")
        work = width * height * (frame_rate or 0.0) * duration
        if work > self.max_decode_pixels:
            raise InputTooLargeError(f"decoding this video means {work:.3g} pixels, above the limit of "
                                     f"{self.max_decode_pixels:.3g} (max_decode_pixels): a shorter or smaller video")

    def check_image_bytes(self, size: int) -> None:
        if size > self.max_image_bytes:
            raise InputTooLargeError(f"image is {size} bytes, above the limit of {self.max_image_bytes} "
                                     f"(max_image_bytes)")

    def check_upload_bytes(self, size: int) -> None:
        if size > self.max_upload_bytes:
            raise InputTooLargeError(f"upload above the limit of {self.max_upload_bytes} bytes (max_upload_bytes)")

    def check_message_bytes(self, size: int, what: str) -> None:
        if size > self.max_message_bytes:
            raise InputTooLargeError(f"{what} is {size} bytes, above the limit of {self.max_message_bytes} for one "
                                     f"message (max_message_bytes): send videos in chunks (AnalyzeVideoUpload)")


DEFAULT_LIMITS = Limits()


# ---- on the command line -----------------------------------------------------------------------------------

_FLAGS = [  # (flag, field, type, unit, help); megabytes on the command line, bytes inside
    ("--min-every-seconds", "min_every_n_seconds", float, 1, "shortest sampling step a request may ask for"),
    ("--max-sampled-frames", "max_sampled_frames", int, 1, "most frames one video request may sample"),
    ("--max-window", "max_window", int, 1, "largest comparison window"),
    ("--max-beam", "max_beam", int, 1, "largest beam size"),
    ("--max-image-pixels", "max_image_pixels", int, 1, "largest image, in pixels"),
    ("--max-frame-pixels", "max_frame_pixels", int, 1, "largest video frame, in pixels"),
    ("--max-decode-pixels", "max_decode_pixels", float, 1, "most pixels decoded for one video (frames x size)"),
    ("--max-image-mb", "max_image_bytes", float, MIB, "largest image file, in MB"),
    ("--max-upload-mb", "max_upload_bytes", float, MIB, "largest video upload, in MB"),
    ("--max-message-mb", "max_message_bytes", float, MIB, "largest gRPC message (a video sent whole, a chunk), in MB"),
    ("--max-video-seconds", "max_video_seconds", float, 1, "longest video, in seconds"),
    ("--min-upload-kbps", "min_upload_bytes_per_second", float, 1024, "slowest upload, in KiB/s on average (slower "
     "ones are cut off)"),
    ("--upload-grace-seconds", "upload_grace_seconds", float, 1, "seconds before the upload rate is checked"),
]


def add_limit_arguments(parser) -> None:
    group = parser.add_argument_group("limits on each request (checked before any work; the same at every door)")
    for flag, name, kind, unit, text in _FLAGS:
        default = getattr(DEFAULT_LIMITS, name) / unit
        group.add_argument(flag, type=kind, default=kind(default), dest=f"limit_{name}",
                           metavar=flag.rsplit("-", 1)[-1].upper(),
                           help=f"{text} (default: {kind(default):g})")


def limits_from_args(args) -> Limits:
    values = {name: (int(getattr(args, f"limit_{name}") * unit) if unit != 1 else getattr(args, f"limit_{name}"))
              for _, name, _, unit, _ in _FLAGS}
    return replace(DEFAULT_LIMITS, **values)
