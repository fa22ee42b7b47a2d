"""The `vidcap` command. Each subcommand only maps flags to a library call."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vidcap.errors import VidcapError, status_of
from vidcap.fileio import require_file, write_atomic
from vidcap.limits import Limits, add_limit_arguments, limits_from_args

log = logging.getLogger("vidcap")


class Renamed(argparse.Action):
    """An option that had another name (its last spelling in add_argument): the old one still works and warns once,
    naming the new one; it goes in the next release."""

    warned: set[str] = set()

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        old = self.option_strings[-1]
        if option_string == old and old not in Renamed.warned:
            Renamed.warned.add(old)
            print(f"vidcap: {old} is now {self.option_strings[0]}; {old} goes in the next release", file=sys.stderr)
        setattr(namespace, self.dest, values)


ENCODER_NAMES = ("auto", "torch", "torch-bf16", "openvino", "openvino-f32", "openvino-int8", "onnxruntime",
                 "tensorrt")


def _add_encoder(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", choices=ENCODER_NAMES, default="auto", metavar="RUNTIME",
                   help=f"where the CNN runs: {', '.join(ENCODER_NAMES)} (default: auto, the fastest usable one; "
                        "see docs/performance.md)")


# ---- caption ----------------------------------------------------------------------------------------------


def _add_caption(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("caption", help="caption images", description="Caption images: one caption per line.")
    p.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--beam", type=int, default=3, help="beam size; 1 = greedy (default: 3)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda (default: auto)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels than this")
    p.add_argument("--json", action="store_true", help="print JSON: words, token ids, log-probability")
    p.add_argument("--embeddings", action="store_true", help="with --json: each word's embedding")
    p.add_argument("--attention", action="store_true", help="with --json: each word's SxS attention map")
    p.add_argument("--feature", action="store_true", help="with --json: the pooled CNN feature")
    _add_encoder(p)
    p.set_defaults(run=_run_caption)


def _run_caption(args: argparse.Namespace) -> int:
    if args.beam < 1:
        raise VidcapError("--beam must be at least 1")
    for image in args.images:  # before the model is loaded: a typo is answered at once
        require_file(image, "image")
    from vidcap.captioner import Captioner
    from vidcap.domain import OUT_OF_DOMAIN
    from vidcap.images import DEFAULT_MAX_PIXELS

    captioner = Captioner.load(args.model, device=args.device, encoder=args.encoder, beam_size=args.beam,
                               max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    captions = captioner.caption_files(args.images)
    typicality = captioner.typicality(captions)
    unlike = [path for path, t in zip(args.images, typicality) if t is not None and t < OUT_OF_DOMAIN]
    if unlike:
        names = ", ".join(Path(p).name for p in unlike[:3]) + (", ..." if len(unlike) > 3 else "")
        print(f"warning: {len(unlike)} of {len(captions)} images ({names}) are unlike anything the model was trained "
              f"on ({captioner.domain.trained_on}): their captions are not meaningful; use a model trained for "
              f"such images (docs/training.md)", file=sys.stderr)
    if not args.json:
        print("\n".join(c.text for c in captions))
        return 0
    records = []
    for path, c, t in zip(args.images, captions, typicality):
        record: dict[str, Any] = {"image": path, "caption": c.text, "words": c.words, "token_ids": c.token_ids,
                                  "log_prob": c.log_prob, "in_domain": t}
        if args.embeddings:
            record["embeddings"] = c.embeddings.tolist()
        if args.attention:
            record["attention"] = c.attention.tolist()
        if args.feature:
            record["feature"] = c.feature.tolist()
        records.append(record)
    print(json.dumps(records, indent=1))
    return 0


# ---- train / eval -----------------------------------------------------------------------------------------


def _add_train(sub: argparse._SubParsersAction) -> None:
    from vidcap.training.args import get_args_parser

    sub.add_parser("train", parents=[get_args_parser(add_help=False)], help="train a captioning model",
                   description=get_args_parser().description).set_defaults(run=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from vidcap.training.train import main

    logging.getLogger("vidcap").setLevel(logging.INFO)  # epoch lines (validation BLEU) are what a trainer watches
    summary = main(args)
    print(f"best validation BLEU-4 {summary['best_val_bleu4']:.2f} after {summary['minutes']:.1f} min: "
          f"{summary['best_checkpoint']}")
    return 0


def _add_eval(sub: argparse._SubParsersAction) -> None:
    from vidcap.config import DATASET_NAMES

    p = sub.add_parser("eval", help="score a model on a dataset split",
                       description="BLEU-1..4 (nltk corpus BLEU, 0-100) against all references; CIDEr, ROUGE-L "
                                   "and METEOR through pycocoevalcap when installed (METEOR needs Java).")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="synthetic")
    p.add_argument("--data", help="dataset folder (Karpathy split JSON + images)")
    p.add_argument("--split", choices=("val", "test"), default="test")
    p.add_argument("--size", type=int, help="synthetic: number of images (default: 1000 for test)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: dataset seed (the demo model used 0)")
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="OUT", help="also write the scores to this JSON file")
    _add_encoder(p)
    p.set_defaults(run=_run_eval)


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from vidcap.config import DATASET_NAMES

    p = sub.add_parser("calibrate", help="add a profile of its training images to a checkpoint",
                       description="Write into CHECKPOINT what tells the model's own kind of images from others "
                                   "(vidcap/domain.py: a Gaussian of the encoder's pooled feature over training "
                                   "images, calibrated on held-out ones), so every analysed frame gets an "
                                   "in-domain score. `vidcap train` does this itself; use this for an older "
                                   "checkpoint. The weights are not changed.")
    p.add_argument("checkpoint")
    p.add_argument("frames", nargs="*", metavar="IMAGES",
                   help="your own images or folders of them (at least 20): the profile then says what is unlike "
                        "them, instead of a dataset's training images")
    p.add_argument("--dataset", choices=DATASET_NAMES, default="synthetic", help="what the model was trained on")
    p.add_argument("--data", help="dataset folder (Karpathy split JSON + images)")
    p.add_argument("--images", type=int, default=1000, help="training images to fit on (default: 1000)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: dataset seed (the demo model used 0)")
    p.add_argument("--device", default="auto")
    p.set_defaults(run=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    require_file(args.checkpoint, "checkpoint")
    from vidcap.captioner import resolve_device
    from vidcap.config import DATASET_DOMAINS
    from vidcap.data import open_dataset
    from vidcap.domain import profile_from_datasets, write_profile
    from vidcap.model import CaptionModel

    if args.images < 10:
        raise VidcapError("--images must be at least 10")
    if args.frames:
        from vidcap.video.calibrate import calibrate_on_images

        profile, frames = calibrate_on_images(args.checkpoint, args.frames, resolve_device(args.device))
        write_profile(args.checkpoint, profile)
        print(f"{args.checkpoint}: domain profile of your {frames} frames ({len(profile.components)} components, "
              f"{len(profile.held_out)} held out): frames unlike them are now called outside its domain")
        return 0
    device = resolve_device(args.device)
    model = CaptionModel.from_checkpoint(args.checkpoint).to(device)
    size = model.config.image_size
    fit_set = open_dataset(args.dataset, "train", size, args.data, args.images if args.dataset == "synthetic"
                           else None, args.seed)
    held_out = open_dataset(args.dataset, "val", size, args.data, None, args.seed)
    profile = profile_from_datasets(model, fit_set, held_out, DATASET_DOMAINS[args.dataset], device, args.images)
    write_profile(args.checkpoint, profile)
    print(f"{args.checkpoint}: domain profile of {min(args.images, len(fit_set))} {args.dataset} training images "
          f"({len(profile.components)} components), calibrated on {len(profile.held_out)} held-out images")
    return 0


def _run_eval(args: argparse.Namespace) -> int:
    from vidcap.captioner import Captioner
    from vidcap.data import open_dataset
    from vidcap.evaluation import evaluate_model

    if args.beam < 1:
        raise VidcapError("--beam must be at least 1")
    captioner = Captioner.load(args.model, device=args.device, encoder=args.encoder)
    dataset = open_dataset(args.dataset, args.split, captioner.image_size, args.data, args.size, args.seed)
    scores = evaluate_model(captioner.model, dataset, args.beam, args.batch_size, captioner.device,
                            progress=sys.stderr.isatty(), encoder=captioner.encoder)
    labels = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "cider": "CIDEr",
              "rouge_l": "ROUGE-L", "meteor": "METEOR", "shape_accuracy": "shape acc"}
    print(f"{args.dataset} {args.split}: {int(scores['images'])} images, beam {args.beam}, encoder "
          f"{captioner.encoder.describe()} (scores on a 0-100 scale)")
    for key, label in labels.items():
        if key in scores:
            print(f"  {label:8s} {scores[key]:6.2f}")
    if args.json:
        write_atomic(args.json, json.dumps({"dataset": args.dataset, "split": args.split, "beam": args.beam,
                                             "encoder": captioner.encoder.describe(), **scores}, indent=2))
    return 0


# ---- video ------------------------------------------------------------------------------------------------


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    return width, height


def _add_analyze(sub: argparse._SubParsersAction) -> None:
    from vidcap.video.novelty import DEFAULT_SCORER, SCORERS
    from vidcap.video.cuts import CUT_SIGNALS

    p = sub.add_parser("analyze", help="find the moments of a video unlike what came before",
                       description="Sample a frame every N seconds, caption it, score how unlike the previous "
                                   "frames it is, and report the moments. A summary goes to stdout, progress to "
                                   "stderr.")
    p.add_argument("video", metavar="SOURCE", help="a video file (mp4, mkv, webm, mov, ...), or a live source: an "
                   "rtsp://, udp://, http(s):// stream (MPEG-TS, HLS), a capture device (/dev/video0), or - for "
                   "standard input (ffmpeg ... -f mpegts - | vidcap analyze -); a live source prints each frame "
                   "and moment as it comes, until it ends or Ctrl-C (docs/live.md)")
    p.add_argument("--every", type=float, default=1.0, metavar="SECONDS", help="sampling step (default: 1)")
    p.add_argument("--window", type=int, default=5, metavar="N", help="previous frames compared with (default: 5)")
    p.add_argument("--metric", help="euclidean (or euclidian) | cosine (default: the scorer's own)")
    p.add_argument("--scorer", choices=sorted(SCORERS), default=DEFAULT_SCORER,
                   help=f"novelty scorer (default: {DEFAULT_SCORER}; seed = the old project's metric)")
    p.add_argument("--beam", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--no-skip", action="store_true",
                   help="caption every sampled frame; by default a still frame (nothing changed since the last "
                        "captioned one, beyond noise) reuses its caption, marked as reused in every output")
    p.add_argument("--cuts", choices=CUT_SIGNALS, default="frames",
                   help="how cuts are found: frames (default: from the frames between the samples, each cut placed "
                        "on the first frame of the new shot), colour (the samples' colours alone: a little faster, "
                        "a cut placed on the sample after it), transnetv2 (the learnt shot detector over every frame "
                        "first: files only, slower; pip install 'vidcap[transnet]')")
    p.add_argument("--frame-source", "--decoder", dest="frame_source", default="auto", action=Renamed,
                   help="what decodes the video: auto, pyav, dali (default: auto; --decoder, its old name, warns)")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--json", metavar="OUT", help="write frames and moments as JSON")
    p.add_argument("--csv", metavar="OUT", help="write per-frame times, scores and captions as CSV")
    p.add_argument("--plot", metavar="OUT.png", help="plot the score over time with the moments")
    p.add_argument("--vtt", metavar="OUT.vtt", help="write the captions as WebVTT subtitles, one cue per stable "
                                                    "caption stretch")
    p.add_argument("--srt", metavar="OUT.srt", help="the same as SubRip subtitles")
    p.add_argument("--chapters", metavar="OUT.txt", help="write chapters at the moments as FFmpeg metadata (ffmpeg "
                   "-i VIDEO -i OUT.txt -map_metadata 1 -c copy OUT.mp4)")
    p.add_argument("--chapters-vtt", metavar="OUT.vtt", help="the chapters as WebVTT chapters")
    p.add_argument("--chapter-list", metavar="OUT.txt", help="the chapters as '00:00 caption' lines, for a video "
                                                             "description")
    p.add_argument("--no-progress", action="store_true")
    live = p.add_argument_group("live sources")
    live.add_argument("--stall", type=float, default=5.0, metavar="SECONDS",
                      help="no data for this long: the stream stalled, reopen it (default: 5)")
    live.add_argument("--give-up", type=float, default=60.0, metavar="SECONDS",
                      help="reconnecting for this long without a frame: stop with an error (default: 60)")
    _add_encoder(p)
    p.set_defaults(run=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    from vidcap.video.sources import is_live

    if is_live(args.video):  # before torch is imported: a refused protocol or a typo is answered at once
        return _run_live(args)
    require_file(args.video, "video")
    from tqdm import tqdm

    from vidcap.captioner import Captioner
    from vidcap import report
    from vidcap.video.pipeline import AnalysisParams, analyze

    from vidcap.errors import InputError
    from vidcap.wire import CLI_NAMES, renamed

    limits = Limits.for_local_files()
    try:
        params = AnalysisParams(args.every, args.window, args.metric, args.scorer, args.beam, args.batch_size,
                                args.frame_source, skip_still=not args.no_skip, cuts=args.cuts).validate(limits)
    except InputError as exc:
        raise renamed(exc, CLI_NAMES) from None
    captioner = Captioner.load(args.model, device=args.device, encoder=args.encoder)
    bar = tqdm(unit="frame", disable=args.no_progress, file=sys.stderr, leave=False)

    def started(duration: float, n: int) -> None:
        bar.reset(total=n)

    try:
        analysis = analyze(args.video, captioner, params, on_frame=lambda _: bar.update(), on_start=started,
                           limits=limits)
    finally:
        bar.close()
    outputs = {args.json: report.to_json, args.csv: report.to_csv, args.plot: report.to_png, **subtitle_outputs(args)}
    rendered = {path: make(analysis) for path, make in outputs.items() if path}  # all or nothing
    for path, data in rendered.items():
        write_atomic(path, data)
    print(report.summary(analysis))
    return 0


def _run_live(args: argparse.Namespace) -> int:
    """A live source: each frame and moment printed as it comes, until the source ends or Ctrl-C; then the files
    asked for, of what was seen."""
    import time
    from dataclasses import asdict

    from vidcap.captioner import Captioner
    from vidcap.errors import InputError
    from vidcap import report
    from vidcap.video.live import LiveSource
    from vidcap.video.pipeline import Analysis, AnalysisParams, analyze_frames, online_picker
    from vidcap.wire import CLI_NAMES, renamed

    limits = Limits.for_local_files()
    try:
        params = AnalysisParams(args.every, args.window, args.metric, args.scorer, args.beam, args.batch_size,
                                skip_still=not args.no_skip, cuts=args.cuts).validate(limits)
        if not (args.stall > 0 and args.give_up >= 0):
            raise InputError("--stall must be positive and --give-up at least 0")
    except InputError as exc:
        raise renamed(exc, CLI_NAMES) from None
    captioner = Captioner.load(args.model, device=args.device, encoder=args.encoder)
    source = LiveSource(args.video, params.every_n_seconds, on_notice=lambda m: print(f"# {m}", file=sys.stderr,
                                                                                      flush=True),
                        give_up_seconds=args.give_up, stall_seconds=args.stall)
    picker, frames, started = online_picker(params, captioner.ignored_words), [], time.perf_counter()
    print(f"# watching {args.video} (Ctrl-C stops)", file=sys.stderr, flush=True)
    results = analyze_frames(source, captioner, params)
    failure = None
    try:
        for frame in results:
            frames.append(frame)
            print(f"{frame.t:8.2f}  {frame.score:6.3f}  {frame.caption}{'  (still: reused)' if frame.reused else ''}",
                  flush=True)
            for m in picker.take(frame):
                print(f"moment {m.t:8.2f}  {m.score:6.3f}  {m.reason:<14}  {m.previous_caption or '(start)'} -> "
                      f"{m.caption}", flush=True)
        picker.finish()
    except KeyboardInterrupt:
        print("# stopped", file=sys.stderr, flush=True)
    except InputError as exc:  # gave up reconnecting, or standard input is not a video: keep what was seen
        failure = exc
    finally:
        results.close()
    analysis = Analysis(args.video, asdict(params), frames[-1].t if frames else 0.0, frames, picker.moments,
                        time.perf_counter() - started)
    outputs = {args.json: report.to_json, args.csv: report.to_csv, args.plot: report.to_png, **subtitle_outputs(args)}
    for path, make in outputs.items():
        if path and frames:
            write_atomic(path, make(analysis))
    print(f"# {len(frames)} frames, {len(picker.moments)} moments", file=sys.stderr)
    if failure is not None:
        raise failure
    return 0


def subtitle_outputs(args: argparse.Namespace) -> dict:
    """The caption track and chapter files asked for: path -> Analysis -> text."""
    from vidcap.video import subtitles as st

    asked = {name: getattr(args, name.replace("-", "_")) for name in st.EXPORTS}
    return {path: st.EXPORTS[name].render for name, path in asked.items() if path}


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
    _add_encoder(p)
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

    from vidcap.captioner import Captioner

    if not todo:
        return
    indexer.captioner = Captioner.load(args.model, device=args.device, encoder=args.encoder)
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


def _add_synth_video(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth-video", help="render a synthetic test video with known changes",
                       description="Render scenes with the synthetic-scenes renderer (objects drifting a little unless "
                                   "--still), "
                                   "encode them with PyAV, and write OUT.truth.json next to the video.")
    p.add_argument("out", nargs="?", help="output video (.mp4, .mkv, .mov: H.264; .webm: VP9)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--script", help="JSON scene script (see docs/video.md)")
    source.add_argument("--random", type=int, metavar="N", help="N random scenes of random length")
    source.add_argument("--photos", type=int, metavar="N",
                        help="N shots of real photographs (scikit-image's) filmed by a moving camera, joined by "
                             "cuts and cross-fades: footage the demo model was not trained on")
    p.add_argument("--footage", choices=("mixed", "crops", "montage", "transitions", "flashes"), default="mixed",
                   help="with --photos: mixed (default: pans, zooms, cuts and cross-fades), crops (cuts between "
                        "framings of one photograph and between photographs of one palette), montage (0.3-2 s "
                        "shots, a hand-held moving camera), transitions (cross-fades, dissolves, fades through "
                        "black), flashes (flashes, strobes and camera flashes on long shots)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--size", type=_size, default=(1280, 720), help="WIDTHxHEIGHT (default: 1280x720)")
    p.add_argument("--flicker", type=float, metavar="SECONDS", help="a brief brightness flash every SECONDS")
    p.add_argument("--shake", type=int, default=0, metavar="PX", help="random camera translation up to PX pixels")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA", help="sensor noise")
    p.add_argument("--drift", action="store_true", help="slow camera pan and lighting change")
    p.add_argument("--still", action="store_true", help="objects stay put (by default they wander a little)")
    p.add_argument("--exposure", type=float, default=0.0, metavar="SHARE",
                   help="auto-exposure drifting: the picture brightens and darkens by up to SHARE (e.g. 0.18) over "
                        "7-11 s waves")
    p.add_argument("--bars", type=float, default=0.0, metavar="SHARE",
                   help="letterbox: black bars of SHARE of the height (e.g. 0.12) at the top and the bottom")
    p.add_argument("--keyint", type=int, help="fixed keyframe interval in frames (default: the video codec's own)")
    p.add_argument("--vocab", action="store_true", help="print the shapes, colours and backgrounds and exit")
    p.set_defaults(run=_run_synth_video)


def _run_synth_video(args: argparse.Namespace) -> int:
    from vidcap.video import synth

    if args.vocab:
        print(synth.vocab_text())
        return 0
    if not args.out or (args.script is None and args.random is None and args.photos is None):
        raise VidcapError("give OUT and one of --script FILE, --random N or --photos N (or --vocab)")
    if args.photos is not None:
        from vidcap.video import photo_footage

        if args.flicker is not None or args.shake or args.drift or args.still or args.exposure or args.bars:
            raise VidcapError("--photos takes --footage, --noise, --fps, --size and --seed; the camera moves by "
                              "itself")
        shots = photo_footage.FOOTAGE[args.footage](args.photos, args.seed)
        truth = photo_footage.write_photo_video(args.out, shots, args.fps, args.size, args.noise, args.seed)
        print(f"{args.out}: {truth['duration']:.1f} s, {len(truth['changes'])} cuts and transitions; truth in "
              f"{synth.truth_path(args.out)}")
        return 0
    if args.script:
        try:
            script = json.loads(Path(args.script).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VidcapError(f"cannot read scene script {args.script}: {exc}") from None
        segments = synth.segments_from_script(script)
    else:
        segments = synth.random_segments(args.random, args.seed)
    if args.flicker is not None and not args.flicker > 0:
        raise VidcapError("--flicker must be positive")
    if not (0 <= args.exposure < 1 and 0 <= args.bars < 0.5):
        raise VidcapError("--exposure must be in [0, 1) and --bars in [0, 0.5)")
    effects = synth.Effects(args.flicker, args.shake, args.noise, args.drift, args.still, args.exposure, args.bars)
    truth = synth.write_video(args.out, segments, args.fps, args.size, effects, args.seed, args.keyint)
    print(f"{args.out}: {truth['duration']:.1f} s, {len(truth['changes'])} changes; truth in "
          f"{synth.truth_path(args.out)}")
    return 0


# ---- models from elsewhere ------------------------------------------------------------------------------------


def _fetch_model(args: argparse.Namespace) -> None:
    """--model URL#sha256=HEX (or $VIDCAP_MODEL as one): fetched into the cache once, verified, then a file."""
    from vidcap.fetch import is_url

    if not hasattr(args, "model"):
        return
    spec = args.model or os.environ.get("VIDCAP_MODEL")
    if is_url(spec):
        from vidcap.fetch import fetch

        print(f"fetching {spec.partition('#')[0]} (once: kept in the cache)...", file=sys.stderr, flush=True)
        args.model = str(fetch(spec))


