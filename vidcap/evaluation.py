"""Caption quality: BLEU-1..4 with nltk (0-100 scale), and CIDEr / ROUGE-L / METEOR through pycocoevalcap.

Scores are always computed on real decoded captions (beam search), never on teacher-forced arg-max outputs,
which are optimistic.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable, Sequence

import torch
from nltk.translate.bleu_score import corpus_bleu
from torch.utils.data import DataLoader
from tqdm import tqdm

from vidcap.data import CaptionDataset, SyntheticDataset, collate_for_eval
from vidcap.model import CaptionModel
from vidcap.synthetic import shape_words_right

log = logging.getLogger(__name__)

Tokens = Sequence[str]

_BLEU_WEIGHTS = [(1.0,), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0.25, 0.25)]


def bleu_scores(references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens]) -> dict[str, float]:
    """Corpus BLEU-1..4 against all references of each image, on the 0-100 scale: keys bleu1..bleu4."""
    refs = [[list(r) for r in image_refs] for image_refs in references]
    hyps = [list(h) for h in hypotheses]
    with warnings.catch_warnings():  # nltk warns on every corpus with no 4-gram overlap; a 0 score says it
        warnings.simplefilter("ignore", UserWarning)
        scores = corpus_bleu(refs, hyps, weights=_BLEU_WEIGHTS)
    # nltk returns a denormal (~1e-229) instead of 0 when no n-gram of that order matches
    return {f"bleu{n}": 100.0 * float(s) if s > 1e-12 else 0.0 for n, s in enumerate(scores, start=1)}


def coco_scores(references: Sequence[Sequence[Tokens]], hypotheses: Sequence[Tokens]) -> dict[str, float]:
    """CIDEr and ROUGE-L (pure Python) and METEOR (needs Java) from pycocoevalcap, when installed.
    Inputs are already tokenized, so the Java PTB tokenizer is not needed. Returns what could be computed."""
    try:
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        log.info("pycocoevalcap not installed: CIDEr/ROUGE-L/METEOR skipped (pip install 'vidcap[dev]')")
        return {}
    gts = {i: [" ".join(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [" ".join(h) or "<empty>"] for i, h in enumerate(hypotheses)}
    out = {"cider": 100.0 * Cider().compute_score(gts, res)[0], "rouge_l": 100.0 * Rouge().compute_score(gts, res)[0]}
    if shutil.which("java"):
        try:
            from pycocoevalcap.meteor.meteor import Meteor

            meteor = Meteor()
            out["meteor"] = 100.0 * meteor.compute_score(gts, res)[0]
            del meteor  # closes the Java subprocess
        except Exception as exc:  # METEOR's Java side fails in many environment-specific ways; BLEU still stands
            log.warning("METEOR skipped: %s", exc)
    else:
        log.info("java not found: METEOR skipped")
    return out


@torch.no_grad()
def decode_dataset(
    model: CaptionModel,
    dataset: CaptionDataset,
    beam_size: int = 3,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    progress: bool = False,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[list[list[str]]], list[list[str]]]:
    """Caption the dataset (or its first max_images) -> (references, hypotheses). encoder: an encoder runtime
    (vidcap/encoders.py) to use instead of the model's own PyTorch encoder."""
    was_training = model.training
    model.eval()
    if max_images is not None and max_images < len(dataset):
        dataset = torch.utils.data.Subset(dataset, range(max_images))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_for_eval)
    references, hypotheses = [], []
    for images, refs in tqdm(loader, desc="decode", disable=not progress, leave=False):
        captions = model.caption_features((encoder or model.encoder)(images.to(device)), beam_size)
        references.extend(refs)
        hypotheses.extend(c.words for c in captions)
    model.train(was_training)
    return references, hypotheses


def evaluate_model(
    model: CaptionModel,
    dataset: CaptionDataset,
    beam_size: int = 3,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    max_images: int | None = None,
    with_coco: bool = True,
    progress: bool = False,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    references, hypotheses = decode_dataset(model, dataset, beam_size, batch_size, device, max_images, progress,
                                            encoder)
    scores = bleu_scores(references, hypotheses)
    if isinstance(dataset, SyntheticDataset):
        scores["shape_accuracy"] = shape_accuracy(dataset, hypotheses)
    if with_coco:
        scores.update(coco_scores(references, hypotheses))
    scores["images"] = float(len(hypotheses))
    return scores


def shape_accuracy(dataset: SyntheticDataset, hypotheses: Sequence[Tokens]) -> float:
    """Synthetic scenes only: of the objects the captions name, the percentage named with the right shape."""
    named = right = 0
    for index, words in enumerate(hypotheses):
        n, r = shape_words_right(dataset.scene(index), list(words))
        named, right = named + n, right + r
    return 100.0 * right / max(named, 1)
