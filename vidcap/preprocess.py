"""The one definition of how pixels become model input, shared by training, evaluation and serving.

Frames are resized and normalised once, here, on their way to the encoder. No horizontal flips anywhere:
captions say "to the left of", and a flip would make them lie.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_tensor(pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Share the array's memory where torch can; copy read-only arrays (PIL and PyAV hand those out)."""
    if isinstance(pixels, np.ndarray):
        return torch.from_numpy(pixels if pixels.flags.writeable else pixels.copy())
    return pixels


def to_model_input(pixels: torch.Tensor | np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 RGB pixels, one image (H, W, 3) or a batch (N, H, W, 3), on any device
    -> float (N, 3, image_size, image_size), ImageNet-normalised, on the same device.

    The image is squashed to a square (no crop), so nothing at the borders of a wide video frame is lost."""
    batch = as_tensor(pixels)
    if batch.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {batch.dtype}")
    if batch.ndim == 3:
        batch = batch.unsqueeze(0)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) RGB pixels, got shape {tuple(batch.shape)}")
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, H, W)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
