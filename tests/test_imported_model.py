"""Everything downstream with an imported model (a ResNet-101 tutorial checkpoint with random weights, imported by
`vidcap import`): caption, analyze, index + search, calibrate on the user's own frames, every encoder runtime,
and archive + serve through TorchServe."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from vidcap.captioner import Captioner
from vidcap.client import VidcapClient
from vidcap.encoders import available_encoders, make_encoder
from vidcap.model import CaptionModel, load_checkpoint
from vidcap.preprocess import to_model_input
from vidcap.video.synth import random_segments, write_video

from conftest import VIDCAP, cli_env, synthetic_images
from test_import import make_tutorial_model, save_tutorial_checkpoint, tutorial  # noqa: F401 (a fixture)
from test_torchserve import start_serve

pytestmark = pytest.mark.slow
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def imported(tutorial, tmp_path_factory) -> Path:  # noqa: F811
    folder = tmp_path_factory.mktemp("imported")
    encoder, decoder, word_map = make_tutorial_model(tutorial, "resnet101", seed=5)
    save_tutorial_checkpoint(folder / "BEST_checkpoint_coco.pth.tar", encoder, decoder)
    (folder / "WORDMAP_coco.json").write_text(json.dumps(word_map))
    done = subprocess.run([*VIDCAP, "import", str(folder / "BEST_checkpoint_coco.pth.tar"), "--word-map",
                           str(folder / "WORDMAP_coco.json"), "--out", str(folder / "sat-coco.pt"), "--name",
                           "sat-coco-test"], capture_output=True, text=True, env=cli_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    return folder / "sat-coco.pt"


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("footage")
    write_video(folder / "clip.mp4", random_segments(3, seed=4, min_seconds=3, max_seconds=3), fps=10,
                size=(320, 180))
    frames = folder / "frames"
    frames.mkdir()
    for i, (pixels, _) in enumerate(synthetic_images(24, seed=7, size=(160, 112))):
        Image.fromarray(pixels).save(frames / f"frame{i:02d}.png")
    return {"clip": folder / "clip.mp4", "frames": frames}


def vidcap(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCAP, *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


def test_caption_analyze_index_search_and_calibrate(imported, footage, tmp_path):
    model = ["--model", str(imported), "--encoder", "torch"]
    image = str(footage["frames"] / "frame00.png")
    caption = vidcap("caption", image, *model)
    assert caption.returncode == 0 and caption.stdout.strip(), caption.stderr
    expected = Captioner.load(imported, encoder="torch").caption_files([image])[0].text
    assert expected in caption.stdout
    analyzed = vidcap("analyze", str(footage["clip"]), "--every", "1", "--json", str(tmp_path / "a.json"), *model)
    assert analyzed.returncode == 0, analyzed.stderr
    frames = json.loads((tmp_path / "a.json").read_text())["frames"]
    assert len(frames) == 9 and all(f["in_domain"] is None for f in frames)  # no profile yet: nothing claimed
    indexed = vidcap("index", str(footage["clip"]), "--library", str(tmp_path / "lib.db"), "--no-progress", *model)
    assert indexed.returncode == 0, indexed.stderr
    content = [w for w in frames[0]["caption"].split() if len(w) > 3] or frames[0]["caption"].split()
    found = vidcap("search", " ".join(content[:2]), "--library", str(tmp_path / "lib.db"))
    assert found.returncode == 0 and "clip.mp4" in found.stdout, found.stdout + found.stderr
    mine = shutil.copy(imported, tmp_path / "mine.pt")
    calibrated = vidcap("calibrate", str(mine), str(footage["frames"]))
    assert calibrated.returncode == 0 and "24 frames" in calibrated.stdout, calibrated.stderr
    assert "given to vidcap calibrate" in load_checkpoint(mine)["domain"]["trained_on"]
    again = vidcap("analyze", str(footage["clip"]), "--every", "1", "--json", str(tmp_path / "b.json"),
                   "--model", str(mine), "--encoder", "torch")
    assert again.returncode == 0, again.stderr
    assert all(f["in_domain"] is not None for f in json.loads((tmp_path / "b.json").read_text())["frames"])
    too_few = vidcap("calibrate", str(mine), image)
    assert too_few.returncode == 2 and "at least 20" in too_few.stderr


@pytest.mark.parametrize("name", [n for n, reason in available_encoders(CPU).items() if reason is None])
def test_every_encoder_runtime_on_resnet101(imported, name, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDCAP_CACHE", str(tmp_path / "cache"))
    model = CaptionModel.from_checkpoint(imported)
    images = torch.cat([to_model_input(p, 256) for p, _ in synthetic_images(2, seed=9, size=(160, 96))])
    with torch.no_grad():
        reference = model.encoder(images)
    got = make_encoder(name, model.encoder, model.config, CPU)(images)
    assert got.shape == reference.shape == (2, 196, 2048)
    cos = torch.nn.functional.cosine_similarity
    regions, pooled = cos(got.flatten(1), reference.flatten(1)).min(), cos(got.mean(1), reference.mean(1)).min()
    if name in ("torch", "openvino-f32", "onnxruntime"):  # fp32 all the way
        assert regions > 0.999, (name, float(regions))
        return
    # Reduced precision through 101 layers of random weights: rounding grows (a pretrained trunk is better
    # conditioned), so each region is only roughly the reference, the pooled feature closely.
    assert pooled > 0.95 and regions > 0.6, (name, float(pooled), float(regions))
    if name == "torch-bf16":  # and it is exactly what PyTorch's own bf16 gives
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            own = model.encoder(images).float()
        assert cos(got.flatten(1), own.flatten(1)).min() > 0.999


def test_archive_and_serve_through_torchserve(imported, footage):
    if shutil.which("java") is None:
        pytest.skip("TorchServe needs a Java runtime")
    info = start_serve("--model-host", "torchserve", "--model", str(imported), "--encoder", "torch")
    try:
        image = (footage["frames"] / "frame01.png").read_bytes()
        with VidcapClient(info["grpc"], timeout=300) as client:
            served = client.caption_image(image, beam=3)
            model = client.describe_model()
        expected = Captioner.load(imported, encoder="torch").caption_files([footage["frames"] / "frame01.png"])[0]
        assert served.caption == expected.text
        assert model.name == "sat-coco-test" and "PyTorch Tutorial to Image Captioning" in model.source
        assert "resnet101" in model.architecture and "bleu-4" in model.reported
    finally:
        info["proc"].send_signal(signal.SIGTERM)
        info["proc"].wait(timeout=90)
