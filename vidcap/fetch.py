"""A model from a URL, fetched once into the cache and verified (`vidcap pull URL --sha256 HEX`, `--model URL`).

A URL names its file's SHA-256, on the command line or as `URL#sha256=HEX`: a model is code's input, and a file
that is not the one the user meant is refused (and nothing of it kept). A broken download resumes where it
stopped (HTTP Range) on the next try or the next run. Only http and https; no torch here (the CLI answers bad
input before loading anything heavy).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from vidcap.errors import InputError, UnavailableError

TRIES = 5  # connection attempts for one fetch; each resumes where the last one stopped
TIMEOUT_SECONDS = 30.0
BLOCK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]{64}$")


def is_url(spec: str | os.PathLike | None) -> bool:
    return isinstance(spec, str) and spec.lower().startswith(("http://", "https://"))


def cache_dir() -> Path:
    """$VIDCAP_CACHE/models, else ~/.cache/vidcap/models."""
    root = os.environ.get("VIDCAP_CACHE") or Path.home() / ".cache" / "vidcap"
    return Path(root) / "models"


def split_hash(url: str, sha256: str | None = None) -> tuple[str, str]:
    """(the URL without `#sha256=...`, the hash), checked; InputError when none or a malformed one is given."""
    base, _, fragment = url.partition("#")
    given = sha256 or (fragment[len("sha256="):] if fragment.startswith("sha256=") else None)
    if not given:
        raise InputError(f"give the SHA-256 of {base} (vidcap pull URL --sha256 HEX, or --model URL#sha256=HEX): a "
                         f"model from the network is used only when it is the file you meant")
    given = given.lower()
    if not _HEX.match(given):
        raise InputError(f"{given!r} is not a SHA-256 (64 hexadecimal digits)")
    if urlsplit(base).scheme not in ("http", "https") or not urlsplit(base).netloc:
        raise InputError(f"{base!r} is not an http(s) URL")
    return base, given


def cached_path(url: str, sha256: str) -> Path:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(urlsplit(url).path).name)[-80:] or "model.pt"
    return cache_dir() / f"{sha256[:16]}-{name}"


def fetch(url: str, sha256: str | None = None, progress: Callable[[int, int | None], None] | None = None) -> Path:
    """The verified file in the cache, downloaded (or its download resumed) when it is not there yet."""
    url, sha256 = split_hash(url, sha256)
    final = cached_path(url, sha256)
    if final.is_file():
        return final  # only a verified file is ever renamed to this name
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    last_error: Exception | None = None
    for attempt in range(TRIES):
        try:
            _download(url, partial, progress)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 416:
                raise UnavailableError(f"cannot fetch {url}: HTTP {exc.code} {exc.reason}") from None
            last_error = exc
            time.sleep(min(2.0 ** attempt * 0.2, 5.0))
    else:
        raise UnavailableError(f"cannot fetch {url} after {TRIES} tries ({_reason(last_error)}); run the same "
                               f"command again to resume from {partial.stat().st_size if partial.exists() else 0} "
                               f"bytes") from None
    actual = sha256_of(partial)
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise InputError(f"{url}: its SHA-256 is {actual}, not the {sha256} given: refused, nothing kept")
    partial.replace(final)
    return final


def _download(url: str, partial: Path, progress: Callable[[int, int | None], None] | None) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS)  # noqa: S310 (http(s) checked)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # asked past the end: what we have is the whole file
            return
        raise
    with response:
        resumed = response.status == 206
        total = _total(response, have if resumed else 0)
        mode = "ab" if resumed else "wb"  # a server that ignores Range sends everything again
        done = have if resumed else 0
        with partial.open(mode) as out:
            while block := response.read(BLOCK):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
        if total is not None and done < total:
            raise OSError(f"the connection ended at {done} of {total} bytes")


def _total(response, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _reason(exc: Exception | None) -> str:
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) if exc else "unknown"
