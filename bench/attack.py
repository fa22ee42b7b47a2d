"""What a stranger can try against a running `vidcap serve`, and what it gets: every case of docs/security.md run
against a real server on loopback, each door it concerns (the old HTTP API, /v1, gRPC, the web UI).

    python bench/attack.py                           # in-process model host, web UI on
    python bench/attack.py --model-host torchserve   # uploads opened by the TorchServe worker

Prints one line per case and "N/N handled"; exits 1 when one was not. tests/test_attack.py runs the same cases.
Every request goes to 127.0.0.1 (slow uploaders come from 127.0.0.2, another loopback address, to be another
client); every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))  # its neighbours (ports.py) also when tests/test_attack.py loads it by path

import grpc  # noqa: E402
import httpx  # noqa: E402

from ports import free_port, free_port_block  # noqa: E402
from vidcap.client import VidcapClient  # noqa: E402
from vidcap.video.synth import random_segments, write_video  # noqa: E402

# The server's settings for these cases: small bounds, so that each case is quick to reach them.
SERVER_LIMITS = ["--max-uploads", "6", "--max-per-client", "2", "--max-job-watchers", "4", "--max-jobs", "3",
                 "--max-job-disk-gb", "0.002", "--min-upload-kbps", "16", "--upload-grace-seconds", "2",
                 "--max-frame-pixels", "200000", "--max-decode-pixels", "1e8", "--max-image-mb", "2",
                 "--max-upload-mb", "40",
                 "--allow-source", "http://*.example.com/*", "--allow-source", "udp://127.0.0.1:5999",
                 "--allow-source", "udp://*:5998"]
SLOW_CLIENT = "127.0.0.2"  # another loopback address: another client to the server


# ---- the server -------------------------------------------------------------------------------------------------


@dataclass
class Target:
    """A running `vidcap serve` and the files the cases send it."""

    proc: subprocess.Popen
    grpc: str
    http: str
    ui: str | None
    log: Path
    files: dict[str, Path]
    media: Path
    outside: Path  # a folder the server must never read for a caller
    contacted: list[str] = field(default_factory=list)  # requests the bait HTTP server received

    def client(self, timeout: float = 60) -> VidcapClient:
        return VidcapClient(self.grpc, timeout=timeout)



def make_files(folder: Path) -> tuple[dict[str, Path], Path, Path]:
    """A small real video, the tricks that name other files or URLs, and oversized videos."""
    media, outside = folder / "media", folder / "outside"
    media.mkdir(parents=True)
    outside.mkdir()
    small = dict(fps=10, size=(160, 96))
    write_video(media / "clip.mp4", random_segments(3, seed=5, min_seconds=3, max_seconds=3), **small)
    write_video(media / "long.mp4", random_segments(6, seed=6, min_seconds=20, max_seconds=20), **small)
    write_video(outside / "secret.ts", random_segments(2, seed=7, min_seconds=3, max_seconds=3), **small)
    write_video(folder / "wide.mp4", random_segments(1, seed=8, min_seconds=2, max_seconds=2), fps=10,
                size=(640, 360))  # 230,400 pixels a frame: above the server's --max-frame-pixels
    write_video(folder / "heavy.mp4", random_segments(2, seed=9, min_seconds=20, max_seconds=20), fps=25,
                size=(400, 300))
    files = {"clip": media / "clip.mp4", "wide": folder / "wide.mp4", "heavy": folder / "heavy.mp4"}
    secret = (outside / "secret.ts").resolve()
    files["hls-file"] = folder / "playlist.m3u8"
    files["hls-file"].write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:3.0,\nfile://{secret}\n#EXT-X-ENDLIST\n")
    files["concat"] = folder / "list.ffconcat"
    files["concat"].write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    return files, media, outside


def add_bait(folder: Path, port: int) -> Path:
    path = folder / "remote.m3u8"
    path.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:3.0,\nhttp://127.0.0.1:{port}/segment.ts\n"
                    f"#EXT-X-ENDLIST\n")
    return path


def start_bait(contacted: list[str]) -> int:
    """An HTTP port that records whoever connects (a playlist naming it must never make the server fetch)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.5)

    def serve() -> None:
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            contacted.append("connection")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


