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
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from vidcap.errors import InputError, PermissionDeniedError, callers_words

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
    """Which live sources a server opens for its callers: none unless its allow-list names them.

    A pattern is a URL (`rtsp://cameras.example/*`, `https://*.cdn.example:8443/live/*.m3u8`) or a device path
    (`/dev/video0`). A source matches when its scheme, host and port equal the pattern's (the host may start with
    `*.`, or be `*`; the port may be `*`; no port means the scheme's default) and its path matches the pattern's path
    as a shell pattern. Query strings carry FFmpeg options for some protocols (`udp://...?localport=`, `tcp://...?listen`),
    so a source with one is refused unless the pattern has a query too (matched the same way). A host that only a
    wildcard matched must resolve to public addresses: loopback, link-local and private ones only when a pattern
    names the host itself. `check` decides once; `check_connect` again before every (re)connect, DNS included."""

    def __init__(self, allowed: Sequence[str] = ()):
        self.allowed = list(allowed)
        self._patterns = [_parse_pattern(p) for p in self.allowed]

    def described(self) -> list[str]:
        """The allowed patterns as callers may see them (passwords left out)."""
        return [redacted(p) for p in self.allowed]

    def check(self, source: str) -> SourceKind:
        try:
            kind = classify_source(source)
        except InputError as exc:  # a protocol refused whoever asks: say what a server opens instead
            raise callers_words(InputError(f"{str(exc).split(';')[0]}; a server opens only network streams and "
                                           f"capture devices it allows; send a file as an upload (or a path in its "
                                           f"media folder)")) from None
        if kind.kind == "stdin":
            raise InputError("standard input is for the command line (vidcap analyze -), not a server")
        if kind.kind == "file":
            raise callers_words(InputError(f"{redacted(source)!r} is not a stream or a device; a server opens only "
                                           f"network streams and capture devices it allows; send a file as an "
                                           f"upload (or a path in its media folder)"))
        self._match(source, kind)
        return kind

    def check_connect(self, source: str) -> None:
        """Before each (re)connect: the source still matches, and its host resolves to addresses it may reach."""
        kind = classify_source(source)
        pattern = self._match(source, kind)
        if kind.kind == "network" and pattern.host_wildcard:
            _require_public(_split_url(source))

    def _match(self, source: str, kind: SourceKind) -> "_Pattern":
        if kind.kind == "device":
            found = next((p for p in self._patterns if p.device and fnmatch.fnmatchcase(source, p.device)), None)
        else:
            url = _split_url(source)
            found = next((p for p in self._patterns if p.matches(url)), None)
        if found is None and not self.allowed:
            raise callers_words(PermissionDeniedError(
                f"this server does not open {redacted(source)}: live sources are off unless the server allows them "
                f"(vidcap serve --allow-source PATTERN)"))
        if found is None:
            raise callers_words(PermissionDeniedError(
                f"this server does not open {redacted(source)}: it matches none of the server's --allow-source "
                f"patterns (scheme, host, port and path; a query only where a pattern has one)"))
        return found


DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
_BAD_URL_CHARACTERS = re.compile(r"[\\\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class _URL:
    scheme: str
    host: str
    port: int | None
    path: str
    query: str | None


def _split_url(source: str) -> _URL:
    """scheme, host, port, path, query of a network source, as FFmpeg reads them (the authority ends at the first /,
    ? or #, credentials before its last @); InputError for anything ambiguous."""
    if _BAD_URL_CHARACTERS.search(source):
        raise InputError(f"{redacted(source)!r}: spaces, control characters and backslashes are not accepted in a "
                         f"source URL")
    try:
        parts = urlsplit(source)
        port = parts.port
    except ValueError as exc:
        raise InputError(f"{redacted(source)!r} is not a valid URL ({exc})") from None
    if parts.fragment or "#" in source:
        raise InputError(f"{redacted(source)!r}: a fragment (#...) is not accepted in a source URL")
    host = (parts.hostname or "").rstrip(".")
    if "%" in host or "*" in host:
        raise InputError(f"{redacted(source)!r}: the host must be a plain name or address")
    query = parts.query if "?" in source else None
    return _URL(parts.scheme.lower(), host, port or DEFAULT_PORTS.get(parts.scheme.lower()), parts.path, query)


@dataclass(frozen=True)
class _Pattern:
    scheme: str = ""
    host: str = ""
    port: int | str | None = None  # "*": any
    path: str = ""
    query: str | None = None
    device: str = ""

    @property
    def host_wildcard(self) -> bool:
        return "*" in self.host

    def matches(self, url: _URL) -> bool:
        if self.device or url.scheme != self.scheme:
            return False
        if self.host == "*":
            host_ok = bool(url.host)
        elif self.host.startswith("*."):
            host_ok = url.host.endswith(self.host[1:]) and len(url.host) > len(self.host) - 1
        else:
            host_ok = url.host == self.host
        port_ok = self.port == "*" or url.port == self.port
        path_ok = fnmatch.fnmatchcase(url.path or "/", self.path or "/")
        query_ok = url.query is None or (self.query is not None and fnmatch.fnmatchcase(url.query, self.query))
        return host_ok and port_ok and path_ok and query_ok


def _parse_pattern(pattern: str) -> _Pattern:
    """An --allow-source pattern; InputError (said at startup) when it cannot be read as a URL or a device."""
    if pattern.startswith("/dev/"):
        return _Pattern(device=pattern)
    match = re.match(r"^([a-z][a-z0-9+.-]*)://(?:[^@/?#]*@)?(\[[^\]]+\]|[^:/?#]*)(?::(\d+|\*))?([^?#]*)(?:\?([^#]*))?$",
                     pattern, re.IGNORECASE)
    if not match or match.group(1).lower() not in NETWORK_SCHEMES or not match.group(2):
        raise InputError(f"--allow-source {pattern!r}: give a URL such as rtsp://cameras.example/* (scheme "
                         f"{', '.join(NETWORK_SCHEMES)}) or a device such as /dev/video0")
    scheme, host, port, path, query = match.groups()
    host = host.strip("[]").lower().rstrip(".")
    if "*" in host and not (host == "*" or (host.startswith("*.") and "*" not in host[2:])):
        raise InputError(f"--allow-source {pattern!r}: a host may be *, *.domain or a name, nothing else")
    scheme = scheme.lower()
    port_value: int | str | None = "*" if port == "*" else int(port) if port else DEFAULT_PORTS.get(scheme)
    return _Pattern(scheme, host, port_value, path, query)


def _require_public(url: _URL) -> None:
    """Every address the host resolves to is a public one (a wildcard pattern must not reach this machine, its
    network or a cloud's metadata service)."""
    try:
        infos = socket.getaddrinfo(url.host, url.port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        raise InputError(f"cannot resolve {url.host}: {exc}") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            raise PermissionDeniedError(f"{url.host} resolves to {address}, a loopback, link-local or private "
                                        f"address: allowed only when an --allow-source pattern names the host")


def redacted(source: str) -> str:
    """The source without a password (rtsp://user:secret@host/ -> rtsp://user:***@host/). Up to the last @ before
    any query, as FFmpeg reads credentials; a password with / or @ in it is hidden whole."""
    head, mark, tail = source.partition("?")
    return re.sub(r"(//[^/:@]*:)[^@]*@", r"\1***@", head) + mark + tail
