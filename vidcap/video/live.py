"""Live sources: a network stream (RTSP, UDP or HTTP(S): MPEG-TS, HLS), a capture device (v4l2), standard input.

A live source does not end and cannot seek: frames are sampled by their timestamps as they arrive (the first frame
at or after 0, N, 2N, ... seconds of stream time), a stream that stalls or drops is reopened with backoff (each
attempt reported through `on_notice`), and it stops when asked, when standard input ends, or when reconnecting has
failed for `give_up_seconds`.

What a source may name is decided in vidcap/video/sources.py (protocols that reach local files are refused, a
server's allow-list); here, a network stream's own references (an HLS playlist naming segments) may only use
network protocols (FFmpeg's protocol_whitelist).
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator

import av

from vidcap.errors import InputError
from vidcap.video.cuts import ThumbnailLog, luma_thumbnail
from vidcap.video.frames import SAME_TIME, Frame, FrameSource
from vidcap.video.sources import NETWORK_PROTOCOLS, SourcePolicy, classify_source, redacted

log = logging.getLogger("vidcap.live")

OPEN_TIMEOUT_SECONDS = 10.0  # connecting and reading the stream's header
STALL_SECONDS = 5.0  # no data for this long: the stream stalled; reopen it
GIVE_UP_SECONDS = 60.0  # reconnecting for this long without a frame: stop with an error
BACKOFF_SECONDS = (0.5, 8.0)  # first and longest wait between reconnect attempts (doubling)


class NoVideoError(InputError):
    """The source answers but carries no video: reconnecting would not change that."""


class LiveSource(FrameSource):
    """Frames of a live source, sampled by their timestamps as they arrive (see the module's docstring)."""

    SOURCE_NAME = "live"
    live = True

    def __init__(self, source: str, every_n_seconds: float, size: tuple[int, int] | None = None,
                 on_notice: Callable[[str], None] | None = None, give_up_seconds: float = GIVE_UP_SECONDS,
                 stall_seconds: float = STALL_SECONDS, stdin=None, stopped: threading.Event | None = None,
                 policy: SourcePolicy | None = None):
        """stopped: set it (from any thread) to end `frames()` at the next frame, or within stall_seconds.
        policy: a server's allow-list, checked again (DNS included) before every connect; None on the command line."""
        if not every_n_seconds > 0:
            raise InputError(f"every_n_seconds must be positive, got {every_n_seconds}")
        self.source, self.kind = source, classify_source(source)
        if self.kind.kind == "file":
            raise InputError(f"{source!r} is a file, not a live source")
        self.path, self.every_n_seconds, self.size, self.resumed_after = source, float(every_n_seconds), size, None
        self.on_notice = on_notice or (lambda message: log.info("%s", message))
        self.give_up_seconds, self.stall_seconds = give_up_seconds, stall_seconds
        self.stdin, self.policy = stdin, policy
        self.stopped = stopped or threading.Event()
        self._container = None
        self._lock = threading.Lock()

    @property
    def duration(self) -> float:
        return 0.0  # unknown: it has not ended

    def sample_times(self) -> list[float]:
        return []

    def frames(self) -> Iterator[Frame]:
        index, next_t = 0, 0.0
        timeline = _Timeline()
        log = ThumbnailLog()  # the frames between two samples, for cuts to the frame
        failing_since = None
        backoff = BACKOFF_SECONDS[0]
        while not self.stopped.is_set():
            waited = time.monotonic() - failing_since if failing_since is not None else 0.0
            try:
                if self.policy is not None:
                    self.policy.check_connect(self.source)  # PermissionDeniedError ends it: not an InputError
                container = self._open(max(1.0, min(OPEN_TIMEOUT_SECONDS, self.give_up_seconds - waited)))
            except InputError as exc:
                if self.kind.kind == "stdin" or isinstance(exc, NoVideoError):
                    raise
                failing_since = failing_since or time.monotonic()
                if time.monotonic() - failing_since + backoff > self.give_up_seconds:
                    raise InputError(f"{redacted(self.source)}: no stream for {self.give_up_seconds:g} s ({exc}); "
                                     f"gave up") from None
                self.on_notice(f"cannot open {redacted(self.source)} ({exc}); retrying in {backoff:g} s")
                self.stopped.wait(backoff)
                backoff = min(2 * backoff, BACKOFF_SECONDS[1])
                continue
            connected = time.monotonic()
            try:
                for frame in self._decode(container):
                    if self.stopped.is_set():
                        return
                    t = timeline.t_of(frame.time if frame.time is not None else time.monotonic() - connected)
                    if t is None:
                        continue  # seen before this reconnect
                    if failing_since is not None:
                        self.on_notice(f"{redacted(self.source)}: receiving again")
                        failing_since, backoff = None, BACKOFF_SECONDS[0]
                    if self.thumbnails:
                        log.add(t, luma_thumbnail(frame))
                    if t + SAME_TIME < next_t:
                        continue  # not a sample
                    yield Frame(index, t, self._to_rgb(frame), log.take())
                    index += 1
                    next_t = (math.floor(t / self.every_n_seconds + SAME_TIME) + 1) * self.every_n_seconds
                if self.kind.kind == "stdin":
                    return  # the pipe was closed: the end
                reason = "the stream ended"
            except av.error.ExitError:
                reason = f"no data for {self.stall_seconds:g} s"
            except av.error.FFmpegError as exc:
                reason = f"the stream failed ({_reason(exc)})"
                if self.kind.kind == "stdin":
                    raise InputError(f"standard input: {reason}") from None
            finally:
                self._close()
            if self.stopped.is_set():
                return
            timeline.lost()
            if failing_since is not None and time.monotonic() - failing_since + backoff > self.give_up_seconds:
                raise InputError(f"{redacted(self.source)}: no new frames for {self.give_up_seconds:g} s "
                                 f"({reason}); gave up")
            failing_since = failing_since or time.monotonic()
            self.on_notice(f"{redacted(self.source)}: {reason}; reconnecting in {backoff:g} s")
            self.stopped.wait(backoff)
            backoff = min(2 * backoff, BACKOFF_SECONDS[1])

    def _open(self, timeout: float = OPEN_TIMEOUT_SECONDS):
        """Open the source, waiting at most `timeout` seconds for it -> a container with a video stream; InputError
        with the reason otherwise."""
        try:
            if self.kind.kind == "stdin":
                container = av.open(self.stdin or sys.stdin.buffer, mode="r", timeout=None)
            elif self.kind.kind == "device":
                container = av.open(self.source, mode="r", format="v4l2", timeout=(timeout, self.stall_seconds))
            else:
                # Probe one second of stream, not FFmpeg's default five: the first frame comes sooner.
                options = {"protocol_whitelist": NETWORK_PROTOCOLS, "fflags": "nobuffer",
                           "analyzeduration": "1000000", "probesize": "1000000",
                           "live_start_index": "-1"}  # HLS: from the newest segment, not three back
                container = av.open(self.source, mode="r", options=options, timeout=(timeout, self.stall_seconds))
        except av.error.ExitError:  # our timeout
            raise InputError(f"nothing received within {timeout:.1f} s") from None
        except (av.error.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
            where = "standard input" if self.kind.kind == "stdin" else redacted(self.source)
            raise InputError(f"{where} is not a readable video stream: {_reason(exc)}") from None
        if not container.streams.video:
            container.close()
            where = "standard input" if self.kind.kind == "stdin" else redacted(self.source)
            raise NoVideoError(f"{where} has no video stream")
        with self._lock:
            self._container = container
        return container

    def _decode(self, container) -> Iterator[av.VideoFrame]:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged packet (lost UDP datagrams): the next keyframe repairs the picture

    def _to_rgb(self, frame: av.VideoFrame):
        if self.size is None:
            return frame.to_ndarray(format="rgb24")
        width, height = self.size
        return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()

    def _close(self) -> None:
        with self._lock:
            container, self._container = self._container, None
        if container is not None:
            container.close()

    def stop(self) -> None:
        """Stop at the next frame, or once the current read times out (at most `stall_seconds`)."""
        self.stopped.set()

    def close(self) -> None:
        self.stop()
        self._close()


class _Timeline:
    """Stream timestamps -> seconds since the first frame, across reconnects. A new connection whose timestamps go on
    from the old one's (an HLS playlist, a camera that kept sending) keeps the mapping, and frames seen before the
    reconnect are dropped; one whose timestamps started again (the sender restarted) goes on after the last frame by
    the wall-clock time that passed."""

    REPLAY_SECONDS = 12.0  # a reconnect may start this far back (an HLS playlist's last segments)

    def __init__(self) -> None:
        self.offset: float | None = None  # t = stream time - offset
        self.last_stream = self.last_t = 0.0
        self.lost_at: float | None = None  # when the last connection ended

    def lost(self) -> None:
        self.lost_at = time.monotonic()

    def t_of(self, stream_time: float) -> float | None:
        if self.offset is None:
            self.offset = stream_time
        elif self.lost_at is not None:  # the first frame of a new connection
            gap = time.monotonic() - self.lost_at
            continues = self.last_stream - self.REPLAY_SECONDS <= stream_time <= self.last_stream + gap + 10.0
            if not continues:
                self.offset = stream_time - (self.last_t + gap)
            self.lost_at = None
        if stream_time <= self.last_stream and self.last_t > 0.0:
            return None
        self.last_stream, self.last_t = stream_time, stream_time - self.offset
        return self.last_t


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc)
