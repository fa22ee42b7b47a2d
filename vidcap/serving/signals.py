"""Stopping a server on SIGTERM or SIGINT (Ctrl-C).

Python runs signal handlers in the main thread only, between bytecodes. A signal the kernel delivers to another
thread (gRPC's, OpenMP's) does not interrupt a main thread blocked on a lock, so a main thread that waits
without a timeout may never run the handler: a server that went on serving after SIGTERM was seen in the tests.
The main thread therefore waits in short steps.
"""

from __future__ import annotations

import signal
import threading

POLL_SECONDS = 0.25


def stop_on_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop` (from the main thread only: elsewhere Python refuses handlers)."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())


def wait_for_stop(stop: threading.Event) -> None:
    """Wait until `stop` is set, waking often enough for signal handlers to run."""
    while not stop.wait(POLL_SECONDS):
        pass
