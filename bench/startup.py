"""Startup: what a user feels before the first answer, as whole processes, medians of --repeats runs.

    python bench/startup.py                  # 5 runs each

Rows: `vidcap --help`; a bad argument; `python -c "import torch"`; one caption measured inside a warm process;
`vidcap caption one.jpg` (per encoder runtime), with its ratio to "import torch + one caption" (target <= 1.5),
and the same as a first run (an empty encoder cache: compiled artefacts are built, then reused by later runs);
`vidcap serve --model-host inprocess` until it prints "ready" (all ports answering, a first caption served),
with its own split by component; with --torchserve-model CHECKPOINT, the same through TorchServe with that model.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ports import free_port_block

REPO = Path(__file__).resolve().parents[1]
IMAGE = REPO / "examples" / "yellow-star-at-night.jpg"
VIDCAP = [sys.executable, "-m", "vidcap.cli"]


def seconds(command: list[str], repeats: int, empty_cache: bool = False) -> float:
    """Median wall time of a whole process; empty_cache: each run with its own empty encoder cache (a first run)."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "VIDCAP_CACHE": cache} if empty_cache else None
            started = time.perf_counter()
            subprocess.run(command, capture_output=True, cwd=REPO, env=env)
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def one_caption(encoder: str, repeats: int) -> float:
    """One caption in a process that has loaded the model and captioned once already."""
    probe = ("import time, sys\nfrom vidcap.captioner import Captioner\n"
             f"c = Captioner.load(encoder={encoder!r})\nc.caption_files([{str(IMAGE)!r}])\nt = []\n"
             f"for _ in range({repeats}):\n    s = time.perf_counter(); c.caption_files([{str(IMAGE)!r}]); "
             "t.append(time.perf_counter() - s)\nprint(sorted(t)[len(t) // 2])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    return float(out.stdout.split()[-1])



def serve_ready(repeats: int, *extra: str) -> tuple[float, str]:
    """Median seconds from `vidcap serve` to its "ready" line, and that run's split."""
    runs = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as work:
            started = time.perf_counter()
            base = free_port_block(16)
            proc = subprocess.Popen([*VIDCAP, "serve", "--grpc-port", str(base), "--http-port", str(base + 1),
                                     "--ui-port", str(base + 2), "--torchserve-port", str(base + 3), "--work-dir",
                                     work, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                    cwd=REPO)
            for line in proc.stdout:
                if line.startswith("vidcap ready"):
                    runs.append((time.perf_counter() - started, line.strip()))
                    break
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    runs.sort()
    return runs[len(runs) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--encoders", default="auto,torch", help="encoder runtimes for the caption rows")
    p.add_argument("--torchserve-model", metavar="CHECKPOINT",
                   help="also time `vidcap serve --model-host torchserve --no-ui` with this checkpoint (a full-size "
                        "ResNet-152 model shows what building its archives costs)")
    args = p.parse_args()
    n = args.repeats
    rows = [("vidcap --help", seconds([*VIDCAP, "--help"], n)),
            ("vidcap analyze x.mp4 --every often (bad argument)", seconds([*VIDCAP, "analyze", "x.mp4", "--every",
                                                                           "often"], n)),
            ("vidcap caption missing.jpg", seconds([*VIDCAP, "caption", "missing.jpg"], n))]
    torch_import = seconds([sys.executable, "-c", "import torch"], n)
    rows.append(('python -c "import torch"', torch_import))
    for name, value in rows:
        print(f"{name:<55}{value:7.2f} s", flush=True)
    for encoder in args.encoders.split(","):
        caption = one_caption(encoder, n)
        whole = seconds([*VIDCAP, "caption", str(IMAGE), "--encoder", encoder], n)
        ratio = whole / (torch_import + caption)
        print(f"{'one caption in a warm process (' + encoder + ')':<55}{caption:7.2f} s")
        print(f"{'vidcap caption one.jpg --encoder ' + encoder:<55}{whole:7.2f} s   "
              f"{ratio:.2f}x (import torch + one caption; target <= 1.5)", flush=True)
        first = seconds([*VIDCAP, "caption", str(IMAGE), "--encoder", encoder], n, empty_cache=True)
        print(f"{'  the same, first run (empty encoder cache)':<55}{first:7.2f} s", flush=True)
    ready, split = serve_ready(n, "--model-host", "inprocess")
    print(f"{'vidcap serve --model-host inprocess: ready':<55}{ready:7.2f} s   "
          f"{re.sub(r'^vidcap ready in [0-9.]+ s ', '', split)}")
    if args.torchserve_model:
        ready, split = serve_ready(n, "--model-host", "torchserve", "--no-ui", "--encoder", "torch", "--model",
                                   args.torchserve_model)
        print(f"{'vidcap serve --model-host torchserve (that model): ready':<55}{ready:7.2f} s   "
              f"{re.sub(r'^vidcap ready in [0-9.]+ s ', '', split)}")


if __name__ == "__main__":
    main()
