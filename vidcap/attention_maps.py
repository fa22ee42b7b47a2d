"""Attention maps laid over the image, the signature picture of Show, Attend and Tell (Xu et al. 2015, fig. 3):
the regions a word attended to stay bright, the rest of the image fades."""

from __future__ import annotations

import numpy as np
from PIL import Image


def attention_overlay(pixels: np.ndarray, weights: np.ndarray, floor: float = 0.25) -> np.ndarray:
    """pixels: (H, W, 3) uint8 RGB; weights: (S, S) attention over the encoder grid, for one word.

    The weights are scaled so the most attended region is 1, upsampled smoothly to the image (bicubic, like the
    paper's upsampling), and multiply the image; `floor` keeps unattended regions faintly visible."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {pixels.shape}")
    weights = np.asarray(weights, dtype=np.float32)
    if weights.ndim != 2:
        raise ValueError(f"expected (S, S) attention weights, got shape {weights.shape}")
    height, width = pixels.shape[:2]
    peak = float(weights.max())
    scaled = weights / peak if peak > 0 else np.zeros_like(weights)
    mask = Image.fromarray(scaled).resize((width, height), Image.Resampling.BICUBIC)
    mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)[..., None]
    return (pixels.astype(np.float32) * (floor + (1.0 - floor) * mask)).round().astype(np.uint8)
