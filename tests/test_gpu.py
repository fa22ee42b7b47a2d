"""The GPU path: DALI decodes on the GPU, TensorRT encodes there, frames never visit the host. Runs where a CUDA
GPU with nvidia-dali and torch-tensorrt is present (the device machine, when lent); skipped elsewhere with the
reason."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidcap.captioner import Captioner
from vidcap.encoders import available_encoders
from vidcap.video.opener import open_frames
from vidcap.analysis.session import analyze
from vidcap.video.pipeline import AnalysisParams, captioned_frames
from vidcap.video.synth import random_segments, write_video

from conftest import DEMO_MODEL

pytestmark = pytest.mark.gpu


def _need(*parts: str) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    if "dali" in parts:
        from vidcap.video.dali_source import dali_unavailable_reason

        reason = dali_unavailable_reason()
        if reason:
            pytest.skip(f"DALI: {reason}")
    if "tensorrt" in parts:
        reason = available_encoders(torch.device("cuda"))["tensorrt"]
        if reason:
            pytest.skip(f"TensorRT: {reason}")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("gpu") / "scenes.mp4"
    write_video(path, random_segments(4, seed=2, min_seconds=3, max_seconds=3), fps=25, size=(320, 180))
    return path


@pytest.mark.parametrize("fps, seconds", [(25, 12.0), (30000 / 1001, 12.4), (30000 / 1001, 61.0)])
def test_dali_samples_the_frames_pyav_samples(tmp_path, fps, seconds):
    """The same frames (pixels, not only times) as PyAV: at 29.97 fps over a minute (a whole-frame step from the
    average rate drifts by 2 frames there), and with a sample count that is not a multiple of DALI's batch (its
    reader wrapped around to the first frames to fill the last batch)."""
    _need("dali")
    path = tmp_path / "v.mp4"
    scenes = round(seconds / 3)
    write_video(path, random_segments(scenes, seed=2, min_seconds=seconds / scenes, max_seconds=seconds / scenes),
                fps=fps, size=(320, 180))
    with open_frames(path, 1.0, "dali", size=(112, 112)) as dali, open_frames(path, 1.0, "pyav",
                                                                              size=(112, 112)) as pyav:
        gpu_frames, cpu_frames = list(dali.frames()), list(pyav.frames())
    assert len(gpu_frames) == len(cpu_frames)
    assert [round(f.t, 3) for f in gpu_frames] == [round(f.t, 3) for f in cpu_frames]
    assert all(f.pixels.is_cuda for f in gpu_frames)
    for g, c in zip(gpu_frames, cpu_frames):  # two decoders and two resizers: close, not identical
        assert np.abs(g.pixels.cpu().numpy().astype(int) - c.pixels.astype(int)).mean() < 8, g.t


def test_dali_decodes_on_the_captioners_gpu(video):
    _need("dali")
    last = torch.device("cuda", torch.cuda.device_count() - 1)
    with open_frames(video, 1.0, "dali", size=(112, 112), device=last) as dali:
        assert all(f.pixels.device == last for f in dali.frames())


def test_tensorrt_runs_every_batch_size_of_its_profile():
    _need("tensorrt")
    from vidcap.encoders import TensorRTEncoder, make_encoder
    from vidcap.model import CaptionModel

    model = CaptionModel.from_checkpoint(DEMO_MODEL).cuda().eval()
    runtime = make_encoder("tensorrt", model.encoder, model.config, torch.device("cuda"))
    side = model.config.image_size
    for batch in (1, 3, TensorRTEncoder.OPT_BATCH, TensorRTEncoder.MAX_BATCH, TensorRTEncoder.MAX_BATCH + 5):
        images = torch.rand(batch, 3, side, side, device="cuda")
        with torch.no_grad():
            reference = model.encoder(images)
        got = runtime(images)
        assert got.shape == reference.shape
        assert (got - reference).abs().max() <= 3e-2 * reference.abs().max(), batch


def test_dali_and_tensorrt_keep_frames_on_the_gpu_and_caption_like_the_cpu(video):
    _need("dali", "tensorrt")
    gpu = Captioner.load(DEMO_MODEL, device="cuda", encoder="tensorrt")
    params = AnalysisParams(every_n_seconds=1.0, frame_source="dali")
    frames = [frame for frame, _, _ in captioned_frames(video, gpu, params)]
    assert frames and all(f.pixels.is_cuda for f in frames)
    on_gpu = [f.caption for f in analyze(gpu, video, params).frames]
    on_cpu = [f.caption for f in analyze(Captioner.load(DEMO_MODEL, encoder="torch"), video,
                                         AnalysisParams(every_n_seconds=1.0, frame_source="pyav")).frames]
    assert len(on_gpu) == len(on_cpu)
    assert sum(a == b for a, b in zip(on_gpu, on_cpu)) >= 0.8 * len(on_cpu)