def start_server(folder: Path, model_host: str = "inprocess", ui: bool = True) -> Target:
    files, media, outside = make_files(folder)
    contacted: list[str] = []
    files["hls-http"] = add_bait(folder, start_bait(contacted))
    grpc_port, http_port, ui_port, ts_port = free_port(), free_port(), free_port(), free_port_block()
    log = folder / "server.log"
    args = [sys.executable, "-m", "vidcap.cli", "serve", "--model-host", model_host, "--grpc-port", str(grpc_port),
            "--http-port", str(http_port), "--torchserve-port", str(ts_port), "--media-dir", str(media),
            "--work-dir", str(folder / "work"), "--library", str(folder / "library.db"), "--encoder", "torch",
            *(["--ui-port", str(ui_port)] if ui else ["--no-ui"]), *SERVER_LIMITS]
    env = {**os.environ, "PYTHONPATH": str(REPO), "VIDCAP_DATA": str(folder / "data")}
    env.pop("VIDCAP_MODEL", None)
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env=env)
    deadline = time.monotonic() + 300
    while "vidcap ready" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("vidcap serve did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.2)
    return Target(proc, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}",
                  f"http://127.0.0.1:{ui_port}" if ui else None, log, files, media, outside, contacted)


def stop_server(target: Target) -> None:
    target.proc.send_signal(signal.SIGTERM)
    try:
        target.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        target.proc.kill()


# ---- helpers the cases share ------------------------------------------------------------------------------------


class NotHandled(AssertionError):
    pass


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise NotHandled(what)


def http_refused(response: httpx.Response, status: int, words: str = "") -> None:
    expect(response.status_code == status, f"HTTP {response.status_code} (wanted {status}): {response.text[:300]}")
    body = response.json()
    expect(isinstance(body.get("error"), str), f"no JSON error: {body}")
    expect(words.lower() in body["error"].lower(), f"{body['error']!r} does not say {words!r}")


def grpc_refused(call: Callable[[], object], code: grpc.StatusCode, words: str = "") -> str:
    try:
        result = call()
        if hasattr(result, "__iter__") and not isinstance(result, (str, bytes)):
            list(result)
    except grpc.RpcError as exc:
        expect(exc.code() == code, f"gRPC {exc.code().name} (wanted {code.name}): {exc.details()}")
        expect(words.lower() in (exc.details() or "").lower(), f"{exc.details()!r} does not say {words!r}")
        return exc.details() or ""
    raise NotHandled(f"gRPC answered instead of {code.name}")


def upload(target: Target, route: str, field_name: str, path: Path, headers: dict | None = None,
           data: dict | None = None) -> httpx.Response:
    with path.open("rb") as f:
        return httpx.post(f"{target.http}{route}", files={field_name: (path.name, f)}, data=data or {},
                          headers=headers or {}, timeout=120)


def raw_request(host: str, port: int, head: str, body_chunks, source: str = "127.0.0.1",
                seconds: float = 30.0) -> tuple[str, int]:
    """Send a request by hand (chunk by chunk, as a slow or huge client does); -> (the response's status line and
    body, bytes of body sent before the server answered or closed)."""
    with socket.create_connection((host, port), timeout=seconds, source_address=(source, 0)) as conn:
        conn.sendall(head.encode())
        sent, deadline = 0, time.monotonic() + seconds
        conn.setblocking(False)
        answer = b""
        for chunk in body_chunks:
            if time.monotonic() > deadline:
                break
            try:
                answer += conn.recv(65536)
                if answer:
                    break
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                conn.sendall(chunk)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            except OSError:
                break
            sent += len(chunk)
        conn.setblocking(True)
        conn.settimeout(max(1.0, deadline - time.monotonic()))
        try:
            while len(answer) < 65536:
                more = conn.recv(65536)
                if not more:
                    break
                answer += more
                if b"\r\n\r\n" in answer and b'"}' in answer:
                    break
        except OSError:
            pass
    return answer.decode("latin-1"), sent


