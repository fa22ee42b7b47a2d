"""The command-line client of the vidcap gRPC service (the library is vidcap.client.VidcapClient).

    python client/vidcap_client.py caption photo.jpg
    python client/vidcap_client.py analyze video.mp4 --every 1        # live per-frame output, then the moments
    python client/vidcap_client.py analyze --path clips/a.mp4          # a file in the server's media folder
    python client/vidcap_client.py analyze --live rtsp://cam/stream    # a live source (where the server allows it)
    python client/vidcap_client.py search "red star on grass"         # the server's library (vidcap index)
    python client/vidcap_client.py job submit video.mp4 --every 1     # analysed on the server; prints the id
    python client/vidcap_client.py job watch ID                       # progress, frames, moments until it ends
    python client/vidcap_client.py job list | get ID | cancel ID | export ID vtt > captions.vtt
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from vidcap.client import VidcapClient  # noqa: E402
from vidcap.v1 import vidcap_pb2 as pb  # noqa: E402

__all__ = ["VidcapClient", "main"]


def _print_stream(responses: Iterator[pb.AnalyzeVideoResponse]) -> None:
    for response in responses:
        kind = response.WhichOneof("kind")
        if kind == "started":
            print(f"# {response.started.duration:.1f} s, {response.started.expected_frames} frames", flush=True)
        elif kind == "notice":
            print(f"# {response.notice.message}", flush=True)
        elif kind == "queued":
            print(f"# waiting: place {response.queued.position} in the server's queue", flush=True)
        elif kind == "frame":
            f = response.frame
            print(f"{f.t:8.2f}  {f.score:6.3f}  {f.caption}{'  (still: reused)' if f.reused else ''}", flush=True)
        elif kind == "moment":  # decided while the frames stream
            m = response.moment
            before = m.previous_caption or "(start)"
            print(f"moment {m.t:8.2f}  {m.score:6.3f}  {m.reason:<14}  {before} -> {m.caption}", flush=True)
        else:
            s = response.summary
            print(f"# {s.frames} frames ({s.reused_frames} still, caption reused), {len(s.moments)} moments "
                  f"({s.scorer}, {s.metric})")
            if s.domain_warning:
                print(f"# warning: {s.domain_warning}")


def _print_job(job: pb.Job) -> None:
    progress = f"{job.frames}/{job.expected_frames or '?'} frames"
    eta = f", about {job.eta_seconds:.0f} s left" if job.HasField("eta_seconds") and job.state == "running" else ""
    error = f": {job.error}" if job.error else ""
    print(f"{job.id}  {job.state:<9}  {progress}{eta}  {job.name}{error}", flush=True)


def _job_command(client: VidcapClient, args: argparse.Namespace, params: dict) -> int:
    if args.job_command == "submit":
        job = client.submit_job_path(args.video, **params) if args.path else client.submit_job_file(args.video,
                                                                                                    **params)
        _print_job(job)
    elif args.job_command == "list":
        for job in client.jobs(args.state, args.limit):
            _print_job(job)
    elif args.job_command == "get":
        _print_job(client.job(args.id))
    elif args.job_command == "cancel":
        _print_job(client.cancel_job(args.id))
    elif args.job_command == "export":
        print(client.export_job(args.id, args.format).text, end="")
    else:  # watch
        shown = None
        for event in client.watch_job(args.id):
            kind = event.WhichOneof("kind")
            if kind == "job" and event.job.state != shown:
                shown = event.job.state
                _print_job(event.job)
            elif kind != "job":
                _print_stream([pb.AnalyzeVideoResponse(**{kind: getattr(event, kind)})])
        job = client.job(args.id)
        _print_job(job)
        return 0 if job.state == "done" else 1
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Client for the vidcap gRPC service.")
    p.add_argument("--server", default="127.0.0.1:50051")
    p.add_argument("--api-key-file", help="file holding the server's API key (or $VIDCAP_API_KEY)")
    p.add_argument("--tls-ca", help="connect over TLS, trusting this CA certificate (PEM)")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("caption", help="caption images")
    c.add_argument("images", nargs="+")
    c.add_argument("--beam", type=int, default=0)
    a = sub.add_parser("analyze", help="analyze a video, printing each frame as it arrives")
    a.add_argument("video", nargs="?", help="a local file to upload")
    a.add_argument("--path", help="a video in the server's media folder instead")
    a.add_argument("--live", metavar="SOURCE", help="a live source the server opens instead (rtsp://, udp://, "
                                                    "http(s)://, /dev/videoN; where the server allows it)")
    a.add_argument("--every", type=float, default=0.0)
    a.add_argument("--window", type=int, default=0)
    a.add_argument("--metric", default="")
    a.add_argument("--scorer", default="")
    a.add_argument("--no-skip", action="store_true", help="caption still frames too (default: reuse the caption)")
    a.add_argument("--cuts", choices=("frames", "colour", "transnetv2"), help="the cut signal (default: frames, "
                   "cuts to the frame; transnetv2: the learnt shot detector, files only, if the server has it)")
    s = sub.add_parser("search", help="search the server's library (videos indexed by vidcap index)")
    s.add_argument("query")
    s.add_argument("--top", type=int, default=0, help="hits (default: the server's, 10)")
    j = sub.add_parser("job", help="jobs: videos analysed on the server, kept there, watched and exported later")
    jobs = j.add_subparsers(dest="job_command", required=True)
    js = jobs.add_parser("submit", help="submit a video (uploaded, or --path in the server's media folder)")
    js.add_argument("video")
    js.add_argument("--path", action="store_true", help="VIDEO is a path in the server's media folder")
    for name, default, kind in (("--every", 0.0, float), ("--window", 0, int), ("--metric", "", str),
                                ("--scorer", "", str)):
        js.add_argument(name, default=default, type=kind)
    js.add_argument("--no-skip", action="store_true")
    js.add_argument("--cuts", choices=("frames", "colour", "transnetv2"))
    jl = jobs.add_parser("list", help="the server's jobs, newest first")
    jl.add_argument("--state", default="", help="queued, running, done, failed or cancelled")
    jl.add_argument("--limit", type=int, default=0)
    for name, what in (("get", "a job's progress"), ("cancel", "cancel a job (its results so far are kept)"),
                       ("watch", "progress, frames and moments until the job ends")):
        jobs.add_parser(name, help=what).add_argument("id")
    je = jobs.add_parser("export", help="subtitles or chapters of a job's results, to standard output")
    je.add_argument("id")
    je.add_argument("format", choices=["vtt", "srt", "chapters", "chapters-vtt", "chapter-list"])
    args = p.parse_args(argv)
    try:
        key = Path(args.api_key_file).read_text().strip() if args.api_key_file else os.environ.get("VIDCAP_API_KEY")
        with VidcapClient(args.server, api_key=key or None, tls_ca=args.tls_ca) as client:
            if args.command == "caption":
                for image in args.images:
                    print(client.caption_image(Path(image).read_bytes(), args.beam).caption)
                return 0
            if args.command == "search":
                hits = client.search(args.query, args.top).hits
                for h in hits:
                    print(f"{h.score:.2f}  {h.path}  {h.start:.1f}-{h.end:.1f} s  {h.caption}")
                if not hits:
                    print(f"no hits for {args.query!r}")
                return 0
            if args.command == "job":
                params = {}
                if args.job_command == "submit":
                    params = dict(every_n_seconds=args.every, window=args.window, metric=args.metric,
                                  scorer=args.scorer, no_skip=args.no_skip, cuts=args.cuts)
                return _job_command(client, args, params)
            params = dict(every_n_seconds=args.every, window=args.window, metric=args.metric, scorer=args.scorer,
                          no_skip=args.no_skip, cuts=args.cuts)
            if args.live:
                _print_stream(client.analyze_live(args.live, **params))
            elif args.path:
                _print_stream(client.analyze_path(args.path, **params))
            elif args.video:
                _print_stream(client.analyze_file(args.video, **params))
            else:
                p.error("give a video file, --path or --live")
    except grpc.RpcError as exc:
        print(f"vidcap-client: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"vidcap-client: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
