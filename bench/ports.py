"""Free loopback ports for the servers a bench or a test starts (tests/conftest.py loads this file)."""

from __future__ import annotations

import socket


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A free loopback port (TCP, or UDP with socket.SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_block(size: int = 16) -> int:
    """A port p with p..p+size-1 free (`vidcap serve` on consecutive ports; TorchServe takes several)."""
    for _ in range(50):
        base = free_port()
        if base + size < 65000 and all(_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no free port block")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
