"""Memory benchmark: the in-process pipeline on a 2-hour video, and a TorchServe worker over 1,000 requests.

    python bench/memory.py                 # both parts
    python bench/memory.py --part video    # or: --part torchserve

Video: a 2-hour H.264 file (a 60 s generated clip stream-copied 120 times, timestamps shifted, so it takes
seconds to make) analysed at one frame per second with the demo model, results kept as the gRPC service keeps
them. The process's resident memory is sampled every 200 frames: it must stay flat (the frame queue is
bounded and frames are dropped once captioned), i.e. the growth from the 10% point to the end stays small.

TorchServe: `vidcap serve` with the TorchServe model host, 1,000 image requests through gRPC at concurrency 8; the
worker's resident memory (its process and children) after the first 100 requests (warm) and after all 1,000.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from serving import start_stack, stop_stack  # noqa: E402
from vidcap.captioner import Captioner  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from vidcap.synthetic import random_scene, render_scene  # noqa: E402
from vidcap.video.pipeline import AnalysisParams, analyze_frames  # noqa: E402
from vidcap.video.synth import random_segments, write_video  # noqa: E402

CACHE = REPO / "bench" / ".cache" / "memory"
MB = 1024 * 1024


def rss_mb(pid: int | None = None) -> float:
    status = Path(f"/proc/{pid or 'self'}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def tree_rss_mb(pid: int) -> float:
    """A process and all its descendants."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return rss_mb(pid) + sum(tree_rss_mb(int(c)) for c in children)


def looped_video(clip: Path, out: Path, times: int) -> Path:
    """`clip` repeated `times` times by copying packets with shifted timestamps (no re-encoding)."""
    if out.is_file():
        return out
    partial = out.with_name(".partial-" + out.name)
    with av.open(str(clip)) as src, av.open(str(partial), "w") as dst:
        in_stream = src.streams.video[0]
        out_stream = dst.add_stream_from_template(in_stream)
        packets = [p for p in src.demux(in_stream) if p.dts is not None]
        # Shift by the clip's decoding span, so decoding timestamps keep rising across the seams (with B-frames
        # they run behind the presentation timestamps).
        span = max(p.dts for p in packets) + (packets[-1].duration or 1) - min(p.dts for p in packets)
        for k in range(times):
            for packet in packets:
                copy = av.Packet(bytes(packet))
                copy.pts, copy.dts = packet.pts + k * span, packet.dts + k * span
                copy.duration, copy.time_base = packet.duration, in_stream.time_base
                copy.is_keyframe = packet.is_keyframe
                copy.stream = out_stream
                dst.mux(copy)
    partial.replace(out)
    return out


def video_part(hours: float, every: float) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    clip = CACHE / "clip-60s-640x360.mp4"
    if not clip.is_file():
        write_video(clip, random_segments(10, seed=7, min_seconds=6, max_seconds=6), fps=25, size=(640, 360))
    video = looped_video(clip, CACHE / f"long-{hours:g}h-640x360.mp4", round(hours * 60))
    captioner = Captioner.load()
    samples, kept = [], []
    start = time.perf_counter()
    for n, result in enumerate(analyze_frames(video, captioner, AnalysisParams(every_n_seconds=every))):
        kept.append(result)  # what the gRPC service keeps to pick the moments at the end
        if n % 200 == 0:
            samples.append((n, result.t, rss_mb()))
    samples.append((len(kept), kept[-1].t, rss_mb()))
    wall = time.perf_counter() - start
    tenth = samples[max(1, len(samples) // 10)]
    print(f"\n2-hour video ({video.name}, {Path(video).stat().st_size / MB:.0f} MB), one frame every {every:g} s: "
          f"{len(kept)} frames in {wall:.0f} s ({len(kept) / wall:.1f} frames/s)")
    print("| frames | video time | RSS MB |\n|---|---|---|")
    for n, t, rss in samples[:: max(1, len(samples) // 12)] + [samples[-1]]:
        print(f"| {n} | {t / 60:.0f} min | {rss:.0f} |")
    peak = max(r for _, _, r in samples)
    print(f"RSS at 10% {tenth[2]:.0f} MB, at the end {samples[-1][2]:.0f} MB, peak {peak:.0f} MB: growth after "
          f"10% = {samples[-1][2] - tenth[2]:+.0f} MB over {len(kept) - tenth[0]} frames")


def torchserve_part(requests: int, concurrency: int) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = []
    for i in range(16):
        path = CACHE / f"img{i}.jpg"
        Image.fromarray(render_scene(random_scene(rng), 640, 480)).save(path, quality=90)
        images.append(path.read_bytes())
    proc, address = start_stack("torchserve", CACHE)
    try:
        workers = subprocess.run(["pgrep", "-f", "model_service_worker"], capture_output=True, text=True)
        worker_pids = [int(p) for p in workers.stdout.split()]
        assert worker_pids, "no TorchServe worker found"

        def worker_rss() -> float:
            return sum(tree_rss_mb(p) for p in worker_pids)

        with VidcapClient(address, timeout=120) as client, ThreadPoolExecutor(concurrency) as pool:
            def burst(n: int, offset: int) -> None:
                list(pool.map(lambda i: client.caption_image(images[i % len(images)]), range(offset, offset + n)))

            marks = []
            burst(100, 0)
            marks.append((100, worker_rss()))
            done = 100
            while done < requests:
                step = min(100, requests - done)
                burst(step, done)
                done += step
                marks.append((done, worker_rss()))
    finally:
        stop_stack(proc)
    print(f"\nTorchServe worker (pids {worker_pids}), {requests} image requests through gRPC at concurrency "
          f"{concurrency}:")
    print("| requests | worker RSS MB |\n|---|---|")
    for n, rss in marks:
        print(f"| {n} | {rss:.0f} |")
    later = [rss for _, rss in marks[len(marks) // 2:]]
    print(f"after 100: {marks[0][1]:.0f} MB; after {requests}: {marks[-1][1]:.0f} MB "
          f"({marks[-1][1] - marks[0][1]:+.0f} MB); second half median {statistics.median(later):.0f} MB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("video", "torchserve", "both"), default="both")
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("VIDCAP_THREADS", "2")))
    if args.part in ("video", "both"):
        video_part(args.hours, args.every)
    if args.part in ("torchserve", "both"):
        torchserve_part(args.requests, args.concurrency)


if __name__ == "__main__":
    main()
