"""Write model_store/MODEL_CARD.md for a trained checkpoint, from the files themselves (no hand-typed numbers).

    python -m vidcap.training.model_card runs/demo/best.pt runs/demo/summary.json test_scores.json model_store/MODEL_CARD.md
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np

from vidcap.data import SyntheticDataset
from vidcap.evaluation import bleu_scores
from vidcap.model import CaptionModel, count_parameters, load_checkpoint
from vidcap.synthetic import describe_scene, random_scene
from vidcap.vocab import tokenize


def grammar_ceiling(images: int = 1000, seed: int = 0) -> float:
    """BLEU-4 of a sixth caption sampled from the grammar against the five references of each test image."""
    references, hypotheses = [], []
    for i in range(images):
        rng = np.random.default_rng([seed, SyntheticDataset.SPLIT_CODES["test"], i])
        captions = describe_scene(random_scene(rng), rng, 6)
        references.append([tokenize(c) for c in captions[:5]])
        hypotheses.append(tokenize(captions[5]))
    return bleu_scores(references, hypotheses)["bleu4"]


def render(checkpoint: Path, summary: dict, test: dict) -> str:
    ckpt = load_checkpoint(checkpoint)
    model = CaptionModel.from_checkpoint(ckpt)
    cfg, train = ckpt["config"], ckpt.get("train_config", {})
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    history = "\n".join(f"| {h['epoch']} | {h['step']} | {h['minutes']:.1f} | {h['loss']:.3f} | {h['bleu4']:.2f} | "
                        f"{h.get('shape_accuracy', float('nan')):.1f} |" for h in summary["history"])
    pretrain = summary.get("encoder_pretraining")
    total_minutes = summary["minutes"] + (pretrain["minutes"] if pretrain else 0.0)
    if pretrain:
        accuracy = ", ".join(f"{k} {v:.0f}%" for k, v in pretrain["val_accuracy"].items())
        encoder_init = "random init, pretrained on the renderer's labels"
        pretrain_row = (f"| encoder pretraining | {pretrain['steps']} steps ({pretrain['minutes']:.1f} min) "
                        f"classifying each column's shape, colour and size and the background "
                        f"(`training/pretrain.py`); held-out accuracy: {accuracy} |\n")
    else:
        encoder_init, pretrain_row = "random init", ""
    scores = " / ".join(f"{test[k]:.2f}" for k in ("bleu1", "bleu2", "bleu3", "bleu4"))
    labels = {"cider": "CIDEr", "rouge_l": "ROUGE-L", "meteor": "METEOR"}
    extra = ", ".join(f"{label} {test[k]:.2f}" for k, label in labels.items() if k in test)
    return f"""# Model card: vidcap demo captioner (`vidcap-demo.pt`)

A Show, Attend and Tell captioner trained from scratch on vidcap's synthetic scenes, small enough to train on
2 CPU cores in about {total_minutes:.0f} minutes. It is the default model of every vidcap command. It knows only the synthetic
domain (8 backgrounds, 6 shapes, 8 colours, 2 sizes, 1-3 objects): it is a working demo and a test fixture, not
a general captioner.

| | |
| --- | --- |
| file | `model_store/vidcap-demo.pt`, {checkpoint.stat().st_size / 1e6:.1f} MB, sha256 `{digest}...` |
| architecture | {cfg['backbone']} encoder (first {cfg['stages']} stages, {encoder_init}), {cfg['image_size']} px input, {cfg['encoded_size']}x{cfg['encoded_size']} regions x {model.config.feature_dim} channels; LSTM decoder {cfg['decoder_dim']}-d, attention {cfg['attention_dim']}-d, embeddings {cfg['embed_dim']}-d |
| parameters | {count_parameters(model):,} (encoder {count_parameters(model.encoder):,}, decoder {count_parameters(model.decoder):,}) |
| vocabulary | {len(model.vocab)} words (4 special) |
| training data | synthetic scenes, split `train`, seed 0, {train.get('train_size')} new images per epoch, 5 references each |
| training | preset `demo`: {train.get('epochs')} epochs max, batch {train.get('batch_size')}, Adam {train.get('decoder_lr')}, cosine decay, clip {train.get('grad_clip')}, alpha_c {train.get('alpha_c', 0):.4f}, {train.get('max_minutes')}-minute cap |
{pretrain_row}| training time | {total_minutes:.1f} min wall on 2 CPU cores (AMD EPYC, fp32), {summary['steps']} captioning steps |

## How it was made

```bash
vidcap train --preset demo --out runs/demo --seed 0
cp runs/demo/best.pt model_store/vidcap-demo.pt
vidcap eval --dataset synthetic --split test --beam 3 --json test_scores.json
```

## Quality on the held-out synthetic test split

{int(test['images'])} images (split `test`, seed 0: never seen in training), beam {test.get('beam', 3)}, nltk corpus BLEU
against all 5 references, 0-100 scale:

| BLEU-1 / 2 / 3 / 4 | other |
| --- | --- |
| {scores} | {extra or '-'} |

Shapes: of the objects the captions name (by a colour unique in the scene), {test.get('shape_accuracy', float('nan')):.1f}%
are named with the right shape (chance: 16.7%). BLEU hardly sees shape words, so this is measured on its own
(`vidcap.evaluation.shape_accuracy`).

For scale: a sixth caption sampled from the grammar itself, a true description in a random phrasing, scores
BLEU-4 {grammar_ceiling():.1f} against the five references (a model can score higher by always choosing the most
common phrasings). The validation scores during training were:

| epoch | step | minutes | train loss | val BLEU-4 (200 images) | val shapes right (%) |
| --- | --- | --- | --- | --- | --- |
{history}

## Limits

No ImageNet weights (they cannot be downloaded where it was built): the encoder starts from random weights and
learns from the synthetic scenes alone; small shapes in wide frames are its weakest point; synthetic
domain only; captions follow the grammar's phrasings. Squashed 16:9 frames are in its training distribution
(images are rendered at aspect ratios 1:1 to 1.8:1 and squashed to a square).

## Its domain

The checkpoint carries a domain profile of its training images (`vidcap calibrate`, vidcap/domain.py): every
analysed frame gets an in-domain score, and on footage unlike rendered scenes (camera footage, films, screen
recordings, the photographs in scikit-image) vidcap warns that the captions are not meaningful.
"""


def main(argv: list[str]) -> None:
    checkpoint, summary, test, out = map(Path, argv)
    Path(out).write_text(render(checkpoint, json.loads(summary.read_text()), json.loads(test.read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