def _add_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a published Show, Attend and Tell checkpoint",
                       description="Convert a checkpoint of the 'PyTorch Tutorial to Image Captioning' (pickled "
                                   "Encoder/DecoderWithAttention modules, or their state_dicts) and its word map into "
                                   "a self-describing vidcap checkpoint with a model card. Nothing in the file is run: "
                                   "only the classes such a checkpoint holds are read, as plain data "
                                   "(docs/models.md).")
    p.add_argument("checkpoint", help="e.g. BEST_checkpoint_coco_5_cap_per_img_5_min_word_freq.pth.tar")
    p.add_argument("--word-map", required=True, help="its WORDMAP_*.json (word -> index)")
    p.add_argument("--out", required=True, help="the vidcap checkpoint to write (e.g. sat-coco.pt)")
    p.add_argument("--name", help="the model's name in its card and the UI (default: the --out file's stem)")
    p.add_argument("--image-size", type=int, default=256, help="input side in pixels (the tutorial's: 256)")
    p.add_argument("--encoded-size", type=int, help="regions per side, for a plain state_dict (default: read from "
                                                    "the modules, else 14)")
    p.set_defaults(run=_run_import)


def _run_import(args: argparse.Namespace) -> int:
    require_file(args.checkpoint, "checkpoint")
    require_file(args.word_map, "word map")
    from vidcap.published import import_checkpoint

    card = import_checkpoint(args.checkpoint, args.word_map, args.out, args.name, args.image_size,
                             args.encoded_size)
    reported = ", ".join(f"{k} {v}" for k, v in card["reported"].items()) or "no figures"
    print(f"{args.out}: {card['name']}, {card['architecture']} (from {card['file']}: {reported})")
    print(f"next: vidcap caption IMAGE --model {args.out}; vidcap calibrate {args.out} IMAGES... gives it a domain "
          f"profile from your own frames")
    return 0


