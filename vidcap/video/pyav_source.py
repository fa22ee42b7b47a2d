"""CPU decoding with PyAV (FFmpeg bundled in the wheel)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from pathlib import Path

import av

from vidcap.errors import InputError, InputTooLargeError
from vidcap.video.cuts import ThumbnailLog, luma_thumbnail
from vidcap.video.frames import SAME_TIME, Frame, FrameSource, VideoOpenError

_EPS = SAME_TIME
_SKIP_MARGIN_SECONDS = 0.5
# Where the frames between samples are kept (for cuts to the frame), a keyframe is sought only this far ahead of
# the decoding position: nearer, the frames before it are decoded, as cuts there would otherwise go unseen (x264
# puts a keyframe on most cuts, so a montage has one every second).
_SEEK_PAST_SECONDS = 5.0


class PyAVFrameSource(FrameSource):
    """Keyframe-aware sampling: for each target time, seek only when the keyframe before it lies past the
    current decoding position; otherwise decode forward. Seeking to every sample is 3-4x slower than decoding
    through when keyframes are further apart than the sampling step (measured with PyAV).

    Keyframe positions come from a second, demux-only reader (no decoding: cheap) that runs just ahead of the
    demuxer, so nothing is read up front and the first frame comes out at once, even on a 2-hour file."""

    SOURCE_NAME = "pyav"

    def __init__(self, path: str | Path, every_n_seconds: float, size: tuple[int, int] | None = None):
        super().__init__(path, every_n_seconds, size)
        self._container = _open(self.path)
        try:
            self._stream = self._container.streams.video[0]
            self._time_base = float(self._stream.time_base)
            self._start = self._first_pts_seconds()
            self._duration = self._probe_duration()
            self._skipping = False
            # MPEG-TS has no index: FFmpeg seeks it by searching timestamps and can land a keyframe late (frames
            # lost: seen on a 12 s file, 4-7 s skipped). Such files are decoded straight through.
            self._seekable = "mpegts" not in self._container.format.name
            context = self._stream.codec_context
            self.frame_size = (context.width, context.height) if context.width and context.height else None
            rate = self._stream.average_rate or self._stream.guessed_rate
            self.frame_rate = float(rate) if rate else None
            self._max_frame_pixels, self._max_decode_pixels, self._decoded_pixels = None, None, 0
            if self.every_n_seconds > self._duration:
                raise InputError(f"every_n_seconds ({self.every_n_seconds:g}) is longer than the video "
                                 f"({self._duration:.2f} s)")
        except BaseException:
            self._container.close()
            raise

    @property
    def duration(self) -> float:
        return self._duration

    def _first_pts_seconds(self) -> float:
        if self._stream.start_time is not None:
            return self._stream.start_time * self._time_base
        return 0.0

    def _probe_duration(self) -> float:
        if self._stream.duration:
            return self._stream.duration * self._time_base
        if self._container.duration:
            return self._container.duration / av.time_base
        # No duration in the headers (some webm/mkv): find the last packet's timestamp.
        last = 0.0
        with _open(self.path) as probe:
            for packet in probe.demux(probe.streams.video[0]):
                if packet.pts is not None:
                    last = max(last, packet.pts * self._time_base + (packet.duration or 0) * self._time_base)
        duration = last - self._start
        if duration <= 0:
            raise VideoOpenError(f"cannot tell the length of {self.path}")
        return duration

    def frames(self) -> Iterator[Frame]:
        targets = self.sample_times()
        keyframes = _KeyframeIndex(self.path, self._time_base)
        k, index, position = 0, 0, None  # next target, frames yielded, time of the last decoded frame
        log = ThumbnailLog()  # the decoded frames between two samples, for cuts to the frame
        given = float("-inf")  # frames up to this time are in the lead-ins of samples given before
        if self.resumed_after is not None:  # targets that frame already served are done; seek to the next one
            index, given = self.resumed_after[0] + 1, self.resumed_after[1]
            k, position = sum(1 for t in targets if t <= given + _EPS), -1.0
            if self.thumbnails and self._seekable:  # from the last sample given: the next one's lead-in is whole
                keyframe = keyframes.last_at_or_before(self._start + given)
                if keyframe is not None:
                    self._container.seek(round(keyframe / self._time_base), stream=self._stream, backward=True)
                    position = keyframe - self._start
        try:
            while k < len(targets):
                keyframe = keyframes.last_at_or_before(self._start + targets[k])
                if self._seekable and position is not None and keyframe is not None and \
                        keyframe - self._start > position + self._seek_margin() + _EPS:
                    self._container.seek(round(keyframe / self._time_base), stream=self._stream, backward=True)
                    position = keyframe - self._start
                self._skip_unreferenced(position, targets[k])
                for frame in self._decode_from_here():
                    if frame.pts is None:
                        continue
                    position = frame.pts * self._time_base - self._start
                    if self.thumbnails and position > given + _EPS:
                        log.add(position, luma_thumbnail(frame))
                    if position < targets[k] - _EPS:
                        self._skip_unreferenced(position, targets[k])
                        continue
                    yield Frame(index, position, self._to_rgb(frame), log.take())
                    index += 1
                    while k < len(targets) and targets[k] <= position + _EPS:  # one frame serves each target once
                        k += 1
                    if k == len(targets):
                        return
                    self._skip_unreferenced(position, targets[k])
                    keyframe = keyframes.last_at_or_before(self._start + targets[k])
                    if self._seekable and keyframe is not None and \
                            keyframe - self._start > position + self._seek_margin() + _EPS:
                        break  # cheaper to seek to that keyframe than to decode up to it
                else:
                    return  # end of stream: targets past the last frame have no frame
        except av.error.FFmpegError as exc:
            raise VideoOpenError(f"cannot decode {self.path.name}: {_reason(exc)}") from exc
        finally:
            keyframes.close()

    def _seek_margin(self) -> float:
        return _SEEK_PAST_SECONDS if self.thumbnails else 0.0

    def _skip_unreferenced(self, position: float | None, target: float) -> None:
        """Far from the next target, let the video codec skip frames no other frame refers to (B-frames in H.264):
        nobody will see them. Measured on 720p H.264 (x264 defaults): half the frames, 41% less decoding time.
        Near the target every frame is decoded again, so the frame shown at the target is never skipped; the
        margin is far longer than any codec's reordering delay."""
        skip = position is not None and target - position > _SKIP_MARGIN_SECONDS
        if skip != self._skipping:
            self._stream.codec_context.skip_frame = "NONREF" if skip else "DEFAULT"
            self._skipping = skip

    def bound(self, max_frame_pixels: int, max_decode_pixels: float) -> None:
        self._max_frame_pixels, self._max_decode_pixels = max_frame_pixels, max_decode_pixels
        # FFmpeg's own bound, a backstop 4x above ours (its check counts padding): the decoder refuses to allocate a
        # far larger picture at all. Each frame it does decode is checked against ours exactly (_count).
        self._stream.codec_context.options = {**self._stream.codec_context.options,
                                              "max_pixels": str(min(4 * int(max_frame_pixels), 2**31 - 1))}

    def _decode_from_here(self) -> Iterator[av.VideoFrame]:
        for packet in self._container.demux(self._stream):
            try:
                decoded = list(_decode_packet(packet))
            except (av.error.ArgumentError, MemoryError):  # the decoder refused a picture above its max_pixels
                raise InputTooLargeError(f"{self.path.name}: its frames are above the limit of "
                                         f"{self._max_frame_pixels} pixels (max_frame_pixels)") from None
            for frame in decoded:
                self._count(frame)
                yield frame

    def _count(self, frame: av.VideoFrame) -> None:
        if self._max_decode_pixels is None:
            return
        pixels = frame.width * frame.height
        if pixels > self._max_frame_pixels:
            raise InputTooLargeError(f"{self.path.name}: a frame of {frame.width}x{frame.height} is above the limit "
                                     f"of {self._max_frame_pixels} pixels (max_frame_pixels)")
        self._decoded_pixels += pixels
        if self._decoded_pixels > self._max_decode_pixels:
            raise InputTooLargeError(f"{self.path.name}: decoding it takes more than {self._max_decode_pixels:.3g} "
                                     f"pixels in all (max_decode_pixels), more than its headers said")

    def _to_rgb(self, frame: av.VideoFrame):
        if self.size is None:
            return frame.to_ndarray(format="rgb24")
        width, height = self.size
        return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()

    def close(self) -> None:
        self._container.close()


