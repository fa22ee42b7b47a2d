"""Multipart uploads straight to disk: a form's files are written to a private folder as they arrive (never whole
in memory), its text fields kept small."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect

from vidcap.errors import InputError, VidcapError
from vidcap.fileio import upload_name
from vidcap.serving.admission import Budget
from vidcap.serving.http_guards import Refused

MAX_FIELD_BYTES = 64 * 1024  # a text field of a form (parameters); files go to disk


@dataclass
class Form:
    files: dict[str, tuple[str, Path]] = field(default_factory=dict)  # field -> (client's file name, local path)
    fields: dict[str, str] = field(default_factory=dict)

    def file(self, name: str) -> tuple[str, Path]:
        """The file in field `name`, or the only file sent."""
        found = self.files.get(name) or (next(iter(self.files.values())) if len(self.files) == 1 else None)
        if found is None:
            raise InputError(f"no file in the form field {name!r}")
        return found


@contextlib.asynccontextmanager
async def received_form(request: Request, folder: Path | None, uploads: Budget) -> AsyncIterator[Form]:
    """A multipart form whose files are written to a private folder as they arrive (never whole in memory);
    the folder is removed afterwards, also when the client disconnects mid-upload. While it arrives it holds one
    of the server's upload places (`uploads`), not an analysis slot."""
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise InputError("expected a multipart form upload (Content-Type: multipart/form-data)")
    private = Path(tempfile.mkdtemp(prefix="vidcap-upload-", dir=folder))
    try:
        form = Form()
        with uploads.enter(request.client.host if request.client else ""):
            part = _PartWriter(form, private)
            parser = MultipartParser(options[b"boundary"], part.callbacks())
            try:
                async for chunk in request.stream():
                    parser.write(chunk)
                parser.finalize()
            except ClientDisconnect:
                raise InputError("the client disconnected during the upload") from None
            except (VidcapError, Refused):
                raise
            except Exception as exc:  # the parser's own errors for malformed bodies
                raise InputError(f"malformed multipart form: {exc}") from None
            finally:
                part.close()
        yield form
    finally:
        shutil.rmtree(private, ignore_errors=True)


class _PartWriter:
    """MultipartParser callbacks: file parts to disk under their sanitised names, text fields to the form."""

    def __init__(self, form: Form, folder: Path):
        self.form, self.folder = form, folder
        self.header_name, self.header_value, self.headers = b"", b"", {}
        self.out = None
        self.text = bytearray()

    def callbacks(self) -> dict[str, Callable]:
        return {"on_part_begin": self.begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value_data, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.data, "on_part_end": self.end}

    def begin(self) -> None:
        self.headers, self.text, self.name = {}, bytearray(), ""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_name += data[start:end]

    def header_value_data(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_name.lower()] = self.header_value
        self.header_name, self.header_value = b"", b""

    def headers_finished(self) -> None:
        _, disposition = parse_options_header(self.headers.get(b"content-disposition", b""))
        self.name = disposition.get(b"name", b"").decode(errors="replace")
        if b"filename" in disposition:
            filename = disposition[b"filename"].decode(errors="replace")
            path = self.folder / f"{len(self.form.files)}-{upload_name(filename)}"
            self.out = path.open("wb")
            self.form.files.setdefault(self.name, (filename, path))

    def data(self, data: bytes, start: int, end: int) -> None:
        if self.out is not None:
            self.out.write(data[start:end])
        else:
            self.text += data[start:end]
            if len(self.text) > MAX_FIELD_BYTES:
                raise InputError(f"form field {self.name!r} is above {MAX_FIELD_BYTES} bytes")

    def end(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
        else:
            self.form.fields[self.name] = self.text.decode(errors="replace")

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
