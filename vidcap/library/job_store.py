"""Jobs in the library database: analyses that outlive the request that asked for them.

A job's results are written as they come, one frame at a time, with the captioned samples a stopped analysis
needs to continue (vidcap/video/resume.py). So a server that stops, is killed or crashes continues each unfinished
job where it stood when it starts again: no result is lost or given twice, and no sample is captioned twice.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from vidcap.errors import InputError, NotFoundError, UnavailableError
from vidcap.library.store import LOCK_WAIT_SECONDS, default_library, open_database
from vidcap.video.pipeline import AnalysisParams, FrameResult
from vidcap.video.resume import Resume, Sample, first_replayed

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    state TEXT NOT NULL,            -- queued | running | done | failed | cancelled
    name TEXT NOT NULL,             -- the video as the client named it
    path TEXT NOT NULL,             -- the file analysed: the job's own copy of an upload, or a media file
    owned INTEGER NOT NULL,         -- 1: the file is the job's copy, removed when the job ends
    params TEXT NOT NULL,           -- AnalysisParams, JSON
    duration REAL, expected INTEGER,
    frames INTEGER NOT NULL DEFAULT 0,     -- results so far
    captioned INTEGER NOT NULL DEFAULT 0,  -- samples captioned (the others reused a still frame's caption)
    runs INTEGER NOT NULL DEFAULT 0,       -- times it was started (more than one: it continued after a stop)
    started REAL,                   -- when the current or last run started
    frames_at_start INTEGER NOT NULL DEFAULT 0,  -- results when it started (the pace of this run gives the ETA)
    finished REAL,
    error TEXT,
    library INTEGER NOT NULL DEFAULT 0  -- 1: once done, the video joins the library (vidcap/library/shelf.py)
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, created);
CREATE TABLE IF NOT EXISTS job_frames (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, t REAL NOT NULL, caption TEXT NOT NULL, score REAL NOT NULL, alternatives TEXT NOT NULL,
    reused INTEGER NOT NULL, in_domain REAL, cut REAL NOT NULL,
    cut_times TEXT NOT NULL DEFAULT '[]',  -- JSON: where the new shots its cut signal found began
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_samples (    -- the latest captioned samples of an unfinished job
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, reused INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
"""

def _add_missing_columns(db) -> None:
    """A library written by an older vidcap gets the columns added since (CREATE TABLE IF NOT EXISTS keeps the old
    table as it is)."""
    for table, column, declaration in (("job_frames", "cut_times", "TEXT NOT NULL DEFAULT '[]'"),
                                       ("jobs", "library", "INTEGER NOT NULL DEFAULT 0")):
        if column in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            continue
        try:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except sqlite3.OperationalError as exc:  # another connection added it first
            if "duplicate column" not in str(exc):
                raise


STATES = ("queued", "running", "done", "failed", "cancelled")
INDEXING = "indexing"  # not a job: the progress of `vidcap index` through one video (no server runs or lists it)
ENDED = ("done", "failed", "cancelled")
LIST_LIMIT = 100


