"""Jobs benchmark: what keeping a job's results and samples as they come costs, side by side with a plain analysis.

    python bench/jobs.py [--every 0.1] [--repeats 3]

The same synthetic video (64 s, 640x360) analysed three ways with the demo model, in one process, medians of
--repeats runs: the pipeline alone (`analyze_frames` in a worker thread, as AnalyzeVideo runs it; the main
thread's time is printed beside, being faster on this machine), a job (JobRunner on the in-process
model host: every FrameResult and every captioned sample written to SQLite as it comes), and a job stopped halfway
and continued by a second runner (the resume replays the kept samples; nothing is captioned twice). Also the job
database's size once a job is done (its samples are dropped then) and while one runs.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)

    from vidcap.captioner import Captioner
    from vidcap.library.job_store import JobStore
    from vidcap.analysis.hosts import InProcessHost
    from vidcap.serving.job_runner import JobRunner
    from vidcap.video.pipeline import AnalysisParams, analyze_frames
    from vidcap.video.synth import random_segments, write_video

    work = Path(tempfile.mkdtemp(prefix="vidcap-bench-jobs-"))
    video = work / "video.mp4"
    write_video(video, random_segments(8, seed=6, min_seconds=8, max_seconds=8), fps=25, size=(640, 360))
    host = InProcessHost(Captioner.load(None))
    params = AnalysisParams(every_n_seconds=args.every)

    def plain(in_thread: bool = True) -> float:
        """The pipeline alone; in a worker thread, as every server door (and the job runner) runs it."""
        counted = []
        work = lambda: counted.append(sum(1 for _ in analyze_frames(video, host, params)))  # noqa: E731
        started = time.perf_counter()
        if in_thread:
            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
        else:
            work()
        assert counted and counted[0] > 0
        return time.perf_counter() - started

    def job(stop_at: int | None = None) -> tuple[float, int, int]:
        store = JobStore(work / f"jobs-{time.monotonic_ns()}.db")
        started = time.perf_counter()
        runner = JobRunner(store, host).start()
        submitted = runner.submit_path(video, params)
        largest = 0
        while not store.get(submitted.id).ended:
            if stop_at is not None and store.get(submitted.id).frames >= stop_at:
                runner.stop()
                runner = JobRunner(store, host).start()
                stop_at = None
            largest = max(largest, _size(store.path))
            time.sleep(0.02)
        runner.stop()
        seconds = time.perf_counter() - started
        done = store.get(submitted.id)
        assert done.state == "done" and done.frames == done.expected, done
        return seconds, largest, _used(store.path)

    plain()  # warm up: the encoder's compiled model, the page cache
    main_s = statistics.median(plain(in_thread=False) for _ in range(args.repeats))
    plain_s = statistics.median(plain() for _ in range(args.repeats))
    jobs = [job() for _ in range(args.repeats)]
    job_s = statistics.median(j[0] for j in jobs)
    frames = sum(1 for _ in analyze_frames(video, host, params))
    resumed_s = statistics.median(job(stop_at=frames // 2)[0] for _ in range(args.repeats))
    print(f"{frames} frames of a 64 s 640x360 video, every {args.every:g} s, demo model, medians of {args.repeats}")
    print(f"  plain analysis       {plain_s:6.2f} s  ({frames / plain_s:.0f} frames/s; in the main thread "
          f"{main_s:.2f} s)")
    print(f"  as a job             {job_s:6.2f} s  ({job_s / plain_s:.2f}x the plain analysis)")
    print(f"  stopped and resumed  {resumed_s:6.2f} s  ({resumed_s / plain_s:.2f}x)")
    print(f"  job database: {jobs[0][1] / 1e6:.1f} MB of files at most while it ran; {jobs[0][2] / 1e3:.0f} kB in use "
          f"when done ({jobs[0][2] / frames:.0f} bytes a frame: the samples go when the job ends)")
    return 0


def _used(db: Path) -> int:
    """Bytes of the database's pages in use (freed pages stay in the file until SQLite reuses them)."""
    with sqlite3.connect(db) as connection:
        pages, free, size = (connection.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
    return (pages - free) * size


def _size(db: Path) -> int:
    return sum(f.stat().st_size for f in db.parent.glob(db.name + "*") if f.is_file())


if __name__ == "__main__":
    sys.exit(main())