def _add_pull(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pull", help="fetch a model from a URL into the cache, verified",
                       description="Download a model once into the cache ($VIDCAP_CACHE or ~/.cache/vidcap), check "
                                   "its SHA-256 and print its path; a broken download resumes, a wrong hash keeps "
                                   "nothing. `--model URL#sha256=HEX` on any command does the same.")
    p.add_argument("url")
    p.add_argument("--sha256", help="the file's SHA-256 (or put #sha256=HEX at the end of the URL)")
    p.set_defaults(run=_run_pull)


def _run_pull(args: argparse.Namespace) -> int:
    from vidcap.fetch import fetch

    def progress(done: int, total: int | None) -> None:
        if total:
            print(f"\r{done / 2**20:.1f} of {total / 2**20:.1f} MiB", end="", file=sys.stderr, flush=True)

    path = fetch(args.url, args.sha256, progress)
    print(file=sys.stderr)
    print(path)
    return 0


# ---- serve ------------------------------------------------------------------------------------------------


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the server stack (TorchServe, gRPC service, old HTTP API, web UI)",
                       description="Start the stack on this machine (127.0.0.1 by default): TorchServe with the "
                                   "model archive (or the model in-process), the gRPC service, the old HTTP "
                                   "API and the web UI. Prints the URLs; Ctrl-C or SIGTERM stops everything.")
    p.add_argument("--model-host", "--backend", dest="model_host", choices=["torchserve", "inprocess"],
                   default="torchserve", action=Renamed,
                   help="where the model runs (default: torchserve; inprocess needs no Java; --backend, its old "
                        "name, warns)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--grpc-port", type=int, default=50051)
    p.add_argument("--http-port", type=int, default=8888)
    p.add_argument("--torchserve-port", type=int, default=18080,
                   help="TorchServe inference port; management +1, metrics +2, its gRPC +3 and +4")
    p.add_argument("--enable-model-api", action="store_true",
                   help="allow registering and unregistering models through TorchServe's management API")
    p.add_argument("--torchserve-url", help="use a running TorchServe (its inference URL) instead of starting one")
    p.add_argument("--torchserve-key-file", help="with --torchserve-url: its key_file.json")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--device", default="auto")
    p.add_argument("--media-dir", help="folder whose videos gRPC clients may analyse by path")
    p.add_argument("--library", "--index", metavar="DB", dest="library", action=Renamed,
                   help="the library database: the videos gRPC Search and GET /v1/search find, and the jobs with "
                        "their results (default: where vidcap index writes; --index, its old name, warns)")
    p.add_argument("--allow-source", action="append", default=[], metavar="PATTERN",
                   help="live sources callers may name: a URL pattern whose scheme, host (or *.domain) and port must "
                        "match exactly and whose path is a shell pattern (e.g. 'rtsp://cameras.example/*'), or a "
                        "device ('/dev/video0'); repeat for more. None by default: the server opens no URL or "
                        "device for its callers (docs/live.md, docs/security.md)")
    p.add_argument("--work-dir", help="run folder and upload spools, on disk (default: ~/.cache/vidcap)")
    p.add_argument("--ui-port", type=int, default=7860, help="web UI port (default: 7860)")
    p.add_argument("--no-ui", action="store_true", help="do not start the web UI")
    p.add_argument("--ui-concurrency", type=int, default=4,
                   help="analyses the web UI runs at once; more users wait in its queue (default: 4)")
    _add_encoder(p)
    load = p.add_argument_group("load")
    load.add_argument("--max-analyses", type=int, default=2,
                      help="videos analysed at once, by every door together (default: 2)")
    load.add_argument("--max-queued", type=int, default=16,
                      help="videos waiting for a slot (they see their place); more are refused (default: 16)")
    load.add_argument("--max-uploads", type=int, default=16,
                      help="uploads received at once, by every door together; an upload takes an analysis slot "
                           "only once it is on disk (default: 16)")
    load.add_argument("--max-job-watchers", type=int, default=32, help="WatchJob streams at once (default: 32)")
    load.add_argument("--max-per-client", type=int, default=4,
                      help="of the uploads and of the job watchers, those one client address may hold at once "
                           "(default: 4)")
    load.add_argument("--max-jobs", type=int, default=100, help="jobs queued or running; more are refused "
                                                                "(default: 100)")
    load.add_argument("--max-job-disk-gb", type=float, default=20,
                      help="disk the uploads of queued and running jobs may hold (default: 20)")
    load.add_argument("--job-workers", type=int, default=1,
                      help="jobs analysed at once; each takes one of --max-analyses while it runs (default: 1)")
    load.add_argument("--video-workers", type=int, default=1,
                      help="TorchServe workers for videos; images have their own (default: 1)")
    load.add_argument("--torchserve-token-minutes", type=float, default=None,
                      help="lifetime of TorchServe's keys (default: its own, 60); vidcap renews them")
    _add_security(p)
    add_limit_arguments(p)
    p.set_defaults(run=_run_serve)


