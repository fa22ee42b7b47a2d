"""The library database: one SQLite file (WAL mode) with every indexed video, its sampled frames, moments and
caption stretches, and a full-text index (FTS5) over the stretches. Embedded: no server to install.

One video's results are written in one transaction, so a crash or Ctrl-C leaves each video either whole or
marked as still to do, never half-written.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vidcap.errors import InputError
from vidcap.paths import default_data_dir

LOCK_WAIT_SECONDS = 10.0  # a database busy in another process: wait this long, then say so

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    key TEXT PRIMARY KEY,           -- the checkpoint's sha256
    words TEXT NOT NULL,            -- its vocabulary, JSON
    vectors BLOB NOT NULL           -- its output word embeddings (float32, len(words) x dim), for search
);
CREATE TABLE IF NOT EXISTS videos (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,      -- absolute
    size INTEGER, mtime REAL,       -- as last seen
    fingerprint TEXT,               -- of the content (size and sampled bytes): a touched file is not re-indexed
    settings TEXT,                  -- the analysis parameters, JSON
    model_key TEXT,
    status TEXT NOT NULL,           -- indexing | indexed | failed | missing
    error TEXT,                     -- why it failed
    duration REAL, frames INTEGER, moments INTEGER,
    updated REAL
);
CREATE TABLE IF NOT EXISTS frames (
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, t REAL NOT NULL, caption TEXT NOT NULL, score REAL, reused INTEGER, in_domain REAL,
    cut REAL,
    PRIMARY KEY (video_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS moments (
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    t REAL NOT NULL, score REAL, reason TEXT, caption TEXT, previous_caption TEXT
);
CREATE TABLE IF NOT EXISTS stretches (
    id INTEGER PRIMARY KEY,
    video_id INTEGER NOT NULL REFERENCES videos(id) ON DELETE CASCADE,
    start REAL NOT NULL, end REAL NOT NULL, caption TEXT NOT NULL,
    also TEXT NOT NULL DEFAULT ''  -- the words of the other beams' captions over the stretch, once each
);
CREATE INDEX IF NOT EXISTS stretches_by_video ON stretches(video_id);
CREATE VIRTUAL TABLE IF NOT EXISTS stretch_text USING fts5(caption, also, content='stretches', content_rowid='id',
                                                           tokenize='porter unicode61');  -- "blocks" finds "block"
"""


def default_library() -> Path:
    return default_data_dir() / "library.db"


@dataclass
class VideoRecord:
    id: int
    path: str
    size: int | None
    mtime: float | None
    fingerprint: str | None
    settings: str | None
    model_key: str | None
    status: str
    error: str | None
    duration: float | None
    frames: int | None
    moments: int | None