def status_of(answer: str) -> int:
    match = re.match(r"HTTP/1\.1 (\d+)", answer)
    return int(match.group(1)) if match else 0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---- the cases --------------------------------------------------------------------------------------------------

CASES: list[tuple[str, Callable[[Target], None]]] = []


def case(name: str):
    def register(fn):
        CASES.append((name, fn))
        return fn
    return register


UPLOAD_DOORS = ("/get_video_captions", "/v1/jobs", "AnalyzeVideoUpload", "AnalyzeVideo(video)", "SubmitJobUpload")
TRICKS = {"hls-file": "an HLS playlist naming a file:// outside the media folder",
          "concat": "an ffconcat list naming a file outside",
          "hls-http": "an HLS playlist naming an http:// URL"}


def _upload_trick(trick: str, door: str) -> Callable[[Target], None]:
    def run(target: Target) -> None:
        path = target.files[trick]
        before = len(target.contacted)
        if door.startswith("/"):
            http_refused(upload(target, door, "video", path, data={"every_n_seconds": "1"}), 400,
                         "not a video file vidcap opens")
        else:
            with target.client() as client:
                call = {"AnalyzeVideoUpload": lambda: client.analyze_file(path, every_n_seconds=1.0),
                        "AnalyzeVideo(video)": lambda: client.analyze_bytes(path.read_bytes(), path.name,
                                                                            every_n_seconds=1.0),
                        "SubmitJobUpload": lambda: client.submit_job_file(path, every_n_seconds=1.0)}[door]
                grpc_refused(call, grpc.StatusCode.INVALID_ARGUMENT, "not a video file vidcap opens")
        time.sleep(0.2)
        expect(len(target.contacted) == before, "the server fetched the playlist's URL")
    return run


for _trick in TRICKS:
    for _door in UPLOAD_DOORS:
        case(f"upload {_trick} via {_door}")(_upload_trick(_trick, _door))


@case("a plain video still analyses (every door above)")
def plain_video(target: Target) -> None:
    answer = upload(target, "/get_video_captions", "video", target.files["clip"], data={"every_n_second": "1"})
    expect(answer.status_code == 200 and len(answer.json()["frames"]) >= 8, answer.text[:300])
    with target.client() as client:
        kinds = [r.WhichOneof("kind") for r in client.analyze_file(target.files["clip"], every_n_seconds=1.0)]
    expect(kinds.count("frame") >= 8 and kinds[-1] == "summary", str(kinds))


@case("DNS rebinding: Host of another name, HTTP API")
def rebinding_http(target: Target) -> None:
    for method, route in (("GET", "/v1/search?q=circle"), ("GET", "/v1/jobs"), ("POST", "/get_captions")):
        answer = httpx.request(method, f"{target.http}{route}", headers={"Host": "rebind.evil.test"}, timeout=30)
        http_refused(answer, 403, "not a name of this server")
    expect(httpx.get(f"{target.http}/v1/jobs", timeout=30).status_code == 200, "the server's own name refused")


@case("DNS rebinding: Host of another name, web UI")
def rebinding_ui(target: Target) -> None:
    if target.ui is None:
        return
    answer = httpx.get(f"{target.ui}/", headers={"Host": "rebind.evil.test:7860"}, timeout=30)
    http_refused(answer, 403, "not a name of this server")
    expect(httpx.get(f"{target.ui}/", timeout=30).status_code == 200, "the UI refused its own name")


