"""The Show, Attend and Tell captioning model, defined once.

Xu et al. 2015, "Show, Attend and Tell: Neural Image Caption Generation with Visual Attention".
A ResNet encoder gives an SxS grid of region features; an LSTM decoder attends over the regions with soft
(additive) attention at every step. Training, evaluation, the CLI, the TorchServe handler and the gRPC service
all use this file and nothing else to build the network.

Reading order: config, encoder, attention, decoder (training forward pass), decoding (greedy and beam search),
checkpoint I/O.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from vidcap.config import RESNET_FEATURE_DIMS, ModelConfig
from vidcap.errors import CheckpointError
from vidcap.vocab import Vocabulary

CHECKPOINT_FORMAT = "vidcap-checkpoint"
CHECKPOINT_VERSION = 1



_ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu, "none": lambda x: x}


IMAGENET = "imagenet"  # --encoder-weights imagenet: torchvision's published weights for the backbone


def imagenet_weights(backbone: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights for a ResNet, through its own download and hash check into torch's cache
    ($TORCH_HOME/hub/checkpoints); offline, a CheckpointError saying which file to place where."""
    import torchvision

    weights = torchvision.models.get_model_weights(backbone).DEFAULT
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    filename = Path(weights.url).name
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash is a RuntimeError
        reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
        raise CheckpointError(f"cannot get torchvision's ImageNet weights for {backbone} ({reason}): download "
                              f"{weights.url} elsewhere and place it as {folder / filename}") from None


class Encoder(nn.Module):
    """ResNet trunk without its classifier, pooled to an SxS grid of region features.

    The trunk is a torchvision ResNet, and importing torchvision costs about a second (it imports torch._dynamo).
    An encoder runtime that runs a cached compiled trunk (OpenVINO reads its ONNX file) never needs the PyTorch
    module, so an inference load can leave it unbuilt (`build_trunk=False`): the trunk's weights wait in
    `trunk_state` and `require_trunk()` builds it on first use."""

    TRUNK_PREFIX = "trunk."

    def __init__(self, config: ModelConfig, weights_path: str | Path | None = None, build_trunk: bool = True):
        super().__init__()
        if config.backbone not in RESNET_FEATURE_DIMS:
            raise ValueError(f"unknown backbone {config.backbone!r}; choose one of {sorted(RESNET_FEATURE_DIMS)}")
        if not 1 <= config.stages <= 4:
            raise ValueError("stages must be between 1 and 4")
        self.config = config
        self.trunk: nn.Sequential | None = None
        self.trunk_state: dict[str, torch.Tensor] | None = None  # an unbuilt trunk's weights
        self.pool = nn.AdaptiveAvgPool2d(config.encoded_size)
        self.pretrained = weights_path is not None
        if build_trunk or weights_path is not None:
            self.trunk = self._build_trunk(weights_path)

    def _build_trunk(self, weights_path: str | Path | None = None) -> nn.Sequential:
        import torchvision  # here, where a torchvision model is built: importing it costs a second

        resnet = getattr(torchvision.models, self.config.backbone)(weights=None)
        if weights_path == IMAGENET:
            resnet.load_state_dict(imagenet_weights(self.config.backbone))
        elif weights_path is not None:  # a local torchvision state_dict
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            resnet.load_state_dict(state)
        stem = [resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool]
        blocks = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4][: self.config.stages]
        return nn.Sequential(*stem, *blocks)

    def require_trunk(self) -> nn.Sequential:
        """The PyTorch trunk, built from `trunk_state` the first time it is needed."""
        if self.trunk is None:
            trunk = self._build_trunk()
            if self.trunk_state is not None:
                try:
                    trunk.load_state_dict(self.trunk_state)
                except RuntimeError as exc:
                    reason = str(exc).splitlines()[0]
                    raise CheckpointError(f"checkpoint weights do not match its config: {reason}") from exc
            self.trunk, self.trunk_state = trunk.eval(), None
        return self.trunk

    def trunk_weights(self) -> dict[str, torch.Tensor]:
        """The trunk's weights by name, built or not (what a compiled artefact's cache key is made of)."""
        return self.trunk.state_dict() if self.trunk is not None else dict(self.trunk_state or {})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images -> (B, S*S, C) region features."""
        return self.regions(self.require_trunk()(images))

    def regions(self, trunk_output: torch.Tensor) -> torch.Tensor:
        """The trunk's (B, C, h, w) feature map -> (B, S*S, C) region features. Accelerated encoder runtimes
        (vidcap/encoders.py) run the trunk and finish here, so pooling is defined once."""
        fmap = self.pool(trunk_output)  # (B, C, S, S)
        return fmap.flatten(2).transpose(1, 2)  # (B, S*S, C)

    def set_fine_tuning(self, from_stage: int | None) -> None:
        """Train only the stages from `from_stage` on (1-based); None freezes the whole trunk."""
        for p in self.trunk.parameters():
            p.requires_grad = False
        if from_stage is None:
            return
        first_block = 4 + (from_stage - 1)  # trunk = 4 stem modules, then the stages
        for module in list(self.trunk)[first_block:]:
            for p in module.parameters():
                p.requires_grad = True
        if from_stage <= 1:  # training everything: the stem too
            for p in self.trunk.parameters():
                p.requires_grad = True


class Attention(nn.Module):
    """Additive (Bahdanau) attention over image regions."""

    def __init__(self, feature_dim: int, decoder_dim: int, attention_dim: int, activation: str = "tanh"):
        super().__init__()
        self.feature_proj = nn.Linear(feature_dim, attention_dim)
        self.hidden_proj = nn.Linear(decoder_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)
        self.activation = _ACTIVATIONS[activation]

    def forward(
        self, features: torch.Tensor, projected: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, P, C) and projected = feature_proj(features) (B, P, A), once per image; hidden (B*K, D)
        for K sequences per image, image-major (K = 1 in training and greedy decoding, the beam size in beam
        search, so the beams share their image's features instead of copying them)
        -> context (B*K, C), alpha (B*K, P) with alpha summing to 1 over the P regions."""
        b, p, _ = features.shape
        k = hidden.size(0) // b
        query = self.hidden_proj(hidden).view(b, k, 1, -1)  # (B, K, 1, A)
        energy = self.score(self.activation(projected.unsqueeze(1) + query)).squeeze(3)  # (B, K, P)
        alpha = energy.softmax(dim=2)
        context = torch.bmm(alpha, features)  # (B, K, C): the weighted sum over regions as one matrix product
        return context.reshape(b * k, -1), alpha.reshape(b * k, p)


