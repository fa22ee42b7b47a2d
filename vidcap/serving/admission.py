"""A bounded number of analyses at once, a bounded queue behind them, first come first served.

Shared by every door of one stack (gRPC, the old HTTP API; the web UI goes through gRPC), so the limit holds
whatever way the videos come in. A caller beyond the queue is refused at once (BusyError: RESOURCE_EXHAUSTED /
429) instead of waiting without end.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Iterator

from vidcap.errors import BusyError


class Admission:
    def __init__(self, slots: int = 2, queue_size: int = 16, uploads: int = 16, watchers: int = 32,
                 per_client: int = 4):
        """uploads: uploads received at once (every door; an upload takes a slot only once it is on disk);
        watchers: job watch streams at once; per_client: of each, from one client address. Each has its own budget,
        apart from the slots."""
        if slots < 1 or queue_size < 0:
            raise ValueError("slots must be at least 1 and queue_size at least 0")
        self.slots, self.queue_size = slots, queue_size
        self.uploads = Budget("uploads being received", uploads, min(per_client, uploads))
        self.watchers = Budget("job watchers", watchers, min(per_client, watchers))
        self._running = 0
        self._waiting: deque[Ticket] = deque()
        self._changed = threading.Condition()

    def enter(self) -> "Ticket":
        """A place in the queue (admitted at once when a slot is free); BusyError when the queue is full."""
        with self._changed:
            if self._running >= self.slots and len(self._waiting) >= self.queue_size:
                raise BusyError(f"the server is busy: {self._running} analyses running and {len(self._waiting)} "
                                f"waiting (the limit); try again later")
            ticket = Ticket(self)
            self._waiting.append(ticket)
            self._admit()
            return ticket

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _admit(self) -> None:  # with the lock held
        while self._waiting and self._running < self.slots:
            ticket = self._waiting.popleft()
            ticket.admitted = True
            self._running += 1
        self._changed.notify_all()

    def _position(self, ticket: "Ticket") -> int:
        return self._waiting.index(ticket) + 1

    def _leave(self, ticket: "Ticket") -> None:
        with self._changed:
            if ticket.admitted:
                self._running -= 1
            elif ticket in self._waiting:
                self._waiting.remove(ticket)
            ticket.admitted, ticket.left = False, True
            self._admit()


class Ticket:
    """`with admission.enter() as ticket:` then `ticket.wait(s)` until it returns None (admitted)."""

    def __init__(self, admission: Admission):
        self._admission, self.admitted, self.left = admission, False, False

    def wait(self, timeout: float) -> int | None:
        """None once admitted; otherwise wait up to `timeout` and return the place in the queue (1 = next)."""
        with self._admission._changed:
            if not self.admitted:
                self._admission._changed.wait(timeout)
            return None if self.admitted else self._admission._position(self)

    def release(self) -> None:
        if not self.left:
            self._admission._leave(self)

    def __enter__(self) -> "Ticket":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class Budget:
    """At most `size` calls of one kind at once (uploads being received, job watchers), apart from the analysis
    slots, and at most `per_client` of them from one client address: a handful of slow uploaders or idle watchers
    cannot take what the other calls and clients need. Beyond either, BusyError at once."""

    def __init__(self, what: str, size: int, per_client: int | None = None):
        if size < 1 or (per_client is not None and per_client < 1):
            raise ValueError("a budget needs a size of at least 1")
        self.what, self.size, self.per_client, self.used = what, size, per_client or size, 0
        self._by_client: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def enter(self, client: str = "") -> Iterator[None]:
        with self._lock:
            if self.used >= self.size:
                raise BusyError(f"the server is busy: {self.used} {self.what} at once (the limit); try again later")
            if self._by_client.get(client, 0) >= self.per_client:
                raise BusyError(f"the server is busy: {self.per_client} {self.what} at once from one client (the "
                                f"limit); try again when one has ended")
            self.used += 1
            self._by_client[client] = self._by_client.get(client, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self.used -= 1
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]


def client_address(peer: str) -> str:
    """The client's address without its port, from gRPC's peer ("ipv4:127.0.0.1:5555", "ipv6:[::1]:5555") or an
    HTTP (host, port) pair's host."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    return rest.rsplit(":", 1)[0].strip("[]")
