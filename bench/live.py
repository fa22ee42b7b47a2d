"""Live benchmark: latency and staying power on a loopback stream with the demo model.

    python bench/live.py                   # 3 minutes
    python bench/live.py --minutes 30      # the long run of docs/live.md

A publisher process renders synthetic scenes (a cut or an object change every --scene-seconds) and sends them as
H.264 MPEG-TS to udp://127.0.0.1 at real time (vidcap.video.synth.publish_live), like a camera. This process
watches the stream as `vidcap analyze udp://...` does (a LiveSource into the pipeline and the online moment picker)
and measures, on one clock (CLOCK_MONOTONIC is shared by the processes of a machine):

- frame latency: from a sampled frame's arrival (decoded off the stream) to its FrameResult; p50 and p99;
- change latency: from the publisher sending the first frame of a new scene to the Moment that reports it;
- keeping up: the frame latency's median over the first and the last minute (a growing delay shows there), the
  frames the source dropped because captioning fell behind, and the resident memory at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import socket
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def publish(port: int, seconds: float, scene_seconds: float, fps: int, size: tuple[int, int], seed: int,
            sent: multiprocessing.Queue) -> None:
    """The camera: scenes of scene_seconds each, sent at real time; reports (frame, wall time) of each scene's
    first frame."""
    from vidcap.video.synth import Effects, publish_live, random_segments, render_frames

    scenes = max(2, int(seconds // scene_seconds) + 1)
    segments = random_segments(scenes, seed=seed, min_seconds=scene_seconds, max_seconds=scene_seconds)
    firsts = {round(k * scene_seconds * fps) for k in range(1, scenes)}

    def on_frame(n: int, wall: float) -> None:
        if n in firsts:
            sent.put((n, wall))

    publish_live(f"udp://127.0.0.1:{port}?pkt_size=1316", render_frames(segments, fps, *size, Effects(), seed), fps,
                 *size, on_frame=on_frame)
    sent.put(None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--every", type=float, default=1.0, help="sampling step (default: 1 s)")
    p.add_argument("--scene-seconds", type=float, default=8.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="640x360")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))

    from vidcap.captioner import Captioner
    from vidcap.video.live import LiveSource
    from vidcap.video.pipeline import AnalysisParams, analyze_frames, online_picker

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    captioner = Captioner.load(None)
    params = AnalysisParams(every_n_seconds=args.every)
    arrivals: dict[int, float] = {}

    class Timed(LiveSource):
        def frames(self):
            for frame in super().frames():
                arrivals[frame.index] = time.monotonic()
                yield frame

    seconds = args.minutes * 60
    sent: multiprocessing.Queue = multiprocessing.Queue()
    camera = multiprocessing.Process(target=publish, args=(port, seconds, args.scene_seconds, args.fps,
                                                           (width, height), args.seed, sent), daemon=True)
    notices: list[str] = []
    source = Timed(f"udp://127.0.0.1:{port}", params.every_n_seconds, on_notice=notices.append, give_up_seconds=10)
    camera.start()
    picker = online_picker(params)
    frame_latency: list[tuple[float, float]] = []  # (arrival, latency)
    moments: list[tuple[float, int]] = []  # (given at, frame index)
    rss = [rss_mb()]
    started = time.monotonic()
    results = analyze_frames(source, captioner, params)
    try:
        for result in results:
            now = time.monotonic()
            frame_latency.append((arrivals[result.index], now - arrivals[result.index]))
            for moment in picker.push(result.index, result.t, result.score, result.caption, result.cut,
                                      result.in_domain):
                moments.append((time.monotonic(), moment.index))
            if len(frame_latency) == 10:
                rss[0] = rss_mb()  # after the first batches: the model and the buffers are warm
            if now - started > seconds + 5:
                break
    except Exception as exc:  # the stream ended: the publisher has sent everything
        if "gave up" not in str(exc):
            raise
    finally:
        results.close()
    rss.append(rss_mb())
    changes = []
    while (item := sent.get(timeout=30)) is not None:
        changes.append(item[1])
    camera.join(timeout=30)

    # A change is reported by the first moment whose frame arrived within one sample of it.
    change_latency, found = [], 0
    for change in changes:
        hits = [given for given, index in moments if change - 0.2 <= arrivals.get(index, -1e9) <= change +
                params.every_n_seconds + 0.5]
        if hits:
            found += 1
            change_latency.append(min(hits) - change)
    latencies = [lat for _, lat in frame_latency]
    first = [lat for arrived, lat in frame_latency if arrived - frame_latency[0][0] < 60]
    last = [lat for arrived, lat in frame_latency if frame_latency[-1][0] - arrived < 60]

    def pct(values: list[float], q: float) -> float:
        return float(sorted(values)[min(len(values) - 1, int(q * len(values)))]) if values else float("nan")

    figures = {
        "minutes": args.minutes, "every": args.every, "stream": f"{width}x{height} {args.fps} fps H.264 MPEG-TS",
        "frames": len(latencies),
        "frame_latency_p50": pct(latencies, 0.5), "frame_latency_p99": pct(latencies, 0.99),
        "changes": len(changes), "changes_reported": found,
        "change_latency_p50": pct(change_latency, 0.5), "change_latency_p99": pct(change_latency, 0.99),
        "first_minute_p50": statistics.median(first) if first else float("nan"),
        "last_minute_p50": statistics.median(last) if last else float("nan"),
        "rss_mb_start": rss[0], "rss_mb_end": rss[-1], "notices": len(notices),
    }
    print(f"live stream {figures['stream']}, sampled every {args.every:g} s, {args.minutes:g} min, demo model")
    print(f"  frames {figures['frames']}; arrival -> FrameResult  p50 {figures['frame_latency_p50']:.3f} s  "
          f"p99 {figures['frame_latency_p99']:.3f} s")
    print(f"  changes {len(changes)}, reported {found}; change -> Moment  p50 {figures['change_latency_p50']:.2f} s  "
          f"p99 {figures['change_latency_p99']:.2f} s")
    print(f"  keeping up: frame latency p50 first minute {figures['first_minute_p50']:.3f} s, last minute "
          f"{figures['last_minute_p50']:.3f} s (ratio {figures['last_minute_p50'] / figures['first_minute_p50']:.2f})")
    print(f"  memory: {rss[0]:.0f} MB after 10 frames, {rss[-1]:.0f} MB at the end "
          f"(ratio {rss[-1] / rss[0]:.2f}); notices {len(notices)}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
