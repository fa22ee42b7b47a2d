"""Training entry points end to end on tiny data: synthetic, Karpathy format, resume, and DDP (2 processes)."""

from __future__ import annotations

import json
import subprocess
import sys


from vidcap.training.pretrain import ATTRIBUTES, BACKGROUND_NAMES, scene_labels
from vidcap.model import CaptionModel, load_checkpoint
from vidcap.synthetic import COLOURS, SHAPES, SIZES, Scene, SceneObject

from conftest import REPO, VIDCAP, cli_env, write_karpathy

TINY = ["--train-size", "64", "--val-images", "8", "--batch-size", "16", "--logger", "none", "--no-progress",
        "--encoder-pretrain-steps", "3"]


def train(*args: str, launcher: list[str] = VIDCAP + ["train"]) -> subprocess.CompletedProcess:
    result = subprocess.run([*launcher, *args], capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_train_synthetic_then_resume(tmp_path):
    out = tmp_path / "run"
    first = train("--preset", "demo", "--epochs", "1", "--out", str(out), *TINY)
    assert "best validation BLEU-4" in first.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [0]
    assert summary["encoder_pretraining"]["steps"] == 3
    assert set(summary["encoder_pretraining"]["val_accuracy"]) == {"shape", "colour", "size", "background"}
    model = CaptionModel.from_checkpoint(out / "best.pt")
    assert model.config.backbone == "resnet18" and len(model.vocab) > 20
    assert "val" in load_checkpoint(out / "best.pt")["metrics"]

    train("--preset", "demo", "--epochs", "2", "--out", str(out), "--resume", str(out / "last.pt"), *TINY)
    summary = json.loads((out / "summary.json").read_text())
    assert [h["epoch"] for h in summary["history"]] == [0, 1]
    assert summary["history"][1]["step"] == 2 * summary["history"][0]["step"]
    assert summary["encoder_pretraining"] is None  # a resumed run keeps its trained encoder


def test_train_on_a_karpathy_format_dataset(tmp_path):
    write_karpathy(tmp_path / "flickr", "flickr8k", {"train": 12, "val": 4, "test": 2})
    out = tmp_path / "run"
    result = train("--preset", "demo", "--dataset", "flickr8k", "--data", str(tmp_path / "flickr"), "--epochs", "1",
                   "--out", str(out), "--batch-size", "4", "--logger", "tensorboard", "--no-progress")
    assert "encoder pretraining needs the synthetic renderer's labels: skipped for flickr8k" in result.stderr
    assert "circle" in CaptionModel.from_checkpoint(out / "best.pt").vocab.index
    assert any((out / "tb").iterdir()), "TensorBoard event file written"


def test_train_with_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "-m", "vidcap.training.train"]
    train("--preset", "demo", "--epochs", "1", "--out", str(out), *TINY, launcher=torchrun)
    summary = json.loads((out / "summary.json").read_text())
    # 64 images over 2 processes with batch 16: each process takes 2 steps.
    assert summary["steps"] == 2
    assert (out / "best.pt").is_file()


def test_train_bad_dataset_is_a_clean_error(tmp_path):
    result = subprocess.run([*VIDCAP, "train", "--dataset", "coco", "--data", str(tmp_path), *TINY],
                            capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=300)
    assert result.returncode == 2 and "annotation file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_scene_labels_name_each_column_and_the_background():
    scene = Scene("snow", (SceneObject("star", "red", "small", 0, 0.2, 0.5),
                           SceneObject("cross", "blue", "large", 2, 0.8, 0.5)))
    labels = scene_labels(scene)
    none = {name: len(values) for name, values in ATTRIBUTES}
    assert labels["shape"] == [list(SHAPES).index("star"), none["shape"], list(SHAPES).index("cross")]
    assert labels["colour"] == [list(COLOURS).index("red"), none["colour"], list(COLOURS).index("blue")]
    assert labels["size"] == [list(SIZES).index("small"), none["size"], list(SIZES).index("large")]
    assert labels["background"] == [BACKGROUND_NAMES.index("snow")]
