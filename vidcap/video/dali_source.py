"""GPU decoding with NVIDIA DALI (NVDEC): frames stay on the GPU, resized there, handed over as CUDA tensors.

Only used where a CUDA GPU and the nvidia-dali package are present (`pip install 'vidcap[gpu]'`); elsewhere
`dali_unavailable_reason()` says why and the registry falls back to PyAV. In DALI 2.x, H.264/HEVC decode on
the GPU only. DALI's reader assumes a constant frame rate: the sampling step is a whole number of frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vidcap.video.frames import Frame, FrameSource, VideoOpenError


def dali_unavailable_reason() -> str | None:
    """None when DALI decoding can run here, else the reason it cannot."""
    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return "the nvidia-dali package is not installed (pip install 'vidcap[gpu]')"
    return None


class DALIFrameSource(FrameSource):
    BACKEND_NAME = "dali"

    def __init__(self, path: str | Path, every_n_seconds: float, size: tuple[int, int] | None = None,
                 device_id: int = 0, batch_size: int = 8):
        super().__init__(path, every_n_seconds, size)
        reason = dali_unavailable_reason()
        if reason:
            raise RuntimeError(f"DALI decoding is not available: {reason}")
        # Duration and frame rate from the container headers (cheap; PyAV does not decode anything here).
        from vidcap.video.pyav_source import PyAVFrameSource

        probe = PyAVFrameSource(path, every_n_seconds)
        self._duration = probe.duration
        self._fps = float(probe._stream.average_rate or probe._stream.guessed_rate or 30)
        probe.close()
        self._step = max(1, round(self.every_n_seconds * self._fps))
        self._device_id, self._batch_size = device_id, batch_size
        self._pipe = self._build()

    @property
    def duration(self) -> float:
        return self._duration

    def _build(self):
        from nvidia.dali import fn, pipeline_def

        @pipeline_def(batch_size=self._batch_size, num_threads=2, device_id=self._device_id, prefetch_queue_depth=2)
        def sampled_frames():
            frames, _, timestamps = fn.experimental.readers.video(
                device="gpu", filenames=[str(self.path)], labels=[0], sequence_length=1, step=self._step,
                enable_timestamps=True, pad_last_batch=False, name="reader",
            )
            if self.size is not None:
                frames = fn.resize(frames, resize_x=self.size[0], resize_y=self.size[1])
            return frames, timestamps

        pipe = sampled_frames()
        try:
            pipe.build()
        except RuntimeError as exc:
            raise VideoOpenError(f"DALI cannot open {self.path.name}: {str(exc).splitlines()[0]}") from exc
        return pipe

    def frames(self) -> Iterator[Frame]:
        total = len(self.sample_times())
        index = 0
        while index < total:
            frames, timestamps = self._pipe.run()
            batch = torch.from_dlpack(frames.as_tensor())[:, 0]  # (B, H, W, 3) uint8, stays on the GPU
            timestamps = timestamps.as_cpu() if hasattr(timestamps, "as_cpu") else timestamps
            for i in range(batch.shape[0]):
                if index >= total:
                    return
                yield Frame(index, float(np.asarray(timestamps.at(i)).ravel()[0]), batch[i])
                index += 1

    def close(self) -> None:
        self._pipe = None