def _add_security(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("security (needed when --host is not a loopback address)")
    group.add_argument("--api-key-file", help="file holding the API key (or $VIDCAP_API_KEY); clients send "
                                              "'authorization: Bearer KEY'")
    group.add_argument("--tls-cert", help="PEM certificate chain: serve over TLS")
    group.add_argument("--tls-key", help="PEM private key of --tls-cert")
    group.add_argument("--insecure", action="store_true",
                       help="allow binding beyond loopback without an API key (anyone who reaches the port may "
                            "use the service)")
    group.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                       help="a further name browsers may reach this server by (the HTTP Host header; repeat for "
                            "more). Default: the --host address, and the loopback names when that is loopback; "
                            "requests naming any other host are refused (DNS rebinding)")


def _run_serve(args: argparse.Namespace) -> int:
    from vidcap.serving.auth import Security

    security = Security.load(args.host, args.api_key_file, args.tls_cert, args.tls_key, args.insecure,
                             args.allow_host)
    if args.max_analyses < 1 or args.max_queued < 0 or args.video_workers < 1 or args.job_workers < 1:
        raise VidcapError("--max-analyses, --video-workers and --job-workers must be at least 1, --max-queued at "
                          "least 0")
    from vidcap.video.sources import SourcePolicy

    SourcePolicy(args.allow_source)  # a pattern that cannot be read is said now, before anything starts
    from vidcap.serving.stack import StackConfig, run_stack

    logging.getLogger("vidcap").setLevel(logging.INFO)
    if min(args.max_uploads, args.max_job_watchers, args.max_jobs, args.max_per_client) < 1 or \
            args.max_job_disk_gb <= 0:
        raise VidcapError("--max-uploads, --max-job-watchers, --max-per-client and --max-jobs must be at least 1, "
                          "--max-job-disk-gb above 0")
    config = StackConfig(
        model_host=args.model_host, host=args.host, grpc_port=args.grpc_port, http_port=args.http_port,
        torchserve_port=args.torchserve_port, model=args.model, device=args.device, media_dir=args.media_dir,
        enable_model_api=args.enable_model_api, torchserve_url=args.torchserve_url,
        torchserve_key_file=args.torchserve_key_file, ui_port=None if args.no_ui else args.ui_port,
        ui_concurrency=args.ui_concurrency, encoder=args.encoder, max_analyses=args.max_analyses,
        max_queued=args.max_queued, max_uploads=args.max_uploads, max_job_watchers=args.max_job_watchers,
        max_per_client=args.max_per_client,
        max_jobs=args.max_jobs, max_job_disk_bytes=int(args.max_job_disk_gb * 1024**3),
        video_workers=args.video_workers, work_dir=args.work_dir,
        torchserve_token_minutes=args.torchserve_token_minutes, security=security, library=args.library,
        job_workers=args.job_workers, allowed_sources=tuple(args.allow_source))
    run_stack(config, limits_from_args(args))
    return 0