@dataclasses.dataclass
class Job:
    id: str
    created: float
    state: str
    name: str
    path: str
    owned: bool
    params: AnalysisParams
    duration: float | None
    expected: int | None
    frames: int
    captioned: int
    runs: int
    started: float | None
    frames_at_start: int
    finished: float | None
    error: str | None
    add_to_library: bool = False

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the pace of the current run (None until it has given a result)."""
        if self.state == "done":
            return 0.0
        done_now = self.frames - self.frames_at_start
        if self.state != "running" or not self.expected or done_now <= 0 or not self.started:
            return None
        return max(0.0, (self.expected - self.frames) * (time.time() - self.started) / done_now)


_COLUMNS = ("id, created, state, name, path, owned, params, duration, expected, frames, captioned, runs, started, "
            "frames_at_start, finished, error, library")


def _job(row: tuple) -> Job:
    values = list(row)
    values[5] = bool(values[5])
    values[6] = AnalysisParams(**json.loads(values[6]))
    values[16] = bool(values[16])
    return Job(*values)


class JobStore:
    """The jobs of one library database. Each thread gets its own SQLite connection (SQLite's rule)."""

    def __init__(self, path: str | Path | None = None, wait: float = LOCK_WAIT_SECONDS):
        self.path, self.wait = Path(path) if path else default_library(), wait
        self.files = self.path.parent / "jobs"  # uploads kept for their jobs
        self._local = threading.local()
        self._db()  # create the tables now: a bad path fails at startup, not at the first request

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = open_database(self.path, SCHEMA, self.wait)
            _add_missing_columns(db)
        return db

    def close(self) -> None:  # this thread's connection
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _sql(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Run one statement (its own transaction) -> its rows. A database locked past the wait, or unwritable, is
        the server's trouble, not the caller's: UnavailableError, which says so."""
        try:
            return self._db().execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            raise _unavailable(self.path, exc) from None

    # -- jobs --

    def create(self, name: str, path: Path, owned: bool, params: AnalysisParams, job_id: str | None = None,
               add_to_library: bool = False) -> Job:
        job_id = job_id or new_job_id()
        stored = dataclasses.asdict(params)
        self._sql("INSERT INTO jobs (id, created, state, name, path, owned, params, library) VALUES "
                  "(?, ?, 'queued', ?, ?, ?, ?, ?)",
                  (job_id, time.time(), name, str(path), int(owned), json.dumps(stored), int(add_to_library)))
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        rows = self._sql(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise NotFoundError(f"no job {job_id!r}")
        return _job(rows[0])

    def list(self, state: str | None = None, limit: int = LIST_LIMIT) -> list[Job]:
        """Newest first."""
        if state is not None and state not in STATES:
            raise InputError(f"unknown job state {state!r}; one of {', '.join(STATES)}")
        where, args = ("WHERE state = ?", (state,)) if state else ("WHERE state != ?", (INDEXING,))
        rows = self._sql(f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created DESC, id LIMIT ?", (*args, limit))
        return [_job(r) for r in rows]

    def count_waiting(self) -> int:
        """Jobs not yet ended (queued or running)."""
        return self._sql("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")[0][0]

    def upload_bytes(self) -> int:
        """The disk the uploads kept for jobs hold now."""
        if not self.files.is_dir():
            return 0
        return sum(f.stat().st_size for f in self.files.rglob("*") if f.is_file())

    def next_queued(self) -> Job | None:
        """Take the oldest queued job: it is running from now on (one taker, whatever the threads)."""
        row = self._sql("UPDATE jobs SET state = 'running', started = ?, runs = runs + 1, frames_at_start = frames "
                        "WHERE id = (SELECT id FROM jobs WHERE state = 'queued' ORDER BY created, id LIMIT 1) "
                        "RETURNING id", (time.time(),))
        return self.get(row[0][0]) if row else None

    def requeue(self, job_id: str | None = None) -> list[str]:
        """Running jobs (one, or all that a stopped or crashed server left running): queued again, to continue
        where they stood."""
        where, args = ("AND id = ?", (job_id,)) if job_id else ("", ())
        rows = self._sql(f"UPDATE jobs SET state = 'queued' WHERE state = 'running' {where} RETURNING id", args)
        return [r[0] for r in rows]

    def started(self, job_id: str, duration: float, expected: int) -> None:
        self._sql("UPDATE jobs SET duration = ?, expected = ? WHERE id = ?", (duration, expected, job_id))

    def end(self, job_id: str, state: str, error: str | None = None) -> Job:
        """done, failed or cancelled: its samples are no longer needed, nor its copy of an upload."""
        self._sql("UPDATE jobs SET state = ?, error = ?, finished = ? WHERE id = ? AND state NOT IN ('done', "
                  "'failed', 'cancelled')", (state, error, time.time(), job_id))
        self._sql("DELETE FROM job_samples WHERE job_id = ?", (job_id,))
        job = self.get(job_id)
        if job.owned:
            Path(job.path).unlink(missing_ok=True)
            try:
                Path(job.path).parent.rmdir()
            except OSError:
                pass
        return job

    def cancel_if_queued(self, job_id: str) -> bool:
        row = self._sql("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ? AND state = 'queued' "
                        "RETURNING id", (time.time(), job_id))
        if row:
            self.end(job_id, "cancelled")
        return bool(row)

    def index_progress(self, path: Path, params: AnalysisParams, keep: bool) -> Job:
        """The record of `vidcap index`'s progress through a video: the one a stopped run left (keep: its video and
        settings are unchanged since), else a new one."""
        stored = json.dumps(dataclasses.asdict(params))
        rows = self._sql(f"SELECT {_COLUMNS} FROM jobs WHERE state = ? AND path = ? ORDER BY created DESC",
                         (INDEXING, str(path)))
        for row in rows:
            job = _job(row)
            if keep and json.dumps(dataclasses.asdict(job.params)) == stored:
                self._sql("UPDATE jobs SET runs = runs + 1 WHERE id = ?", (job.id,))
                return self.get(job.id)
            self.delete(job.id)
        job = self.create(path.name, path, False, params)
        self._sql("UPDATE jobs SET state = ?, runs = 1, started = ? WHERE id = ?", (INDEXING, time.time(), job.id))
        return self.get(job.id)

    def delete(self, job_id: str) -> None:
        """A record and its results (an index run's progress, once its video is in the library)."""
        self._sql("DELETE FROM jobs WHERE id = ?", (job_id,))

    # -- results --

    def write(self, job_id: str, samples: list[Sample], frames: list[FrameResult], window: int,
              captioned: int) -> None:
        """Keep captioned samples and results in one transaction (a result never outlives the samples it depends
        on), count `captioned` more samples captioned; drop the samples a resume no longer needs
        (vidcap/video/resume.py)."""
        db = self._db()
        with _transaction(db, self):
            for sample in samples:
                db.execute("INSERT OR REPLACE INTO job_samples VALUES (?, ?, ?, ?)",
                           (job_id, sample.index, int(sample.reused), sample.to_bytes()))
            # A result written twice (a write interrupted after its commit, then repeated) is kept once and
            # counted once.
            db.executemany("INSERT OR IGNORE INTO job_frames (job_id, idx, t, caption, score, alternatives, reused, "
                           "in_domain, cut, cut_times) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(job_id, f.index, f.t, f.caption, f.score, json.dumps(f.alternatives), int(f.reused),
                             f.in_domain, f.cut, json.dumps(f.cut_times)) for f in frames])
            db.execute("UPDATE jobs SET captioned = captioned + ?, frames = (SELECT count(*) FROM job_frames WHERE "
                       "job_id = ?) WHERE id = ?", (captioned, job_id, job_id))
            db.execute("DELETE FROM job_samples WHERE job_id = ? AND idx < (SELECT frames FROM jobs WHERE id = ?) - ? "
                       "AND idx < (SELECT coalesce(max(idx), -1) FROM job_samples WHERE job_id = ? AND reused = 0)",
                       (job_id, job_id, window, job_id))

    def frames(self, job_id: str, after: int = -1) -> list[FrameResult]:
        rows = self._sql("SELECT idx, t, caption, score, alternatives, reused, in_domain, cut, cut_times FROM "
                         "job_frames WHERE job_id = ? AND idx > ? ORDER BY idx", (job_id, after))
        return [FrameResult(index=i, t=t, caption=c, score=s, words=c.split(), alternatives=json.loads(a),
                            reused=bool(r), in_domain=d, cut=cut, cut_times=json.loads(times))
                for i, t, c, s, a, r, d, cut, times in rows]

    def resume(self, job: Job) -> Resume | None:
        rows = self._sql("SELECT data FROM job_samples WHERE job_id = ? ORDER BY idx", (job.id,))
        if not rows:
            return None
        samples = [Sample.from_bytes(r[0]) for r in rows]
        return Resume.from_samples(samples, scored=job.frames, window=job.params.window)


