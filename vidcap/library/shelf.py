"""A server's jobs that add their video to the library ("Add to library" in the web UI, `add_to_library` at the
gRPC and HTTP doors): once such a job is done, its results are written into the library as `vidcap index` writes
them, and an uploaded file is kept in the data folder's `library/` so that hits can be played.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vidcap.library.indexer import fingerprint, library_rows, register_model, settings_of
from vidcap.library.store import Library


class Shelf:
    """Adds done jobs to the library database they live in. checkpoint: the model the server captions with (its key
    and words are what search matches)."""

    def __init__(self, library: Path, checkpoint: Path):
        self.library, self.checkpoint = Path(library), Path(checkpoint)
        self.media = self.library.parent / "library"  # the uploads kept for the library

    def kept(self, job) -> Path:
        """Where an upload of the job is kept for the library."""
        return self.media / job.id / Path(job.path).name

    def add(self, job, analysis) -> Path:
        """Write a done job's analysis into the library -> where its video now lies. An upload (a file the job owns)
        moves into the library's folder first (unless a stopped run moved it already); a media-folder file is
        recorded where it is."""
        path = Path(job.path)
        if job.owned:
            kept = self.kept(job)
            if not kept.exists():
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(path, kept)
            path = kept
        with Library.open(self.library) as library:
            stat = path.stat()
            video_id = library.mark(str(path), "indexing", size=stat.st_size, mtime=stat.st_mtime,
                                    fingerprint=fingerprint(path), settings=settings_of(job.params),
                                    model_key=register_model(library, self.checkpoint))
            library.store_analysis(video_id, *library_rows(analysis))
        return path


def library_counts(path: Path | None) -> tuple[int, int] | None:
    """(videos Search finds, caption stretches they hold) of the library at path; None where there is none."""
    from vidcap.library.store import default_library

    path = Path(path) if path else default_library()
    if not path.is_file():
        return None
    with Library.open(path, create=False) as library:
        videos, stretches = library.db.execute(
            "SELECT COUNT(DISTINCT v.id), COUNT(s.id) FROM videos v LEFT JOIN stretches s ON s.video_id = v.id "
            "WHERE v.status = 'indexed'").fetchone()
    return videos, stretches
