"""Checkpoints published by another Show, Attend and Tell implementation, imported safely (`vidcap import`).

The format read here is that of the widely used "PyTorch Tutorial to Image Captioning": a `torch.save` of a dict
holding the whole pickled `Encoder` and `DecoderWithAttention` modules (classes of its `models.py`), their
optimizers and `bleu-4`, with the vocabulary in a separate WORDMAP_*.json (word -> index). Its network is
vidcap's: a torchvision ResNet trunk pooled to SxS regions, additive attention with three linear maps (ReLU where
vidcap's own models use tanh), h and c from the mean feature (no tanh), a sigmoid gate on the context
(`f_beta`), `LSTMCell(embed + C)`, a linear classifier. Plain state_dicts of those modules import too.

Loading never runs code from the file. A pickled module is rebuilt by an unpickler that knows only the classes
such a checkpoint holds, and rebuilds each as a plain holder of its attributes (its class never runs); anything
else (a function, a class of another library, a `__reduce__` that names `os.system`) is refused, naming it.
"""

from __future__ import annotations

import collections
import functools
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vidcap.config import RESNET_FEATURE_DIMS, ModelConfig
from vidcap.errors import CheckpointError
from vidcap.fetch import sha256_of
from vidcap.vocab import SPECIALS, Vocabulary

SOURCE_NAME = "PyTorch Tutorial to Image Captioning (Show, Attend and Tell)"

# The classes a tutorial checkpoint holds: its own modules (pickled from its train.py, module "models"), the
# torch.nn and torchvision modules inside them, and the optimizers. Each is rebuilt as a _Held, never run.
_MODULE_CLASSES = {
    ("models", "Encoder"), ("models", "DecoderWithAttention"), ("models", "Attention"),
    ("__main__", "Encoder"), ("__main__", "DecoderWithAttention"), ("__main__", "Attention"),
    ("torch.nn.modules.container", "Sequential"), ("torch.nn.modules.conv", "Conv2d"),
    ("torch.nn.modules.batchnorm", "BatchNorm2d"), ("torch.nn.modules.activation", "ReLU"),
    ("torch.nn.modules.activation", "Sigmoid"), ("torch.nn.modules.activation", "Softmax"),
    ("torch.nn.modules.pooling", "MaxPool2d"), ("torch.nn.modules.pooling", "AdaptiveAvgPool2d"),
    ("torch.nn.modules.linear", "Linear"), ("torch.nn.modules.sparse", "Embedding"),
    ("torch.nn.modules.dropout", "Dropout"), ("torch.nn.modules.rnn", "LSTMCell"),
    ("torchvision.models.resnet", "Bottleneck"), ("torchvision.models.resnet", "BasicBlock"),
    ("torch.optim.adam", "Adam"),
}


class _Held:
    """A pickled object rebuilt as plain data: its attributes, and nothing of its class."""

    pickled_as = ""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


def _parameter(data: torch.Tensor, requires_grad: bool = True, *_: Any) -> torch.Tensor:
    return data  # a Parameter is its tensor here


def _plain_dict(*_: Any) -> dict:
    return {}  # a defaultdict's factory is not kept: nothing here needs it


@functools.cache
def _data_globals() -> dict[tuple[str, str], Any]:
    """Globals that only build data: tensors from storages, ordered dicts, sizes, numpy scalars."""
    import torch._utils as tu

    found = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "dict"): dict,
             ("builtins", "list"): list, ("builtins", "tuple"): tuple,
             ("collections", "OrderedDict"): collections.OrderedDict,
             ("collections", "defaultdict"): _plain_dict,
             ("torch", "Size"): torch.Size,
             ("torch.nn.parameter", "Parameter"): _parameter,
             ("torch._utils", "_rebuild_parameter"): _parameter}
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
        if hasattr(tu, name):
            found[("torch._utils", name)] = getattr(tu, name)
    try:
        import numpy as np

        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            found[(module, "scalar")] = _numpy_scalar
        found[("numpy", "dtype")] = np.dtype
    except ImportError:
        pass
    return found


def _numpy_scalar(dtype, data: bytes | None = None):
    import numpy as np

    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise pickle.UnpicklingError("only numeric numpy scalars are read")
    return np.frombuffer(data, dtype=dtype)[0].item()


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)  # protocol 2's old names
        if (module, name) in _MODULE_CLASSES:
            return type(name, (_Held,), {"pickled_as": f"{module}.{name}"})
        known = _data_globals().get((module, name))
        if known is not None:
            return known
        raise pickle.UnpicklingError(f"refused: the checkpoint holds {module}.{name}, which a Show, Attend and Tell "
                                     f"checkpoint of this format never holds; nothing of it was run")


class _RestrictedPickle:
    """What torch.load needs of a pickle module (its own unpickler subclasses this one)."""

    Unpickler = _RestrictedUnpickler
    __name__ = "vidcap.published"

    @staticmethod
    def load(file, **kwargs):
        return _RestrictedUnpickler(file, **kwargs).load()


# ---- reading --------------------------------------------------------------------------------------------------