class JobWriter:
    """A job's samples and results as they come, written together every FLUSH_SECONDS (and by `flush`): one
    transaction a frame cost more than the analysis itself at hundreds of frames a second. A crash loses at most
    what came since the last write, and the next run does that part again."""

    FLUSH_SECONDS = 0.25

    def __init__(self, store: JobStore, job_id: str, window: int, frames_done: int):
        self.store, self.job_id, self.window = store, job_id, window
        self.frames_done = frames_done  # results written so far
        self._samples: list[Sample] = []
        self._frames: list[FrameResult] = []
        self._written = time.monotonic()

    def sample(self, sample: Sample) -> None:
        self._samples.append(sample)

    def frame(self, frame: FrameResult) -> bool:
        """-> True when this frame was written (with everything before it)."""
        self._frames.append(frame)
        if time.monotonic() - self._written >= self.FLUSH_SECONDS:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Write what came since the last write. The buffers are taken before the write and given back when it
        fails (its transaction was rolled back), so a flush interrupted by Ctrl-C and called again writes nothing
        twice."""
        if self._samples or self._frames:
            samples, frames = self._samples, self._frames
            self._samples, self._frames = [], []
            try:
                self.store.write(self.job_id, self._needed(samples, self.frames_done + len(frames)), frames,
                                 self.window, captioned=sum(not s.reused for s in samples))
            except BaseException:
                self._samples, self._frames = samples + self._samples, frames + self._frames
                raise
            self.frames_done += len(frames)
        self._written = time.monotonic()

    def _needed(self, samples: list[Sample], frames_done: int) -> list[Sample]:
        """The samples a resume could still need once these results are written (most of them are not: writing
        them only to delete them was most of a job's cost)."""
        first = first_replayed(frames_done, self.window)
        captioned = next((s for s in reversed(samples) if not s.reused), None)
        return [s for s in samples if s.index >= first or s is captioned]


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def _unavailable(path: Path, exc: sqlite3.OperationalError) -> UnavailableError:
    return UnavailableError(f"the job database {path.name} is locked by another process or unwritable ({exc}); "
                            f"try again")


class _transaction:
    def __init__(self, db: sqlite3.Connection, store: JobStore):
        self.db, self.store = db, store

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _unavailable(self.store.path, exc) from None

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            self.db.execute("COMMIT" if exc is None else "ROLLBACK")
        except sqlite3.OperationalError as failed:
            raise _unavailable(self.store.path, failed) from None
        if isinstance(exc, sqlite3.OperationalError):
            raise _unavailable(self.store.path, exc) from None
        return False

