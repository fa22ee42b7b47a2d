"""Jobs: a video is submitted, gets an id at once, and is analysed in the background into the job database
(vidcap/library/job_store.py), where its progress and results can be read, watched and exported while it runs and
after, also after the server restarted.

One `JobRunner` per server, shared by its doors (gRPC SubmitJob..WatchJob, HTTP /v1/jobs). Each running job
holds an analysis slot of the server's `Admission`, so jobs and calls that wait for their answer share the same
limit. A server that stops pauses its running jobs (queued again); the next start continues them where they stood
(vidcap/video/resume.py: no sample captioned twice).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vidcap.errors import BusyError, InputError, UnavailableError, VidcapError, public_message
from vidcap.fileio import upload_name
from vidcap.library.job_store import Job, JobStore, JobWriter, new_job_id
from vidcap.library.shelf import Shelf
from vidcap.limits import DEFAULT_LIMITS, Limits
from vidcap.serving.admission import Admission
from vidcap.analysis.hosts import ModelHost
from vidcap.analysis.session import AnalysisSession
from vidcap.video.pipeline import AnalysisParams, Analysis

log = logging.getLogger("vidcap.jobs")

IDLE_SECONDS = 1.0  # how often an idle worker looks for queued jobs another process may have added
RETRY_SECONDS = 5.0  # after the model host failed (not the job's fault): the job waits this long
MAX_WAITING_JOBS = 100  # queued or running, per server
MAX_JOB_UPLOAD_BYTES = 20 * 1024**3  # the disk the uploads of those jobs may hold
CANCEL_WAIT_SECONDS = 10.0  # a cancel waits this long for the running job to stop


class JobRunner:
    def __init__(self, store: JobStore, model_host: ModelHost, admission: Admission | None = None,
                 limits: Limits = DEFAULT_LIMITS, workers: int = 1, max_waiting: int = MAX_WAITING_JOBS,
                 max_upload_bytes: int = MAX_JOB_UPLOAD_BYTES, shelf: Shelf | None = None):
        """max_waiting: jobs not yet ended that a server keeps; max_upload_bytes: the disk their uploads may hold.
        Beyond either, a submission is refused (BusyError: RESOURCE_EXHAUSTED / 429). shelf: where jobs that ask
        for it add their video to the library (None: such jobs are refused)."""
        self.store, self.model_host, self.limits, self.shelf = store, model_host, limits, shelf
        self.max_waiting, self.max_upload_bytes = max_waiting, max_upload_bytes
        self._room = threading.Lock()  # one submission at a time checks and takes room
        self.admission = admission or Admission()
        self.workers = workers
        self._changed = threading.Condition()  # any job's progress or state changed
        self._cancels: dict[str, threading.Event] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = None

    # ---- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> "JobRunner":
        self._take_the_database()
        continued = self.store.requeue()  # what a stopped or crashed server left running
        if continued:
            log.info("continuing %d unfinished job(s): %s", len(continued), ", ".join(continued))
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"vidcap-job-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Pause the running jobs (queued again, to continue at the next start) and stop the workers."""
        self._stop.set()
        self._notify()
        for thread in self._threads:
            thread.join(timeout=timeout)
        if self._lock is not None:
            self._lock.close()  # and with it the lock
            self._lock = None

    def _take_the_database(self) -> None:
        """One server runs the jobs of a database: at its start it continues every job left running, which
        must not be one another server is running now. The lock goes with the process, also when it crashes."""
        lock_path = self.store.path.with_name(self.store.path.name + ".jobs.lock")
        self._lock = lock_path.open("a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise VidcapError(f"another vidcap server runs the jobs of {self.store.path}; give this one its own "
                              f"database (--library DB) or data folder ($VIDCAP_DATA)") from None

    # ---- what the doors call -------------------------------------------------------------------------------

    def submit_path(self, path: Path, params: AnalysisParams, name: str | None = None,
                    add_to_library: bool = False) -> Job:
        """A video in the media folder (already checked by the door), analysed where it lies."""
        self._check_shelf(add_to_library)
        self._check_video(path, params)
        with self._room:
            self._check_room(0)
            job = self.store.create(name or path.name, path, False, params, add_to_library=add_to_library)
        self._notify()
        return job

    def _check_room(self, upload_bytes: int) -> None:
        waiting = self.store.count_waiting()
        if waiting >= self.max_waiting:
            raise BusyError(f"the server is busy: {waiting} jobs queued or running (the limit); try again later")
        if upload_bytes and self.store.upload_bytes() + upload_bytes > self.max_upload_bytes:
            raise BusyError(f"the server is busy: the uploads of waiting jobs hold up to "
                            f"{self.max_upload_bytes / 1024**3:g} GiB of disk (the limit); try again later")

    def submit_upload(self, filename: str, spooled: Path, params: AnalysisParams, add_to_library: bool = False
                      ) -> Job:
        """An upload, moved into the job's own folder (kept until the job ends, across restarts; with
        add_to_library, then in the library's folder)."""
        self._check_shelf(add_to_library)
        with self._room:
            self._check_room(spooled.stat().st_size)
            return self._keep_upload(filename, spooled, params, add_to_library)

    def _check_shelf(self, add_to_library: bool) -> None:
        if add_to_library and self.shelf is None:
            raise InputError("this server keeps no library to add the video to")

    def _keep_upload(self, filename: str, spooled: Path, params: AnalysisParams, add_to_library: bool) -> Job:
        job_id = new_job_id()
        folder = self.store.files / job_id
        folder.mkdir(parents=True, exist_ok=True)
        kept = folder / upload_name(filename)
        shutil.move(spooled, kept)
        try:
            self._check_video(kept, params)
            job = self.store.create(filename or kept.name, kept, True, params, job_id=job_id,
                                    add_to_library=add_to_library)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._notify()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (its results so far stay readable); an ended job is left as it is."""
        job = self.store.get(job_id)
        if job.ended or self.store.cancel_if_queued(job_id):
            return self.store.get(job_id)
        event = self._cancels.get(job_id)
        for _ in range(10):  # a job just taken by a worker gets its cancel switch a moment later
            if event is not None:
                break
            time.sleep(0.1)
            event = self._cancels.get(job_id)
        if event is None:
            job = self.store.get(job_id)
            if job.ended:  # it ended meanwhile
                return job
            raise InputError(f"job {job_id} is not run by this server")  # `vidcap index`'s progress record
        event.set()
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while not (job := self.store.get(job_id)).ended and time.monotonic() < deadline:
            self.wait_for_change(0.2)
        return job

    def wait_for_change(self, timeout: float) -> None:
        with self._changed:
            self._changed.wait(timeout)

    # ---- the workers ---------------------------------------------------------------------------------------

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _work(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.store.list("queued", limit=1):
                    self.wait_for_change(IDLE_SECONDS)
                    continue
                try:
                    ticket = self.admission.enter()
                except BusyError:  # the server's queue is full of calls: jobs wait their turn
                    self._stop.wait(IDLE_SECONDS)
                    continue
                with ticket:
                    while ticket.wait(IDLE_SECONDS) is not None:
                        if self._stop.is_set():
                            return
                    job = self.store.next_queued()
                    if job is not None:
                        self._run(job)
        finally:
            self.store.close()

    def _run(self, job: Job) -> None:
        cancel = self._cancels[job.id] = threading.Event()
        log.info("job %s (%s): run %d from frame %d", job.id, job.name, job.runs, job.frames)
        try:
            outcome = self._analyze(job, cancel)
        except UnavailableError as exc:  # not the job's fault: it waits and runs again
            log.warning("job %s paused: %s", job.id, exc)
            self.store.requeue(job.id)
            self._stop.wait(RETRY_SECONDS)
            outcome = None
        except VidcapError as exc:
            self.store.end(job.id, "failed", public_message(exc))
            outcome = "failed"
        except Exception as exc:
            log.error("job %s failed", job.id, exc_info=exc)
            self.store.end(job.id, "failed", public_message(exc))
            outcome = "failed"
        finally:
            del self._cancels[job.id]
            self._notify()
        if outcome is not None:
            log.info("job %s %s", job.id, outcome)

    def _analyze(self, job: Job, cancel: threading.Event) -> str | None:
        def started(duration: float, expected: int) -> None:
            self.limits.check_video(duration, expected)
            self.store.started(job.id, duration, expected)

        writer = JobWriter(self.store, job.id, job.params.window, job.frames)
        with self._readable(self._video_of(job), job.id) as path:
            results = self.model_host.analyze(path, job.params, on_start=started, resume=self.store.resume(job),
                                              on_sample=writer.sample)
            try:
                for result in results:
                    if writer.frame(result):
                        self._notify()
                    if cancel.is_set() or self._stop.is_set():
                        break
                else:
                    writer.flush()
                    if job.add_to_library:
                        done = dataclasses.replace(job, state="done")
                        self.shelf.add(done, job_analysis(self.store, done, self.model_host))
                    self.store.end(job.id, "done")
                    return "done"
            finally:
                results.close()
                writer.flush()  # what came before a stop or a failure is kept
        if cancel.is_set():
            self.store.end(job.id, "cancelled")
            return "cancelled"
        self.store.requeue(job.id)  # the server is stopping: the next start continues it
        return "paused"

    def _video_of(self, job: Job) -> Path:
        """The job's file; for a library job stopped after its upload moved into the library, that copy (nothing
        is lost between the move and the job's end)."""
        path = Path(job.path)
        if not path.exists() and job.owned and job.add_to_library and self.shelf is not None:
            kept = self.shelf.kept(job)
            return kept if kept.exists() else path
        return path

    @contextlib.contextmanager
    def _readable(self, path: Path, job_id: str) -> Iterator[Path]:
        """The job's file where the model host can read it: a model host that reads from its own folder
        (TorchServe's media folder) gets a hard link there (a copy across file systems) for the run."""
        if not path.is_file():
            raise InputError(f"the video {path.name} is gone")
        media = self.model_host.media_dir
        if media is None or path.resolve().is_relative_to(media):
            yield path
            return
        folder = Path(self.model_host.spool_dir or media) / f"job-{job_id}"
        folder.mkdir(parents=True, exist_ok=True)
        linked = folder / path.name
        try:
            linked.unlink(missing_ok=True)
            try:
                os.link(path, linked)
            except OSError:
                shutil.copyfile(path, linked)
            yield linked
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _check_video(self, path: Path, params: AnalysisParams) -> None:
        """Refuse at submission what would only fail later: not a video, or above the server's limits."""
        from vidcap.video.opener import open_frames

        params.validate(self.limits)
        with open_frames(path, params.every_n_seconds, "pyav") as source:
            self.limits.check_video(source.duration, len(source.sample_times()))


# ---- results ---------------------------------------------------------------------------------------------------


def job_analysis(store: JobStore, job: Job, host: ModelHost, trained_on: str = "") -> Analysis:
    """A job's results so far (all of them once it is done) as an Analysis, what the exports read: its stored
    frames through one session, as WatchJob gave them while they streamed; for a complete job also the moments
    the end of the video decides. trained_on: the model's training data in words (default: the host's)."""
    frames = store.frames(job.id)
    session = AnalysisSession.of(frames, job.params, host.ignored_words,
                                 trained_on or host.trained_on or "its training images", complete=job.state == "done")
    wall = (job.finished or time.time()) - job.created
    return session.analysis(job.name, job.duration or 0.0, wall)
