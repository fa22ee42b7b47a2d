"""Caption tracks and chapters from an analysed video.

- a caption track (WebVTT, SubRip) with one cue per stable caption stretch, not one per sample: consecutive
  samples with the same caption are one cue, and a caption seen for a single sample joins the neighbouring
  stretch that shares more of its words (as the novelty scorer does not take a one-sample blip for a change);
- chapters at the moments: WebVTT chapters, FFmpeg's FFMETADATA (`ffmpeg -i in.mp4 -i chapters.txt
  -map_metadata 1 -c copy out.mp4`), and "00:00 caption" lines for a video description.

Everything here is plain text from an `Analysis`'s frames and moments: no model, no video decoding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: `vidcap search` formats times from here without importing torch
    from vidcap.video.pipeline import Analysis


@dataclass(frozen=True)
class Cue:
    start: float  # seconds
    end: float
    text: str


def caption_stretches(analysis: Analysis) -> list[Cue]:
    """One cue per stable caption stretch; each lasts until the next begins, the last until the video ends. A
    caption held for a single sample is not a stretch of its own (a synonym the beam preferred once, a flash, the
    first sample of a new scene said in other words): it joins the neighbouring stretch whose caption shares more
    of its words."""
    runs: list[list] = []  # [first index, samples, caption]
    for i, frame in enumerate(analysis.frames):
        if runs and runs[-1][2] == frame.caption:
            runs[-1][1] += 1
        else:
            runs.append([i, 1, frame.caption])
    stable = [run for run in runs if run[1] > 1] or runs[:1]
    for k, run in enumerate(runs):
        if run[1] == 1 and run not in stable:
            before = next((r for r in reversed(stable) if r[0] < run[0]), None)
            after = next((r for r in stable if r[0] > run[0]), None)
            if after is not None and (before is None or _overlap(run[2], after[2]) > _overlap(run[2], before[2])):
                after[0] = run[0]  # the next stretch starts here
    merged: list[list] = []
    for run in sorted(stable, key=lambda r: r[0]):
        if merged and merged[-1][2] == run[2]:
            continue  # the same caption again after a blip: one stretch
        merged.append(run)
    times = [f.t for f in analysis.frames]
    end = max(analysis.duration, times[-1] if times else 0.0)
    return [Cue(times[first], times[merged[k + 1][0]] if k + 1 < len(merged) else end, caption)
            for k, (first, _, caption) in enumerate(merged)]


def _overlap(a: str, b: str) -> float:
    words_a, words_b = set(a.split()), set(b.split())
    return len(words_a & words_b) / max(1, len(words_a | words_b))


def chapters(analysis: Analysis) -> list[Cue]:
    """A chapter from the start and one at each moment, titled with the caption there."""
    if not analysis.frames:
        return []
    starts = [(0.0, analysis.frames[0].caption)]
    starts += [(m.t, m.caption) for m in analysis.moments if m.t > 0.0]
    end = max(analysis.duration, analysis.frames[-1].t)
    return [Cue(t, starts[k + 1][0] if k + 1 < len(starts) else end, text) for k, (t, text) in enumerate(starts)]


def untrusted_note(analysis: Analysis) -> str:
    """One line for the exports of a video whose captions are not meaningful (most frames unlike what the model
    was trained on: vidcap/domain.py); empty otherwise."""
    domain = analysis.domain
    if domain is None or not domain.untrusted:
        return ""
    return (f"vidcap: these captions are not meaningful for this footage ({100 * domain.out_of_domain_share:.0f}% "
            f"of its frames are unlike anything the model was trained on: {domain.trained_on})")


def to_vtt(cues: list[Cue], note: str = "") -> str:
    """WebVTT: a caption track, or chapters (the same cue format, `kind="chapters"` on the <track>). note: a NOTE
    block after the header (players do not show it)."""
    blocks = ["WEBVTT\n"]
    if note:
        blocks.append(f"NOTE {_one_line(note).replace('-->', '->')}\n")
    for n, cue in enumerate(cues, 1):
        blocks.append(f"{n}\n{_clock(cue.start, '.')} --> {_clock(cue.end, '.')}\n{_one_line(cue.text)}\n")
    return "\n".join(blocks)


def to_srt(cues: list[Cue], note: str = "") -> str:
    """SubRip. note: SubRip has no comments, so it is a cue of its own over the first seconds (shown above the
    first caption)."""
    if note and cues:
        cues = [Cue(0.0, min(NOTE_SECONDS, cues[-1].end), f"[{note}]"), *cues]
    return "\n".join(f"{n}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{_one_line(c.text)}\n"
                     for n, c in enumerate(cues, 1))


NOTE_SECONDS = 5.0


def to_ffmetadata(cues: list[Cue], note: str = "") -> str:
    """FFmpeg's metadata file with one [CHAPTER] per cue, times in milliseconds; note: a comment line."""
    lines = [";FFMETADATA1"] + ([f"; {_one_line(note)}"] if note else [])
    for cue in cues:
        lines += ["[CHAPTER]", "TIMEBASE=1/1000", f"START={round(cue.start * 1000)}", f"END={round(cue.end * 1000)}",
                  f"title={_ffmetadata_escape(_one_line(cue.text))}"]
    return "\n".join(lines) + "\n"


