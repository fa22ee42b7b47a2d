"""`vidcap index`: analyse every video named (files, folders, globs) into the library.

A video already indexed with the same content, parameters and model is skipped; one changed since is indexed
again; one deleted since is marked missing; one that cannot be decoded is recorded as failed with its reason and
the rest go on. Each video's results go into the library in one transaction when it is done; while it runs, its
results so far are kept beside (as a job's are, vidcap/library/job_store.py), so after Ctrl-C or a crash the same
command continues inside the video it stopped in, without captioning a sample twice.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from vidcap.errors import InputError
from vidcap.library.store import Library, VideoRecord
from vidcap.fileio import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1 << 20  # read at the start, the middle and the end of a file


@dataclass
class IndexReport:
    indexed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already indexed, unchanged
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    missing: list[str] = field(default_factory=list)  # in the library, gone from disk
    continued: list[tuple[str, int]] = field(default_factory=list)  # (path, results a stopped run had kept)

    def summary(self) -> str:
        return (f"{len(self.indexed)} indexed, {len(self.skipped)} already indexed, {len(self.failed)} failed, "
                f"{len(self.missing)} missing")


def collect_videos(paths: list[str]) -> list[Path]:
    """Files as named, folders searched recursively for video files, glob patterns expanded; sorted, unique."""
    found: dict[Path, None] = {}
    for name in paths:
        path = Path(name).expanduser()
        if path.is_dir():
            matches = [p for p in sorted(path.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]
        elif path.is_file():
            matches = [path]
        elif glob.has_magic(name):
            matches = [Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).is_file()]
        else:
            raise InputError(f"no such file or folder: {name}")
        found.update((p.resolve(), None) for p in matches)
    return list(found)


def fingerprint(path: Path) -> str:
    """The size and three sampled MiB: a changed file (almost surely) changes it, a touched one does not."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with path.open("rb") as f:
        for offset in sorted({0, max(0, size // 2 - FINGERPRINT_BYTES // 2), max(0, size - FINGERPRINT_BYTES)}):
            f.seek(offset)
            digest.update(f.read(FINGERPRINT_BYTES))
    return digest.hexdigest()


def model_key(checkpoint: Path) -> str:
    digest = hashlib.sha256()
    with checkpoint.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Indexer:
    """Analyses videos into a library through one model host (vidcap/analysis/hosts.py)."""

    def __init__(self, library: Library, host, params, checkpoint: Path):
        """host: a ModelHost (a Captioner is put in an in-process one); None where the videos are analysed
        elsewhere (on Ray workers)."""
        self.library, self.host, self.params = library, host, params
        from vidcap.library.job_store import JobStore  # not at the top: `vidcap index` checks its paths before torch loads

        self.progress = JobStore(library.path)  # the results of the video in progress, as they come
        self.settings = settings_of(params)
        self.model_key = register_model(library, checkpoint)

    def mark_missing(self, report: IndexReport) -> None:
        for record in self.library.videos():
            if record.status != "missing" and not Path(record.path).exists():
                self.library.mark(record.path, "missing")
                report.missing.append(record.path)

    def done_before(self, path: Path) -> VideoRecord | None:
        """The video's record if it was done already with this content, these parameters and this model: indexed,
        or failed (a file that could not be read is not tried again until it changes); else None."""
        record = self.library.video(str(path))
        if record is None or record.status not in ("indexed", "failed") or (record.settings, record.model_key) != (
                self.settings, self.model_key):
            return None
        stat = path.stat()
        if (record.size, record.mtime) == (stat.st_size, stat.st_mtime):
            return record
        if record.fingerprint == fingerprint(path):  # touched or copied back, same content
            self.library.mark(str(path), record.status, error=record.error, size=stat.st_size, mtime=stat.st_mtime)
            return record
        return None

    def index(self, path: Path, on_start: Callable[[float, int], None] | None = None,
              on_frame: Callable[[object], None] | None = None,
              on_continue: Callable[[int], None] | None = None) -> str | None:
        """Analyse one video into the library -> None, or why it failed. Its results are kept as they come, so
        after Ctrl-C or a crash the next run continues inside the video where this one stopped (when the video,
        the parameters and the model are the same), without captioning a sample twice; on_continue(n) says so,
        before the first new result, with the number of results kept."""
        before = self.library.video(str(path))
        video_id = self.start(path)
        now = self.library.video(str(path))
        same = before is not None and before.status == "indexing" and (
            before.fingerprint, before.settings, before.model_key) == (now.fingerprint, now.settings, now.model_key)
        progress = self.progress.index_progress(path, self.params, keep=same)
        done = self.progress.frames(progress.id)
        if done and on_continue is not None:
            on_continue(len(done))

        from vidcap.library.job_store import JobWriter

        writer = JobWriter(self.progress, progress.id, self.params.window, progress.frames)

        def keep(frame) -> None:
            writer.frame(frame)
            if on_frame is not None:
                on_frame(frame)

        try:
            rows = analyse_video(path, self.host, self.params, on_start, keep,
                                 resume=self.progress.resume(progress), on_sample=writer.sample, done_frames=done)
        except Exception as exc:  # a corrupt or odd file must not stop the other videos
            self.progress.delete(progress.id)
            return self.fail(path, exc)
        except KeyboardInterrupt:
            writer.flush()  # Ctrl-C: keep everything so far, for the next run
            raise
        self.library.store_analysis(video_id, *rows)
        self.progress.delete(progress.id)
        return None

    def start(self, path: Path) -> int:
        """Mark a video as being indexed (what a crash leaves to do again) -> its id."""
        stat = path.stat()
        return self.library.mark(str(path), "indexing", size=stat.st_size, mtime=stat.st_mtime,
                                 fingerprint=fingerprint(path), settings=self.settings, model_key=self.model_key)

    def fail(self, path: Path, exc: BaseException | str) -> str:
        reason = exc if isinstance(exc, str) else describe_failure(exc)
        self.library.mark(str(path), "failed", error=reason)
        log.info("failed: %s: %s", path, reason)
        return reason


def register_model(library: Library, checkpoint: Path) -> str:
    """The checkpoint's key in the library, with the words search matches (from the model itself) -> the key."""
    from vidcap.library.search import output_word_vectors
    from vidcap.model import load_checkpoint

    key = model_key(checkpoint)
    if library.model_vectors(key) is None:
        state = load_checkpoint(checkpoint)
        library.add_model(key, list(state["vocab"]), output_word_vectors(state["model"]["decoder.classifier.weight"]))
    return key


def settings_of(params) -> str:
    """The analysis parameters as the library records them (what decides whether a video is indexed again)."""
    return json.dumps({k: v for k, v in sorted(asdict(params).items()) if k != "frame_source"})


def describe_failure(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"


def analyse_video(path: Path, host, params, on_start=None, on_frame=None, resume=None, on_sample=None,
                  done_frames=None) -> tuple[list, list, list, float]:
    """A video's rows for the library: (frames, moments, caption stretches, duration), through a model host
    (vidcap/analysis/hosts.py; a Captioner is put in an in-process one). Plain tuples, so they travel from a Ray
    worker as they are. resume, on_sample, done_frames: continue a stopped run (vidcap.analysis.session.analyze)."""
    from vidcap.analysis.session import analyze

    analysis = analyze(host, path, params, on_frame=on_frame, on_start=on_start, resume=resume,
                       on_sample=on_sample, done_frames=done_frames)
    return library_rows(analysis)


def library_rows(analysis) -> tuple[list, list, list, float]:
    """An Analysis as the library stores it: (frames, moments, caption stretches, duration)."""
    from vidcap.video.subtitles import caption_stretches

    frames = [(f.index, f.t, f.caption, f.score, int(f.reused), f.in_domain, f.cut) for f in analysis.frames]
    moments = [(m.t, m.score, m.reason, m.caption, m.previous_caption) for m in analysis.moments]
    stretches = [(c.start, c.end, c.text, _other_words(analysis.frames, c)) for c in caption_stretches(analysis)]
    return frames, moments, stretches, analysis.duration


def _other_words(frames, cue) -> str:
    """The words the beam's other captions used over a stretch and its best caption did not: another way the
    model would have said it ("on the sea" where the caption says "floating on water"), for search."""
    said = set(cue.text.split())
    words = dict.fromkeys(w for f in frames if cue.start <= f.t < cue.end for a in f.alternatives for w in a.split())
    return " ".join(w for w in words if w not in said)
