"""Library benchmark: how well does `vidcap search` find what was seen, and how fast does `vidcap index` go?

    python bench/library.py                   # 30 videos of 40 s (cached in bench/.cache/library)
    python bench/library.py --videos 60 --json bench/library-results.json

Renders a library of synthetic-scene videos with truth files, indexes them with the demo model (one sample per
second), then asks queries written from the truth files: an object's colour and shape ("red circle"), the same
with a synonym the captions also use ("red disc", "blue block"), and colour, shape and background ("red circle
on grass"). A scene is relevant to a query when it shows such an object (on that background); a hit is right
when the scene at its middle is relevant. Prints, per kind of query, precision@5 (right hits among the first 5)
and recall (relevant scenes with a hit among the first 50), and the indexing rate in videos per hour: in this
process, and (with Ray installed) on a local Ray cluster with 1 and 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vidcap.captioner import Captioner, default_model_path  # noqa: E402
from vidcap.library.indexer import Indexer  # noqa: E402
from vidcap.library.search import search  # noqa: E402
from vidcap.library.store import Library  # noqa: E402
from vidcap.synthetic import SHAPES  # noqa: E402
from vidcap.video.pipeline import AnalysisParams  # noqa: E402
from vidcap.video.synth import random_segments, truth_path, write_video  # noqa: E402

SYNONYMS = {shape: words[1] for shape, (words, _) in SHAPES.items() if len(words) > 1}  # circle -> disc, ...
DEPTH = 50  # hits read per query for recall


def make_library(folder: Path, videos: int, seconds: float, size: tuple[int, int], seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(videos):
        path = folder / f"library-{seed + n}-{size[0]}x{size[1]}.mp4"
        if not path.exists() or not truth_path(path).exists():
            scenes = max(2, round(seconds / 6.5))
            write_video(path, random_segments(scenes, seed=seed + n, min_seconds=4, max_seconds=9), fps=10,
                        size=size, seed=n)
        paths.append(path)
    return paths


def scenes_of(path: Path) -> list[dict]:
    """[{"start", "end", "background", "objects": [(colour, shape)]}] from a truth file."""
    truth = json.loads(truth_path(path).read_text())
    scenes = truth["scenes"]
    return [{"start": s["t"], "end": scenes[i + 1]["t"] if i + 1 < len(scenes) else truth["duration"],
             "background": s["background"], "objects": [(o["colour"], o["shape"]) for o in s["objects"]]}
            for i, s in enumerate(scenes)]


def make_queries(library: dict[str, list[dict]], per_kind: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    seen = sorted({(s["background"], colour, shape) for scenes in library.values() for s in scenes
                   for colour, shape in s["objects"]})
    queries, picked = [], rng.permutation(len(seen))
    with_synonym = [i for i in picked if seen[i][2] in SYNONYMS]
    for kind, indices in (("colour shape", picked), ("with a synonym", with_synonym), ("+ background", picked)):
        texts: dict[str, dict] = {}
        for i in indices:
            background, colour, shape = seen[i]
            text = {"colour shape": f"{colour} {shape}", "with a synonym": f"{colour} {SYNONYMS.get(shape)}",
                    "+ background": f"{colour} {shape} on {background}"}[kind]
            texts.setdefault(text, {"kind": kind, "text": text, "colour": colour, "shape": shape,
                                    "background": background if kind == "+ background" else None})
            if len(texts) == per_kind:
                break
        queries += texts.values()
    return queries


def relevant(scene: dict, query: dict) -> bool:
    return (query["colour"], query["shape"]) in scene["objects"] and query["background"] in (None, scene["background"])


def evaluate(db: Library, library: dict[str, list[dict]], queries: list[dict]) -> dict[str, dict[str, float]]:
    per_kind: dict[str, dict[str, list[float]]] = {}
    for query in queries:
        hits = search(db, query["text"], top=DEPTH)
        right = []
        found: set[tuple[str, int]] = set()
        for hit in hits:
            middle = (hit.start + hit.end) / 2
            scene = next((i for i, s in enumerate(library[hit.path]) if s["start"] <= middle < s["end"]), None)
            ok = scene is not None and relevant(library[hit.path][scene], query)
            right.append(ok)
            if ok:
                found.add((hit.path, scene))
        wanted = {(path, i) for path, scenes in library.items() for i, s in enumerate(scenes) if relevant(s, query)}
        stats = per_kind.setdefault(query["kind"], {"p@5": [], "recall": [], "hits": []})
        stats["p@5"].append(sum(right[:5]) / min(5, max(1, len(wanted))))
        stats["recall"].append(len(found & wanted) / max(1, len(wanted)))
        stats["hits"].append(len(hits))
    return {kind: {name: statistics.mean(values) for name, values in stats.items()} | {"queries": len(stats["p@5"])}
            for kind, stats in per_kind.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--videos", type=int, default=30)
    p.add_argument("--seconds", type=float, default=40.0, help="length of each video (default: 40)")
    p.add_argument("--size", default="640x360")
    p.add_argument("--queries", type=int, default=20, help="per kind of query (default: 20)")
    p.add_argument("--seed", type=int, default=300)
    p.add_argument("--cache", default=str(Path(__file__).parent / ".cache" / "library"))
    p.add_argument("--json", help="write the figures as JSON")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="Ray workers to measure (default: 1 2)")
    p.add_argument("--no-ray", action="store_true", help="leave out the Ray rows")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("VIDCAP_THREADS", "2")))
    size = tuple(int(v) for v in args.size.split("x"))
    t0 = time.perf_counter()
    paths = make_library(Path(args.cache), args.videos, args.seconds, size, args.seed)
    print(f"  {len(paths)} videos ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    db_path = Path(args.cache) / f"bench-{os.getpid()}.db"
    captioner = Captioner.load(default_model_path())
    with Library.open(db_path) as db:
        indexer = Indexer(db, captioner, AnalysisParams(every_n_seconds=1.0), default_model_path())
        t0 = time.perf_counter()
        for path in paths:
            reason = indexer.index(path.resolve())
            if reason:
                raise SystemExit(f"{path}: {reason}")
        index_seconds = time.perf_counter() - t0
        library = {str(path.resolve()): scenes_of(path) for path in paths}
        queries = make_queries(library, args.queries, args.seed)
        t0 = time.perf_counter()
        results = evaluate(db, library, queries)
        query_ms = 1000 * (time.perf_counter() - t0) / len(queries)
    _remove(db_path)
    ray_rates = {} if args.no_ray else ray_rates_of(paths, Path(args.cache), args.workers)
    video_hours = len(paths) * args.seconds / 3600
    print(f"\nLibrary benchmark: {len(paths)} videos of {args.seconds:g} s ({args.size}), one sample per second, "
          f"demo model; {len(queries)} queries")
    print("| query | queries | precision@5 | recall (first 50 hits) | hits per query |")
    print("|---|---:|---:|---:|---:|")
    for kind, r in results.items():
        print(f"| {kind} (e.g. \"{next(q['text'] for q in queries if q['kind'] == kind)}\") | {r['queries']} | "
              f"{r['p@5']:.2f} | {r['recall']:.2f} | {r['hits']:.1f} |")
    print(f"\nindexing: {index_seconds:.1f} s for {len(paths)} videos = {3600 * len(paths) / index_seconds:.0f} "
          f"videos/hour ({video_hours * 3600 / index_seconds:.1f} s of video per second); search: "
          f"{query_ms:.1f} ms per query")
    for workers, (wall, steady) in ray_rates.items():
        print(f"indexing on a local Ray cluster, {workers} worker(s): {3600 * len(paths) / wall:.0f} videos/hour "
              f"whole ({wall:.1f} s, cluster start included), {3600 * steady:.0f} videos/hour between the first "
              f"and the last video done")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "queries": queries, "index_seconds": index_seconds,
                                               "videos": len(paths), "query_ms": query_ms, "ray": ray_rates},
                                              indent=1))


def ray_rates_of(paths: list[Path], folder: Path, workers: list[int]) -> dict[int, tuple[float, float]]:
    """workers -> (wall seconds, videos per second between the first and the last one done)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        print("note: Ray is not installed (pip install 'vidcap[ray]'); its rows are missing", file=sys.stderr)
        return {}
    from vidcap.library.distributed import index_on_ray
    from vidcap.library.indexer import IndexReport

    rates = {}
    for count in workers:
        db_path = folder / f"bench-ray-{os.getpid()}.db"
        with Library.open(db_path) as db:
            indexer = Indexer(db, None, AnalysisParams(every_n_seconds=1.0), default_model_path())
            done: list[float] = []
            t0 = time.perf_counter()
            index_on_ray(indexer, [p.resolve() for p in paths], IndexReport(), default_model_path(), "auto", None,
                         count, on_done=lambda _: done.append(time.perf_counter()))
            wall = time.perf_counter() - t0
        _remove(db_path)
        rates[count] = (wall, (len(done) - 1) / max(1e-9, done[-1] - done[0]))
    return rates


def _remove(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
