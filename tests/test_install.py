"""Installed like a user: the wheel built from the tracked files, installed with its dependencies (from the wheel's
metadata, the `serving` extra only: no ui, no dev) into a fresh virtual environment of its own, and run from a folder
far from the checkout: caption, analyze, serve (TorchServe and in-process), index + search, a job submitted and read
back. Nothing of the checkout or of the development environment is importable there."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from conftest import REPO
from test_torchserve import free_port_block

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="vidcap-install-"))  # outside pytest's tree, far from the checkout
    source = folder / "source"  # the tracked files only, as a clone has them; the build leaves nothing in REPO
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(folder / "dist")], check=True, capture_output=True, timeout=300)
    wheel = next((folder / "dist").glob("vidcap-*.whl"))
    env_dir = folder / "venv"
    venv.create(env_dir, with_pip=True)  # no system site-packages, nothing of this test's environment
    python = env_dir / "bin" / "python"
    env = _clean_env(folder)
    # --no-compile: Python compiles what it imports when it first does; compiling all of torch up front was 20 s
    # of this test and tells nothing of the wheel.
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-compile"]
    # As the README says: the pinned torch pair first (from this machine's disk), then vidcap with an extra.
    for step in (["torch==2.14.1", "torchvision==0.29.1"], [f"{wheel}[serving]"]):
        done = subprocess.run(pip + step, capture_output=True, text=True, env=env, timeout=1200)
        assert done.returncode == 0, done.stderr[-3000:]
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REPO / "examples" / "yellow-star-at-night.jpg", elsewhere)
    yield {"wheel": wheel, "venv": env_dir, "python": python, "vidcap": env_dir / "bin" / "vidcap",
           "cwd": elsewhere, "env": env}
    shutil.rmtree(folder, ignore_errors=True)


def _clean_env(folder: Path) -> dict[str, str]:
    """The user's environment: no PYTHONPATH, no virtual environment of ours, a home and data folder of its own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "VIDCAP_MODEL", "PYTHONHOME") and not k.startswith("PYTEST")}
    env["HOME"] = str(folder / "home")
    env["VIDCAP_DATA"] = str(folder / "data")
    return env


def run(installed, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["vidcap"]), *args], capture_output=True, text=True, cwd=installed["cwd"],
                          env=installed["env"], timeout=timeout)


def test_the_wheel_holds_every_package_and_nothing_generic(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    assert {"vidcap/handlers/vidcap_handler.py", "vidcap/model_store/vidcap-demo.pt", "vidcap/paths.py",
            "vidcap/library/store.py", "vidcap/training/train.py", "vidcap/docs/training.md",
            "vidcap/docs/img/ui-video.jpg"} <= names  # the UI serves the docs its warnings link to
    packages = {p.parent.relative_to(REPO).as_posix() for p in (REPO / "vidcap").rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"vidcap"}, top
    site = next(installed["venv"].glob("lib/python*/site-packages"))
    assert not (site / "training").exists()
    where = subprocess.run([str(installed["python"]), "-c", "import vidcap, vidcap.library, vidcap.paths as p; "
                            "print(vidcap.__file__); print(p.handler_file()); print(p.demo_model()); "
                            "print(p.docs_dir() / 'training.md')"],
                           capture_output=True, text=True, cwd=installed["cwd"], env=installed["env"], check=True)
    assert all(Path(path).is_relative_to(site) and Path(path).exists() for path in where.stdout.split()), where.stdout


def test_installed_caption_analyze_index_and_search(installed):
    cwd = installed["cwd"]
    caption = run(installed, "caption", "yellow-star-at-night.jpg")
    assert caption.returncode == 0 and "star" in caption.stdout, caption.stderr
    made = run(installed, "synth-video", "clip.mp4", "--random", "4", "--seed", "3", "--size", "320x180")
    assert made.returncode == 0, made.stderr
    analyzed = run(installed, "analyze", "clip.mp4", "--every", "1", "--json", "out.json")
    assert analyzed.returncode == 0, analyzed.stderr
    frames = json.loads((cwd / "out.json").read_text())["frames"]
    assert len(frames) >= 8
    indexed = run(installed, "index", "clip.mp4", "--library", "lib.db", "--no-progress")
    assert indexed.returncode == 0, indexed.stderr
    found = run(installed, "search", frames[0]["caption"], "--library", "lib.db")  # what the model saw there
    assert found.returncode == 0 and "clip.mp4" in found.stdout, found.stdout + found.stderr


@pytest.mark.parametrize("model_host", ["inprocess", "torchserve"])
def test_installed_serve_answers_every_door_and_keeps_a_job(installed, model_host):
    if model_host == "torchserve" and shutil.which("java") is None:
        pytest.skip("TorchServe needs a Java runtime")
    cwd = installed["cwd"]
    if not (cwd / "clip.mp4").exists():
        assert run(installed, "synth-video", "clip.mp4", "--random", "4", "--seed", "3", "--size",
                   "320x180").returncode == 0
    base = free_port_block(16)
    args = [str(installed["vidcap"]), "serve", "--model-host", model_host, "--no-ui", "--grpc-port", str(base),
            "--http-port", str(base + 1), "--torchserve-port", str(base + 2), "--encoder", "torch",
            "--work-dir", str(cwd / f"work-{model_host}"), "--library", str(cwd / f"serve-{model_host}.db")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env=installed["env"])
    try:
        for line in proc.stdout:
            if line.startswith("vidcap ready"):
                break
        else:
            pytest.fail("vidcap serve exited: " + proc.stderr.read()[-3000:])
        http = f"http://127.0.0.1:{base + 1}"
        image = (cwd / "yellow-star-at-night.jpg").read_bytes()
        answer = httpx.post(f"{http}/get_captions", files={"image": ("star.jpg", image)}, timeout=120)
        assert answer.status_code == 200 and "star" in answer.json()["caption"], answer.text
        with (cwd / "clip.mp4").open("rb") as video:
            job = httpx.post(f"{http}/v1/jobs", files={"video": ("clip.mp4", video)},
                             data={"every_n_seconds": "1"}, timeout=120)
        assert job.status_code == 201, job.text
        deadline = time.monotonic() + 180
        while (state := httpx.get(f"{http}/v1/jobs/{job.json()['id']}", timeout=30).json())["state"] not in (
                "done", "failed", "cancelled"):
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        results = httpx.get(f"{http}/v1/jobs/{job.json()['id']}/results", timeout=30).json()
        assert state["state"] == "done" and len(results["frames"]) >= 8, (state, proc.stderr)
        # gRPC from the installed client library, in the installed environment
        grpc_check = subprocess.run([str(installed["python"]), "-c", (
            "import sys; from vidcap.client import VidcapClient\n"
            f"c = VidcapClient('127.0.0.1:{base}', timeout=120)\n"
            "print(c.caption_image(open('yellow-star-at-night.jpg', 'rb').read()).caption)")],
            capture_output=True, text=True, cwd=cwd, env=installed["env"], timeout=180)
        assert "star" in grpc_check.stdout, grpc_check.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 0, proc.stderr.read()[-3000:]


def test_the_project_names_no_file_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    outside = re.compile(r"\.\./shared|/work/|shared/notes")
    texts = [name for name in tracked.split() if name != "tests/test_install.py" and (REPO / name).is_file()
             and Path(name).suffix in (".py", ".md", ".sh", ".yml", ".toml", ".txt", ".proto", "")]
    offenders = [name for name in texts if outside.search((REPO / name).read_text(errors="replace"))]
    assert offenders == [], offenders
