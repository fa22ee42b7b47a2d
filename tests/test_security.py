"""Strangers: beyond loopback an API key is required unless --insecure is said; keys and TLS over gRPC and HTTP."""

from __future__ import annotations

import signal
import ssl
import subprocess

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from vidcap.client import VidcapClient
from vidcap.errors import VidcapError
from vidcap.serving.auth import Security

from conftest import free_port, REPO, VIDCAP, cli_env, synthetic_images

KEY = "k3y-for-the-tests-0123456789"


def test_binding_beyond_loopback_needs_a_key_or_insecure_said_out_loud(tmp_path):
    refused = subprocess.run([*VIDCAP, "serve", "--host", "0.0.0.0", "--model-host", "inprocess", "--no-ui"],
                             capture_output=True, text=True, cwd=REPO, env=cli_env(), timeout=60)
    assert refused.returncode == 2
    assert "--api-key-file" in refused.stderr and "--insecure" in refused.stderr
    with pytest.raises(VidcapError, match="at least 16"):
        Security.load("127.0.0.1", _write(tmp_path / "short", "abc"))
    with pytest.raises(VidcapError, match="both --tls-cert and --tls-key"):
        Security.load("127.0.0.1", tls_cert=str(tmp_path / "short"))
    # Media-folder paths: on loopback, or beyond it with a key; never to strangers without one.
    assert Security.load("127.0.0.1").allows_media_paths("127.0.0.1")
    assert not Security.load("0.0.0.0", insecure=True).allows_media_paths("0.0.0.0")
    assert Security.load("0.0.0.0", _write(tmp_path / "key", KEY)).allows_media_paths("0.0.0.0")


def _write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """An in-process stack with an API key and TLS (a self-signed certificate for 127.0.0.1)."""
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    key_file = _write(folder / "api-key", KEY + "\n")
    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen([*VIDCAP, "serve", "--model-host", "inprocess", "--grpc-port", str(grpc_port),
                             "--http-port", str(http_port), "--no-ui", "--api-key-file", key_file,
                             "--tls-cert", str(folder / "cert.pem"), "--tls-key", str(folder / "key.pem"),
                             "--work-dir", str(folder / "work")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=cli_env())
    lines = [proc.stdout.readline() for _ in range(2)]
    assert "TLS, API key" in lines[0] and "https://" in lines[1], (lines, proc.stderr.read()[-2000:])
    yield {"grpc": f"127.0.0.1:{grpc_port}", "http": f"https://127.0.0.1:{http_port}", "ca": folder / "cert.pem"}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def image_bytes(tmp_path_factory) -> bytes:
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "scene.png"
    Image.fromarray(synthetic_images(1, seed=2, size=(160, 112))[0][0]).save(path)
    return path.read_bytes()


def test_grpc_needs_the_key_over_tls(secured, image_bytes):
    for key in (None, "wrong-key-0123456789abcdef"):
        with VidcapClient(secured["grpc"], timeout=60, api_key=key, tls_ca=secured["ca"]) as client:
            with pytest.raises(grpc.RpcError) as refused:
                client.caption_image(image_bytes)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as refused:
                list(client.analyze_path("anything.mp4"))
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with VidcapClient(secured["grpc"], timeout=60, api_key=KEY, tls_ca=secured["ca"]) as client:
        assert client.caption_image(image_bytes).caption
    with VidcapClient(secured["grpc"], timeout=10, api_key=KEY) as plain:  # TLS only: plain text gets nowhere
        with pytest.raises(grpc.RpcError) as failed:
            plain.caption_image(image_bytes)
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    credentials = grpc.ssl_channel_credentials(secured["ca"].read_bytes())
    with grpc.secure_channel(secured["grpc"], credentials) as channel:  # probes need no key
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_http_needs_the_key_over_tls(secured, image_bytes):
    url = f"{secured['http']}/get_captions"
    with httpx.Client(verify=ssl.create_default_context(cafile=secured["ca"]), timeout=60) as http:
        for headers in ({}, {"Authorization": "Bearer wrong-key-0123456789abcdef"}, {"Authorization": KEY}):
            refused = http.post(url, files={"image": ("s.png", image_bytes)}, headers=headers)
            assert refused.status_code == 401 and "API key" in refused.json()["error"]
        ok = http.post(url, files={"image": ("s.png", image_bytes)}, headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["caption"]
        assert http.get(f"{secured['http']}/metrics").status_code == 401
        assert http.get(f"{secured['http']}/healthz").json() == {"status": "serving"}
    with pytest.raises(httpx.ConnectError):  # an unknown certificate is refused by a client that checks
        httpx.get(f"{secured['http']}/healthz", timeout=10)
