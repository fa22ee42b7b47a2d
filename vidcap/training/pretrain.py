"""Encoder pretraining on the synthetic renderer's labels: the demo's stand-in for an ImageNet-pretrained encoder.

Show, Attend and Tell starts from an ImageNet-trained CNN; here no weights can be downloaded and the demo encoder
starts from random ones. Caption loss alone taught it colours and backgrounds in the first demo's 14 minutes, but
not shapes: the few shape words in each caption are a weak signal through attention and the LSTM, and that model
named 17.1% of shapes right (chance: 16.7%). The renderer knows what it drew, so the encoder is first trained to
classify, for each of the three columns, the object's shape, colour and size (or that there is none), and the
scene's background. Measured on the 2-core build machine (docs/training.md): a shape head alone reached 94% on
held-out video-sized frames after 300 steps; the demo recipe's 800 steps (all heads together) reach 91% on shapes,
and the captioner trained after it names 96% of shapes right. The classifier heads are thrown away.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from vidcap.model import Encoder
from vidcap.preprocess import to_model_input
from vidcap.synthetic import BACKGROUNDS, COLOURS, SHAPES, SIZES, Scene, random_scene, render_scene

log = logging.getLogger("vidcap.train")

COLUMNS = 3
# per column: (attribute, its values); index len(values) means "no object in this column"
ATTRIBUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("shape", tuple(SHAPES)), ("colour", tuple(COLOURS)), ("size", tuple(SIZES)),
)
BACKGROUND_NAMES = tuple(BACKGROUNDS)


@dataclass
class PretrainResult:
    steps: int
    minutes: float
    val_accuracy: dict[str, float]  # per attribute over objects, and the background over images (0-100)


class SceneClassifier(nn.Module):
    """Heads on the encoder trunk: per-column object attributes from the trunk pooled to 1x3, background from the
    global mean."""

    def __init__(self, encoder: Encoder, channels: int):
        super().__init__()
        self.encoder = encoder
        self.columns = nn.AdaptiveAvgPool2d((1, COLUMNS))
        self.object_heads = nn.ModuleDict({name: nn.Linear(channels, len(values) + 1) for name, values in ATTRIBUTES})
        self.background_head = nn.Linear(channels, len(BACKGROUND_NAMES))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        fmap = self.encoder.trunk(images)  # (B, C, h, w)
        per_column = self.columns(fmap).flatten(2).transpose(1, 2)  # (B, 3, C)
        out = {name: head(per_column) for name, head in self.object_heads.items()}  # (B, 3, classes)
        out["background"] = self.background_head(fmap.mean(dim=(2, 3)))
        return out


def scene_labels(scene: Scene) -> dict[str, list[int]]:
    labels = {name: [len(values)] * COLUMNS for name, values in ATTRIBUTES}
    for obj in scene.objects:
        for name, values in ATTRIBUTES:
            labels[name][obj.column] = values.index(getattr(obj, name))
    labels["background"] = [BACKGROUND_NAMES.index(scene.background)]
    return labels


def make_batch(rng: np.random.Generator, size: int, image_size: int, render_scale: float = 1.0
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Scenes drawn like the caption training set's (widths 1-1.8x the height, squashed to a square);
    render_scale > 1 draws them larger first, like a video frame scaled down."""
    images, labels = [], {}
    for _ in range(size):
        scene = random_scene(rng)
        height = round(image_size * render_scale)
        pixels = render_scene(scene, round(height * float(rng.uniform(1.0, 1.8))), height)
        images.append(to_model_input(pixels, image_size))
        for name, values in scene_labels(scene).items():
            labels.setdefault(name, []).append(values)
    return torch.cat(images), {name: torch.tensor(v) for name, v in labels.items()}


def _loss(outputs: dict[str, torch.Tensor], labels: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(F.cross_entropy(outputs[name].reshape(-1, outputs[name].shape[-1]), labels[name].reshape(-1))
               for name in outputs)


@torch.no_grad()
def accuracy(classifier: SceneClassifier, images: torch.Tensor, labels: dict[str, torch.Tensor]) -> dict[str, float]:
    """Object attributes over the columns that hold an object; background over images. Percentages."""
    classifier.eval()
    outputs = classifier(images)
    classifier.train()
    present = labels["shape"] != len(SHAPES)
    scores = {name: 100.0 * (outputs[name].argmax(-1) == labels[name])[present].float().mean().item()
              for name, _ in ATTRIBUTES}
    background_right = outputs["background"].argmax(-1) == labels["background"][:, 0]
    scores["background"] = 100.0 * background_right.float().mean().item()
    return scores


def pretrain_encoder(encoder: Encoder, steps: int, batch_size: int, lr: float, image_size: int,
                     device: torch.device, seed: int = 0, val_images: int = 256) -> PretrainResult:
    """Train `encoder`'s trunk in place on scene classification for `steps` steps."""
    encoder.eval()  # the probe must not move BatchNorm's running statistics
    with torch.no_grad():
        channels = encoder.trunk(torch.zeros(1, 3, image_size, image_size, device=device)).shape[1]
    classifier = SceneClassifier(encoder.to(device), channels).to(device).train()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng([seed, 7])  # a stream of its own: no overlap with the caption splits' seeds
    # Held-out frames drawn large and scaled down, the way video frames reach the encoder.
    val_x, val_y = make_batch(np.random.default_rng([seed, 8]), val_images, image_size, render_scale=3.0)
    val_x = val_x.to(device)
    started = time.monotonic()
    for step in range(1, steps + 1):
        images, labels = make_batch(rng, batch_size, image_size)
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        loss = _loss(classifier(images), {k: v.to(device) for k, v in labels.items()})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == steps:
            log.info("encoder pretraining step %d/%d loss %.3f", step, steps, loss.item())
    scores = accuracy(classifier, val_x, {k: v.to(device) for k, v in val_y.items()})
    minutes = (time.monotonic() - started) / 60
    log.info("encoder pretraining: %d steps in %.1f min; held-out accuracy %s", steps, minutes,
             ", ".join(f"{k} {v:.1f}%" for k, v in scores.items()))
    return PretrainResult(steps, minutes, scores)