@dataclass
class Foreign:
    """What a published checkpoint holds, as plain weights."""

    encoder: dict[str, torch.Tensor]  # the tutorial's Encoder.state_dict() names: resnet.N..., adaptive_pool
    decoder: dict[str, torch.Tensor]  # DecoderWithAttention's: attention.encoder_att..., decode_step..., fc...
    encoded_size: int | None  # the adaptive pool's output side, when the modules say it
    dropout: float | None
    reported: dict[str, Any]  # what the file says of itself (bleu-4, epoch)


def read_checkpoint(path: str | Path) -> Foreign:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:  # a plain state_dict (tensors only) needs nothing more than torch's own weights-only loader
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        loaded = _load_restricted(path)
    except Exception as exc:
        raise CheckpointError(f"cannot read {path.name}: {_first_line(exc)}") from None
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path.name} holds a {type(loaded).__name__}, not a checkpoint dict")
    return _foreign(loaded, path.name)


def _load_restricted(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickle)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path.name}: {_first_line(exc)}") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read {path.name}: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _foreign(loaded: dict, name: str) -> Foreign:
    reported = {k: _number(loaded[k]) for k in ("bleu-4", "epoch") if k in loaded}
    encoder, decoder = loaded.get("encoder"), loaded.get("decoder")
    if encoder is None and decoder is None:  # one flat state_dict: encoder.* / decoder.*
        flat = {k: v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
        encoder = {k[len("encoder."):]: v for k, v in flat.items() if k.startswith("encoder.")}
        decoder = {k[len("decoder."):]: v for k, v in flat.items() if k.startswith("decoder.")}
    if not encoder or not decoder:
        raise CheckpointError(f"{name} holds no encoder and decoder (expected the keys 'encoder' and 'decoder', "
                              f"as modules or state_dicts, or encoder.* / decoder.* weights)")
    encoded_size = dropout = None
    if isinstance(encoder, _Held):
        pool = getattr(encoder, "_modules", {}).get("adaptive_pool")
        size = getattr(pool, "output_size", None)
        encoded_size = int(size[0] if isinstance(size, (tuple, list)) else size) if size else None
        encoder = _weights(encoder)
    if isinstance(decoder, _Held):
        dropout = getattr(decoder, "dropout", None)
        dropout = float(dropout) if isinstance(dropout, (int, float)) else None
        decoder = _weights(decoder)
    for part, weights in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
            raise CheckpointError(f"{name}: its {part} is neither a module nor a state_dict of tensors")
    return Foreign(dict(encoder), dict(decoder), encoded_size, dropout, reported)


def _weights(held: _Held, prefix: str = "") -> dict[str, torch.Tensor]:
    """A rebuilt module's parameters and buffers by their state_dict names."""
    out: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for key, value in (getattr(held, group, None) or {}).items():
            if isinstance(value, torch.Tensor):
                out[prefix + key] = value
    for key, child in (getattr(held, "_modules", None) or {}).items():
        if isinstance(child, _Held):
            out.update(_weights(child, f"{prefix}{key}."))
    return out


def _number(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value if isinstance(value, (int, float, str)) else str(value)


# ---- converting --------------------------------------------------------------------------------------------------

_DECODER_NAMES = [  # the tutorial's DecoderWithAttention -> vidcap's Decoder
    ("attention.encoder_att.", "attention.feature_proj."), ("attention.decoder_att.", "attention.hidden_proj."),
    ("attention.full_att.", "attention.score."), ("embedding.", "embedding."), ("decode_step.", "lstm."),
    ("init_h.", "init_h."), ("init_c.", "init_c."), ("f_beta.", "beta_gate."), ("fc.", "classifier."),
]


def read_word_map(path: str | Path) -> dict[str, int]:
    path = Path(path)
    try:
        word_map = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read the word map {path.name}: {_first_line(exc)}") from None
    if not isinstance(word_map, dict) or not all(isinstance(k, str) and isinstance(v, int) for k, v in
                                                 word_map.items()):
        raise CheckpointError(f"{path.name} is not a word map (a JSON object of word -> index)")
    missing = [w for w in SPECIALS if w not in word_map]
    if missing:
        raise CheckpointError(f"{path.name} lacks {', '.join(missing)}")
    if sorted(word_map.values()) != list(range(len(word_map))):
        raise CheckpointError(f"{path.name}: its indices are not 0..{len(word_map) - 1}, each once")
    return word_map


def backbone_of(encoder: dict[str, torch.Tensor]) -> str:
    """Which torchvision ResNet a trunk's weights are (blocks per stage, and the block kind)."""
    blocks = []
    for stage in (4, 5, 6, 7):  # resnet.4 .. resnet.7 are layer1 .. layer4
        numbers = {int(m.group(1)) for k in encoder if (m := re.match(rf"resnet\.{stage}\.(\d+)\.", k))}
        blocks.append(len(numbers))
    bottleneck = any(k.startswith("resnet.4.0.conv3.") for k in encoder)
    layouts = {(2, 2, 2, 2, False): "resnet18", (3, 4, 6, 3, False): "resnet34", (3, 4, 6, 3, True): "resnet50",
               (3, 4, 23, 3, True): "resnet101", (3, 8, 36, 3, True): "resnet152"}
    found = layouts.get((*blocks, bottleneck))
    if found is None:
        raise CheckpointError(f"the encoder is no torchvision ResNet vidcap knows (blocks per stage {blocks}, "
                              f"{'bottleneck' if bottleneck else 'basic'} blocks)")
    return found


def to_vidcap(foreign: Foreign, word_map: dict[str, int], image_size: int = 256,
              encoded_size: int | None = None, max_caption_len: int = 50) -> tuple[ModelConfig, Vocabulary,
                                                                                     dict[str, torch.Tensor]]:
    """The config, vocabulary and state_dict of the same network as a vidcap CaptionModel. vidcap's vocabulary
    puts <pad>, <start>, <end>, <unk> first: the embedding rows and classifier rows are reordered to match."""
    dec = foreign.decoder
    _require(dec, "embedding.weight", "init_h.weight", "attention.encoder_att.weight", "fc.weight")
    vocab_size, embed_dim = dec["embedding.weight"].shape
    if vocab_size != len(word_map):
        raise CheckpointError(f"the word map has {len(word_map)} words, the model {vocab_size}: not its word map")
    by_index = sorted(word_map, key=word_map.get)
    words = [*SPECIALS, *(w for w in by_index if w not in SPECIALS)]
    order = torch.tensor([word_map[w] for w in words])  # vidcap id -> tutorial id
    backbone = backbone_of(foreign.encoder)
    feature_dim = dec["attention.encoder_att.weight"].shape[1]
    if feature_dim != RESNET_FEATURE_DIMS[backbone]:
        raise CheckpointError(f"the decoder expects {feature_dim}-channel features, a {backbone} gives "
                              f"{RESNET_FEATURE_DIMS[backbone]}")
    config = ModelConfig(backbone=backbone, stages=4, image_size=image_size,
                         encoded_size=encoded_size or foreign.encoded_size or 14, embed_dim=int(embed_dim),
                         attention_dim=int(dec["attention.encoder_att.weight"].shape[0]),
                         decoder_dim=int(dec["init_h.weight"].shape[0]),
                         dropout=foreign.dropout if foreign.dropout is not None else 0.5,
                         max_caption_len=max_caption_len, attention_activation="relu", state_activation="none")
    state = {}
    for key, value in foreign.encoder.items():
        if key.startswith("resnet."):
            state["encoder.trunk." + key[len("resnet."):]] = value
    for key, value in dec.items():
        for theirs, ours in _DECODER_NAMES:
            if key.startswith(theirs):
                state["decoder." + ours + key[len(theirs):]] = value
                break
        else:
            state["decoder." + key] = value  # named in the mismatch report, if vidcap has no such weight
    for key in ("decoder.embedding.weight", "decoder.classifier.weight", "decoder.classifier.bias"):
        state[key] = state[key][order].clone()
    return config, Vocabulary(words), state


def _require(weights: dict, *keys: str) -> None:
    missing = [k for k in keys if k not in weights]
    if missing:
        raise CheckpointError(f"the decoder lacks {', '.join(missing)}: not a Show, Attend and Tell decoder of this "
                              f"format")


def build_model(config: ModelConfig, vocab: Vocabulary, state: dict[str, torch.Tensor]):
    """A CaptionModel holding exactly these weights; missing, unexpected and mis-shaped keys are named."""
    from vidcap.model import CaptionModel

    model = CaptionModel(config, vocab).eval()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(f"{k} {tuple(state[k].shape)} (expected {tuple(expected[k].shape)})" for k in
                    set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or shapes:
        parts = [f"missing: {_few(missing)}" if missing else "", f"unexpected: {_few(unexpected)}" if unexpected
                 else "", f"mis-shaped: {_few(shapes)}" if shapes else ""]
        raise CheckpointError("the weights do not fit the network: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state)
    return model


def _few(items: list[str], n: int = 6) -> str:
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def import_checkpoint(checkpoint: str | Path, word_map: str | Path, out: str | Path, name: str | None = None,
                      image_size: int = 256, encoded_size: int | None = None) -> dict[str, Any]:
    """Read, convert, check and write a self-describing vidcap checkpoint -> its model card."""
    from vidcap.config import DATASET_DOMAINS

    foreign = read_checkpoint(checkpoint)
    config, vocab, state = to_vidcap(foreign, read_word_map(word_map), image_size, encoded_size)
    model = build_model(config, vocab, state)
    card = {"name": name or Path(out).stem, "source": SOURCE_NAME, "file": Path(checkpoint).name,
            "sha256": sha256_of(Path(checkpoint)), "word_map": Path(word_map).name, "trained_on": "coco",
            "reported": foreign.reported, "architecture": f"{config.backbone}, {config.encoded_size}x"
                                                          f"{config.encoded_size} regions, attention "
                                                          f"{config.attention_dim}, embedding {config.embed_dim}, "
                                                          f"LSTM {config.decoder_dim}, {len(vocab)} words"}
    model.save(out, card=card, trained_on=DATASET_DOMAINS["coco"])
    return card
