"""--encoder-weights imagenet: torchvision's published weights through torchvision's own download and hash check
into torch's cache; offline, an error at once that says which file to place where."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import torchvision

from vidcap.config import ModelConfig
from vidcap.errors import CheckpointError
from vidcap.model import Encoder

from conftest import VIDCAP, cli_env


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there: refused at once, no network
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_offline_it_says_which_file_to_place_where(offline_torch_home):
    with pytest.raises(CheckpointError) as info:
        Encoder(ModelConfig(backbone="resnet18", stages=2, image_size=64, encoded_size=2), "imagenet")
    message = str(info.value)
    assert "resnet18-f37072fd.pth" in message and str(offline_torch_home) in message, message


def test_a_file_in_torchs_cache_is_used(offline_torch_home):
    torch.manual_seed(1)
    published = torchvision.models.resnet18(weights=None).state_dict()
    offline_torch_home.mkdir(parents=True)
    torch.save(published, offline_torch_home / "resnet18-f37072fd.pth")
    encoder = Encoder(ModelConfig(backbone="resnet18", stages=2, image_size=64, encoded_size=2), "imagenet")
    assert encoder.pretrained and torch.equal(encoder.trunk[0].weight, published["conv1.weight"])


def test_vidcap_train_offline_fails_at_once_with_the_same_advice(tmp_path):
    env = {**cli_env(), "TORCH_HOME": str(tmp_path / "torch"), "https_proxy": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9"}
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    done = subprocess.run([*VIDCAP, "train", "--preset", "demo", "--encoder-weights", "imagenet", "--out",
                           str(tmp_path / "run"), "--epochs", "1"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 2 and "resnet18-f37072fd.pth" in done.stderr and "Traceback" not in done.stderr, \
        done.stderr[-2000:]