def to_chapter_list(cues: list[Cue], note: str = "") -> str:
    """'00:00 caption' lines, as video sites read chapters from a description (hours only when needed); note: a
    line of its own first (without a time, so no site reads it as a chapter)."""
    hours = bool(cues) and cues[-1].start >= 3600
    first = f"{_one_line(note)}\n" if note else ""
    return first + "".join(f"{clock(c.start, hours)} {_one_line(c.text)}\n" for c in cues)


@dataclass(frozen=True)
class Export:
    render: Callable[[Analysis], str]
    media_type: str
    suffix: str  # of the file name offered for it


# Every door offers the same exports under these names: `vidcap analyze --vtt/--srt/--chapters/--chapters-vtt/
# --chapter-list`, the jobs' ExportJob (gRPC) and GET /v1/jobs/{id}/export/{format} (HTTP), the web UI's downloads.
EXPORTS: dict[str, Export] = {
    "vtt": Export(lambda a: to_vtt(caption_stretches(a), untrusted_note(a)), "text/vtt", ".vtt"),
    "srt": Export(lambda a: to_srt(caption_stretches(a), untrusted_note(a)), "application/x-subrip", ".srt"),
    "chapters": Export(lambda a: to_ffmetadata(chapters(a), untrusted_note(a)), "text/plain", ".chapters.txt"),
    "chapters-vtt": Export(lambda a: to_vtt(chapters(a), untrusted_note(a)), "text/vtt", ".chapters.vtt"),
    "chapter-list": Export(lambda a: to_chapter_list(chapters(a), untrusted_note(a)), "text/plain",
                           ".chapter-list.txt"),
}


def export(analysis: Analysis, name: str) -> tuple[str, Export]:
    """(text, how to offer it) of the named export; an unknown name is an InputError that lists the known ones."""
    from vidcap.errors import InputError

    if name not in EXPORTS:
        raise InputError(f"unknown export format {name!r}; one of {', '.join(EXPORTS)}")
    return EXPORTS[name].render(analysis), EXPORTS[name]


def _clock(t: float, decimal: str) -> str:
    ms = round(max(t, 0.0) * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}{decimal}{ms:03d}"


def clock(t: float, hours: bool | None = None) -> str:
    """"mm:ss", or "h:mm:ss" (by default where t is an hour or more)."""
    hours = t >= 3600 if hours is None else hours
    whole = int(max(t, 0.0))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if hours else f"{m:02d}:{s:02d}"


def _one_line(text: str) -> str:
    # A cue's text ends at an empty line and "-->" would read as a timing line: keep captions on one safe line.
    return " ".join(text.split()).replace("-->", "->") or "(no caption)"


def _ffmetadata_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "=;#\\" else ch for ch in text)
