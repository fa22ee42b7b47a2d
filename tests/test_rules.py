"""The rules of docs/security.md, in-process and fast: what a source pattern admits, what a Host or Origin may be,
budgets, the decode bounds and the file demuxers. The same rules against a real server: tests/test_attack.py."""

from __future__ import annotations

import socket
from pathlib import Path

import av
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from vidcap.errors import BusyError, InputError, InputTooLargeError, PermissionDeniedError
from vidcap.limits import Limits
from vidcap.serving.admission import Budget, client_address
from vidcap.serving.auth import RequestGuard, Security, allowed_hosts
from vidcap.video.pyav_source import PyAVFrameSource, VideoOpenError
from vidcap.video.sources import SourcePolicy, redacted
from vidcap.video.synth import random_segments, write_video


# ---- live source patterns ---------------------------------------------------------------------------------------

POLICY = SourcePolicy(["http://*.example.com/*", "rtsp://cameras.example/*", "udp://239.0.0.1:5000", "/dev/video0",
                       "https://cdn.example/live/*.m3u8?token=*", "udp://*:5998"])


@pytest.mark.parametrize("source", [
    "http://a.example.com/x", "http://deep.a.example.com/x/y.m3u8", "rtsp://cameras.example/lobby",
    "rtsp://cameras.example:554/lobby", "rtsp://admin:pw@cameras.example/lobby", "udp://239.0.0.1:5000",
    "/dev/video0", "https://cdn.example/live/a.m3u8?token=abc", "https://cdn.example/live/a.m3u8"])
def test_the_allow_list_admits_what_it_names(source):
    POLICY.check(source)


@pytest.mark.parametrize("source", [
    "http://169.254.169.254/latest/meta-data/?x=.example.com/",  # the pattern's text inside another URL
    "http://example.com/x",  # *.example.com is a subdomain, not the domain
    "http://a.example.com.evil.test/x", "http://a.example.com:8080/x",  # another host, another port
    "http://a.example.com/x?listen=1",  # a query the pattern does not allow: FFmpeg options
    "rtsp://cameras.example:8554/lobby", "rtsp://cameras.example.evil/x", "rtsps://cameras.example/x",
    "udp://239.0.0.1:5000?localport=5000", "udp://239.0.0.1:5001", "/dev/video1", "tcp://cameras.example:554/x",
    "https://cdn.example/live/a.m3u8?token=abc&x=1#frag", "https://cdn.example/other/a.m3u8"])
def test_the_allow_list_refuses_the_rest(source):
    with pytest.raises((PermissionDeniedError, InputError)):
        POLICY.check(source)


def test_a_wildcard_host_may_not_reach_loopback_or_private_addresses_but_a_named_one_may():
    POLICY.check("udp://127.0.0.1:5998")  # the pattern matches the text ...
    with pytest.raises(PermissionDeniedError, match="loopback, link-local or private"):
        POLICY.check_connect("udp://127.0.0.1:5998")  # ... but not where it resolves to, at each connect
    with pytest.raises(PermissionDeniedError, match="loopback"):
        POLICY.check_connect("udp://10.0.0.7:5998")
    SourcePolicy(["udp://127.0.0.1:*"]).check_connect("udp://127.0.0.1:5000")  # named by the operator


@pytest.mark.parametrize("pattern", ["rtsp://a*b.example/x", "ftp://host/x", "rtsp://", "cameras", "file:///x"])
def test_patterns_that_cannot_be_read_are_refused_at_startup(pattern):
    with pytest.raises(InputError, match="--allow-source"):
        SourcePolicy([pattern])


@pytest.mark.parametrize("source, hidden", [
    ("rtsp://admin:secret@cam.example/x", "secret"), ("rtsp://admin:pa/ss@cam.x/y", "pa/ss"),
    ("rtsp://admin:s3cr@t@cam.x/y", "s3cr"), ("http://u:hunter2@h/p?q=1", "hunter2")])
def test_passwords_are_redacted_whatever_they_hold(source, hidden):
    assert hidden not in redacted(source) and ":***@" in redacted(source)
    assert redacted("rtsp://cam.x/a?b=c@d") == "rtsp://cam.x/a?b=c@d"


# ---- Host and Origin ---------------------------------------------------------------------------------------------


