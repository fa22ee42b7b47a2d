"""Soak: `vidcap serve` (TorchServe model host) under a steady crowd, with faults injected on a schedule.

    python bench/soak.py                       # 4 videos + 20 images at once for 15 minutes (sized for 2 cores)
    python bench/soak.py --minutes 3 --videos 2 --images 6 --token-minutes 0.5      # a quick look

First the image latency, one image at a time, idle (`image-idle`) and with the N video clients running
(`image-videos`). Then N video clients and M image clients loop through gRPC and the old HTTP API (half each) for
T minutes. TorchServe's
keys expire every --token-minutes (default 2: a 15-minute run crosses seven expiries). On a schedule: the
video worker is killed, clients cancel streams and hang up mid-request, bad inputs are sent, TorchServe itself is
killed. Printed: requests ok / failed by kind, p50/p99 latency per kind (images idle and under load), the
recovery time of each fault, the stack's resident memory after warm-up and at the end, and what is left behind
after SIGTERM (files in the work folder, processes). Targets: no failures but the injected ones' own requests,
every fault recovered within 60 s, memory growth under 10% after warm-up, nothing left behind.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import grpc  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
import psutil  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from PIL import Image  # noqa: E402

from serving import start_stack  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from vidcap.synthetic import random_scene, render_scene  # noqa: E402
from vidcap.video.synth import random_segments, write_video  # noqa: E402


@dataclass
class Record:
    kind: str  # image | video | cancel | bad
    door: str  # grpc | http
    started: float
    ended: float
    ok: bool
    error: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class Fault:
    name: str
    at: float
    recovered: float | None = None  # seconds until a request started after the fault succeeded


@dataclass
class Soak:
    grpc: str
    http: str
    media: Path
    image: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    records: list[Record] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, *args) -> None:
        with self.lock:
            self.records.append(Record(*args))

    # ---- clients ---------------------------------------------------------------------------------------

    def image_client(self, n: int) -> None:
        door = "grpc" if n % 2 == 0 else "http"
        with VidcapClient(self.grpc, timeout=120) as client, httpx.Client(timeout=120) as http:
            while not self.stop.is_set():
                self.one_image(client, http, door)

    def one_image(self, client, http, door: str, kind: str = "image") -> None:
        started = time.monotonic()
        try:
            if door == "grpc":
                client.caption_image(self.image)
            else:
                reply = http.post(f"{self.http}/get_captions", files={"image": ("scene.png", self.image)})
                if reply.status_code != 200:
                    raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:100]}")
            self.record(kind, door, started, time.monotonic(), True)
        except (grpc.RpcError, RuntimeError, httpx.HTTPError) as exc:
            self.record(kind, door, started, time.monotonic(), False, _error(exc))
            time.sleep(0.5)

    def video_client(self, n: int) -> None:
        door = "grpc" if n % 2 == 0 else "http"
        with VidcapClient(self.grpc, timeout=600) as client, httpx.Client(timeout=600) as http:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    if door == "grpc":
                        frames = sum(r.WhichOneof("kind") == "frame"
                                     for r in client.analyze_file(self.media / "clip.mp4", every_n_seconds=0.5))
                    else:
                        with (self.media / "clip.mp4").open("rb") as f:
                            reply = http.post(f"{self.http}/get_video_captions", params={"every_n_second": 0.5},
                                              files={"video": ("clip.mp4", f)})
                        if reply.status_code != 200:
                            raise RuntimeError(f"HTTP {reply.status_code}: {reply.text[:100]}")
                        frames = len(reply.json()["frames"])
                    if frames != 40:
                        raise RuntimeError(f"{frames} frames instead of 40")
                    self.record("video", door, started, time.monotonic(), True)
                except (grpc.RpcError, RuntimeError, httpx.HTTPError) as exc:
                    self.record("video", door, started, time.monotonic(), False, _error(exc))
                    time.sleep(1.0)

    # ---- faults ----------------------------------------------------------------------------------------

    def cancel_streams(self) -> None:
        """Three gRPC streams cancelled after their first frame, one HTTP call hung up after a second."""
        with VidcapClient(self.grpc, timeout=300) as client:
            for _ in range(3):
                started = time.monotonic()
                stream = client.analyze_file(self.media / "clip.mp4", every_n_seconds=0.25)
                for response in stream:
                    if response.WhichOneof("kind") == "frame":
                        break
                stream.cancel()
                self.record("cancel", "grpc", started, time.monotonic(), True)
        started = time.monotonic()
        try:
            with (self.media / "clip.mp4").open("rb") as f:
                httpx.post(f"{self.http}/get_video_captions", files={"video": ("clip.mp4", f)},
                           timeout=httpx.Timeout(60, read=1))
        except httpx.ReadTimeout:
            pass
        self.record("cancel", "http", started, time.monotonic(), True)

    def bad_inputs(self) -> None:
        """Each must be refused with a client error, and nothing else may suffer."""
        with VidcapClient(self.grpc, timeout=60) as client:
            cases = [lambda: list(client.analyze_bytes(b"garbage" * 1000, "x.mp4")),
                     lambda: list(client.analyze_file(self.media / "clip.mp4", every_n_seconds=1e-9)),
                     lambda: list(client.analyze_file(self.media / "clip.mp4", beam=1000000)),
                     lambda: client.caption_image(b"not an image")]
            for case in cases:
                started = time.monotonic()
                try:
                    case()
                    self.record("bad", "grpc", started, time.monotonic(), False, "accepted")
                except grpc.RpcError as exc:
                    refused = exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED)
                    self.record("bad", "grpc", started, time.monotonic(), refused, _error(exc))
        started = time.monotonic()
        reply = httpx.post(f"{self.http}/get_video_captions", params={"every_n_second": "x"},
                           files={"video": ("x.mp4", b"\0" * 1000)}, timeout=60)
        self.record("bad", "http", started, time.monotonic(), reply.status_code == 400, str(reply.status_code))

    def recovered_after(self, fault: Fault, deadline: float = 180.0) -> None:
        """Seconds from the fault until an image and a video request that started after it both succeeded."""
        while time.monotonic() - fault.at < deadline and not self.stop.is_set():
            with self.lock:
                after = [r for r in self.records if r.started >= fault.at and r.ok]
            kinds = {r.kind for r in after}
            if {"image", "video"} <= kinds:
                fault.recovered = max(min(r.ended for r in after if r.kind == k) for k in ("image", "video")) - fault.at
                return
            time.sleep(0.5)


def _error(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"[:160]
    return f"{type(exc).__name__}: {exc}"[:160]


def tree_rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.NoSuchProcess:
        return 0


def management(stack_out: list[str]) -> tuple[str, Path]:
    line = next(line for line in stack_out if line.startswith("TorchServe"))
    url = line.split("management ")[1].split(",")[0]
    keys = Path(line.split("keys in ")[1].strip())
    return url, keys


def video_worker_pid(management_url: str, keys: Path) -> int:
    for _ in range(120):
        try:
            data = json.loads(keys.read_text())
            reply = httpx.get(f"{management_url}/models/vidcap-video",
                              headers={"Authorization": f"Bearer {data['management']['key']}"}, timeout=10)
            if reply.status_code == 200:
                ready = [w for w in reply.json()[0]["workers"] if w["status"] == "READY" and w.get("pid")]
                if ready:
                    return int(ready[0]["pid"])
            elif "Token Authorization failed" in reply.text:
                httpx.post(f"{management_url}/token", params={"type": "management"},
                           headers={"Authorization": f"Bearer {data['API']['key']}"}, timeout=10)
        except (OSError, ValueError, KeyError, httpx.HTTPError):
            pass
        time.sleep(1)
    raise RuntimeError("no READY video worker")


def java_pid(stack_pid: int) -> int:
    for p in psutil.Process(stack_pid).children(recursive=True):
        if "org.pytorch.serve.ModelServer" in " ".join(p.cmdline()):
            return p.pid
    raise RuntimeError("TorchServe's Java process not found")


def percentiles(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return f"{statistics.median(ordered):.2f} / {p99:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--videos", type=int, default=4, help="video clients at once (default: 4)")
    p.add_argument("--images", type=int, default=20, help="image clients at once (default: 20)")
    p.add_argument("--token-minutes", type=float, default=2.0, help="TorchServe key lifetime (default: 2)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    work = Path(tempfile.mkdtemp(prefix="vidcap-soak-"))
    media, serve_work = work / "media", work / "serve"
    media.mkdir()
    write_video(media / "clip.mp4", random_segments(4, seed=3, min_seconds=5, max_seconds=5), fps=25,
                size=(640, 360))
    buf = io.BytesIO()
    Image.fromarray(render_scene(random_scene(np.random.default_rng(1)), 320, 240)).save(buf, format="PNG")

    proc, grpc_address = start_stack("torchserve", media, "--work-dir", str(serve_work),
                                     "--torchserve-token-minutes", str(args.token_minutes))
    http = next(line.split()[3] for line in proc.banner if line.startswith("vidcap HTTP API"))
    mgmt, keys = management(proc.banner)
    soak = Soak(grpc_address, http, media, buf.getvalue())
    print(f"stack up: gRPC {grpc_address}, HTTP {http}; {args.videos} video + {args.images} image clients for "
          f"{args.minutes:g} min, keys expire every {args.token_minutes:g} min", flush=True)

    # Image latency with nothing else running.
    with VidcapClient(grpc_address, timeout=60) as client, httpx.Client(timeout=60) as h:
        for i in range(40):
            soak.one_image(client, h, "grpc" if i % 2 == 0 else "http", kind="image-idle")

    # Image latency, one image at a time, while the video clients alone are running: images have their own
    # TorchServe worker, so they must not wait behind the videos.
    clients = [threading.Thread(target=soak.video_client, args=(n,), daemon=True) for n in range(args.videos)]
    for thread in clients:
        thread.start()
    time.sleep(10)
    with VidcapClient(grpc_address, timeout=60) as client, httpx.Client(timeout=60) as h:
        for i in range(40):
            soak.one_image(client, h, "grpc" if i % 2 == 0 else "http", kind="image-videos")

    images = [threading.Thread(target=soak.image_client, args=(n,), daemon=True) for n in range(args.images)]
    clients += images
    begin = time.monotonic()
    for thread in images:
        thread.start()
    total = args.minutes * 60
    warm_up = min(60.0, total * 0.15)
    time.sleep(warm_up)
    rss_start = tree_rss(proc.pid)

    schedule = [(0.25, "video worker killed"), (0.40, "clients cancel and hang up"), (0.55, "bad inputs"),
                (0.70, "TorchServe killed")]
    faults: list[Fault] = []
    watchers = []
    for share, name in schedule:
        time.sleep(max(0.0, begin + share * total - time.monotonic()))
        fault = Fault(name, time.monotonic())
        print(f"{fault.at - begin:7.1f} s  fault: {name}", flush=True)
        if name == "video worker killed":
            os.kill(video_worker_pid(mgmt, keys), signal.SIGKILL)
        elif name == "TorchServe killed":
            os.kill(java_pid(proc.pid), signal.SIGKILL)
        elif name == "clients cancel and hang up":
            soak.cancel_streams()
        else:
            soak.bad_inputs()
        faults.append(fault)
        watcher = threading.Thread(target=soak.recovered_after, args=(fault,), daemon=True)
        watcher.start()
        watchers.append(watcher)
    time.sleep(max(0.0, begin + total - time.monotonic()))
    rss_end = tree_rss(proc.pid)
    soak.stop.set()
    for thread in clients + watchers:
        thread.join(timeout=120)

    with grpc.insecure_channel(grpc_address) as channel:
        serving = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    proc.send_signal(signal.SIGTERM)
    exit_status = proc.wait(timeout=120)
    leftover_files = [str(p.relative_to(work)) for p in serve_work.rglob("*")]
    leftover_files += [str(p.relative_to(work)) for p in media.rglob("*")
                       if p.name not in ("clip.mp4", "clip.truth.json")]
    leftover_processes = [p.pid for p in psutil.process_iter(["cmdline"])
                          if str(serve_work) in " ".join(p.info["cmdline"] or [])]

    # A failure is the fault's own when it is UNAVAILABLE (or an HTTP 503) and overlaps the fault's recovery.
    def injected(r: Record) -> bool:
        if "UNAVAILABLE" not in r.error and "503" not in r.error:
            return False
        return any(r.ended >= f.at and r.started <= f.at + (f.recovered or 180.0)
                   for f in faults if f.name in ("video worker killed", "TorchServe killed"))

    rows = {}
    print(f"\n{'kind':<14}{'door':<6}{'ok':>7}{'failed':>8}{'of which injected':>19}   p50 / p99 latency (s)")
    for kind in ("image-idle", "image-videos", "image", "video", "cancel", "bad"):
        for door in ("grpc", "http"):
            rs = [r for r in soak.records if r.kind == kind and r.door == door]
            if not rs:
                continue
            failed = [r for r in rs if not r.ok]
            own = [r for r in failed if injected(r)]
            lat = percentiles([r.seconds for r in rs if r.ok])
            rows[f"{kind}/{door}"] = {"ok": len(rs) - len(failed), "failed": len(failed), "injected": len(own),
                                      "p50_p99": lat, "errors": sorted({r.error for r in failed})[:5]}
            print(f"{kind:<14}{door:<6}{len(rs) - len(failed):>7}{len(failed):>8}{len(own):>19}   {lat}")
    unexpected = [r for r in soak.records if not r.ok and not injected(r)]
    print("\nfault                          recovered in")
    for f in faults:
        print(f"{f.name:<31}{'%.1f s' % f.recovered if f.recovered is not None else 'NOT RECOVERED'}")
    growth = (rss_end - rss_start) / rss_start if rss_start else float("nan")
    print(f"\nresident memory (stack, all processes): {rss_start / 2**20:.0f} MiB after warm-up, "
          f"{rss_end / 2**20:.0f} MiB at the end ({100 * growth:+.1f}%)")
    print(f"health before stopping: {health_pb2.HealthCheckResponse.ServingStatus.Name(serving)}; "
          f"SIGTERM -> exit {exit_status}")
    print(f"left behind: {len(leftover_files)} files {leftover_files[:5]}, {len(leftover_processes)} processes")
    for r in unexpected[:10]:
        print(f"  unexpected failure: {r.kind}/{r.door} at {r.started - begin:.0f} s: {r.error}")
    verdict = {
        "no failures but the injected ones'": not unexpected,
        "every fault recovered within 60 s": all(f.recovered is not None and f.recovered <= 60 for f in faults),
        "memory growth under 10%": growth < 0.10,
        "nothing left behind": not leftover_files and not leftover_processes and exit_status == 0,
    }
    print("\n" + "\n".join(f"{'MET   ' if ok else 'MISSED'} {target}" for target, ok in verdict.items()))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "rows": rows, "faults": [{"name": f.name, "recovered_s": f.recovered} for f in faults],
            "rss_mib": [rss_start / 2**20, rss_end / 2**20], "unexpected": [r.error for r in unexpected],
            "leftover_files": leftover_files, "leftover_processes": leftover_processes, "targets": verdict},
            indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
