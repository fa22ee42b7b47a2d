"""What a video source may name, decided once for every door, without importing torch or FFmpeg (the CLI answers
a refused source at once).

- a file (anything without a protocol), a network stream (rtsp, rtsps, udp, rtp, srt, http, https, tcp with
  `//`), a v4l2 capture device (/dev/videoN), or `-` for standard input;
- every other FFmpeg protocol is refused whoever asks: those reaching local files or wrapping other protocols
  (`file:`, `concat:`, `subfile:`, `data:`, `pipe:`, `crypto:`, `async:` ...);
- a server opens network and device sources only where its allow-list matches (`SourcePolicy`).

Reading live sources: vidcap/video/live.py.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from vidcap.errors import InputError, PermissionDeniedError

NETWORK_SCHEMES = ("rtsp", "rtsps", "udp", "rtp", "srt", "http", "https", "tcp")
# What FFmpeg may open on behalf of a network stream (HLS segments, RTSP's RTP, TLS under HTTPS): never "file".
NETWORK_PROTOCOLS = "rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy,hls,srt"
DEVICE_PATTERN = re.compile(r"^/dev/video\d+$")
STDIN = "-"


@dataclass(frozen=True)
class SourceKind:
    kind: str  # "file" | "network" | "device" | "stdin"
    scheme: str = ""


def classify_source(source: str) -> SourceKind:
    """What a source names; InputError for a protocol that is refused whoever asks."""
    if source == STDIN:
        return SourceKind("stdin")
    if DEVICE_PATTERN.match(source):
        return SourceKind("device")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*):", source)
    if match and len(match.group(1)) > 1:  # "C:" would be a drive letter, not a protocol
        scheme = match.group(1).lower()
        if scheme in NETWORK_SCHEMES and source[len(scheme) + 1:].startswith("//"):
            return SourceKind("network", scheme)
        raise InputError(f"the {scheme}: protocol is not accepted as a video source; give a file, an rtsp://, "
                         f"udp:// or http(s):// stream, a v4l2 capture device (videoN in /dev) or - for standard "
                         f"input")
    return SourceKind("file")


def is_live(source: str) -> bool:
    return classify_source(source).kind != "file"


class SourcePolicy:
    """Which live sources a server opens for its callers: none unless its allow-list names them. Patterns are
    shell-style (`rtsp://cameras.example/*`, `/dev/video0`), matched against the whole source."""

    def __init__(self, allowed: Sequence[str] = ()):
        self.allowed = list(allowed)

    def check(self, source: str) -> SourceKind:
        kind = classify_source(source)
        if kind.kind == "stdin":
            raise InputError("standard input is for the command line (vidcap analyze -), not a server")
        if kind.kind == "file":
            raise InputError(f"{source!r} is not a stream or a device; send files as uploads or media paths")
        if not any(fnmatch.fnmatchcase(source, pattern) for pattern in self.allowed):
            raise PermissionDeniedError(f"this server does not open {redacted(source)}: live sources are off "
                                        f"unless the server allows them (vidcap serve --allow-source PATTERN)")
        return kind


def redacted(source: str) -> str:
    """The source without a password (rtsp://user:secret@host/ -> rtsp://user:***@host/)."""
    return re.sub(r"(//[^/:@]+:)[^/@]+@", r"\1***@", source)
