"""What a checkpoint says of itself: its name, where it came from, what it was trained on and the figures its
source reported. Every door shows the same card (gRPC DescribeModel, the web UI's header)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelCard:
    name: str
    source: str  # how it was made: "vidcap train", or the published implementation it was imported from
    trained_on: str  # in words
    architecture: str
    reported: dict[str, str] = field(default_factory=dict)  # figures its source reported, as text
    domain_profile: bool = False  # frames are checked against what it knows (vidcap/domain.py)


def describe(checkpoint: dict[str, Any], path: str | Path) -> ModelCard:
    """The card of a loaded checkpoint (vidcap.model.load_checkpoint): an imported one carries its own
    (`card`, written by `vidcap import`); one that vidcap trained is described from its config and metrics."""
    config = checkpoint.get("config", {})
    architecture = (f"{config.get('backbone')}, {config.get('encoded_size')}x{config.get('encoded_size')} regions, "
                    f"attention {config.get('attention_dim')}, embedding {config.get('embed_dim')}, LSTM "
                    f"{config.get('decoder_dim')}, {config.get('vocab_size')} words")
    domain = checkpoint.get("domain") or {}
    card = checkpoint.get("card") or {}
    if card:
        reported = {k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in card.get("reported", {}).items()}
        return ModelCard(str(card.get("name") or Path(path).stem), f"{card.get('source')} ({card.get('file')})",
                         domain.get("trained_on") or str(checkpoint.get("trained_on") or card.get("trained_on")),
                         str(card.get("architecture") or architecture), reported, bool(domain))
    val = (checkpoint.get("metrics") or {}).get("val") or {}
    reported = {f"validation {k.replace('bleu', 'BLEU-')}": f"{v:.2f}" for k, v in val.items() if k.startswith("bleu")}
    return ModelCard(Path(path).stem, "vidcap train", domain.get("trained_on") or "unknown", architecture, reported,
                     bool(domain))
