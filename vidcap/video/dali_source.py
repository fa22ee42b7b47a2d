"""GPU decoding with NVIDIA DALI (NVDEC): frames stay on the GPU, resized there, handed over as CUDA tensors.

Only used where a CUDA GPU and the nvidia-dali package are present (`pip install 'vidcap[gpu]'`); elsewhere
`dali_unavailable_reason()` says why and the registry falls back to PyAV. In DALI 2.x, H.264/HEVC decode on
the GPU only.

Which frames: the same rule as every frame source (`frames.sample_frame_indices`), applied to the frames'
presentation times read from the packets with PyAV (no decoding), and handed to DALI's reader as a file list of
frame numbers, one entry per sample. So the sampled frames and their times are PyAV's, at 29.97 fps and on
variable-rate files too, never a whole number of frames stepped from an average rate; and the reader pads its
last batch instead of wrapping around to the start of the video. Under `auto`, variable-rate files go to PyAV
(DALI's reader is made for constant rates); asked for by name, DALI takes them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from vidcap.video.frames import (
    Frame,
    FrameSource,
    VideoOpenError,
    is_constant_rate,
    sample_frame_indices,
)


def dali_unavailable_reason() -> str | None:
    """None when DALI decoding can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return "the nvidia-dali package is not installed (pip install 'vidcap[gpu]')"
    return None


def gpu_index(device: torch.device | None) -> int:
    """The CUDA device a GPU source decodes on: the captioner's (a TorchServe worker's may not be GPU 0)."""
    if device is not None and device.type == "cuda" and device.index is not None:
        return device.index
    return torch.cuda.current_device()


def frame_list(path: Path, indices: list[int]) -> str:
    """DALI's file list in frame numbers: one single-frame range per sample ("file label first last", the last
    frame excluded by `file_list_include_end=False`)."""
    return "".join(f"{path} 0 {i} {i + 1}\n" for i in indices)


class DALIFrameSource(FrameSource):
    SOURCE_NAME = "dali"

    def __init__(self, path: str | Path, every_n_seconds: float, size: tuple[int, int] | None = None,
                 device: torch.device | None = None, batch_size: int = 8, constant_rate_only: bool = False):
        super().__init__(path, every_n_seconds, size)
        reason = dali_unavailable_reason()
        if reason:
            raise RuntimeError(f"DALI decoding is not available: {reason}")
        from vidcap.video.pyav_source import PyAVFrameSource, presentation_times

        with PyAVFrameSource(path, every_n_seconds) as probe:  # the headers: cheap, nothing is decoded
            self._duration = probe.duration
        times = presentation_times(self.path)
        if constant_rate_only and not is_constant_rate(times):
            raise VideoOpenError(f"{self.path.name} has a variable frame rate")
        indices = sample_frame_indices(times, self.sample_times())
        self._times = [times[i] for i in indices]
        self._device_id, self._batch_size = gpu_index(device), batch_size
        self._list_file = self._write_list(frame_list(self.path.resolve(), indices))
        self._pipe = self._build()

    @property
    def duration(self) -> float:
        return self._duration

    @staticmethod
    def _write_list(text: str) -> str:
        fd, name = tempfile.mkstemp(prefix="vidcap-dali-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return name

    def _build(self):
        from nvidia.dali import fn, pipeline_def

        @pipeline_def(batch_size=self._batch_size, num_threads=2, device_id=self._device_id, prefetch_queue_depth=2)
        def sampled_frames():
            frames = fn.experimental.readers.video(
                device="gpu", file_list=self._list_file, file_list_format="frames", file_list_include_end=False,
                sequence_length=1, pad_last_batch=True, random_shuffle=False, name="reader",
            )
            if self.size is not None:
                frames = fn.resize(frames, resize_x=self.size[0], resize_y=self.size[1])
            return frames

        pipe = sampled_frames()
        try:
            pipe.build()
        except RuntimeError as exc:
            self.close()
            raise VideoOpenError(f"DALI cannot open {self.path.name}: {str(exc).splitlines()[0]}") from exc
        return pipe

    def frames(self) -> Iterator[Frame]:
        index = 0
        while index < len(self._times):
            (frames,) = self._pipe.run()
            # A copy: the DLPack view shares DALI's output buffer, which the next run() overwrites.
            batch = torch.from_dlpack(frames.as_tensor())[:, 0].clone()  # (B, H, W, 3) uint8, on the GPU
            for pixels in batch:
                if index >= len(self._times):  # the padded tail of the last batch
                    return
                # A resumed analysis: DALI's reader takes its frame list up front, so frames a stopped run
                # already gave are decoded again (not captioned again) and dropped here.
                if self.resumed_after is None or index > self.resumed_after[0]:
                    yield Frame(index, self._times[index], pixels)
                index += 1

    def close(self) -> None:
        self._pipe = None
        if getattr(self, "_list_file", None):
            Path(self._list_file).unlink(missing_ok=True)
            self._list_file = None