@case("cross-site form POST (Origin of another site) submits no job")
def cross_site_form(target: Target) -> None:
    before = len(httpx.get(f"{target.http}/v1/jobs", timeout=30).json()["jobs"])
    answer = upload(target, "/v1/jobs", "video", target.files["clip"], headers={"Origin": "http://evil.test"})
    http_refused(answer, 403, "cross-origin")
    answer = upload(target, "/get_video_captions", "video", target.files["clip"],
                    headers={"Sec-Fetch-Site": "cross-site"})
    http_refused(answer, 403, "cross-site")
    answer = httpx.delete(f"{target.http}/v1/jobs/x", headers={"Origin": "null"}, timeout=30)
    http_refused(answer, 403, "cross-site")
    expect(len(httpx.get(f"{target.http}/v1/jobs", timeout=30).json()["jobs"]) == before, "a job was submitted")


@case("cross-site POST to the web UI")
def cross_site_ui(target: Target) -> None:
    if target.ui is None:
        return
    answer = httpx.post(f"{target.ui}/gradio_api/queue/join", json={}, headers={"Origin": "http://evil.test"},
                        timeout=30)
    http_refused(answer, 403, "cross-origin")


@case("slow uploads from one client starve no other client")
def slow_uploads(target: Target) -> None:
    port = int(target.http.rsplit(":", 1)[1])
    results: list[tuple[str, int]] = []
    head = ("POST /get_video_captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            "boundary=b\r\nContent-Length: 100000\r\n\r\n")

    def trickle():  # 200 bytes a second
        yield b"--b\r\nContent-Disposition: form-data; name=\"video\"; filename=\"v.mp4\"\r\n\r\n"
        for _ in range(60):
            time.sleep(1.0)
            yield b"x" * 200

    threads = [threading.Thread(target=lambda: results.append(raw_request("127.0.0.1", port, head, trickle(),
                                                                            SLOW_CLIENT, 20)))
               for _ in range(6)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    plain_video(target)  # meanwhile another client is served over HTTP and gRPC
    for thread in threads:
        thread.join(timeout=30)
    statuses = sorted(status_of(answer) for answer, _ in results)
    expect(statuses.count(429) >= 4, f"more than 2 uploads at once taken from one client: {statuses}")
    expect(statuses.count(408) == 2, f"slow uploads not cut off: {statuses}")
    expect(time.monotonic() - began < 15, "the slow uploads were cut off late")


@case("a huge JSON body to /v1/jobs is refused as it streams in")
def huge_json(target: Target) -> None:
    port = int(target.http.rsplit(":", 1)[1])
    before = rss_mb(target.proc.pid)
    head = ("POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n")
    piece = b"[" * 65536
    chunks = (b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(4000))  # up to 256 MiB
    answer, sent = raw_request("127.0.0.1", port, head, chunks, seconds=60)
    expect(status_of(answer) == 413 and "above the limit" in answer, answer[:300])
    expect(sent < 8 * 2**20, f"{sent} bytes read before the refusal")
    expect(rss_mb(target.proc.pid) - before < 100, f"the server grew {rss_mb(target.proc.pid) - before:.0f} MB")


@case("an oversized image is refused before it is read")
def oversized_image(target: Target) -> None:
    port = int(target.http.rsplit(":", 1)[1])
    declared = ("POST /get_captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                "Content-Length: 300000000\r\n\r\n")
    answer, sent = raw_request("127.0.0.1", port, declared, (b"x" * 65536 for _ in range(4600)))
    expect(status_of(answer) == 413, answer[:300])
    expect(sent < 8 * 2**20, f"{sent} bytes read before the refusal")
    chunked = ("POST /get_captions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=b\r\n"
               "Transfer-Encoding: chunked\r\n\r\n")

    def body():  # a well-formed form whose image never ends
        preamble = b'--b\r\nContent-Disposition: form-data; name="image"; filename="i.png"\r\n\r\n'
        yield b"%x\r\n%s\r\n" % (len(preamble), preamble)
        piece = b"x" * 65536
        for _ in range(4600):
            yield b"%x\r\n%s\r\n" % (len(piece), piece)

    answer, sent = raw_request("127.0.0.1", port, chunked, body())
    expect(status_of(answer) == 413, answer[:300])
    expect(sent < 12 * 2**20, f"{sent} bytes read before the refusal (the limit is 3 MiB)")


@case("jobs beyond the cap are refused (HTTP 429, gRPC RESOURCE_EXHAUSTED)")
def jobs_cap(target: Target) -> None:
    ids = []
    try:
        for _ in range(3):
            answer = httpx.post(f"{target.http}/v1/jobs", json={"path": "long.mp4", "every_n_seconds": 0.1},
                                timeout=60)
            expect(answer.status_code == 201, answer.text)
            ids.append(answer.json()["id"])
        http_refused(httpx.post(f"{target.http}/v1/jobs", json={"path": "long.mp4"}, timeout=60), 429, "jobs")
        with target.client() as client:
            grpc_refused(lambda: client.submit_job_path("long.mp4"), grpc.StatusCode.RESOURCE_EXHAUSTED, "jobs")
    finally:
        for job_id in ids:
            httpx.delete(f"{target.http}/v1/jobs/{job_id}", timeout=60)


@case("job uploads beyond their disk cap are refused")
def jobs_disk(target: Target) -> None:
    big = target.media.parent / "big.mp4"
    big.write_bytes(os.urandom(3 * 2**20))  # above the server's 2 MiB: refused before it is even looked at
    http_refused(upload(target, "/v1/jobs", "video", big), 429, "disk")
    with target.client() as client:
        grpc_refused(lambda: client.submit_job_file(big), grpc.StatusCode.RESOURCE_EXHAUSTED, "disk")


@case("40 job watchers leave health checks and captions answering")
def watchers(target: Target) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    job = httpx.post(f"{target.http}/v1/jobs", json={"path": "long.mp4", "every_n_seconds": 0.1}, timeout=60)
    expect(job.status_code == 201, job.text)
    job_id = job.json()["id"]
    outcomes: list[str] = []
    clients = [target.client(timeout=60) for _ in range(8)]

    def watch(client: VidcapClient) -> None:
        try:
            for _ in client.watch_job(job_id):
                pass
            outcomes.append("ended")
        except grpc.RpcError as exc:
            outcomes.append(exc.code().name)

    threads = [threading.Thread(target=watch, args=(clients[i % 8],), daemon=True) for i in range(40)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.5)
        with grpc.insecure_channel(target.grpc) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
        expect(status == health_pb2.HealthCheckResponse.SERVING, f"health: {status}")
        image = (REPO / "examples" / "yellow-star-at-night.jpg").read_bytes()
        with target.client() as client:
            expect(bool(client.caption_image(image).caption), "no caption")
        expect(outcomes.count("RESOURCE_EXHAUSTED") >= 36, f"watchers beyond the budget not refused: {outcomes}")
    finally:
        httpx.delete(f"{target.http}/v1/jobs/{job_id}", timeout=60)
        for thread in threads:
            thread.join(timeout=30)
        for client in clients:
            client.close()


@case("video frames above the pixel limit")
def frame_pixels(target: Target) -> None:
    http_refused(upload(target, "/get_video_captions", "video", target.files["wide"]), 413, "max_frame_pixels")
    with target.client() as client:
        grpc_refused(lambda: client.analyze_file(target.files["wide"]), grpc.StatusCode.RESOURCE_EXHAUSTED,
                     "max_frame_pixels")


@case("a video that would take more decoding than the limit")
def decode_work(target: Target) -> None:
    # 400x300 at 25 frames/s for 40 s: 1.2e8 pixels to decode, above the server's --max-decode-pixels 1e8.
    answer = upload(target, "/get_video_captions", "video", target.files["heavy"], data={"every_n_second": "5"})
    http_refused(answer, 413, "max_decode_pixels")
    with target.client() as client:
        grpc_refused(lambda: client.analyze_file(target.files["heavy"], every_n_seconds=5.0),
                     grpc.StatusCode.RESOURCE_EXHAUSTED, "max_decode_pixels")


@case("live sources: a wildcard host that smuggles another one, options in the query, loopback by wildcard")
def live_allow_list(target: Target) -> None:
    with target.client() as client:
        for source in ("http://169.254.169.254/latest/meta-data/?x=.example.com/",
                       "http://a.example.com.evil.test/x", "udp://127.0.0.1:5999?localport=5999&listen=1",
                       "tcp://127.0.0.1:5999"):
            grpc_refused(lambda: client.analyze_live(source), grpc.StatusCode.PERMISSION_DENIED, "allow-source")
        grpc_refused(lambda: client.analyze_live("udp://127.0.0.1:5998"), grpc.StatusCode.PERMISSION_DENIED,
                     "loopback")


@case("passwords never come back in messages")
def passwords(target: Target) -> None:
    with target.client() as client:
        for source, code in (("rtsp://admin:pa/ss@10.9.9.9/x", grpc.StatusCode.INVALID_ARGUMENT),  # not a URL
                             ("rtsp://admin:s3cr@t@10.9.9.9/x", grpc.StatusCode.PERMISSION_DENIED),
                             ("rtsp://admin:hunter2@10.9.9.9/x?y=1", grpc.StatusCode.PERMISSION_DENIED)):
            details = grpc_refused(lambda: client.analyze_live(source), code)
            expect(not any(word in details for word in ("pa/ss", "s3cr", "hunter2")), details)
            expect("admin:***@" in details, details)


@case("the web UI answers a non-image with the service's sentence")
def ui_non_image(target: Target) -> None:
    if target.ui is None:
        return
    from gradio_client import Client, handle_file

    junk = target.media.parent / "notes.png"
    junk.write_text("this is not an image")
    # The page answers with the sentence under the upload (the third output), not a caption.
    caption, _, message = Client(target.ui, verbose=False).predict(handle_file(str(junk)), 3,
                                                                   api_name="/caption_image")
    if caption:
        raise NotHandled("the UI captioned a text file")
    expect("cannot read the upload as an image" in message.lower(), message)
    expect("/tmp" not in message and "gradio" not in message and "Error:" not in message, message)


@case("the operator's log has one line per user error, no traceback, and the server still serves")
def still_serving(target: Target) -> None:
    log = target.log.read_text()
    expect("Traceback" not in log, "a traceback in the log:\n" + log[log.find("Traceback"):][:1500])
    with target.client() as client:
        image = (REPO / "examples" / "yellow-star-at-night.jpg").read_bytes()
        expect("star" in client.caption_image(image).caption, "no caption")
    expect(target.proc.poll() is None, "the server exited")


def run_cases(target: Target, only: str | None = None) -> tuple[int, int]:
    handled = 0
    chosen = [(n, f) for n, f in CASES if only is None or only in n]
    for name, fn in chosen:
        started = time.monotonic()
        try:
            fn(target)
            handled += 1
            print(f"handled      {name}  ({time.monotonic() - started:.1f} s)", flush=True)
        except Exception as exc:
            print(f"NOT HANDLED  {name}: {exc}", flush=True)
    return handled, len(chosen)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-host", choices=["inprocess", "torchserve"], default="inprocess")
    p.add_argument("--no-ui", action="store_true", help="skip the web UI's cases")
    p.add_argument("--only", help="run the cases whose name holds this text")
    args = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vidcap-attack-"))
    target = start_server(folder, args.model_host, ui=not args.no_ui)
    try:
        handled, total = run_cases(target, args.only)
    finally:
        stop_server(target)
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{handled}/{total} handled (vidcap serve --model-host {args.model_host})")
    return 0 if handled == total else 1


if __name__ == "__main__":
    sys.exit(main())
