"""In-process captioning: pixels in, Caption objects out. Used by the CLI, the video pipeline and the servers."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from vidcap.encoders import make_encoder
from vidcap.errors import CheckpointError
from vidcap.images import DEFAULT_MAX_PIXELS, load_image
from vidcap.domain import DomainProfile
from vidcap.model import Caption, CaptionModel, load_checkpoint
from vidcap.paths import demo_model
from vidcap.preprocess import as_tensor, to_model_input
from vidcap.vocab import ignored_words

log = logging.getLogger(__name__)

DEMO_MODEL = demo_model()


def default_model_path() -> Path:
    """$VIDCAP_MODEL if set, else the demo model that ships in model_store/."""
    return Path(os.environ.get("VIDCAP_MODEL") or DEMO_MODEL)


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Captioner:
    """A loaded model on a device, captioning batches of RGB uint8 images."""

    def __init__(self, model: CaptionModel, device: str = "auto", beam_size: int = 3, batch_size: int = 16,
                 max_pixels: int = DEFAULT_MAX_PIXELS, encoder: str = "auto", domain: DomainProfile | None = None,
                 filler_words: Sequence[str] = ()):
        """encoder: the encoder runtime that runs the CNN (vidcap/encoders.py): auto, torch, torch-bf16, openvino, ...
        domain: the checkpoint's profile of its training images (vidcap/domain.py), to tell frames unlike them.
        filler_words: what the model's training captions say of every picture (the checkpoint's)."""
        self.domain = domain
        # What the caption-change path of the novelty scorer leaves out of this model's captions.
        self.ignored_words = ignored_words(model.vocab.words, filler_words)
        if beam_size < 1:
            raise ValueError("beam size must be at least 1")
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.beam_size, self.batch_size, self.max_pixels = beam_size, batch_size, max_pixels
        self.encoder = make_encoder(encoder, self.model.encoder, self.model.config, self.device)
        log.info("encoder runtime: %s on %s", self.encoder.describe(), self.device)

    @classmethod
    def load(cls, path: str | Path | None = None, **kwargs) -> "Captioner":
        path = Path(path) if path else default_model_path()
        if path == DEMO_MODEL and not path.is_file():
            raise CheckpointError(f"demo model missing at {path}: run `vidcap train --preset demo` or pass --model")
        checkpoint = load_checkpoint(path)
        # The trunk is built only if the encoder runtime needs it: a cached compiled one does not (startup).
        model = CaptionModel.from_checkpoint(checkpoint, build_trunk=False)
        return cls(model, domain=DomainProfile.from_dict(checkpoint.get("domain")),
                   filler_words=checkpoint.get("filler_words") or (), **kwargs)

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    def preprocess(self, pixels: Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
        """RGB uint8 images of any sizes -> one normalised batch on the model's device."""
        if isinstance(pixels, torch.Tensor):
            return to_model_input(pixels.to(self.device), self.image_size)
        return torch.cat([to_model_input(as_tensor(p).to(self.device), self.image_size) for p in pixels])

    @torch.inference_mode()
    def caption(self, pixels: Sequence[np.ndarray] | torch.Tensor, beam_size: int | None = None) -> list[Caption]:
        """One caption per image, decoded in batches of batch_size."""
        beam = beam_size or self.beam_size
        captions: list[Caption] = []
        for start in range(0, len(pixels), self.batch_size):
            batch = self.preprocess(pixels[start : start + self.batch_size])
            captions.extend(self.model.caption_features(self.encoder(batch), beam))
        return captions

    def typicality(self, captions: Sequence[Caption]) -> list[float | None]:
        """How typical of the model's training images each captioned image is (vidcap/domain.py); None when the
        checkpoint carries no domain profile."""
        if self.domain is None or not captions:
            return [None] * len(captions)
        return [float(t) for t in self.domain.typicality(torch.stack([c.feature for c in captions]).numpy())]

    def caption_files(self, sources: Sequence[str | Path | bytes], beam_size: int | None = None) -> list[Caption]:
        """Paths or encoded bytes. Every image is read (and checked) before any is captioned."""
        return self.caption([load_image(s, self.max_pixels) for s in sources], beam_size)