def _add_ui(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ui", help="run the web UI against a running gRPC service",
                       description="The Gradio web UI alone, as a client of a vidcap gRPC service (`vidcap serve` "
                                   "starts it itself). Analytics off, no share links.")
    p.add_argument("--grpc", default="127.0.0.1:50051", help="the gRPC service (default: 127.0.0.1:50051)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--max-upload-mb", type=float, default=500, help="largest upload (default: 500)")
    p.add_argument("--concurrency", type=int, default=4,
                   help="analyses run at once; more users wait in the queue (default: 4)")
    p.add_argument("--queue-size", type=int, default=64, help="users waiting beyond this are turned away")
    _add_security(p)
    p.set_defaults(run=_run_ui)


def _run_ui(args: argparse.Namespace) -> int:
    from vidcap.serving.auth import Security

    security = Security.load(args.host, args.api_key_file, args.tls_cert, args.tls_key, args.insecure,
                             args.allow_host)
    from vidcap.ui import UIConfig, launch

    config = UIConfig(grpc_address=args.grpc, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                      concurrency=args.concurrency, queue_size=args.queue_size, api_key=security.api_key, tls_cert=security.tls_cert, tls_key=security.tls_key,
                      hosts=security.hosts)
    from vidcap.serving.signals import stop_on_signals, wait_for_stop

    stop = threading.Event()
    stop_on_signals(stop)
    app = launch(config, block=False)
    print(f"vidcap web UI        http://{args.host}:{args.port}  (gRPC service {args.grpc})", flush=True)
    wait_for_stop(stop)
    app.close()
    return 0


