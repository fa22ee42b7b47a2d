"""bench/attack.py's cases as tests: a stranger's tricks against a real `vidcap serve` (the model in-process, the
web UI on), each door it concerns. The TorchServe worker's door: tests/test_torchserve.py."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import REPO

_spec = importlib.util.spec_from_file_location("attack", REPO / "bench" / "attack.py")
attack = sys.modules["attack"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(attack)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target():
    folder = Path(tempfile.mkdtemp(prefix="vidcap-attack-"))
    served = attack.start_server(folder, "inprocess", ui=True)
    yield served
    attack.stop_server(served)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("name, run", attack.CASES, ids=[name for name, _ in attack.CASES])
def test_attack_is_handled(target, name, run):
    run(target)
