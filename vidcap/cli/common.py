"""What the command groups share: renamed flags, the encoder runtime flag, sizes, fetching a --model URL."""

from __future__ import annotations

import argparse
import logging
import os
import sys


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


def add_encoder(p: argparse.ArgumentParser) -> None:
    p.add_argument("--encoder", choices=ENCODER_NAMES, default="auto", metavar="RUNTIME",
                   help=f"where the CNN runs: {', '.join(ENCODER_NAMES)} (default: auto, the fastest usable one; "
                        "see docs/performance.md)")


def parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1280x720, got {text!r}") from None
    return width, height


def fetch_model(args: argparse.Namespace) -> None:
    """--model URL#sha256=HEX (or $VIDCAP_MODEL as one): fetched into the cache once, verified, then a file."""
    from vidcap.fetch import is_url

    if not hasattr(args, "model"):
        return
    spec = args.model or os.environ.get("VIDCAP_MODEL")
    if is_url(spec):
        from vidcap.fetch import fetch

        print(f"fetching {spec.partition('#')[0]} (once: kept in the cache)...", file=sys.stderr, flush=True)
        args.model = str(fetch(spec))
