"""The errors vidcap reports to people: each carries a one-line message fit for a CLI, a gRPC status or JSON."""

import re


class VidcapError(Exception):
    """Base class: anything raised as a VidcapError is a user-facing, expected failure (no traceback)."""


class InputError(VidcapError):
    """The input (image, video, parameter) is unusable."""


class InputTooLargeError(InputError):
    """The input is over a configured limit (pixels, bytes, duration)."""


class CheckpointError(VidcapError):
    """A model checkpoint is missing, corrupt or incompatible."""


class DatasetError(VidcapError):
    """A dataset folder or annotation file is missing or inconsistent."""


class UnavailableError(VidcapError):
    """Something vidcap needs is down or missing here (TorchServe, an encoder runtime): not the caller's fault."""


class PermissionDeniedError(VidcapError):
    """A path outside the media folder, or a source this server does not open for this caller."""


class UnauthenticatedError(VidcapError):
    """No API key, or a wrong one."""


class NotFoundError(InputError):
    """Something asked for by name or id does not exist (a job)."""


class UploadTooSlowError(InputError):
    """An upload below the server's minimum rate, cut off (it would hold an upload place for ever)."""


class BusyError(VidcapError):
    """Every analysis slot is taken and the queue is full: try again later."""


# One table for every door: (error, gRPC status name, HTTP status, CLI exit status). The first match wins, so
# subclasses come before their bases. The server's own failures are never reported as the client's fault.
STATUSES: list[tuple[type[BaseException], str, int, int]] = [
    (InputTooLargeError, "RESOURCE_EXHAUSTED", 413, 2),
    (UploadTooSlowError, "DEADLINE_EXCEEDED", 408, 2),
    (NotFoundError, "NOT_FOUND", 404, 2),
    (BusyError, "RESOURCE_EXHAUSTED", 429, 3),
    (PermissionDeniedError, "PERMISSION_DENIED", 403, 2),
    (UnauthenticatedError, "UNAUTHENTICATED", 401, 2),
    (UnavailableError, "UNAVAILABLE", 503, 3),
    (VidcapError, "INVALID_ARGUMENT", 400, 2),
]


def status_of(exc: BaseException) -> tuple[str, int, int]:
    """(gRPC status name, HTTP status, exit status); anything unexpected is INTERNAL / 500 / 1."""
    for kind, grpc_name, http, exit_status in STATUSES:
        if isinstance(exc, kind):
            return grpc_name, http, exit_status
    return "INTERNAL", 500, 1


_ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def public_message(exc: BaseException) -> str:
    """The one-line message a client sees: absolute paths cut to their file names (a server's folders are
    nobody's business), and nothing at all of an unexpected error (its details go to the server's log)."""
    if status_of(exc)[0] == "INTERNAL":
        return "internal error (logged on the server)"
    line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if getattr(exc, "callers_words", False):  # it quotes what the caller sent (a device path), nothing of the server
        return line
    return _ABSOLUTE_PATH.sub(r"\1", line)


def callers_words(exc: VidcapError) -> VidcapError:
    """Mark an error whose paths are the caller's own words (kept whole in public_message)."""
    exc.callers_words = True
    return exc
