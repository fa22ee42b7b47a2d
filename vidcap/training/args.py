"""The command line of `vidcap train` (and `python -m vidcap.training.train`), importable without torch: `vidcap --help`
builds it before anything heavy is loaded."""

from __future__ import annotations

import argparse

from vidcap.training.presets import PRESETS
from vidcap.config import DATASET_NAMES


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Train a Show, Attend and Tell captioner.", add_help=add_help)
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="training recipe (default: demo)")
    p.add_argument("--dataset", choices=DATASET_NAMES, help="override the preset's dataset")
    p.add_argument("--data", help="dataset folder: Karpathy split JSON + images (not needed for synthetic)")
    p.add_argument("--out", help="output folder (default: runs/<preset>)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--decoder-lr", type=float)
    p.add_argument("--encoder-lr", type=float)
    p.add_argument("--train-size", type=int, help="synthetic: training images per epoch")
    p.add_argument("--val-images", type=int, help="validation images decoded for BLEU each epoch")
    p.add_argument("--max-minutes", type=float, help="stop after this much training time, keeping the best model")
    p.add_argument("--encoder-weights", help="start the encoder from these weights: 'imagenet' (torchvision's "
                                             "published ones for the backbone, downloaded once into torch's cache "
                                             "and hash-checked) or a local torchvision ResNet state_dict (.pth)")
    p.add_argument("--encoder-pretrain-steps", type=int,
                   help="synthetic only: steps of scene classification that train the encoder before captioning "
                        "(demo preset: 800; 0 skips it)")
    p.add_argument("--resume", help="last.pt of an earlier run to continue")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (0: load in the training process)")
    p.add_argument("--logger", choices=("tensorboard", "neptune", "none"), default="tensorboard")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p
