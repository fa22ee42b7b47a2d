"""The `vidcap` command, by command group: each subcommand only maps flags to a library call.

- models.py: caption, train, eval, calibrate, import, pull
- video.py: analyze (files and live sources), synth-video
- library.py: index, search
- serving.py: serve, ui, archive
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from vidcap.cli import library, models, serving, video
from vidcap.cli.common import ENCODER_NAMES, Renamed, fetch_model
from vidcap.errors import VidcapError, status_of

__all__ = ["ENCODER_NAMES", "Renamed", "build_parser", "main"]


# ---- entry point ------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vidcap", description="Caption video frames and find the moments that "
                                                                 "are unlike what came before.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (models, video, library, serving):
        group.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        fetch_model(args)
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
