"""A model from a URL (vidcap/fetch.py): fetched once into the cache, verified, resumed after a cut connection,
refused (and nothing kept) when its SHA-256 is not the one given. Against a local HTTP server on loopback."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import threading
from pathlib import Path

import pytest

from vidcap import fetch
from vidcap.errors import InputError, UnavailableError

from conftest import DEMO_MODEL, REPO, VIDCAP, cli_env


class Server(http.server.ThreadingHTTPServer):
    """Serves one file with Range support; `cut_after` bytes into the next `cuts` responses, it hangs up."""

    def __init__(self, payload: bytes):
        super().__init__(("127.0.0.1", 0), Handler)
        self.payload, self.cuts, self.cut_after, self.requests = payload, 0, 0, []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/files/model.pt"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server: Server = self.server
        start = 0
        ranged = self.headers.get("Range")
        server.requests.append(ranged)
        if ranged:
            start = int(ranged.split("=")[1].split("-")[0])
        body = server.payload[start:]
        self.send_response(206 if ranged else 200)
        self.send_header("Content-Length", str(len(body)))
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{len(server.payload) - 1}/{len(server.payload)}")
        self.end_headers()
        if server.cuts > 0:
            server.cuts -= 1
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            self.connection.shutdown(2)  # hang up mid-file
            return
        self.wfile.write(body)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("VIDCAP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


def test_fetched_once_verified_and_kept(cache):
    server = Server(PAYLOAD)
    path = fetch.fetch(server.url, DIGEST)
    assert path.read_bytes() == PAYLOAD and path.parent == cache
    assert fetch.fetch(f"{server.url}#sha256={DIGEST}") == path  # the fragment form, from the cache
    assert len(server.requests) == 1
    server.shutdown()


def test_a_cut_connection_resumes_where_it_stopped(cache):
    server = Server(PAYLOAD)
    server.cuts, server.cut_after = 2, 1024 * 1024
    path = fetch.fetch(server.url, DIGEST)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, "bytes=1048576-", "bytes=2097152-"]  # each try goes on from the last byte
    server.shutdown()


def test_a_download_broken_beyond_its_tries_continues_in_the_next_run(cache, monkeypatch):
    monkeypatch.setattr(fetch, "TRIES", 2)
    server = Server(PAYLOAD)
    server.cuts, server.cut_after = 2, 1000
    with pytest.raises(UnavailableError, match="run the same command again to resume from 2000 bytes"):
        fetch.fetch(server.url, DIGEST)
    assert fetch.fetch(server.url, DIGEST).read_bytes() == PAYLOAD
    assert server.requests[-1] == "bytes=2000-"
    server.shutdown()


def test_a_wrong_hash_is_refused_and_nothing_is_kept(cache):
    server = Server(PAYLOAD)
    with pytest.raises(InputError, match="refused, nothing kept"):
        fetch.fetch(server.url, "0" * 64)
    assert not any(cache.iterdir())
    with pytest.raises(InputError, match="give the SHA-256"):
        fetch.fetch(server.url)
    with pytest.raises(InputError, match="not a SHA-256"):
        fetch.fetch(server.url, "abc")
    with pytest.raises(InputError, match="not an http"):
        fetch.fetch("file:///etc/passwd", DIGEST)
    server.shutdown()


def test_pull_and_model_url_on_the_command_line(tmp_path):
    server = Server(DEMO_MODEL.read_bytes())
    digest = hashlib.sha256(DEMO_MODEL.read_bytes()).hexdigest()
    env = {**cli_env(), "VIDCAP_CACHE": str(tmp_path / "cache")}
    pulled = subprocess.run([*VIDCAP, "pull", server.url, "--sha256", digest], capture_output=True, text=True,
                            env=env, timeout=120)
    assert pulled.returncode == 0, pulled.stderr
    path = Path(pulled.stdout.strip().splitlines()[-1])
    assert path.read_bytes() == DEMO_MODEL.read_bytes()
    captioned = subprocess.run([*VIDCAP, "caption", str(REPO / "examples" / "yellow-star-at-night.jpg"), "--model",
                                f"{server.url}#sha256={digest}"], capture_output=True, text=True, env=env, timeout=300)
    assert captioned.returncode == 0 and "star" in captioned.stdout, captioned.stderr
    refused = subprocess.run([*VIDCAP, "caption", str(REPO / "examples" / "yellow-star-at-night.jpg"), "--model",
                              server.url], capture_output=True, text=True, env=env, timeout=120)
    assert refused.returncode == 2 and "give the SHA-256" in refused.stderr
    assert len(server.requests) == 1  # the second use came from the cache
    server.shutdown()
