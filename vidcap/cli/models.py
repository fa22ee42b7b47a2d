"""`vidcap caption`, `train`, `eval`, `calibrate`, `import`, `pull`: the model and its checkpoints."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError
from vidcap.fileio import require_file, write_atomic
from vidcap.cli.common import add_encoder


# ---- caption ----------------------------------------------------------------------------------------------


def _add_caption(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="caption images", description="Caption images: one caption per line.")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--beam", type=int, default=3, help="beam size; 1 = greedy (default: 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels than this")
    p.add_argument("--json", action="store_true", help="print JSON: words, token ids, log-probability")
    p.add_argument("--embeddings", action="store_true", help="with --json: each word's embedding")
    p.add_argument("--attention", action="store_true", help="with --json: each word's SxS attention map")
    p.add_argument("--feature", action="store_true", help="with --json: the pooled CNN feature")
    add_encoder(p)
    p.set_defaults(run=_run_caption)


def _run_caption(args: argparse.Namespace) -> int:
    if args.beam < 1:
        raise VidcapError("--beam must be at least 1")
    for image in args.images:  # before the model is loaded: a typo is answered at once
        require_file(image, "image")
    from vidcap.analysis.hosts import InProcessHost
    from vidcap.captioner import Captioner
    from vidcap.domain import OUT_OF_DOMAIN
    from vidcap.images import DEFAULT_MAX_PIXELS

    host = InProcessHost(Captioner.load(args.model, device=args.device, encoder=args.encoder))
    captions = host.caption_images([Path(p) for p in args.images], args.beam, args.max_pixels or DEFAULT_MAX_PIXELS)
    typicality = host.typicality(captions)
    unlike = [path for path, t in zip(args.images, typicality) if t is not None and t < OUT_OF_DOMAIN]
    if unlike:
        names = ", ".join(Path(p).name for p in unlike[:3]) + (", ..." if len(unlike) > 3 else "")
        print(f"warning: {len(unlike)} of {len(captions)} images ({names}) are unlike anything the model was trained "
              f"on ({host.trained_on}): their captions are not meaningful; use a model trained for "
              f"such images (docs/training.md)", file=sys.stderr)
    if not args.json:
        print("\n".join(c.text for c in captions))
        return 0
    records = []
    for path, c, t in zip(args.images, captions, typicality):
        record: dict[str, Any] = {"image": path, "caption": c.text, "words": c.words, "token_ids": c.token_ids,
                                  "log_prob": c.log_prob, "in_domain": t}
        if args.embeddings:
            record["embeddings"] = c.embeddings.tolist()
        if args.attention:
            record["attention"] = c.attention.tolist()
        if args.feature:
            record["feature"] = c.feature.tolist()
        records.append(record)
    print(json.dumps(records, indent=1))
    return 0


# ---- train / eval -----------------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    from vidcap.training.args import get_args_parser

    sub.add_parser("train", parents=[get_args_parser(add_help=False)], help="train a captioning model",
                   description=get_args_parser().description).set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from vidcap.training.train import main

    logging.getLogger("vidcap").setLevel(logging.INFO)  # epoch lines (validation BLEU) are what a trainer watches
    summary = main(args)
    print(f"best validation BLEU-4 {summary['best_val_bleu4']:.2f} after {summary['minutes']:.1f} min: "
          f"{summary['best_checkpoint']}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from vidcap.config import DATASET_NAMES

    p = sub.add_parser("eval", help="score a model on a dataset split",
                       description="BLEU-1..4 (nltk corpus BLEU, 0-100) against all references; CIDEr, ROUGE-L "
                                   "and METEOR through pycocoevalcap when installed (METEOR needs Java).")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="synthetic")
    p.add_argument("--data", help="dataset folder (Karpathy split JSON + images)")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--size", type=int, help="synthetic: number of images (default: 1000 for test)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: dataset seed (the demo model used 0)")
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="OUT", help="also write the scores to this JSON file")
    add_encoder(p)
    p.set_defaults(run=_run_eval)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from vidcap.config import DATASET_NAMES

    p = sub.add_parser("calibrate", help="add a profile of its training images to a checkpoint",
                       description="Write into CHECKPOINT what tells the model's own kind of images from others "
                                   "(vidcap/domain.py: a Gaussian of the encoder's pooled feature over training "
                                   "images, calibrated on held-out ones), so every analysed frame gets an "
                                   "in-domain score. `vidcap train` does this itself; use this for an older "
                                   "checkpoint. The weights are not changed.")
    p.add_argument("checkpoint")
    p.add_argument("frames", nargs="*", metavar="IMAGES",
                   help="your own images or folders of them (at least 20): the profile then says what is unlike "
                        "them, instead of a dataset's training images")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="synthetic", help="what the model was trained on")
    p.add_argument("--data", help="dataset folder (Karpathy split JSON + images)")
    p.add_argument("--images", type=int, default=1000, help="training images to fit on (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: dataset seed (the demo model used 0)")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    require_file(args.checkpoint, "checkpoint")
    from vidcap.captioner import resolve_device
    from vidcap.config import DATASET_DOMAINS
    from vidcap.data import open_dataset
    from vidcap.domain import profile_from_datasets, write_profile
    from vidcap.model import CaptionModel

    if args.images < 10:
        raise VidcapError("--images must be at least 10")
    if args.frames:
        from vidcap.video.calibrate import calibrate_on_images

        profile, frames = calibrate_on_images(args.checkpoint, args.frames, resolve_device(args.device))
        write_profile(args.checkpoint, profile)
        print(f"{args.checkpoint}: domain profile of your {frames} frames ({len(profile.components)} components, "
              f"{len(profile.held_out)} held out): frames unlike them are now called outside its domain")
        return 0
    device = resolve_device(args.device)
    model = CaptionModel.from_checkpoint(args.checkpoint).to(device)
    size = model.config.image_size
    fit_set = open_dataset(args.dataset, "train", size, args.data, args.images if args.dataset == "synthetic"
                           else None, args.seed)
    held_out = open_dataset(args.dataset, "val", size, args.data, None, args.seed)
    profile = profile_from_datasets(model, fit_set, held_out, DATASET_DOMAINS[args.dataset], device, args.images)
    write_profile(args.checkpoint, profile)
    print(f"{args.checkpoint}: domain profile of {min(args.images, len(fit_set))} {args.dataset} training images "
          f"({len(profile.components)} components), calibrated on {len(profile.held_out)} held-out images")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from vidcap.captioner import Captioner
    from vidcap.data import open_dataset
    from vidcap.evaluation import evaluate_model

    if args.beam < 1:
        raise VidcapError("--beam must be at least 1")
    captioner = Captioner.load(args.model, device=args.device, encoder=args.encoder)
    dataset = open_dataset(args.dataset, args.split, captioner.image_size, args.data, args.size, args.seed)
    scores = evaluate_model(captioner.model, dataset, args.beam, args.batch_size, captioner.device,
                            progress=sys.stderr.isatty(), encoder=captioner.encoder)
    labels = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "cider": "CIDEr",
              "rouge_l": "ROUGE-L", "meteor": "METEOR", "shape_accuracy": "shape acc"}
    print(f"{args.dataset} {args.split}: {int(scores['images'])} images, beam {args.beam}, encoder "
          f"{captioner.encoder.describe()} (scores on a 0-100 scale)")
    for key, label in labels.items():
        if key in scores:
            print(f"  {label:8s} {scores[key]:6.2f}")
    if args.json:
        write_atomic(args.json, json.dumps({"dataset": args.dataset, "split": args.split, "beam": args.beam,
                                             "encoder": captioner.encoder.describe(), **scores}, indent=2))
    return 0


# ---- models from elsewhere ------------------------------------------------------------------------------------


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a published Show, Attend and Tell checkpoint",
                       description="Convert a checkpoint of the 'PyTorch Tutorial to Image Captioning' (pickled "
                                   "Encoder/DecoderWithAttention modules, or their state_dicts) and its word map into "
                                   "a self-describing vidcap checkpoint with a model card. Nothing in the file is run: "
                                   "only the classes such a checkpoint holds are read, as plain data "
                                   "(docs/models.md).")
    p.add_argument("checkpoint", help="e.g. BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar")
    p.add_argument("--word-map", required=True, help="its WORDMAP_*.json (word -> index)")
    p.add_argument("--out", required=True, help="the vidcap checkpoint to write (e.g. sat-coco.pt)")
    p.add_argument("--name", help="the model's name in its card and the UI (default: the --out file's stem)")
    p.add_argument("--image-size", type=int, default=256, help="input side in pixels (the tutorial's: 256)")
    p.add_argument("--encoded-size", type=int, help="regions per side, for a plain state_dict (default: read from "
                                                    "the modules, else 14)")
    p.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    require_file(args.checkpoint, "checkpoint")
    require_file(args.word_map, "word map")
    from vidcap.published import import_checkpoint

    card = import_checkpoint(args.checkpoint, args.word_map, args.out, args.name, args.image_size,
                             args.encoded_size)
    reported = ", ".join(f"{k} {v}" for k, v in card["reported"].items()) or "no figures"
    print(f"{args.out}: {card['name']}, {card['architecture']} (from {card['file']}: {reported})")
    print(f"next: vidcap caption IMAGE --model {args.out}; vidcap calibrate {args.out} IMAGES... gives it a domain "
          f"profile from your own frames")
    return 0


def _add_pull(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="fetch a model from a URL into the cache, verified",
                       description="Download a model once into the cache ($VIDCAP_CACHE or ~/.cache/vidcap), check "
                                   "its SHA-256 and print its path; a broken download resumes, a wrong hash keeps "
                                   "nothing. `--model URL#sha256=HEX` on any command does the same.")
    p.add_argument("url")
    p.add_argument("--sha256", help="the file's SHA-256 (or put #sha256=HEX at the end of the URL)")
    p.set_defaults(run=_run_pull)


def _run_pull(args: argparse.Namespace) -> int:
    from vidcap.fetch import fetch

    def progress(done: int, total: int | None) -> None:
        if total:
            print(f"\r{done / 2**20:.1f} of {total / 2**20:.1f} MiB", end="", file=sys.stderr, flush=True)

    path = fetch(args.url, args.sha256, progress)
    print(file=sys.stderr)
    print(path)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_caption(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_calibrate(sub)
    _add_import(sub)
    _add_pull(sub)
