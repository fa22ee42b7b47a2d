"""Serving benchmark: what the server stack costs compared with calling the library in-process.

    python bench/serving.py                  # 60 s 1280x720 video at 1 fps, 64 image requests per setting

In one run: image caption latency (p50/p99) at concurrency 1 and 8 through gRPC with the TorchServe model host and
with the in-process model host; video analysis throughput (sampled frames per second) in-process (the library),
through gRPC + in-process model host, and through gRPC + TorchServe. Target: the TorchServe path keeps at least 85%
of the in-process throughput.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from vidcap.captioner import Captioner  # noqa: E402
from vidcap.synthetic import random_scene, render_scene  # noqa: E402
from vidcap.video.pipeline import AnalysisParams, analyze_frames  # noqa: E402
from vidcap.video.synth import random_segments, write_video  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from ports import free_port_block  # noqa: E402


def start_stack(model_host: str, media: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """`vidcap serve` on free ports (no web UI); -> (process, gRPC address). extra: more `vidcap serve` flags."""
    base = free_port_block(16)
    proc = subprocess.Popen([sys.executable, "-m", "vidcap.cli", "serve", "--model-host", model_host, "--grpc-port",
                             str(base), "--http-port", str(base + 1), "--torchserve-port", str(base + 2),
                             "--media-dir", str(media), "--no-ui", *extra], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    proc.banner = []  # the lines `vidcap serve` printed: its URLs, TorchServe's management URL and key file
    last = "TorchServe" if model_host == "torchserve" else "vidcap HTTP API"
    for line in proc.stdout:
        proc.banner.append(line)
        if line.startswith(last):
            break
    else:
        raise RuntimeError(f"vidcap serve --model-host {model_host} did not start")
    return proc, f"127.0.0.1:{base}"


def bench_video(folder: Path, seconds: float, size: str) -> Path:
    """The benchmarks' test video (made once, cached): 6 s scenes at 30 fps, H.264 with x264's defaults."""
    folder.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in size.split("x"))
    video = folder / f"bench-{seconds:g}s-{size}.mp4"
    if not video.exists():
        write_video(video, random_segments(max(2, int(seconds // 6)), seed=3, min_seconds=6, max_seconds=6),
                    fps=30, size=(width, height))
    return video


def stop_stack(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)


def image_latencies(address: str, images: list[bytes], concurrency: int) -> list[float]:
    with VidcapClient(address, timeout=300) as client:
        client.caption_image(images[0])  # warm up

        def one(data: bytes) -> float:
            t = time.perf_counter()
            client.caption_image(data)
            return time.perf_counter() - t

        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, images))


def video_fps(address: str, name: str, every: float) -> tuple[float, int]:
    with VidcapClient(address, timeout=3600) as client:
        t = time.perf_counter()
        frames = sum(r.WhichOneof("kind") == "frame" for r in client.analyze_path(name, every_n_seconds=every))
        return frames / (time.perf_counter() - t), frames


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="video runs per setting (median reported)")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("VIDCAP_THREADS", "2")))
    media = REPO / "bench" / ".cache" / "serving-media"
    video = bench_video(media, args.seconds, args.size)
    import numpy as np

    rng = np.random.default_rng(0)
    images = []
    for _ in range(args.images):
        path = media / "img.jpg"
        Image.fromarray(render_scene(random_scene(rng), 640, 480)).save(path, quality=90)
        images.append(path.read_bytes())

    results: dict[str, dict] = {}
    captioner = Captioner.load()
    list(analyze_frames(video, captioner, AnalysisParams(every_n_seconds=args.every)))  # warm up
    runs = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        n = sum(1 for _ in analyze_frames(video, captioner, AnalysisParams(every_n_seconds=args.every)))
        runs.append(n / (time.perf_counter() - t))
    results["in-process (library)"] = {"video_fps": statistics.median(runs)}
    del captioner

    for model_host in ("inprocess", "torchserve"):
        proc, address = start_stack(model_host, media)
        try:
            row = {}
            for concurrency in (1, 8):
                lat = image_latencies(address, images, concurrency)
                row[f"c{concurrency}"] = (pct(lat, 50) * 1000, pct(lat, 99) * 1000)
            row["video_fps"] = statistics.median(video_fps(address, video.name, args.every)[0]
                                                 for _ in range(args.repeats))
            results[f"gRPC + {model_host}"] = row
        finally:
            stop_stack(proc)

    base = results["in-process (library)"]["video_fps"]
    print(f"\nServing benchmark: {args.seconds:g} s {args.size} H.264 video at one frame every {args.every:g} s; "
          f"{args.images} 640x480 JPEG images per concurrency; {torch.get_num_threads()} torch threads")
    print("| path | image p50 / p99 ms, c=1 | image p50 / p99 ms, c=8 | video frames/s (median) | vs in-process |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        c1 = "%.0f / %.0f" % row["c1"] if "c1" in row else "-"
        c8 = "%.0f / %.0f" % row["c8"] if "c8" in row else "-"
        print(f"| {name} | {c1} | {c8} | {row['video_fps']:.1f} | {row['video_fps'] / base:.2f} |")


if __name__ == "__main__":
    main()
