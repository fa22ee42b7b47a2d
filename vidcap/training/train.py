"""Train a Show, Attend and Tell captioner.

    vidcap train --preset demo                      # synthetic scenes, ~15 min on 2 CPU cores
    vidcap train --preset coco --data /data/coco    # Karpathy split JSON + images, ResNet-152
    torchrun --nproc_per_node 8 training/train.py --preset coco --data /data/coco   # multi-GPU (DDP)

Outputs in --out: best.pt (the model with the best validation BLEU-4, self-describing), last.pt (everything
needed to --resume), summary.json, and TensorBoard logs in tb/.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from vidcap.training.args import get_args_parser
from vidcap.training.presets import PRESETS, TrainConfig
from vidcap.training.pretrain import PretrainResult, pretrain_encoder
from vidcap.data import CaptionDataset, collate_for_training, open_dataset
from vidcap.evaluation import evaluate_model
from vidcap.model import CaptionModel, caption_loss, count_parameters, load_checkpoint
from vidcap.synthetic import FILLER_WORDS
from vidcap.vocab import Vocabulary

log = logging.getLogger("vidcap.train")


def build_config(args: argparse.Namespace) -> TrainConfig:
    cfg = PRESETS[args.preset]
    overrides = {
        "dataset": args.dataset,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "decoder_lr": args.decoder_lr,
        "encoder_lr": args.encoder_lr,
        "train_size": args.train_size,
        "val_images": args.val_images,
        "max_minutes": args.max_minutes,
        "encoder_pretrain_steps": args.encoder_pretrain_steps,
    }
    return replace(cfg, model=replace(cfg.model), **{k: v for k, v in overrides.items() if v is not None})


# ---- distributed helpers (no-ops in a single process) ------------------------------------------------------


def init_distributed(device_arg: str) -> tuple[torch.device, int, int]:
    """Returns (device, rank, world size). torchrun sets RANK/WORLD_SIZE/LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if device_arg == "auto":
        device_arg = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_arg)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, rank, world


# ---- the loop --------------------------------------------------------------------------------------------


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    cfg: TrainConfig,
    device: torch.device,
    deadline: float | None,
    writer: "MetricLogger | None",
    global_step: int,
    progress: bool,
) -> tuple[int, float, bool]:
    """One pass over the loader -> (global step, mean loss, whether the time budget ran out)."""
    model.train()
    amp = device.type == "cuda"
    total, count, out_of_time = 0.0, 0, False
    bar = tqdm(loader, desc="train", disable=not progress, leave=False)
    for images, captions in bar:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        captions = captions.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            logits, alphas = model(images, captions)
        loss, xent = caption_loss(logits.float(), alphas.float(), captions, cfg.alpha_c)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        global_step += 1
        loss_value = loss.item()
        total, count = total + loss_value, count + 1
        bar.set_postfix(loss=f"{loss_value:.3f}")
        if writer is not None and global_step % 10 == 0:
            writer.add_scalar("train/loss", loss_value, global_step)
            writer.add_scalar("train/xent", xent.item(), global_step)
            writer.add_scalar("train/lr_decoder", scheduler.get_last_lr()[0], global_step)
        if deadline is not None and time.monotonic() > deadline:
            out_of_time = True
            break
    return global_step, total / max(count, 1), out_of_time


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if not cfg.cosine:
            return 1.0
        progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model: CaptionModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = [{"params": list(model.decoder.parameters()), "lr": cfg.decoder_lr}]
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": cfg.encoder_lr})
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)


def build_vocab(train_set: CaptionDataset, cfg: TrainConfig) -> Vocabulary:
    return Vocabulary.build((tokens for refs in train_set.all_references() for tokens in refs), cfg.min_word_freq)


class MetricLogger:
    """Scalars to TensorBoard, and to neptune too (the old project's tracker) when asked for and configured."""

    def __init__(self, kind: str, out: Path, cfg: TrainConfig):
        from torch.utils.tensorboard import SummaryWriter

        self.tensorboard = SummaryWriter(str(out / "tb"))
        self.neptune = None
        if kind == "neptune":
            try:
                import neptune

                self.neptune = neptune.init_run(tags=["vidcap"])  # reads NEPTUNE_API_TOKEN / NEPTUNE_PROJECT
                self.neptune["config"] = json.dumps(asdict(cfg))
            except Exception as exc:  # missing package or credentials: training must not die for its logs
                log.warning("neptune unavailable (%s): logging to TensorBoard only", exc)

    def add_scalar(self, name: str, value: float, step: int) -> None:
        self.tensorboard.add_scalar(name, value, step)
        if self.neptune is not None:
            self.neptune[name].append(value, step=step)

    def close(self) -> None:
        self.tensorboard.close()
        if self.neptune is not None:
            self.neptune.stop()