def guarded(hosts) -> TestClient:
    app = FastAPI()

    @app.get("/read")
    def read() -> dict:
        return {"ok": True}

    @app.post("/write")
    def write() -> dict:
        return {"ok": True}

    return TestClient(RequestGuard(app, hosts), base_url="http://127.0.0.1:8888")


def test_host_names_follow_the_bound_address():
    assert allowed_hosts("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts("0.0.0.0") is None  # every interface: names it cannot know (a key is required there)
    assert allowed_hosts("0.0.0.0", ["vidcap.example"]) >= {"vidcap.example", "localhost"}
    assert allowed_hosts("192.0.2.5") == {"192.0.2.5"}
    assert Security.load("127.0.0.1", allow_hosts=["box.lan"]).hosts >= {"box.lan", "localhost"}


@pytest.mark.parametrize("headers, status", [
    ({}, 200), ({"Host": "localhost:8888"}, 200), ({"Host": "[::1]:8888"}, 200),
    ({"Host": "rebind.evil.test"}, 403), ({"Host": "rebind.evil.test:8888"}, 403), ({"Host": "127.0.0.1.nip.io"}, 403)])
def test_dns_rebinding_is_refused(headers, status):
    assert guarded(allowed_hosts("127.0.0.1")).get("/read", headers=headers).status_code == status


@pytest.mark.parametrize("headers, status", [
    ({}, 200),  # not a browser
    ({"Origin": "http://127.0.0.1:8888"}, 200),  # the server's own page
    ({"Origin": "http://evil.test"}, 403), ({"Origin": "http://127.0.0.1:9999"}, 403), ({"Origin": "null"}, 403),
    ({"Sec-Fetch-Site": "cross-site"}, 403), ({"Sec-Fetch-Site": "same-origin"}, 200)])
def test_cross_site_writes_are_refused(headers, status):
    client = guarded(allowed_hosts("127.0.0.1"))
    response = client.post("/write", headers=headers)
    assert response.status_code == status, response.text
    if status == 403:
        assert "cross" in response.json()["error"]
    assert client.get("/read", headers=headers).status_code == 200  # reading is what CORS already guards


# ---- budgets ---------------------------------------------------------------------------------------------------


def test_a_budget_bounds_all_clients_and_each_one():
    budget = Budget("uploads being received", 3, per_client=2)
    with budget.enter("a"), budget.enter("a"):
        with pytest.raises(BusyError, match="from one client"):
            with budget.enter("a"):
                pass
        with budget.enter("b"):
            with pytest.raises(BusyError, match="3 uploads being received at once"):
                with budget.enter("c"):
                    pass
    assert budget.used == 0
    assert client_address("ipv4:127.0.0.2:5555") == "127.0.0.2" and client_address("ipv6:[::1]:80") == "::1"


# ---- video files ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_video(path, random_segments(2, seed=3, min_seconds=2, max_seconds=2), fps=10, size=(160, 96))
    return path


def test_files_that_name_other_files_are_not_opened(clip, tmp_path):
    hls = tmp_path / "list.m3u8"
    hls.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\nfile://{clip}\n#EXT-X-ENDLIST\n")
    concat = tmp_path / "list.txt"
    concat.write_text(f"ffconcat version 1.0\nfile '{clip}'\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    remote = tmp_path / "remote.m3u8"
    remote.write_text(f"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4.0,\n"
                      f"http://127.0.0.1:{listener.getsockname()[1]}/a.ts\n#EXT-X-ENDLIST\n")
    for path in (hls, concat, remote):
        with pytest.raises(VideoOpenError, match="not a video file vidcap opens"):
            PyAVFrameSource(path, 1.0)
    listener.settimeout(0.2)
    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came
    listener.close()
    for suffix in (".mkv", ".webm", ".avi", ".ts", ".mov"):  # the containers vidcap does open
        other = tmp_path / f"copy{suffix}"
        write_video(other, random_segments(1, seed=4, min_seconds=1, max_seconds=1), fps=10, size=(64, 48))
        with PyAVFrameSource(other, 0.5) as source:
            assert len(list(source.frames())) == 2


def test_decode_limits_from_the_headers():
    limits = Limits(max_frame_pixels=100_000, max_decode_pixels=1e9)
    limits.check_decode((320, 240), 30.0, 60.0)
    with pytest.raises(InputTooLargeError, match="max_frame_pixels"):
        limits.check_decode((640, 480), 30.0, 1.0)
    with pytest.raises(InputTooLargeError, match="max_decode_pixels"):
        limits.check_decode((320, 240), 30.0, 600.0)


def test_decoding_is_bounded_whatever_the_headers_say(clip):
    with PyAVFrameSource(clip, 0.1) as source:
        source.bound(max_frame_pixels=10_000, max_decode_pixels=1e12)  # below one 160x96 frame
        with pytest.raises(InputTooLargeError, match="max_frame_pixels"):
            list(source.frames())
    with PyAVFrameSource(clip, 0.1) as source:
        source.bound(max_frame_pixels=10**6, max_decode_pixels=160 * 96 * 10.5)  # ten frames and a half
        frames = []
        with pytest.raises(InputTooLargeError, match="max_decode_pixels"):
            for frame in source.frames():
                frames.append(frame)
        assert len(frames) == 10


def _h264_ts(path: Path, size: tuple[int, int], first_pts: int, frames: int = 10) -> None:
    with av.open(str(path), "w", format="mpegts") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size[1], size[0], 3), 20 * i, np.uint8), format="rgb24")
            frame.pts = first_pts + i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_a_frame_larger_than_the_headers_said_is_refused(tmp_path):
    """Two MPEG-TS pieces joined (as a stream may be): the headers are the first one's, 64x48; the second one's
    frames are 640x480. The decoder goes on with the larger picture, and vidcap stops there."""
    _h264_ts(tmp_path / "a.ts", (64, 48), 0)
    _h264_ts(tmp_path / "b.ts", (640, 480), 10)  # timestamps go on
    joined = tmp_path / "joined.ts"
    joined.write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    with PyAVFrameSource(joined, 0.1) as source:
        assert source.frame_size == (64, 48)
        Limits(max_frame_pixels=200_000).check_decode(source.frame_size, source.frame_rate, source.duration)
        source.bound(max_frame_pixels=200_000, max_decode_pixels=1e12)
        frames = []
        with pytest.raises(InputTooLargeError, match="640x480 is above the limit of 200000 pixels"):
            for frame in source.frames():
                frames.append(frame)
    assert 1 <= len(frames) <= 10


