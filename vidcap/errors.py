"""The errors vidcap reports to people: each carries a one-line message fit for a CLI, a gRPC status or JSON."""


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


class BackendUnavailableError(VidcapError):
    """The captioning backend (e.g. TorchServe) is down or failing: not the caller's fault."""
