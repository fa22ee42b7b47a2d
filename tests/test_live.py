"""Live sources: real MPEG-TS streams over loopback UDP (PyAV publishing at real time), HLS from a local HTTP server,
standard input; what a source may name; the gRPC service with and without an allow-list."""

from __future__ import annotations

import functools
import http.server
import json
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import av
import grpc
import numpy as np
import pytest

from vidcap.client import VidcapClient
from vidcap.errors import InputError, PermissionDeniedError
from vidcap.video.sources import SourcePolicy, classify_source
from vidcap.video.synth import Effects, publish_live, random_segments, render_frames, write_video

from conftest import REPO, VIDCAP, cli_env, free_port, grpc_address_of, inprocess_server

FPS, SIZE = 10, (160, 96)


def scenes(seconds: int = 16, seed: int = 3):
    return random_segments(seconds // 4, seed=seed, min_seconds=4, max_seconds=4)


class Publisher(threading.Thread):
    """Synthetic scenes sent as MPEG-TS to udp://127.0.0.1:PORT at real time, once the client listens there (it
    has bound the port: however long its start took on a busy machine, it sees the stream from its first second),
    then `delay` seconds."""

    def __init__(self, port: int, frames, delay: float = 0.5):
        super().__init__(daemon=True)
        self.port, self.frames, self.delay, self.stop = port, frames, delay, threading.Event()
        self.ended = None  # time.monotonic() when the last frame was sent

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while not _bound(self.port) and time.monotonic() < deadline and not self.stop.is_set():
            time.sleep(0.1)
        time.sleep(self.delay)
        publish_live(f"udp://127.0.0.1:{self.port}?pkt_size=1316", self.frames, FPS, *SIZE, stop=self.stop)
        self.ended = time.monotonic()


def _bound(port: int) -> bool:
    """Someone listens on this UDP port of loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return False
        except OSError:
            return True


def vidcap(*args: str, stdin=None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCAP, *args], input=stdin, capture_output=True, env=cli_env(), timeout=timeout)


def test_what_a_source_may_name():
    for refused in ("file:///etc/passwd", "concat:a.mp4|b.mp4", "subfile:,start,0,end,10,:a.mp4", "data:video/mp4,x",
                    "pipe:0", "crypto:x", "async:file:a.mp4", "ftp://host/x.mp4", "udp:no-slashes"):
        with pytest.raises(InputError, match="not accepted"):
            classify_source(refused)
    assert classify_source("rtsp://cam.example/stream").kind == "network"
    assert classify_source("udp://127.0.0.1:5000").kind == "network"
    assert classify_source("/dev/video0").kind == "device"
    assert classify_source("-").kind == "stdin"
    assert classify_source("clips/a.mp4").kind == "file" and classify_source("C:video.mp4").kind == "file"
    closed = SourcePolicy()
    with pytest.raises(PermissionDeniedError, match="--allow-source"):
        closed.check("rtsp://cam.example/stream")
    policy = SourcePolicy(["rtsp://cameras.example/*", "/dev/video0"])
    assert policy.check("rtsp://cameras.example/lobby").kind == "network"
    assert policy.check("/dev/video0").kind == "device"
    for denied in ("rtsp://elsewhere.example/x", "/dev/video1", "rtsp://cameras.example.evil/x"):
        with pytest.raises(PermissionDeniedError):
            policy.check(denied)
    with pytest.raises(InputError, match="command line"):
        policy.check("-")
    with pytest.raises(PermissionDeniedError) as info:
        closed.check("rtsp://admin:secret@cam.example/x")
    assert "secret" not in str(info.value) and "admin:***@" in str(info.value)


def test_udp_stream_frames_by_timestamp_moments_and_a_clear_end(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    publisher = Publisher(port, render_frames(scenes(), FPS, *SIZE, Effects(), 0))
    publisher.start()
    result = vidcap("analyze", f"udp://127.0.0.1:{port}", "--stall", "2", "--give-up", "2", "--json",
                    str(tmp_path / "live.json"))
    finished = time.monotonic()
    publisher.join()
    err = result.stderr.decode()
    assert result.returncode == 2 and "no data for 2 s; reconnecting" in err and "gave up" in err, err
    assert finished - publisher.ended < 2 + 2 + 10  # after the stream: the stall and give-up timeouts, not more
    data = json.loads((tmp_path / "live.json").read_text())
    # The client listened before the first frame was sent: every second of the stream from its first is a sample,
    # once, in order, whatever the machine's load. (A UDP stream that simply stops loses its last 2-3 s in FFmpeg's
    # buffers on the way: measured 13-14 samples of 16; the stream promises no more.)
    times = [f["t"] for f in data["frames"]]
    assert len(times) >= 12 and times == pytest.approx(list(np.arange(len(times)) * 1.0), abs=0.11)
    assert any(m["reason"] == "cut" for m in data["moments"])  # scene cuts seen as they happened
    for m in (m for m in data["moments"] if m["reason"] == "cut"):  # ... to the frame, from the frames kept between
        frame = data["frames"][m["index"]]                          # samples
        assert m["t"] in frame["cut_times"] and times[m["index"] - 1] < m["t"] <= frame["t"], (m, frame)
    lines = result.stdout.decode().splitlines()
    assert sum(line.startswith("moment") for line in lines) == len(data["moments"])


def test_ctrl_c_stops_watching_and_writes_what_was_seen(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    publisher = Publisher(port, render_frames(scenes(32), FPS, *SIZE, Effects(), 0))
    publisher.start()
    # Ctrl-C as a terminal sends it (a runner in the background of a shell ignores SIGINT: restore it).
    proc = subprocess.Popen([*VIDCAP, "analyze", f"udp://127.0.0.1:{port}", "--json", str(tmp_path / "seen.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        lines = [proc.stdout.readline() for _ in range(4)]  # four frames, as they come
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        publisher.stop.set()
        publisher.join()
    assert proc.returncode == 0 and "# stopped" in err, err
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert len(seen["frames"]) >= 4 and seen["frames"][0]["caption"] == lines[0].split(None, 2)[2].strip()


def test_a_resolution_change_mid_stream_goes_on(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    frames = render_frames(scenes(), FPS, *SIZE, Effects(), 0)
    doubled = (f if n < 60 else np.ascontiguousarray(f.repeat(2, axis=0).repeat(2, axis=1))
               for n, f in enumerate(frames))
    publisher = Publisher(port, doubled)
    publisher.start()
    result = vidcap("analyze", f"udp://127.0.0.1:{port}", "--stall", "2", "--give-up", "1", "--json",
                    str(tmp_path / "live.json"))
    publisher.join()
    data = json.loads((tmp_path / "live.json").read_text())
    # Every second of the stream from its first frame (the client listened before it was sent), from both sizes
    # (the switch is at 6 s), in order; the stream's last seconds as in the test above.
    times = [f["t"] for f in data["frames"]]
    assert len(times) >= 12 and times == pytest.approx(list(range(len(times))), abs=0.11), result.stderr.decode()


def test_standard_input_gives_what_the_file_gives(tmp_path):
    video = tmp_path / "clip.ts"
    write_video(video, scenes(12, seed=4), fps=FPS, size=SIZE)
    piped = vidcap("analyze", "-", "--json", str(tmp_path / "piped.json"), stdin=video.read_bytes())
    assert piped.returncode == 0, piped.stderr.decode()
    whole = vidcap("analyze", str(video), "--json", str(tmp_path / "file.json"))
    assert whole.returncode == 0, whole.stderr.decode()
    piped_frames = json.loads((tmp_path / "piped.json").read_text())["frames"]
    file_frames = json.loads((tmp_path / "file.json").read_text())["frames"]
    assert [(f["t"], f["caption"]) for f in piped_frames] == [(f["t"], f["caption"]) for f in file_frames]
    assert [f["t"] for f in file_frames] == list(range(12))  # MPEG-TS files are decoded through, not sought


def test_bad_live_input_gets_a_clear_message_in_bounded_time(tmp_path):
    garbage = vidcap("analyze", "-", stdin=np.random.default_rng(0).bytes(200_000), timeout=60)
    assert garbage.returncode == 2 and "standard input is not a readable video stream" in garbage.stderr.decode()
    audio_only = tmp_path / "radio.ts"
    with av.open(str(audio_only), "w") as out:  # an MPEG-TS stream without video
        stream = out.add_stream("mp2", rate=44100)
        for n in range(40):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
            frame.sample_rate, frame.pts = 44100, n * 1152
            for packet in stream.encode(frame):
                out.mux(packet)
    no_video = vidcap("analyze", "-", stdin=audio_only.read_bytes(), timeout=60)
    assert no_video.returncode == 2 and "has no video stream" in no_video.stderr.decode()
    started = time.monotonic()
    unreachable = vidcap("analyze", "rtsp://127.0.0.1:9/none", "--give-up", "3", timeout=60)
    assert unreachable.returncode == 2 and "gave up" in unreachable.stderr.decode()
    assert "cannot open rtsp://127.0.0.1:9/none" in unreachable.stderr.decode()
    assert time.monotonic() - started < 30
    refused = vidcap("analyze", "concat:a.mp4|b.mp4", timeout=60)
    assert refused.returncode == 2 and "concat: protocol is not accepted" in refused.stderr.decode()


def test_hls_from_a_local_http_server(tmp_path):
    folder = tmp_path / "hls"
    folder.mkdir()
    asked = threading.Event()  # the client has read the playlist: the stream goes on from there
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder), asked=asked))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    writer = threading.Thread(target=_write_hls, args=(folder / "live.m3u8", scenes(12), asked), daemon=True)
    writer.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.m3u8"
        result = vidcap("analyze", url, "--stall", "3", "--give-up", "3", "--json", str(tmp_path / "hls.json"))
        writer.join()
    finally:
        server.shutdown()
    frames = json.loads((tmp_path / "hls.json").read_text())["frames"]
    # However slowly the client started, the playlist still held the first segments when it came (the writer waited
    # for it; the reader starts up to three 1 s segments from the live end): every second of the stream from there
    # to its end (12 s) is a sample, once, in order.
    times = [f["t"] for f in frames]
    assert len(times) >= 8, (times, result.stderr.decode())
    assert all(0.9 <= b - a <= 1.1 for a, b in zip(times, times[1:])), times


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, asked: threading.Event | None = None, **kwargs):
        self.asked = asked
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.asked is not None and self.path.endswith(".m3u8") and (Path(self.directory) / "live.m3u8").exists():
            self.asked.set()
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


def _write_hls(playlist: Path, segments, asked: threading.Event) -> None:
    """Write the stream at real time; after its first 2 s, wait for the client to read the playlist."""
    out = av.open(str(playlist), "w", format="hls", options={"hls_time": "1", "hls_list_size": "4"})
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
    stream.options = {"preset": "ultrafast", "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0"}
    start = time.monotonic()
    for n, pixels in enumerate(render_frames(segments, FPS, *SIZE, Effects(), 0)):
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = n
        for packet in stream.encode(frame):
            out.mux(packet)
        if n + 1 == 2 * FPS:
            asked.wait(120)
            start = time.monotonic() - (n + 1) / FPS
        time.sleep(max(0.0, start + (n + 1) / FPS - time.monotonic()))
    for packet in stream.encode():
        out.mux(packet)
    out.close()


RTSP_SERVER = Path("/usr/bin/rtsp-server-perl")  # Debian's rtsp-server-perl (.ci/run installs it)


@pytest.mark.skipif(not RTSP_SERVER.exists(), reason="no RTSP server here: apt-get install rtsp-server-perl")
def test_rtsp_through_a_real_rtsp_server(tmp_path):
    client_port, source_port = (free_port() for _ in range(2))
    server = subprocess.Popen([str(RTSP_SERVER), "-c", str(client_port), "-s", str(source_port),
                               "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The camera starts once the client watches (its model loaded): however slowly the client started, the stream
        # it sees is the whole of it, less the frames before the first keyframe it receives.
        client = subprocess.Popen([*VIDCAP, "analyze", f"rtsp://127.0.0.1:{client_port}/lobby", "--stall", "2",
                                   "--give-up", "5", "--json", str(tmp_path / "rtsp.json")],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cli_env())
        lines, watching = [], threading.Event()

        def read_stderr() -> None:
            for line in client.stderr:
                lines.append(line.decode())
                if line.startswith(b"# watching"):
                    watching.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        assert watching.wait(120), "".join(lines)
        camera = threading.Thread(target=publish_live, args=(f"rtsp://127.0.0.1:{source_port}/lobby",
                                                             render_frames(scenes(12), FPS, *SIZE, Effects(), 0),
                                                             FPS, *SIZE), daemon=True)
        camera.start()
        camera.join()
        client.wait(timeout=120)
        reader.join(timeout=10)
    finally:
        server.terminate()
        server.wait(timeout=10)
    stderr = "".join(lines)
    data = json.loads((tmp_path / "rtsp.json").read_text())
    assert len(data["frames"]) >= 9, stderr
    assert [f["t"] for f in data["frames"]] == pytest.approx(list(range(len(data["frames"]))), abs=0.11)
    assert "gave up" in stderr and client.returncode == 2  # the publisher left: a clear end


def test_live_sources_over_grpc_allow_list_notices_and_cancel(tmp_path):
    log = tmp_path / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen(inprocess_server(tmp_path / "work", "--library", str(tmp_path / "library.db"),
                                                 "--allow-source", "udp://127.0.0.1:*"),
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, env=cli_env())
        try:
            address = grpc_address_of(proc.stdout)
            with VidcapClient(address, timeout=120) as client:
                for source, code in (("udp://10.1.2.3:5000", grpc.StatusCode.PERMISSION_DENIED),
                                     ("file:///etc/passwd", grpc.StatusCode.INVALID_ARGUMENT),
                                     ("-", grpc.StatusCode.INVALID_ARGUMENT)):
                    with pytest.raises(grpc.RpcError) as info:
                        list(client.analyze_live(source))
                    assert info.value.code() == code, source
                port = free_port(socket.SOCK_DGRAM)
                publisher = Publisher(port, render_frames(scenes(8), FPS, *SIZE, Effects(), 0), delay=1.0)
                publisher.start()
                kinds, frames = [], 0
                call = client.analyze_live(f"udp://127.0.0.1:{port}", every_n_seconds=1.0)
                for response in call:
                    kinds.append(response.WhichOneof("kind"))
                    frames += kinds[-1] == "frame"
                    if kinds[-1] == "notice":  # the publisher stopped: the server says it is reconnecting
                        assert "reconnecting" in response.notice.message
                        call.cancel()
                        break
                publisher.join()
                assert kinds[0] == "started" and frames >= 4 and kinds[-1] == "notice"
                assert client.caption_image((REPO / "examples" / "yellow-star-at-night.jpg").read_bytes()).caption
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