def test_a_server_gives_one_piece_of_advice_for_files_and_quotes_a_device_whole():
    from vidcap.errors import InputError, PermissionDeniedError, public_message

    advice = []
    for source in ("file:///etc/passwd", "/etc/passwd", "concat:a.mp4|b.mp4"):
        with pytest.raises(InputError) as refused:
            SourcePolicy([]).check(source)
        advice.append(public_message(refused.value))
    assert all("send a file as an upload (or a path in its media folder)" in a for a in advice), advice
    assert not any("give a file" in a for a in advice)
    assert "'/etc/passwd'" in advice[1]  # the caller's own words, not cut to a file name
    with pytest.raises(PermissionDeniedError) as refused:
        SourcePolicy([]).check("/dev/video0")
    assert "does not open /dev/video0" in public_message(refused.value)
    assert SourcePolicy(["rtsp://u:pw@cam.example/*", "/dev/video0"]).described() == ["rtsp://u:***@cam.example/*",
                                                                                      "/dev/video0"]


def test_old_flag_spellings_still_work_and_warn_once(capsys):
    """One word, one meaning (docs/architecture.md#words): the renamed flags answer to their old names until the
    next release, saying the new one, once per run."""
    from vidcap.cli import Renamed, build_parser

    Renamed.warned.clear()
    parser = build_parser()
    args = parser.parse_args(["search", "red star", "--index", "old.db"])
    again = parser.parse_args(["index", "clip.mp4", "--index", "old.db"])
    assert args.library == again.library == "old.db"
    assert capsys.readouterr().err.count("--index is now --library") == 1
    assert parser.parse_args(["analyze", "v.mp4", "--decoder", "pyav"]).frame_source == "pyav"
    assert parser.parse_args(["serve", "--backend", "inprocess"]).model_host == "inprocess"
    err = capsys.readouterr().err
    assert "--decoder is now --frame-source" in err and "--backend is now --model-host" in err
    assert parser.parse_args(["search", "red star", "--library", "new.db"]).library == "new.db"
    assert capsys.readouterr().err == ""
