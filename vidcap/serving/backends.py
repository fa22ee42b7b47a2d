"""Captioning backends: where the captioning model runs for a server.

The video pipeline needs only `image_size` and `caption(pixels, beam)`, so a backend is anything with those.
`InProcessBackend` runs the model in the server's own process (no Java needed).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np
import torch

from vidcap.captioner import Captioner
from vidcap.model import Caption


class CaptionBackend(ABC):
    NAME = ""

    @property
    @abstractmethod
    def image_size(self) -> int: ...

    @abstractmethod
    def caption(self, pixels: Sequence[np.ndarray] | torch.Tensor, beam_size: int | None = None) -> list[Caption]: ...


class InProcessBackend(CaptionBackend):
    """The model in this process. Calls are serialised: on a few CPU cores, interleaving whole batches keeps
    latency predictable, where concurrent forward passes would fight over the same cores."""

    NAME = "inprocess"

    def __init__(self, captioner: Captioner):
        self.captioner = captioner
        self._lock = threading.Lock()

    @property
    def image_size(self) -> int:
        return self.captioner.image_size

    def caption(self, pixels, beam_size=None) -> list[Caption]:
        with self._lock:
            return self.captioner.caption(pixels, beam_size)
