"""What an analysis needs to continue where it stopped, without captioning any sample a second time.

A scorer's state is a function of the last few frames it was given (its window, and the frames it holds back for
its lookahead), and still-frame detection needs only the last captioned frame. So each captioned sample is kept as
a `Sample`: its result before scoring and what the scorer saw of it (caption embeddings, encoder features, colour
histogram). Given the samples from the scorer's window before the first result still to give, and the last freshly
captioned one, a new run replays them into a fresh scorer, takes the frames still waiting for their score, and
decodes on from the next sample: the results are those of an uninterrupted run.

Samples travel as bytes (numpy's npz format without pickles, so bytes from a database or another process cannot
run code when read).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np
import torch

from vidcap.model import Caption
from vidcap.video.cuts import Thumbnails
from vidcap.video.novelty import CaptionedFrame


@dataclass
class Sample:
    """One captioned sample: its result (score and cut not yet known) and what the scorer sees of it."""

    index: int
    t: float
    caption: str
    words: list[str]
    alternatives: list[list[str]]  # the other beams' words
    reused: bool
    in_domain: float | None
    embeddings: np.ndarray
    alternative_embeddings: list[np.ndarray]
    feature: np.ndarray | None
    regions: np.ndarray | None
    colours: np.ndarray | None
    signature: np.ndarray | None = None  # a freshly captioned frame's still-frame signature (vidcap/video/stills.py)
    lead_in: Thumbnails | None = None  # the frames since the previous sample (vidcap/video/cuts.py)

    def captioned_frame(self) -> CaptionedFrame:
        return CaptionedFrame(t=self.t, words=self.words, embeddings=self.embeddings,
                              alternatives=list(zip(self.alternatives, self.alternative_embeddings)),
                              feature=self.feature, regions=self.regions, colours=self.colours, lead_in=self.lead_in)

    def caption_object(self) -> Caption:
        """The caption as the pipeline holds it, for still frames that reuse this one's."""
        def tensor(a):
            return torch.from_numpy(np.array(a)) if a is not None else torch.empty(0)

        return Caption(words=self.words, token_ids=[], log_prob=0.0, attention=torch.empty(0),
                       embeddings=tensor(self.embeddings), feature=tensor(self.feature),
                       regions=tensor(self.regions), alternatives=self.alternatives,
                       alternative_embeddings=[tensor(e) for e in self.alternative_embeddings])

    def to_bytes(self) -> bytes:
        header = {"index": self.index, "t": self.t, "caption": self.caption, "words": self.words,
                  "alternatives": self.alternatives, "reused": self.reused, "in_domain": self.in_domain}
        arrays = {"embeddings": self.embeddings}
        arrays.update({f"alternative_{i}": e for i, e in enumerate(self.alternative_embeddings)})
        for name in ("feature", "regions", "colours", "signature"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        if self.lead_in is not None:
            arrays.update(lead_in_times=self.lead_in.times, lead_in_thumbs=self.lead_in.thumbs)
        buffer = io.BytesIO()
        np.savez(buffer, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8), **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Sample":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            header = json.loads(npz["header"].tobytes())
            alternatives = [npz[f"alternative_{i}"] for i in range(len(header["alternatives"]))]
            arrays = {name: npz[name] if name in npz.files else None
                      for name in ("feature", "regions", "colours", "signature")}
            lead_in = Thumbnails(npz["lead_in_times"], npz["lead_in_thumbs"]) if "lead_in_times" in npz.files else None
            return cls(**header, embeddings=npz["embeddings"], alternative_embeddings=alternatives, **arrays,
                       lead_in=lead_in)


@dataclass
class Resume:
    """Where a stopped analysis continues: its latest samples (contiguous, in index order), the last freshly
    captioned sample (still frames after it reuse its caption), and how many results it already gave (frames
    0 .. scored-1)."""

    samples: list[Sample] = field(default_factory=list)
    captioned: Sample | None = None
    scored: int = 0

    @property
    def next_index(self) -> int:
        return self.samples[-1].index + 1 if self.samples else 0

    @property
    def last_t(self) -> float:
        return self.samples[-1].t if self.samples else -1.0

    @classmethod
    def from_samples(cls, samples: list[Sample], scored: int, window: int) -> "Resume":
        first = first_replayed(scored, window)
        return cls(samples=[s for s in samples if s.index >= first], scored=scored,
                   captioned=next((s for s in reversed(samples) if not s.reused), None))


def first_replayed(scored: int, window: int) -> int:
    """The first sample a resume replays into the scorer: the window before the first result still to give
    (frame `scored`); the samples after it (captioned, and kept, before their results were given) follow."""
    return scored - window
