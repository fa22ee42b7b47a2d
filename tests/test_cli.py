"""The `vidcap` command as a user runs it: real processes, the shipped demo model, real image files."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import REPO, VIDCAP, cli_env, synthetic_images


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCAP, *args], capture_output=True, text=True, cwd=cwd, env=cli_env(), timeout=600)


def assert_clean_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and pattern in lines[0], result.stderr


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, (pixels, _) in enumerate(synthetic_images(3, seed=42, size=(160, 112))):
        paths.append(folder / f"{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "vidcap"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=cli_env())
    assert result.returncode == 0 and "caption" in result.stdout and "train" in result.stdout


def test_caption_prints_one_caption_per_image_last_line_last_image(images, demo_model_path):
    result = run("caption", *map(str, images))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == len(images)
    alone = run("caption", str(images[-1]), "--beam", "3")
    assert alone.stdout.strip() == lines[-1]
    assert all(len(line.split()) >= 3 for line in lines)


def test_caption_json_adds_what_the_flags_choose(images, demo_model_path):
    result = run("caption", str(images[0]), "--json", "--embeddings", "--attention", "--feature", "--beam", "2")
    assert result.returncode == 0, result.stderr
    (record,) = json.loads(result.stdout)
    ckpt = torch.load(demo_model_path, weights_only=True)
    cfg = ckpt["config"]
    n = len(record["words"])
    assert record["caption"] == " ".join(record["words"]) and len(record["token_ids"]) == n
    assert len(record["embeddings"]) == n and len(record["embeddings"][0]) == cfg["embed_dim"]
    s = cfg["encoded_size"]
    assert len(record["attention"]) == n and len(record["attention"][0]) == s and len(record["attention"][0][0]) == s
    assert len(record["feature"]) > 0 and record["log_prob"] < 0
    plain = json.loads(run("caption", str(images[0]), "--json", "--beam", "2").stdout)[0]
    assert "embeddings" not in plain and "attention" not in plain and "feature" not in plain
    assert plain["words"] == record["words"]


def test_bad_images_get_a_one_line_error_and_no_output(images, tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "junk.png").write_text("definitely not a png")
    for bad, pattern in [("empty.jpg", "0 bytes"), ("junk.png", "cannot read"), ("nope.png", "not found")]:
        result = run("caption", str(images[0]), str(tmp_path / bad))
        assert_clean_error(result, pattern)
        assert result.stdout == ""  # nothing half-written: no caption for the good image either
    assert_clean_error(run("caption", str(images[0]), "--max-pixels", "100"), "above the limit of 100")


def test_missing_or_corrupt_checkpoint_gets_a_one_line_error(images, tmp_path):
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    assert_clean_error(run("caption", str(images[0]), "--model", str(tmp_path / "none.pt")), "not found")
    assert_clean_error(run("caption", str(images[0]), "--model", str(tmp_path / "bad.pt")), "cannot read checkpoint")


def test_eval_writes_bleu_json_on_the_0_to_100_scale(tmp_path, demo_model_path):
    out = tmp_path / "scores.json"
    result = run("eval", "--dataset", "synthetic", "--split", "test", "--size", "40", "--beam", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "BLEU-4" in result.stdout and "0-100" in result.stdout
    scores = json.loads(out.read_text())
    for key in ("bleu1", "bleu2", "bleu3", "bleu4"):
        assert 0.0 <= scores[key] <= 100.0
    assert scores["bleu1"] >= scores["bleu2"] >= scores["bleu3"] >= scores["bleu4"]
    assert scores["images"] == 40


def test_demo_model_quality_on_held_out_synthetic_test_split(tmp_path, demo_model_path):
    """The shipped model keeps the quality its model card claims (BLEU-4 >= 50 on the test split)."""
    out = tmp_path / "scores.json"
    result = run("eval", "--split", "test", "--json", str(out))  # the card's 1,000 images, beam 3
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["bleu4"] >= 50.0


def test_eval_bad_dataset_folder_is_a_clean_error(tmp_path):
    assert_clean_error(run("eval", "--dataset", "coco", "--data", str(tmp_path)), "annotation file not found")


@pytest.mark.parametrize("argv", [["--help"], ["caption", "missing.jpg"], ["analyze", "missing.mp4"],
                                  ["analyze", "x.mp4", "--every", "often"], ["train", "--help"], ["serve", "--help"]])
def test_help_bad_arguments_and_missing_files_are_answered_before_torch_is_imported(argv, tmp_path):
    """Startup: nothing heavy (torch, torchvision, nltk) is imported to answer these."""
    probe = ("import sys\nfrom vidcap.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('torch', 'torchvision', 'nltk') if m in sys.modules))" % argv)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                            env=cli_env(), timeout=60)
    assert result.stdout.strip().splitlines()[-1] == "[]", (result.stdout, result.stderr)


def test_a_signal_delivered_to_another_thread_still_stops_a_server():
    """The kernel may deliver SIGTERM to any thread; Python runs the handler in the main thread only, so a main
    thread blocked without a timeout never saw it (a server went on serving after SIGTERM in the tests)."""
    child = textwrap.dedent("""
        import signal, threading, time
        from vidcap.serving.signals import stop_on_signals, wait_for_stop
        stop = threading.Event()
        stop_on_signals(stop)
        sender = threading.Thread(target=lambda: (time.sleep(0.5), signal.pthread_kill(threading.get_ident(),
                                                                                        signal.SIGTERM)))
        sender.start()
        started = time.monotonic()
        wait_for_stop(stop)
        print(f"stopped after {time.monotonic() - started:.1f} s")
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=cli_env(), timeout=30)
    assert result.returncode == 0 and result.stdout.startswith("stopped after"), result.stderr
    assert float(result.stdout.split()[2]) < 2.0