class Library:
    """The library database. Open with `Library.open(path)`; use as a context manager to close it."""

    def __init__(self, connection: sqlite3.Connection, path: Path, wait: float):
        self.db, self.path, self.wait = connection, path, wait

    @classmethod
    def open(cls, path: str | Path | None = None, create: bool = True, wait: float = LOCK_WAIT_SECONDS) -> "Library":
        """wait: seconds to wait for a lock another process holds before saying so."""
        path = Path(path) if path else default_library()
        if not create and not path.is_file():
            raise InputError(f"no library at {path}: index some videos first (vidcap index PATH...)")
        return cls(open_database(path, SCHEMA, wait), path, wait)

    def __enter__(self) -> "Library":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception); a lock held elsewhere past the wait is an
        InputError that says so."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise _database_error(exc, self.path, self.wait) from None
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException as exc:
            self.db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise _database_error(exc, self.path, self.wait) from None
            raise

    # -- models --

    def add_model(self, key: str, words: list[str], vectors: np.ndarray) -> None:
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO models VALUES (?, ?, ?)",
                            (key, json.dumps(words), np.ascontiguousarray(vectors, dtype=np.float32).tobytes()))

    def model_vectors(self, key: str) -> tuple[list[str], np.ndarray] | None:
        row = self.db.execute("SELECT words, vectors FROM models WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        words = json.loads(row[0])
        return words, np.frombuffer(row[1], dtype=np.float32).reshape(len(words), -1)

    # -- videos --

    def video(self, path: str) -> VideoRecord | None:
        row = self.db.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos WHERE path = ?", (path,)).fetchone()
        return VideoRecord(*row) if row else None

    def videos(self) -> list[VideoRecord]:
        return [VideoRecord(*row) for row in self.db.execute(f"SELECT {_VIDEO_COLUMNS} FROM videos ORDER BY path")]

    def mark(self, path: str, status: str, error: str | None = None, **seen) -> int:
        """Create or update a video's row with its status (and size/mtime/fingerprint/settings/model_key)."""
        fields = {"status": status, "error": error, "updated": time.time(), **seen}
        with self.transaction():
            self.db.execute("INSERT INTO videos (path, status) VALUES (?, ?) ON CONFLICT(path) DO NOTHING",
                            (path, status))
            self.db.execute(f"UPDATE videos SET {', '.join(f'{k} = ?' for k in fields)} WHERE path = ?",
                            (*fields.values(), path))
            return self.db.execute("SELECT id FROM videos WHERE path = ?", (path,)).fetchone()[0]

    def store_analysis(self, video_id: int, frames: list[tuple], moments: list[tuple],
                       stretches: list[tuple[float, float, str, str]], duration: float) -> None:
        """Replace a video's results with these, and mark it indexed: all in one transaction."""
        with self.transaction():
            self._forget_results(video_id)
            self.db.executemany("INSERT INTO frames VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                                [(video_id, *f) for f in frames])
            self.db.executemany("INSERT INTO moments VALUES (?, ?, ?, ?, ?, ?)", [(video_id, *m) for m in moments])
            for start, end, caption, also in stretches:
                rowid = self.db.execute("INSERT INTO stretches (video_id, start, end, caption, also) VALUES "
                                        "(?, ?, ?, ?, ?)", (video_id, start, end, caption, also)).lastrowid
                self.db.execute("INSERT INTO stretch_text (rowid, caption, also) VALUES (?, ?, ?)",
                                (rowid, caption, also))
            self.db.execute("UPDATE videos SET status = 'indexed', error = NULL, duration = ?, frames = ?, "
                            "moments = ?, updated = ? WHERE id = ?",
                            (duration, len(frames), len(moments), time.time(), video_id))

    def _forget_results(self, video_id: int) -> None:
        for rowid, caption, also in self.db.execute("SELECT id, caption, also FROM stretches WHERE video_id = ?",
                                                    (video_id,)).fetchall():
            self.db.execute("INSERT INTO stretch_text (stretch_text, rowid, caption, also) VALUES ('delete', ?, ?, ?)",
                            (rowid, caption, also))
        for table in ("frames", "moments", "stretches"):
            self.db.execute(f"DELETE FROM {table} WHERE video_id = ?", (video_id,))

    def counts(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, COUNT(*) FROM videos GROUP BY status").fetchall())


def open_database(path: Path, schema: str, wait: float = LOCK_WAIT_SECONDS) -> sqlite3.Connection:
    """A connection in WAL mode (readers never wait for the writer) with `schema` created; autocommit unless a
    transaction is begun. A lock held elsewhere past `wait` seconds, or a file that is no database, is an
    InputError that says so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db = sqlite3.connect(path, timeout=wait, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # with WAL: durable across a crash of the program, and fast
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(schema)
    except sqlite3.OperationalError as exc:
        raise _database_error(exc, path, wait) from None
    except sqlite3.DatabaseError as exc:
        raise InputError(f"{path} is not a vidcap library ({exc})") from None
    return db


_VIDEO_COLUMNS = "id, path, size, mtime, fingerprint, settings, model_key, status, error, duration, frames, moments"


def _database_error(exc: sqlite3.OperationalError, path: Path, wait: float) -> InputError:
    if "locked" in str(exc) or "busy" in str(exc):
        return InputError(f"the library {path} is locked by another process (waited {wait:g} s); try again when "
                          f"it is done")
    return InputError(f"cannot use the library {path}: {exc}")
