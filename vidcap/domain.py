"""Is this frame like what the model was trained on? When it is not, its caption means little.

A checkpoint carries a `DomainProfile` of its training images (written by `vidcap train`, or added to any
checkpoint by `vidcap calibrate`): a Gaussian of the encoder's pooled feature, kept as its mean, its top principal
components and their variances, and one variance for everything else (probabilistic PCA), plus the distances of
held-out training images under it. A frame's `typicality` is the share of those held-out images that lie at
least as far from the mean: about uniform on 0..1 for frames of the training domain, near 0 for others. Below
OUT_OF_DOMAIN (0.01, i.e. further out than 99% of held-out training images) a frame counts as outside the
model's domain; when most of a video is, its captions are not to be trusted and every door says so.

Measured with the demo model (tests/test_domain.py, docs/novelty.md): rendered scenes are in its domain, the
photographs that ship with scikit-image and photo footage made from them are not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

OUT_OF_DOMAIN = 0.01  # typicality below this: further from the training images than 99% of held-out ones
UNTRUSTED_SHARE = 0.5  # a video with more of its frames out of domain than this gets the warning
COMPONENTS = 32


@dataclass
class DomainProfile:
    mean: np.ndarray  # (C,)
    components: np.ndarray  # (k, C), orthonormal rows
    variances: np.ndarray  # (k,)
    residual_variance: float  # per dimension, outside the k components
    held_out: np.ndarray  # sorted distances of held-out training images
    trained_on: str  # what the model was trained on, in words, for messages

    @classmethod
    def fit(cls, features: np.ndarray, held_out: np.ndarray, trained_on: str,
            components: int = COMPONENTS) -> "DomainProfile":
        """features: (N, C) pooled encoder features of training images; held_out: (M, C) of others."""
        features = np.asarray(features, dtype=np.float64)
        if len(features) < 10 or len(held_out) < 10:
            raise ValueError("a domain profile needs at least 10 fitting and 10 held-out images")
        mean = features.mean(axis=0)
        _, singular, vt = np.linalg.svd(features - mean, full_matrices=False)
        k = min(components, len(singular) - 1)
        spectrum = singular ** 2 / (len(features) - 1)
        rest = max(float(spectrum[k:].sum()) / max(1, features.shape[1] - k), 1e-12)
        profile = cls(mean, vt[:k], np.maximum(spectrum[:k], 1e-12), rest, np.zeros(0), trained_on)
        profile.held_out = np.sort(profile.distance(held_out))
        return profile

    def distance(self, features: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance under the model: (N, C) or (C,) -> (N,)."""
        centred = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        projected = centred @ self.components.T
        residual = centred - projected @ self.components
        return (projected ** 2 / self.variances).sum(axis=1) + (residual ** 2).sum(axis=1) / self.residual_variance

    def typicality(self, features: np.ndarray) -> np.ndarray:
        """(N, C) or (C,) -> (N,) in 0..1: the share of held-out training images at least as far out."""
        distances = self.distance(features)
        further = len(self.held_out) - np.searchsorted(self.held_out, distances, side="left")
        return further / len(self.held_out)

    def to_dict(self) -> dict:
        """Tensors and plain values only: a checkpoint loads with torch.load(weights_only=True)."""
        return {"mean": torch.from_numpy(self.mean), "components": torch.from_numpy(self.components),
                "variances": torch.from_numpy(self.variances), "residual_variance": self.residual_variance,
                "held_out": torch.from_numpy(self.held_out), "trained_on": self.trained_on}

    @classmethod
    def from_dict(cls, data: dict | None) -> "DomainProfile | None":
        if not data:
            return None
        as_array = lambda key: np.asarray(data[key], dtype=np.float64)  # noqa: E731
        return cls(as_array("mean"), as_array("components"), as_array("variances"),
                   float(data["residual_variance"]), as_array("held_out"), str(data.get("trained_on", "")))


@dataclass
class DomainSummary:
    """What share of a video's frames lies outside the model's domain, and what to tell the user."""

    out_of_domain_share: float
    trained_on: str

    @property
    def untrusted(self) -> bool:
        return self.out_of_domain_share > UNTRUSTED_SHARE

    def warning(self) -> str:
        """Empty when the captions can be trusted, else one plain sentence naming what to do."""
        if not self.untrusted:
            return ""
        return (f"captions are not meaningful for this footage: {100 * self.out_of_domain_share:.0f}% of its "
                f"frames are unlike anything the model was trained on ({self.trained_on}), and the moments, "
                f"found by the same model, may miss or invent changes. Use a model trained for this kind of "
                f"footage (docs/training.md).")


def summarize(typicalities: Iterable[float | None], trained_on: str) -> DomainSummary | None:
    values = [t for t in typicalities if t is not None]
    if not values:
        return None
    return DomainSummary(sum(t < OUT_OF_DOMAIN for t in values) / len(values), trained_on)


@torch.no_grad()
def pooled_features(model, images: Iterable[torch.Tensor], device: torch.device, batch_size: int = 32) -> np.ndarray:
    """The encoder's pooled feature (the mean of its region features, as in every Caption) of normalised images."""
    out, batch = [], []
    for image in images:
        batch.append(image)
        if len(batch) == batch_size:
            out.append(model.encoder(torch.stack(batch).to(device)).mean(dim=1).float().cpu())
            batch = []
    if batch:
        out.append(model.encoder(torch.stack(batch).to(device)).mean(dim=1).float().cpu())
    return torch.cat(out).numpy()


def profile_from_datasets(model, fit_set, held_out_set, trained_on: str, device: torch.device,
                          fit_images: int = 1000, held_out_images: int = 200) -> DomainProfile:
    """Fit on up to fit_images of the training split, calibrate on up to held_out_images of another split."""
    was_training = model.training
    model.eval()
    try:
        fit = pooled_features(model, (fit_set[i][0] for i in range(min(fit_images, len(fit_set)))), device)
        held = pooled_features(model, (held_out_set[i][0] for i in range(min(held_out_images, len(held_out_set)))),
                               device)
    finally:
        model.train(was_training)
    return DomainProfile.fit(fit, held, trained_on)


def write_profile(checkpoint: str | Path, profile: DomainProfile) -> None:
    """Add (or replace) the profile in a checkpoint file, atomically; the weights are untouched."""
    from vidcap.model import load_checkpoint

    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    ckpt["domain"] = profile.to_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    tmp.replace(path)