class Decoder(nn.Module):
    """LSTM decoder with soft attention and the paper's gating scalar beta on the context vector."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c, d = config.feature_dim, config.decoder_dim
        self.embedding = nn.Embedding(config.vocab_size, config.embed_dim)
        self.attention = Attention(c, d, config.attention_dim, config.attention_activation)
        self.state_activation = _ACTIVATIONS[config.state_activation]
        self.init_h = nn.Linear(c, d)
        self.init_c = nn.Linear(c, d)
        self.beta_gate = nn.Linear(d, c)  # "selector": how much of the context to let in at this step
        self.lstm = nn.LSTMCell(config.embed_dim + c, d)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(d, config.vocab_size)

    def init_state(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = features.mean(dim=1)  # (N, C)
        return self.state_activation(self.init_h(mean)), self.state_activation(self.init_c(mean))

    def step(
        self,
        tokens: torch.Tensor,
        features: torch.Tensor,
        projected: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One decoding step for N sequences -> logits (N, V), alpha (N, P), new (h, c)."""
        h, c = state
        context, alpha = self.attention(features, projected, h)
        context = torch.sigmoid(self.beta_gate(h)) * context
        h, c = self.lstm(torch.cat([self.embedding(tokens), context], dim=1), (h, c))
        return self.classifier(self.dropout(h)), alpha, (h, c)

    def forward(self, features: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing. features (B, P, C), captions (B, T) starting with <start>
        -> logits (B, T-1, V) predicting captions[:, 1:], alphas (B, T-1, P)."""
        projected = self.attention.feature_proj(features)  # once per image, not once per step
        state = self.init_state(features)
        logits, alphas = [], []
        for t in range(captions.size(1) - 1):
            step_logits, alpha, state = self.step(captions[:, t], features, projected, state)
            logits.append(step_logits)
            alphas.append(alpha)
        return torch.stack(logits, dim=1), torch.stack(alphas, dim=1)


@dataclass
class Caption:
    """One decoded caption and what the old project's API exposed about it."""

    words: list[str]
    token_ids: list[int]
    log_prob: float
    attention: torch.Tensor  # (len(words), S, S): where the model looked for each word
    embeddings: torch.Tensor  # (len(words), E): rows of the decoder's embedding table
    feature: torch.Tensor  # (C,): the pooled encoder feature ("CNN output")
    regions: torch.Tensor  # (S*S, C): the encoder's region features, for comparing frames region by region
    alternatives: list[list[str]] = field(default_factory=list)  # the other beams, best first
    alternative_embeddings: list[torch.Tensor] = field(default_factory=list)  # their words' embeddings

    @property
    def text(self) -> str:
        return " ".join(self.words)


def caption_loss(
    logits: torch.Tensor, alphas: torch.Tensor, captions: torch.Tensor, alpha_c: float, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on the real words plus the doubly stochastic attention penalty
    alpha_c * sum over regions of (1 - sum over steps of alpha)^2, summed over regions as in the authors' code.
    Returns (total loss, cross-entropy alone)."""
    targets = captions[:, 1:]
    mask = (targets != pad_id).to(alphas.dtype)  # (B, T-1)
    xent = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=pad_id)
    attention_mass = (alphas * mask.unsqueeze(2)).sum(dim=1)  # (B, P): steps that produce real words only
    penalty = ((1.0 - attention_mass) ** 2).sum(dim=1).mean()
    return xent + alpha_c * penalty, xent


class CaptionModel(nn.Module):
    """Encoder + decoder + vocabulary: the unit that is trained, saved, served."""

    def __init__(self, config: ModelConfig, vocab: Vocabulary, encoder_weights: str | Path | None = None,
                 build_trunk: bool = True):
        super().__init__()
        config.vocab_size = len(vocab)
        self.config = config
        self.vocab = vocab
        self.encoder = Encoder(config, encoder_weights, build_trunk)
        self.decoder = Decoder(config)

    def forward(self, images: torch.Tensor, captions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder(self.encoder(images), captions)

    # ---- decoding -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def greedy(self, features: torch.Tensor, max_len: int | None = None) -> list[Caption]:
        """Arg-max decoding, kept as a plain loop: the reference that beam search with K=1 must equal."""
        max_len = max_len or self.config.max_caption_len
        b = features.size(0)
        projected = self.decoder.attention.feature_proj(features)
        state = self.decoder.init_state(features)
        tokens = torch.full((b,), self.vocab.start_id, dtype=torch.long, device=features.device)
        out_tokens, out_alphas, log_probs = [], [], torch.zeros(b, device=features.device)
        finished = torch.zeros(b, dtype=torch.bool, device=features.device)
        end_only = self._end_only_row(features.device)
        for step in range(max_len + 1):  # +1: room for <end> after max_len words
            logits, alpha, state = self.decoder.step(tokens, features, projected, state)
            logp = logits.float().log_softmax(dim=1)
            if step == max_len:  # the length cap: whatever is unfinished ends here
                logp = logp + end_only
            step_logp, tokens = logp.max(dim=1)
            log_probs += torch.where(finished, torch.zeros_like(step_logp), step_logp)
            out_tokens.append(tokens)
            out_alphas.append(alpha)
            finished |= tokens == self.vocab.end_id
            if finished.all():
                break
        seqs = torch.stack(out_tokens, dim=1)  # (B, T)
        alphas = torch.stack(out_alphas, dim=1)  # (B, T, P)
        return [
            self._make_caption(seqs[i], alphas[i], float(log_probs[i]), features[i], max_len) for i in range(b)
        ]

    @torch.no_grad()
    def beam_search(self, features: torch.Tensor, beam_size: int = 3, max_len: int | None = None) -> list[Caption]:
        """Beam search batched across images and beams: the K beams of the B images advance together each step.

        A beam that emitted <end> is kept alive with its score frozen (it can only extend with <pad> at no cost),
        so the K best hypotheses per image are always comparable. An image whose K beams have all ended can no
        longer change, so it leaves the batch (measured: docs/performance.md). Never raises when no beam reaches
        <end>: the best partial caption is returned (a known crash of a popular SAT implementation)."""
        max_len = max_len or self.config.max_caption_len
        b, p, _ = features.shape
        k, v = beam_size, self.config.vocab_size
        dev = features.device
        feats = features  # (n, P, C) for the n images still decoding; beams share them
        projected = self.decoder.attention.feature_proj(features)  # once per image, not per beam or step
        h, c = self.decoder.init_state(features)
        state = (h.repeat_interleave(k, dim=0), c.repeat_interleave(k, dim=0))  # (n*K, D), image-major
        tokens = torch.full((b * k,), self.vocab.start_id, dtype=torch.long, device=dev)
        scores = torch.full((b, k), -math.inf, device=dev)
        scores[:, 0] = 0.0  # all beams start identical: expand only the first one at step 1
        finished = torch.zeros(b * k, dtype=torch.bool, device=dev)
        seqs = torch.empty((b * k, 0), dtype=torch.long, device=dev)
        alphas = torch.empty((b * k, 0, p), device=dev)
        images = list(range(b))  # the input index of each image still decoding
        results: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}  # image -> seqs, alphas, scores
        # When a beam is finished, its only continuation is <pad> with log-prob 0.
        frozen_row = torch.full((v,), -math.inf, device=dev)
        frozen_row[self.vocab.pad_id] = 0.0
        end_only = self._end_only_row(dev)
        for step in range(max_len + 1):
            n = len(images)
            logits, alpha, state = self.decoder.step(tokens, feats, projected, state)
            logp = logits.float().log_softmax(dim=1)  # (n*K, V)
            if step == max_len:  # the length cap: every unfinished beam ends here, so beams stay distinct
                logp = logp + end_only
            logp = torch.where(finished.unsqueeze(1), frozen_row, logp)
            total = (scores.reshape(-1, 1) + logp).reshape(n, k * v)
            scores, flat = total.topk(k, dim=1)  # (n, K), sorted best first
            parent = flat // v  # integer division: beam index within the image
            tokens = (flat % v).reshape(-1)
            rows = (parent + torch.arange(n, device=dev).unsqueeze(1) * k).reshape(-1)
            state = (state[0][rows], state[1][rows])
            seqs = torch.cat([seqs[rows], tokens.unsqueeze(1)], dim=1)
            alphas = torch.cat([alphas[rows], alpha[rows].unsqueeze(1)], dim=1)
            finished = finished[rows] | (tokens == self.vocab.end_id) | (tokens == self.vocab.pad_id)
            image_done = finished.view(n, k).all(dim=1)
            if not image_done.any():
                continue
            for j in image_done.nonzero().flatten().tolist():
                results[images[j]] = (seqs.view(n, k, -1)[j], alphas.view(n, k, -1, p)[j], scores[j])
            if image_done.all():
                break
            keep = ~image_done
            keep_rows = keep.repeat_interleave(k)
            images = [i for i, kept in zip(images, keep.tolist()) if kept]
            feats, projected, scores = feats[keep], projected[keep], scores[keep]
            state = (state[0][keep_rows], state[1][keep_rows])
            tokens, finished, seqs, alphas = tokens[keep_rows], finished[keep_rows], seqs[keep_rows], alphas[keep_rows]
        captions = []
        for i in range(b):
            seq, alpha, score = results[i]
            best = self._make_caption(seq[0], alpha[0], float(score[0]), features[i], max_len)
            for j in range(1, k):
                if score[j] > -math.inf:
                    words, embeddings = self._words(seq[j], max_len)
                    best.alternatives.append(words)
                    best.alternative_embeddings.append(embeddings)
            captions.append(best)
        return captions

    @torch.no_grad()
    def caption_features(self, features: torch.Tensor, beam_size: int = 3) -> list[Caption]:
        """Decode region features (B, P, C); beam_size 1 is greedy decoding."""
        if beam_size < 1:
            raise ValueError("beam size must be at least 1")
        return self.greedy(features) if beam_size == 1 else self.beam_search(features, beam_size)

    @torch.no_grad()
    def caption_images(self, images: torch.Tensor, beam_size: int = 3) -> list[Caption]:
        """Normalised images (B, 3, H, W) -> one Caption each."""
        return self.caption_features(self.encoder(images), beam_size)

    def _end_only_row(self, device: torch.device) -> torch.Tensor:
        row = torch.full((self.config.vocab_size,), -math.inf, device=device)
        row[self.vocab.end_id] = 0.0
        return row

    def _words(self, seq: torch.Tensor, max_len: int) -> tuple[list[str], torch.Tensor]:
        """Generated token ids (no leading <start>) -> the words up to <end>, and their embeddings."""
        ids = seq.tolist()
        stops = [n for n, t in enumerate(ids) if t in (self.vocab.end_id, self.vocab.pad_id)]
        n_words = min(stops[0] if stops else len(ids), max_len)
        embeddings = self.decoder.embedding.weight[seq[:n_words]].detach().float().cpu()
        return [self.vocab.words[t] for t in ids[:n_words]], embeddings

    def _make_caption(
        self,
        seq: torch.Tensor,
        alphas: torch.Tensor,
        log_prob: float,
        features: torch.Tensor,
        max_len: int,
    ) -> Caption:
        words, embeddings = self._words(seq, max_len)
        n_words, s = len(words), self.config.encoded_size
        return Caption(
            words=words,
            token_ids=seq[:n_words].tolist(),
            log_prob=log_prob,
            attention=alphas[:n_words].reshape(n_words, s, s).float().cpu(),
            embeddings=embeddings,
            feature=features.mean(dim=0).float().cpu(),
            regions=features.float().cpu(),
        )

    # ---- checkpoints ---------------------------------------------------------------------------------------

    def checkpoint(self, **extra: Any) -> dict[str, Any]:
        """A self-describing checkpoint: config and vocabulary travel with the weights."""
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": asdict(self.config),
            "vocab": self.vocab.words,
            "model": self.state_dict(),
            **extra,
        }

    def save(self, path: str | Path, **extra: Any) -> None:
        """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.checkpoint(**extra), tmp)
        tmp.replace(path)

    @classmethod
    def from_checkpoint(cls, source: str | Path | dict[str, Any], map_location: str = "cpu",
                        build_trunk: bool = True) -> "CaptionModel":
        """Rebuild the model from nothing but the checkpoint file (or an already loaded checkpoint dict).
        build_trunk=False: leave the encoder's trunk unbuilt until an encoder runtime needs it (see Encoder)."""
        ckpt = source if isinstance(source, dict) else load_checkpoint(source, map_location)
        model = cls(ModelConfig.from_dict(ckpt["config"]), Vocabulary(ckpt["vocab"]), build_trunk=build_trunk)
        state = dict(ckpt["model"])
        if not build_trunk:
            prefix = "encoder." + Encoder.TRUNK_PREFIX
            model.encoder.trunk_state = {k[len(prefix):]: state.pop(k) for k in list(state) if k.startswith(prefix)}
        try:
            model.load_state_dict(state)  # an unbuilt trunk's weights are checked when it is built
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint weights do not match its config: {str(exc).splitlines()[0]}") from exc
        return model.eval()


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint dict; raises CheckpointError with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:  # garbage, or a pickle that would need arbitrary code to load
        raise CheckpointError(f"cannot read checkpoint {path}: not a valid (weights-only) torch file") from exc
    except Exception as exc:  # torch raises many types for corrupt files (zip, EOF, ...)
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"cannot read checkpoint {path}: {type(exc).__name__}: {reason}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vidcap checkpoint")
    if ckpt.get("version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} was written by a newer vidcap (format version {ckpt['version']})")
    return ckpt


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
