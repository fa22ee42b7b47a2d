"""`vidcap index --ray [ADDRESS]`: the videos spread over a Ray cluster.

Each Ray worker (an actor) loads the model once and analyses whole videos; the results come back to the command,
which alone writes the library (SQLite has one writer), so the database, skipping, failures and Ctrl-C behave as
without Ray. Without an address a local Ray cluster is started on 127.0.0.1 and stopped at the end; with one the
command joins that cluster, whose nodes must have vidcap installed and see the video and model paths (shared
storage): docs/library.md.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Callable

from vidcap.errors import InputError
from vidcap.library.indexer import IndexReport, Indexer

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0


class VideoWorker:
    """A Ray actor's state: one loaded model, in an in-process model host."""

    def __init__(self, checkpoint: str, encoder: str, params: dict, threads: int):
        import torch

        from vidcap.analysis.hosts import InProcessHost
        from vidcap.captioner import Captioner
        from vidcap.video.pipeline import AnalysisParams

        torch.set_num_threads(threads)
        self.host = InProcessHost(Captioner.load(checkpoint, encoder=encoder))
        self.params = AnalysisParams(**params)

    def analyse(self, path: str) -> tuple[str, tuple | None, str | None]:
        """-> (path, the library rows, None) or (path, None, why it failed)."""
        from vidcap.library.indexer import analyse_video, describe_failure

        try:
            return path, analyse_video(Path(path), self.host, self.params), None
        except Exception as exc:  # one bad file must not take the worker down
            return path, None, describe_failure(exc)


def index_on_ray(indexer: Indexer, paths: list[Path], report: IndexReport, checkpoint: Path, encoder: str,
                 address: str | None, workers: int | None, on_done: Callable[[Path], None] = lambda _: None) -> None:
    """Index these videos (not yet current) on Ray workers; fills the report as each one comes back."""
    from dataclasses import asdict

    ray = _ray()
    local = address is None
    if not local:
        _check_reachable(address)  # Ray itself retries an address that does not answer for minutes
    try:
        if local:
            ray.init(num_cpus=os.cpu_count(), _node_ip_address="127.0.0.1", include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # ConnectionError and Ray's own: an address that does not answer
        raise InputError(f"cannot reach a Ray cluster at {address or 'a new local cluster'}: {exc}") from None
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(workers or cpus, len(paths) or 1))
        threads = max(1, cpus // count)
        actor = ray.remote(num_cpus=threads)(VideoWorker)
        params = asdict(indexer.params)
        pool = ray.util.ActorPool([actor.remote(str(checkpoint), encoder, params, threads) for _ in range(count)])
        log.info("indexing on %d Ray workers of %d CPU(s)", count, threads)
        ids = {str(path): indexer.start(path) for path in paths}
        for path, rows, error in pool.map_unordered(lambda a, p: a.analyse.remote(p), list(ids)):
            if error:
                report.failed.append((path, indexer.fail(Path(path), error)))
            else:
                indexer.library.store_analysis(ids[path], *rows)
                report.indexed.append(path)
            on_done(Path(path))
    finally:
        if local:
            ray.shutdown()


def _check_reachable(address: str, seconds: float = CONNECT_SECONDS) -> None:
    """host:port (or ray://host:port) must accept a connection within `seconds`; "auto" is Ray's own lookup."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--ray takes HOST:PORT (or ray://HOST:PORT, or auto), got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=seconds).close()
    except OSError as exc:
        raise InputError(f"cannot reach a Ray cluster at {address} (waited {seconds:g} s): "
                         f"{exc.strerror or exc}") from None


def _ray():
    try:
        import ray
        import ray.util  # noqa: F401  (ActorPool)
    except ImportError:
        raise InputError("--ray needs Ray: pip install 'vidcap[ray]'") from None
    return ray