def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    cfg = build_config(args)
    device, rank, world = init_distributed(args.device)
    is_main = rank == 0
    out = Path(args.out or f"runs/{args.preset}")
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    mc = cfg.model
    train_set = open_dataset(cfg.dataset, "train", mc.image_size, args.data, cfg.train_size, args.seed)
    val_set = open_dataset(cfg.dataset, "val", mc.image_size, args.data, cfg.val_size, args.seed)

    resume = load_checkpoint(args.resume) if args.resume else None
    if resume is not None:
        model = CaptionModel.from_checkpoint(resume).train()
        cfg = replace(cfg, model=model.config)
    else:
        model = CaptionModel(mc, build_vocab(train_set, cfg), args.encoder_weights)
    if not model.encoder.pretrained and cfg.fine_tune_from is None and resume is None:
        log.warning("no --encoder-weights: the encoder starts from random weights, so it is trained in full")
        cfg = replace(cfg, fine_tune_from=1)
    log.info(
        "model: %s, %d parameters, vocabulary %d words, encoder %s",
        mc.backbone, count_parameters(model), len(model.vocab),
        "pretrained (local file)" if model.encoder.pretrained else "random init",
    )
    pretrain = maybe_pretrain_encoder(model, cfg, resume is not None, device, args.seed)
    model.encoder.set_fine_tuning(cfg.fine_tune_from)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg)

    sampler = DistributedSampler(train_set, seed=args.seed) if world > 1 else None
    shuffle_gen = torch.Generator().manual_seed(args.seed)
    pick_gen = torch.Generator().manual_seed(args.seed + 1)
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        generator=shuffle_gen,
        num_workers=args.workers,
        collate_fn=partial(collate_for_training, vocab=model.vocab, max_len=cfg.max_train_words,
                           generator=pick_gen if args.workers == 0 else None),
        drop_last=True,
        pin_memory=device.type == "cuda",
    )
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * len(loader))
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    trainable = wrap_ddp(model, device) if world > 1 else model

    # What the synthetic grammar says of every picture goes with the model (the novelty scorer leaves it out).
    fillers = list(FILLER_WORDS) if cfg.dataset == "synthetic" else []
    start_epoch, global_step, best, stale, history = 0, 0, -1.0, 0, []
    if resume is not None and "train_state" in resume:
        state = resume["train_state"]
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, global_step, best, stale = state["epoch"] + 1, state["step"], state["best"], state["stale"]
        history = state.get("history", [])
        log.info("resumed from %s at epoch %d", args.resume, start_epoch)

    writer = MetricLogger(args.logger, out, cfg) if is_main and args.logger != "none" else None
    started = time.monotonic()
    deadline = started + cfg.max_minutes * 60 if cfg.max_minutes else None
    progress = is_main and not args.no_progress
    for epoch in range(start_epoch, cfg.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        global_step, mean_loss, out_of_time = train_one_epoch(
            trainable, loader, optimizer, scheduler, scaler, cfg, device, deadline, writer, global_step, progress
        )
        if is_main:
            scores = evaluate_model(model, val_set, cfg.val_beam, 64, device, cfg.val_images, with_coco=False)
            elapsed = time.monotonic() - started
            history.append({"epoch": epoch, "step": global_step, "loss": mean_loss, "minutes": elapsed / 60, **scores})
            log.info("epoch %d step %d loss %.3f val BLEU-4 %.2f (%.1f min)", epoch, global_step, mean_loss,
                     scores["bleu4"], elapsed / 60)
            if writer is not None:
                for key, value in scores.items():
                    writer.add_scalar(f"val/{key}", value, global_step)
            improved = scores["bleu4"] > best
            best, stale = (scores["bleu4"], 0) if improved else (best, stale + 1)
            if improved:
                model.save(out / "best.pt", metrics={"val": scores}, train_config=asdict(cfg), filler_words=fillers)
            train_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "epoch": epoch,
                           "step": global_step, "best": best, "stale": stale, "history": history}
            model.save(out / "last.pt", train_state=train_state, train_config=asdict(cfg), filler_words=fillers)
        if world > 1:
            flags = torch.tensor([stale >= cfg.patience or out_of_time], dtype=torch.int, device=device)
            dist.broadcast(flags, 0)
            stop = bool(flags.item())
        else:
            stop = stale >= cfg.patience or out_of_time
        if stop:
            log.info("stopping: %s", "time budget reached" if out_of_time else "no improvement (early stopping)")
            break
    if is_main and (out / "best.pt").is_file():  # what tells this model's kind of images from others
        profile_best_checkpoint(out / "best.pt", cfg.dataset, train_set, val_set, device)
    summary = {"preset": args.preset, "best_val_bleu4": best, "minutes": (time.monotonic() - started) / 60,
               "steps": global_step, "history": history, "best_checkpoint": str(out / "best.pt"),
               "encoder_pretraining": asdict(pretrain) if pretrain else None}
    if is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        if writer is not None:
            writer.close()
    if world > 1:
        dist.destroy_process_group()
    return summary


def profile_best_checkpoint(path: Path, dataset: str, train_set, val_set, device: torch.device) -> None:
    """The domain profile of the best checkpoint's encoder (vidcap/domain.py), written into it: fit on training
    images, calibrated on validation ones."""
    from vidcap.config import DATASET_DOMAINS
    from vidcap.domain import profile_from_datasets, write_profile

    best = CaptionModel.from_checkpoint(path).to(device)
    try:
        profile = profile_from_datasets(best, train_set, val_set, DATASET_DOMAINS[dataset], device)
    except ValueError as error:  # a tiny data set: the model still works, it just cannot say what it knows
        log.warning("no domain profile written (%s); add one later with `vidcap calibrate`", error)
        return
    write_profile(path, profile)
    log.info("wrote the domain profile of %s", path)


def maybe_pretrain_encoder(model: CaptionModel, cfg: TrainConfig, resuming: bool, device: torch.device,
                           seed: int) -> PretrainResult | None:
    """Scene-classification pretraining of a random-init encoder, when the recipe asks for it (training/pretrain.py)."""
    if cfg.encoder_pretrain_steps <= 0 or resuming or model.encoder.pretrained:
        return None
    if cfg.dataset != "synthetic":
        log.warning("encoder pretraining needs the synthetic renderer's labels: skipped for %s", cfg.dataset)
        return None
    return pretrain_encoder(model.encoder, cfg.encoder_pretrain_steps, cfg.batch_size,
                            cfg.encoder_pretrain_lr, cfg.model.image_size, device, seed)


def wrap_ddp(model: CaptionModel, device: torch.device) -> torch.nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


if __name__ == "__main__":
    main(get_args_parser().parse_args())
