"""Caption datasets: the Karpathy split format (COCO, Flickr8k, Flickr30k) and the synthetic scenes.

Every dataset yields (model-ready image tensor, reference captions as token lists). Images go through
`vidcap.preprocess.to_model_input`, the same function serving uses.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from vidcap.config import DATASET_NAMES, KARPATHY_FILES
from vidcap.errors import DatasetError, InputError
from vidcap.images import load_image
from vidcap.preprocess import to_model_input
from vidcap.synthetic import Scene, describe_scene, random_scene, render_scene
from vidcap.vocab import Vocabulary, tokenize

SPLITS = ("train", "val", "test")

References = list[list[str]]


class CaptionDataset(Dataset, ABC):
    """Images with several reference captions each."""

    def __init__(self, image_size: int):
        self.image_size = image_size

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def pixels(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB."""

    @abstractmethod
    def references(self, index: int) -> References:
        """Tokenized reference captions."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, References]:
        return to_model_input(self.pixels(index), self.image_size)[0], self.references(index)

    def all_references(self) -> list[References]:
        return [self.references(i) for i in range(len(self))]


class KarpathyDataset(CaptionDataset):
    """One split of a Karpathy split file plus its image folder. 'restval' images count as train, as usual."""

    def __init__(self, annotations: str | Path, image_root: str | Path, split: str, image_size: int):
        super().__init__(image_size)
        if split not in SPLITS:
            raise DatasetError(f"unknown split {split!r}; choose one of {SPLITS}")
        annotations, self.image_root = Path(annotations), Path(image_root)
        try:
            entries = json.loads(annotations.read_text())["images"]
        except FileNotFoundError:
            raise DatasetError(f"annotation file not found: {annotations}") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DatasetError(f"{annotations} is not a Karpathy split file: {exc}") from None
        wanted = {"train": ("train", "restval")}.get(split, (split,))
        self.paths: list[Path] = []
        self.refs: list[References] = []
        for entry in entries:
            if entry.get("split") not in wanted:
                continue
            self.paths.append(self.image_root / entry.get("filepath", "") / entry["filename"])
            self.refs.append([s.get("tokens") or tokenize(s["raw"]) for s in entry["sentences"]])
        if not self.paths:
            raise DatasetError(f"no images of split {split!r} in {annotations}")
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} of {len(self.paths)} {split} images are missing, e.g. {missing[0]}")

    def __len__(self) -> int:
        return len(self.paths)

    def pixels(self, index: int) -> np.ndarray:
        try:
            return load_image(self.paths[index])
        except InputError as exc:
            raise DatasetError(str(exc)) from exc

    def references(self, index: int) -> References:
        return self.refs[index]


class SyntheticDataset(CaptionDataset):
    """Synthetic scenes rendered on the fly; item i of a split is the same on every machine and run."""

    SPLIT_CODES = {"train": 0, "val": 1, "test": 2}

    def __init__(self, split: str, size: int, image_size: int, seed: int = 0, captions_per_image: int = 5):
        super().__init__(image_size)
        if split not in self.SPLIT_CODES:
            raise DatasetError(f"unknown split {split!r}; choose one of {SPLITS}")
        self.split, self.size, self.seed, self.captions_per_image = split, size, seed, captions_per_image

    def __len__(self) -> int:
        return self.size

    def _item(self, index: int) -> tuple[Scene, References, float]:
        rng = np.random.default_rng([self.seed, self.SPLIT_CODES[self.split], index])
        scene = random_scene(rng)
        refs = [tokenize(c) for c in describe_scene(scene, rng, self.captions_per_image)]
        aspect = float(rng.uniform(1.0, 1.8))  # video frames are wider than square: learn squashed shapes too
        return scene, refs, aspect

    def scene(self, index: int) -> Scene:
        return self._item(index)[0]

    def pixels(self, index: int) -> np.ndarray:
        scene, _, aspect = self._item(index)
        return render_scene(scene, round(self.image_size * aspect), self.image_size)

    def references(self, index: int) -> References:
        return self._item(index)[1]


def open_dataset(
    name: str, split: str, image_size: int, data_dir: str | Path | None = None, size: int | None = None, seed: int = 0
) -> CaptionDataset:
    """By name: 'synthetic' (size images, rendered) or a Karpathy dataset under data_dir
    (data_dir/dataset_<name>.json plus the images below data_dir, or data_dir/images if that folder exists)."""
    if name == "synthetic":
        default_sizes = {"train": 20000, "val": 200, "test": 1000}
        return SyntheticDataset(split, size or default_sizes[split], image_size, seed)
    if name not in KARPATHY_FILES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {DATASET_NAMES}")
    if data_dir is None:
        raise DatasetError(f"dataset {name!r} needs --data DIR (Karpathy split JSON + images)")
    root = Path(data_dir)
    image_root = root / "images" if (root / "images").is_dir() else root
    return KarpathyDataset(root / KARPATHY_FILES[name], image_root, split, image_size)


def collate_for_training(
    batch: Sequence[tuple[torch.Tensor, References]], vocab: Vocabulary, max_len: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images and pick one random reference per image (a new pick every epoch) -> images, padded ids."""
    images = torch.stack([image for image, _ in batch])
    picks = [refs[int(torch.randint(len(refs), (1,), generator=generator))] for _, refs in batch]
    encoded = [vocab.encode(tokens, max_len) for tokens in picks]
    ids = torch.full((len(encoded), max(map(len, encoded))), vocab.pad_id, dtype=torch.long)
    for row, seq in enumerate(encoded):
        ids[row, : len(seq)] = torch.tensor(seq)
    return images, ids


def collate_for_eval(batch: Sequence[tuple[torch.Tensor, References]]) -> tuple[torch.Tensor, list[References]]:
    return torch.stack([image for image, _ in batch]), [refs for _, refs in batch]
