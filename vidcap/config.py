"""What describes a model or a dataset without building it: importable in milliseconds (no torch), so the
command line can offer its choices before anything heavy is loaded."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Channels of each torchvision ResNet's last stage (vidcap.model builds the networks themselves).
RESNET_FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}

KARPATHY_FILES = {"coco": "dataset_coco.json", "flickr8k": "dataset_flickr8k.json", "flickr30k": "dataset_flickr30k.json"}
DATASET_NAMES = ("synthetic", *KARPATHY_FILES)
# What a model trained on each dataset knows, in words, for the messages about footage unlike it (vidcap/domain.py).
DATASET_DOMAINS = {"synthetic": "synthetic scenes: coloured shapes on textured backgrounds",
                   "coco": "COCO photographs", "flickr8k": "Flickr8k photographs", "flickr30k": "Flickr30k photographs"}


@dataclass
class ModelConfig:
    """Everything needed to rebuild the network; saved inside every checkpoint."""

    backbone: str = "resnet152"  # one of resnet18/34/50/101/152
    stages: int = 4  # ResNet stages kept (4 = full trunk, stride 32; 3 = stride 16, cheaper, finer map)
    image_size: int = 256  # square input side in pixels; the paper-style 256 -> 8x8 -> pooled to 14x14
    encoded_size: int = 14  # S: the encoder's feature map is pooled to SxS regions
    embed_dim: int = 512  # word embedding size
    attention_dim: int = 512  # size of the additive attention's hidden layer
    decoder_dim: int = 512  # LSTM hidden size
    dropout: float = 0.5  # on the LSTM output before the word classifier
    max_caption_len: int = 30  # decoding length cap in words (excluding <start>/<end>)
    # Where published implementations differ from vidcap's own (vidcap/published.py): the additive attention's
    # nonlinearity (tanh here and in the paper, relu in some) and the one on h, c made from the mean feature.
    attention_activation: str = "tanh"  # tanh | relu
    state_activation: str = "tanh"  # tanh | none
    vocab_size: int = 0  # filled in from the vocabulary

    @property
    def feature_dim(self) -> int:
        """Channels of the encoder's feature map."""
        full_dim = RESNET_FEATURE_DIMS[self.backbone]
        return full_dim // (2 ** (4 - self.stages))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