def _add_archive(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("archive", help="build the TorchServe model archives model_store/vidcap{,-video}.mar",
                       description="Package a checkpoint with handlers/vidcap_handler.py and a model-config.yaml "
                                   "as two TorchServe models: model_store/vidcap.mar for images (dynamic "
                                   "batching) and model_store/vidcap-video.mar for videos (their own workers, so "
                                   "an image never waits behind a video).")
    p.add_argument("--model", help="checkpoint (default: $VIDCAP_MODEL or the demo model)")
    p.add_argument("--out", default=None, help="export folder (default: model_store/ of the checkout, or "
                                                "./model_store for an installed vidcap)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batch-delay", type=int, default=20, help="milliseconds (default: 20)")
    p.add_argument("--video-workers", type=int, default=1, help="workers of the video model (default: 1)")
    _add_encoder(p)
    p.set_defaults(run=_run_archive)


def _run_archive(args: argparse.Namespace) -> int:
    from vidcap.serving.torchserve import ArchiveSettings, build_archives

    settings = ArchiveSettings(batch_size=args.batch_size, max_batch_delay_ms=args.max_batch_delay,
                               encoder=args.encoder)
    for path in build_archives(args.model, args.out, settings, args.video_workers):
        print(path)
    return 0


# ---- entry point ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidcap", description="Caption video frames and find the moments that "
                                                                 "are unlike what came before.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_caption(sub)
    _add_train(sub)
    _add_eval(sub)
    _add_calibrate(sub)
    _add_analyze(sub)
    _add_index(sub)
    _add_search(sub)
    _add_synth_video(sub)
    _add_serve(sub)
    _add_archive(sub)
    _add_ui(sub)
    _add_import(sub)
    _add_pull(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        _fetch_model(args)
        return args.run(args)
    except VidcapError as exc:
        print(f"vidcap {args.command}: error: {exc}", file=sys.stderr)
        return status_of(exc)[2]
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `vidcap caption ... | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
