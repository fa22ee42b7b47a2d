"""`vidcap index` and `vidcap search`: the library."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vidcap.fileio import require_file
from vidcap.limits import Limits
from vidcap.cli.common import Renamed, add_encoder


# ---- library: index and search ----------------------------------------------------------------------------


def _add_index(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="analyse videos into the library (to search them)",
                       description="Analyse every video named (files, folders searched recursively, glob patterns) "
                                   "into the library database. Videos already indexed with the same content, "
                                   "parameters and model are skipped, so the same command continues after Ctrl-C "
                                   "or a crash; a video that cannot be read is recorded as failed and the rest go "
                                   "on; videos gone from disk are marked missing.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="video files, folders or glob patterns")
    p.add_argument("--library", "--index", metavar="DB", dest="library", action=Renamed,
                   help="the library database (default: $VIDCAP_DATA/library.db, else ~/.local/share/vidcap/"
                        "library.db; --index, its old name, warns)")
    p.add_argument("--every", type=float, default=1.0, metavar="SECONDS", help="sampling step (default: 1)")
    p.add_argument("--window", type=int, default=5, metavar="N", help="previous frames compared with (default: 5)")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="spread the videos over a Ray cluster (each worker loads the model once); without an "
                        "address, a local cluster on this machine (docs/library.md)")
    p.add_argument("--workers", type=int, metavar="N", help="Ray workers (default: one per CPU of the cluster)")
    p.add_argument("--no-progress", action="store_true")
    add_encoder(p)
    p.set_defaults(run=_run_index)


def _run_index(args: argparse.Namespace) -> int:
    from vidcap.library.indexer import IndexReport, collect_videos

    files = collect_videos(args.paths)  # before torch is imported: a typo is answered at once
    from tqdm import tqdm

    from vidcap.captioner import default_model_path
    from vidcap.errors import InputError
    from vidcap.library.indexer import Indexer
    from vidcap.library.store import Library
    from vidcap.video.pipeline import AnalysisParams

    params = AnalysisParams(args.every, args.window).validate(Limits.for_local_files())
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be at least 1")
    checkpoint = Path(args.model) if args.model else default_model_path()
    require_file(checkpoint, "model")
    report = IndexReport()
    with Library.open(args.library) as library:
        indexer = Indexer(library, None, params, checkpoint)
        indexer.mark_missing(report)
        todo = []
        for path in files:
            earlier = indexer.done_before(path)
            if earlier is None:
                todo.append(path)
            elif earlier.status == "indexed":
                report.skipped.append(str(path))
            else:
                report.failed.append((str(path), f"{earlier.error} (as before: not tried again until the file "
                                                  f"changes)"))
        files_bar = tqdm(total=len(files), initial=len(files) - len(todo), unit="video", disable=args.no_progress,
                         file=sys.stderr, position=0)
        try:
            if args.ray and todo:
                from vidcap.library.distributed import index_on_ray

                index_on_ray(indexer, todo, report, checkpoint, args.encoder, None if args.ray == "local" else args.ray,
                             args.workers, on_done=lambda _: files_bar.update())
            else:
                _index_here(indexer, todo, report, args, files_bar)
        except KeyboardInterrupt:
            print(f"interrupted after {report.summary()}; run the same command again to continue",
                  file=sys.stderr)
            return 130
        finally:
            files_bar.close()
    for path, kept in report.continued:
        print(f"continued: {path} from frame {kept} (where the last run stopped)")
    for path, reason in report.failed:
        print(f"failed: {path}: {reason}")
    for path in report.missing:
        print(f"missing: {path}")
    print(f"{report.summary()}; library {library.path}")
    return 0


def _index_here(indexer, todo: list[Path], report, args: argparse.Namespace, files_bar) -> None:
    from tqdm import tqdm

    from vidcap.analysis.hosts import InProcessHost
    from vidcap.captioner import Captioner

    if not todo:
        return
    indexer.host = InProcessHost(Captioner.load(args.model, device=args.device, encoder=args.encoder))
    frames_bar = tqdm(unit="frame", disable=args.no_progress, file=sys.stderr, position=1, leave=False)
    try:
        for path in todo:
            files_bar.set_postfix_str(path.name[-40:])
            kept = []

            def started(_: float, n: int) -> None:
                frames_bar.reset(total=n)
                frames_bar.update(sum(kept))

            def continued(n: int, path: Path = path) -> None:
                kept.append(n)
                report.continued.append((str(path), n))

            reason = indexer.index(path, on_start=started, on_frame=lambda _: frames_bar.update(),
                                   on_continue=continued)
            if reason:
                report.failed.append((str(path), reason))
            else:
                report.indexed.append(str(path))
            files_bar.update()
    finally:
        frames_bar.close()


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="find where something was seen across the library",
                       description="Ranked caption stretches (video, time span, caption, score) for a text query, "
                                   "by full text and the model's own word similarity (a synonym the model uses "
                                   "finds the same stretch).")
    p.add_argument("query", help="what was seen, e.g. 'red star on grass'")
    p.add_argument("--library", "--index", metavar="DB", dest="library", action=Renamed,
                   help="the library database (default: as vidcap index; --index, its old name, warns)")
    p.add_argument("--top", type=int, default=10, metavar="K", help="hits to show (default: 10)")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.set_defaults(run=_run_search)


def _run_search(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from vidcap.library.search import search
    from vidcap.library.store import Library
    from vidcap.video.subtitles import clock

    with Library.open(args.library, create=False) as library:
        hits = search(library, args.query, args.top)
    if args.json:
        print(json.dumps([asdict(h) for h in hits], indent=1))
        return 0
    for h in hits:
        print(f"{h.score:.2f}  {h.path}  {clock(h.start)}-{clock(h.end)}  {h.caption}")
    if not hits:
        print(f"no hits for {args.query!r}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_index(sub)
    _add_search(sub)
