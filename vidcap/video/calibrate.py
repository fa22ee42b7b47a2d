"""`vidcap calibrate`: a domain profile (vidcap/domain.py) of the user's own frames, read from images, folders of
them and videos, so that "out of domain" then means "unlike what you showed it"."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vidcap.domain import DomainProfile, pooled_features


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def calibrate_on_images(checkpoint: str | Path, sources: list[str], device: torch.device,
                        every_n_seconds: float = 1.0) -> tuple[DomainProfile, int]:
    """A profile of the user's own frames: images, folders of them, and videos (a frame a second). Four fifths fit
    it, the rest calibrate it, so "out of domain" then means "unlike what you showed it" -> (profile, frames)."""
    from vidcap.errors import InputError
    from vidcap.fileio import VIDEO_SUFFIXES
    from vidcap.images import load_image
    from vidcap.model import CaptionModel
    from vidcap.preprocess import to_model_input

    model = CaptionModel.from_checkpoint(checkpoint).to(device)
    size = model.config.image_size
    inputs = []
    for path in _files(sources, IMAGE_SUFFIXES + VIDEO_SUFFIXES):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            from vidcap.video.opener import open_frames

            with open_frames(path, every_n_seconds, "pyav", size=(size, size)) as video:
                inputs += [to_model_input(f.pixels, size)[0] for f in video.frames()]
        else:
            inputs.append(to_model_input(load_image(path), size)[0])
    if len(inputs) < 20:
        raise InputError(f"{len(inputs)} frames found: a profile needs at least 20 images (or video seconds)")
    order = np.random.default_rng(0).permutation(len(inputs))
    held = set(order[: max(10, len(inputs) // 5)].tolist())
    model.eval()
    fit = pooled_features(model, (x for i, x in enumerate(inputs) if i not in held), device)
    held_out = pooled_features(model, (x for i, x in enumerate(inputs) if i in held), device)
    return DomainProfile.fit(fit, held_out, f"frames like the {len(inputs)} given to vidcap calibrate"), len(inputs)


def _files(sources: list[str], suffixes: tuple[str, ...]) -> list[Path]:
    from vidcap.fileio import require_file

    found = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
        else:
            found.append(require_file(path, "image or video"))
    return found
