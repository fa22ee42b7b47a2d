"""Installed like a user: the wheel of `pip install .` (not editable), run from another folder, serves, captions and
archives (the handler and the demo model are package data), and the project's files name nothing outside it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from vidcap.client import VidcapClient

from conftest import REPO
from test_torchserve import free_port_block


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """The wheel installed into its own folder (dependencies from this environment), and a folder far from the
    checkout to run it in."""
    folder = tmp_path_factory.mktemp("install")
    source = folder / "source"  # the tracked files only, as a clone has them; the build leaves nothing in REPO
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(folder / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((folder / "dist").glob("vidcap-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(folder / "site"),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REPO / "examples" / "yellow-star-at-night.jpg", elsewhere)
    env = {k: v for k, v in os.environ.items() if k != "VIDCAP_MODEL"}
    env["PYTHONPATH"] = str(folder / "site")  # ahead of the checkout's editable install
    return {"wheel": wheel, "site": folder / "site", "cwd": elsewhere, "env": env}


def run(installed, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidcap.cli", *args], capture_output=True, text=True,
                          cwd=installed["cwd"], env=installed["env"], timeout=timeout)


def test_the_wheel_carries_the_handler_and_the_demo_model(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {"vidcap/handlers/vidcap_handler.py", "vidcap/model_store/vidcap-demo.pt", "vidcap/paths.py"} <= names
    where = subprocess.run([sys.executable, "-c", "import vidcap.paths as p; print(p.handler_file()); "
                            "print(p.demo_model())"], capture_output=True, text=True, cwd=installed["cwd"],
                           env=installed["env"], check=True).stdout.split()
    assert all(Path(path).is_relative_to(installed["site"]) and Path(path).is_file() for path in where), where


def test_installed_caption_and_archive_work_from_another_folder(installed):
    caption = run(installed, "caption", "yellow-star-at-night.jpg")
    assert caption.returncode == 0 and "star" in caption.stdout, caption.stderr
    archive = run(installed, "archive", "--out", "store", "--encoder", "torch")
    assert archive.returncode == 0, archive.stderr
    with zipfile.ZipFile(installed["cwd"] / "store" / "vidcap-video.mar") as mar:
        assert "vidcap_handler.py" in mar.namelist() and "vidcap-demo.pt" in mar.namelist()


@pytest.mark.skipif(shutil.which("java") is None, reason="TorchServe needs a Java runtime")
def test_installed_serve_answers_over_grpc(installed):
    base = free_port_block(16)
    proc = subprocess.Popen([sys.executable, "-m", "vidcap.cli", "serve", "--grpc-port", str(base), "--http-port",
                             str(base + 1), "--torchserve-port", str(base + 2), "--no-ui", "--encoder", "torch",
                             "--work-dir", str(installed["cwd"] / "work")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=installed["cwd"], env=installed["env"])
    try:
        for line in proc.stdout:
            if line.startswith("TorchServe"):
                break
        else:
            pytest.fail("vidcap serve exited: " + proc.stderr.read()[-3000:])
        with VidcapClient(f"127.0.0.1:{base}", timeout=120) as client:
            image = (installed["cwd"] / "yellow-star-at-night.jpg").read_bytes()
            assert "star" in client.caption_image(image).caption
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0


def test_the_project_names_no_file_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    outside = re.compile(r"\.\./shared|/work/|shared/notes")
    texts = [name for name in tracked.split() if name != "tests/test_install.py" and (REPO / name).is_file()
             and Path(name).suffix in (".py", ".md", ".sh", ".yml", ".toml", ".txt", ".proto", "")]
    offenders = [name for name in texts if outside.search((REPO / name).read_text(errors="replace"))]
    assert offenders == [], offenders
