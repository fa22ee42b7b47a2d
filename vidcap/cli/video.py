"""`vidcap analyze` (files and live sources) and `vidcap synth-video`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vidcap.errors import VidcapError
from vidcap.fileio import require_file, write_atomic
from vidcap.limits import Limits
from vidcap.cli.common import Renamed, add_encoder, parse_size


# ---- video ------------------------------------------------------------------------------------------------


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
    add_encoder(p)
    p.set_defaults(run=_run_analyze)


def _run_analyze(args: argparse.Namespace) -> int:
    from vidcap.video.sources import is_live

    if is_live(args.video):  # before torch is imported: a refused protocol or a typo is answered at once
        return _run_live(args)
    require_file(args.video, "video")
    from tqdm import tqdm

    from vidcap.analysis.hosts import InProcessHost
    from vidcap.analysis.session import analyze
    from vidcap.captioner import Captioner
    from vidcap import report
    from vidcap.video.pipeline import AnalysisParams

    from vidcap.errors import InputError
    from vidcap.wire import CLI_NAMES, renamed

    limits = Limits.for_local_files()
    try:
        params = AnalysisParams(args.every, args.window, args.metric, args.scorer, args.beam, args.batch_size,
                                args.frame_source, skip_still=not args.no_skip, cuts=args.cuts).validate(limits)
    except InputError as exc:
        raise renamed(exc, CLI_NAMES) from None
    host = InProcessHost(Captioner.load(args.model, device=args.device, encoder=args.encoder), limits=limits)
    bar = tqdm(unit="frame", disable=args.no_progress, file=sys.stderr, leave=False)

    def started(duration: float, n: int) -> None:
        bar.reset(total=n)

    try:
        analysis = analyze(host, args.video, params, on_frame=lambda _: bar.update(), on_start=started)
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

    from vidcap.analysis.hosts import InProcessHost
    from vidcap.analysis.session import AnalysisSession
    from vidcap.captioner import Captioner
    from vidcap.errors import InputError
    from vidcap import report
    from vidcap.video.pipeline import AnalysisParams
    from vidcap.wire import CLI_NAMES, renamed

    limits = Limits.for_local_files()
    try:
        params = AnalysisParams(args.every, args.window, args.metric, args.scorer, args.beam, args.batch_size,
                                skip_still=not args.no_skip, cuts=args.cuts).validate(limits)
        if not (args.stall > 0 and args.give_up >= 0):
            raise InputError("--stall must be positive and --give-up at least 0")
    except InputError as exc:
        raise renamed(exc, CLI_NAMES) from None
    host = InProcessHost(Captioner.load(args.model, device=args.device, encoder=args.encoder), limits=limits,
                         stall_seconds=args.stall, give_up_seconds=args.give_up)
    session, started = AnalysisSession.for_host(params, host), time.perf_counter()
    print(f"# watching {args.video} (Ctrl-C stops)", file=sys.stderr, flush=True)
    results = host.analyze_live(args.video, params, on_notice=lambda m: print(f"# {m}", file=sys.stderr, flush=True))
    failure = None
    try:
        for frame in results:
            decided = session.add(frame)  # kept before it is shown: a Ctrl-C after the line still writes it
            print(f"{frame.t:8.2f}  {frame.score:6.3f}  {frame.caption}{'  (still: reused)' if frame.reused else ''}",
                  flush=True)
            for m in decided:
                print(f"moment {m.t:8.2f}  {m.score:6.3f}  {m.reason:<14}  {m.previous_caption or '(start)'} -> "
                      f"{m.caption}", flush=True)
        session.finish()
    except KeyboardInterrupt:
        print("# stopped", file=sys.stderr, flush=True)
    except InputError as exc:  # gave up reconnecting, or standard input is not a video: keep what was seen
        failure = exc
    finally:
        results.close()
    frames = session.frames
    analysis = session.analysis(args.video, frames[-1].t if frames else 0.0, time.perf_counter() - started)
    outputs = {args.json: report.to_json, args.csv: report.to_csv, args.plot: report.to_png, **subtitle_outputs(args)}
    for path, make in outputs.items():
        if path and frames:
            write_atomic(path, make(analysis))
    print(f"# {len(frames)} frames, {len(session.moments)} moments", file=sys.stderr)
    if failure is not None:
        raise failure
    return 0


def subtitle_outputs(args: argparse.Namespace) -> dict:
    """The caption track and chapter files asked for: path -> Analysis -> text."""
    from vidcap.video import subtitles as st

    asked = {name: getattr(args, name.replace("-", "_")) for name in st.EXPORTS}
    return {path: st.EXPORTS[name].render for name, path in asked.items() if path}


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
    p.add_argument("--size", type=parse_size, default=(1280, 720), help="WIDTHxHEIGHT (default: 1280x720)")
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


def add_commands(sub: argparse._SubParsersAction) -> None:
    _add_analyze(sub)
    _add_synth_video(sub)