def frames_at(path: str | Path, times: list[float], max_side: int | None = None) -> list[Frame]:
    """The frames shown at the given times (seconds from the start), each found by one seek to the keyframe
    before it: for a few thumbnails of a long video, much cheaper than sampling the whole file."""
    frames = []
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        start = stream.start_time * time_base if stream.start_time is not None else 0.0
        for index, t in enumerate(times):
            container.seek(round((start + t) / time_base), stream=stream, backward=True)
            found = None
            for packet in container.demux(stream):
                decoded = [f for f in _decode_packet(packet) if f.pts is not None]
                if decoded and decoded[-1].pts * time_base - start >= t - _EPS:
                    found = next(f for f in decoded if f.pts * time_base - start >= t - _EPS)
                    break
                found = decoded[-1] if decoded else found  # the last frame, if t lies past it
            if found is not None:
                frames.append(Frame(index, found.pts * time_base - start, _scaled_rgb(found, max_side)))
    return frames


def presentation_times(path: str | Path) -> list[float]:
    """Every frame's presentation time (seconds from the first frame), in order, from the packets alone (demuxing,
    no decoding: a 2-hour file takes seconds). What a GPU source needs to pick its frames by number."""
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        time_base = float(stream.time_base)
        times = sorted(p.pts * time_base for p in container.demux(stream) if p.pts is not None and p.size)
    return [t - times[0] for t in times] if times else []


