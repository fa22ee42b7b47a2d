"""Live benchmark: latency and staying power on a loopback stream with the demo model.

    python bench/live.py                         # 3 minutes over UDP, then 3 over RTSP, side by side
    python bench/live.py --minutes 30 --via udp  # the long run of docs/live.md

A publisher process renders synthetic scenes (a cut or an object change every --scene-seconds) and sends them at
real time (vidcap.video.synth.publish_live), like a camera: as H.264 MPEG-TS to udp://127.0.0.1, or as RTP
announced to an RTSP server on loopback (Debian's rtsp-server-perl, when installed). This process
watches the stream as `vidcap analyze udp://...` does (a LiveSource into the pipeline, an analysis session's
moment picker)
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
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RTSP_SERVER = "/usr/bin/rtsp-server-perl"

from ports import free_port  # noqa: E402


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def publish(url: str, seconds: float, scene_seconds: float, fps: int, size: tuple[int, int], seed: int,
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

    publish_live(url, render_frames(segments, fps, *size, Effects(), seed), fps, *size, on_frame=on_frame)
    sent.put(None)



class RTSPServer:
    """Debian's rtsp-server-perl on loopback: a publisher announces a stream on one port, readers play it on
    another."""

    def __init__(self) -> None:
        self.client_port, self.source_port = free_port(), free_port()
        self.proc = subprocess.Popen([RTSP_SERVER, "-c", str(self.client_port), "-s", str(self.source_port),
                                      "--client_listen_address", "127.0.0.1", "--source_listen_address",
                                      "127.0.0.1", "-l", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def measure(via: str, args: argparse.Namespace, captioner) -> dict:
    from vidcap.video.live import LiveSource
    from vidcap.analysis.session import AnalysisSession
    from vidcap.video.pipeline import AnalysisParams, analyze_frames

    width, height = (int(v) for v in args.size.split("x"))
    rtsp = None
    if via == "rtsp":
        rtsp = RTSPServer()
        publish_url = f"rtsp://127.0.0.1:{rtsp.source_port}/bench"
        watch_url = f"rtsp://127.0.0.1:{rtsp.client_port}/bench"
    else:
        port = free_port(socket.SOCK_DGRAM)
        publish_url, watch_url = f"udp://127.0.0.1:{port}?pkt_size=1316", f"udp://127.0.0.1:{port}"
    params = AnalysisParams(every_n_seconds=args.every)
    arrivals: dict[int, float] = {}

    class Timed(LiveSource):
        def frames(self):
            for frame in super().frames():
                arrivals[frame.index] = time.monotonic()
                yield frame

    seconds = args.minutes * 60
    sent: multiprocessing.Queue = multiprocessing.Queue()
    camera = multiprocessing.Process(target=publish, args=(publish_url, seconds, args.scene_seconds, args.fps,
                                                           (width, height), args.seed, sent), daemon=True)
    notices: list[str] = []
    source = Timed(watch_url, params.every_n_seconds, on_notice=notices.append, give_up_seconds=10)
    camera.start()
    session = AnalysisSession(params, captioner.ignored_words)
    frame_latency: list[tuple[float, float]] = []  # (arrival, latency)
    moments: list[tuple[float, int]] = []  # (given at, frame index)
    rss = [rss_mb()]
    started = time.monotonic()
    results = analyze_frames(source, captioner, params)
    try:
        for result in results:
            now = time.monotonic()
            frame_latency.append((arrivals[result.index], now - arrivals[result.index]))
            for moment in session.add(result):
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
    if rtsp is not None:
        rtsp.close()

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
    # Changes the stream sent before the reader's first frame could not be seen.
    visible = [c for c in changes if frame_latency and c >= frame_latency[0][0]]
    return {
        "via": via, "minutes": args.minutes, "every": args.every,
        "stream": f"{width}x{height} {args.fps} fps H.264", "frames": len(latencies),
        "frame_latency_p50": pct(latencies, 0.5), "frame_latency_p99": pct(latencies, 0.99),
        "changes": len(visible), "changes_reported": found,
        "change_latency_p50": pct(change_latency, 0.5), "change_latency_p99": pct(change_latency, 0.99),
        "first_minute_p50": statistics.median(first) if first else float("nan"),
        "last_minute_p50": statistics.median(last) if last else float("nan"),
        "rss_mb_start": rss[0], "rss_mb_end": rss[-1], "notices": len(notices),
    }


def pct(values: list[float], q: float) -> float:
    return float(sorted(values)[min(len(values) - 1, int(q * len(values)))]) if values else float("nan")


def report(f: dict) -> None:
    print(f"{f['via']}: {f['stream']}, sampled every {f['every']:g} s, {f['minutes']:g} min, demo model")
    print(f"  frames {f['frames']}; arrival -> FrameResult  p50 {f['frame_latency_p50']:.3f} s  "
          f"p99 {f['frame_latency_p99']:.3f} s")
    print(f"  changes {f['changes']}, reported {f['changes_reported']}; change -> Moment  "
          f"p50 {f['change_latency_p50']:.2f} s  p99 {f['change_latency_p99']:.2f} s")
    print(f"  keeping up: frame latency p50 first minute {f['first_minute_p50']:.3f} s, last minute "
          f"{f['last_minute_p50']:.3f} s (ratio {f['last_minute_p50'] / f['first_minute_p50']:.2f})")
    print(f"  memory: {f['rss_mb_start']:.0f} MB after 10 frames, {f['rss_mb_end']:.0f} MB at the end "
          f"(ratio {f['rss_mb_end'] / f['rss_mb_start']:.2f}); notices {f['notices']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=3.0, help="per transport")
    p.add_argument("--via", default="udp,rtsp", help="udp, rtsp or both, comma-separated (default: both; rtsp "
                                                     "needs Debian's rtsp-server-perl)")
    p.add_argument("--every", type=float, default=1.0, help="sampling step (default: 1 s)")
    p.add_argument("--scene-seconds", type=float, default=8.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--size", default="640x360")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", help="write the figures here too")
    args = p.parse_args(argv)
    from vidcap.captioner import Captioner

    captioner = Captioner.load(None)
    figures = []
    for via in args.via.split(","):
        if via == "rtsp" and not Path(RTSP_SERVER).exists():
            print(f"rtsp: skipped, {RTSP_SERVER} is not installed (apt-get install rtsp-server-perl)")
            continue
        figures.append(measure(via, args, captioner))
        report(figures[-1])
    if len(figures) == 2:
        a, b = figures
        print(f"{b['via']} / {a['via']}: frame latency p50 {b['frame_latency_p50'] / a['frame_latency_p50']:.2f}x, "
              f"change latency p50 {b['change_latency_p50'] / a['change_latency_p50']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