def _decode_packet(packet: av.Packet) -> list[av.VideoFrame]:
    try:
        return list(packet.decode())
    except av.error.InvalidDataError:
        return []  # one corrupt packet: skip it, like players do


def _scaled_rgb(frame: av.VideoFrame, max_side: int | None):
    scale = min(1.0, max_side / max(frame.width, frame.height)) if max_side else 1.0
    width, height = max(2, round(frame.width * scale)), max(2, round(frame.height * scale))
    return frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()


class _KeyframeIndex:
    """Keyframe times (seconds, absolute) read lazily by demuxing only, never decoding."""

    def __init__(self, path: Path, time_base: float):
        self._container = _open(path)
        self._packets = self._container.demux(self._container.streams.video[0])
        self._time_base = time_base
        self._times: list[float] = []
        self._done = False

    def last_at_or_before(self, t: float) -> float | None:
        while not self._done and (not self._times or self._times[-1] <= t):  # read until a keyframe past t
            packet = next(self._packets, None)
            if packet is None:
                self._done = True
            elif packet.is_keyframe and packet.pts is not None:
                self._times.append(packet.pts * self._time_base)
        i = bisect.bisect_right(self._times, t + _EPS)
        return self._times[i - 1] if i else None

    def close(self) -> None:
        self._container.close()


# A video file is a plain media container, nothing more. Playlists (HLS), concat lists, image sequences and the
# like name other files or URLs: an upload of one could read files elsewhere on the server, so FFmpeg may use only
# these demuxers, and only the file protocol (for the file itself).
FILE_DEMUXERS = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi", "mpegts", "flv", "mpeg", "ogg")
FILE_OPTIONS = {"format_whitelist": ",".join(FILE_DEMUXERS), "protocol_whitelist": "file"}
NOT_A_CONTAINER = ("is not a video file vidcap opens (MP4/MOV, Matroska/WebM, AVI, MPEG-TS, FLV, MPEG-PS or Ogg; "
                   "playlists and lists of other files are refused)")


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r", options=FILE_OPTIONS)
    except av.error.ArgumentError:  # EINVAL: a demuxer outside FILE_DEMUXERS recognised the file
        raise VideoOpenError(f"{path.name} {NOT_A_CONTAINER}") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise VideoOpenError(f"cannot open {path.name} as a video: {_reason(exc)}") from exc
    if not container.streams.video:
        container.close()
        raise VideoOpenError(f"{path.name} has no video stream")
    return container


def _reason(exc: Exception) -> str:
    """FFmpeg's reason without the file's full path (which would tell clients where the server keeps files)."""
    return getattr(exc, "strerror", None) or str(exc)


def cut_clip(path: str | Path, start: float, end: float, out: str | Path) -> float:
    """Copy the video stream between `start` and `end` (seconds from the start) into `out` without re-encoding:
    from the keyframe at or before `start`, so the clip plays on its own. -> where `start` lies in the clip."""
    with _open(Path(path)) as source, av.open(str(out), "w") as clip:
        stream = source.streams.video[0]
        time_base = float(stream.time_base)
        first_pts = stream.start_time or 0
        copy = clip.add_stream_from_template(stream)
        source.seek(first_pts + round(start / time_base), stream=stream, backward=True)
        offset = None
        for packet in source.demux(stream):
            if packet.pts is None or packet.dts is None or not packet.size:
                continue
            if offset is None:
                offset = packet.pts
            if (packet.pts - first_pts) * time_base > end and packet.is_keyframe:
                break
            packet.pts, packet.dts = packet.pts - offset, packet.dts - offset
            packet.stream = copy
            clip.mux(packet)
    if offset is None:
        raise InputError(f"no video at {start:.1f} s in {Path(path).name}")
    return max(0.0, start - (offset - first_pts) * time_base)
