"""Caption tracks and chapters: the stretch rule on known captions, then the files of `vidcap analyze` read back
by FFmpeg (through PyAV) and muxed into a video."""

from __future__ import annotations

import json
import subprocess
from fractions import Fraction

import av
import pytest

from vidcap.video.novelty import Moment
from vidcap.video.pipeline import Analysis, FrameResult
from vidcap.video.subtitles import caption_stretches, chapters, to_ffmetadata, to_srt, to_vtt
from vidcap.video.synth import random_segments, write_video

from conftest import VIDCAP, cli_env


def _analysis(captions: list[str], moments: list[int], every: float = 1.0) -> Analysis:
    frames = [FrameResult(i, i * every, c, 0.0, c.split(), []) for i, c in enumerate(captions)]
    found = [Moment(i * every, 1.0, captions[i], captions[i - 1], i, "cut") for i in moments]
    return Analysis("v.mp4", {}, len(captions) * every, frames, found, 0.0)


def test_one_cue_per_stable_stretch_and_one_chapter_per_moment():
    captions = ["x", "a", "a", "a", "b", "a", "a", "c", "c", "d", "e", "e", "e"]
    cues = caption_stretches(_analysis(captions, [7, 10]))
    # x at the start joins a; the blip b joins a; d (one sample) joins c; the last cue ends with the video.
    assert [(c.start, c.end, c.text) for c in cues] == [(0.0, 7.0, "a"), (7.0, 10.0, "c"), (10.0, 13.0, "e")]
    assert [(c.start, c.end, c.text) for c in chapters(_analysis(captions, [7, 10]))] == [
        (0.0, 7.0, "x"), (7.0, 10.0, "c"), (10.0, 13.0, "e")]
    vtt = to_vtt(cues)
    assert vtt.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:07.000\na\n")
    assert "2\n00:00:07,000 --> 00:00:10,000\nc\n" in to_srt(cues)


def test_captions_cannot_break_the_formats():
    analysis = _analysis(["a = b; #1 \\ two\nlines --> x"] * 3, [])
    assert "title=a \\= b\\; \\#1 \\\\ two lines -> x\n" in to_ffmetadata(chapters(analysis))
    assert to_vtt(caption_stretches(analysis)).endswith("\na = b; #1 \\ two lines -> x\n")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subtitles")
    video = folder / "v.mp4"
    write_video(video, random_segments(4, seed=2, min_seconds=4, max_seconds=6), fps=10, size=(320, 180))
    names = {"vtt": "v.vtt", "srt": "v.srt", "chapters": "chapters.txt", "chapters-vtt": "chapters.vtt",
             "chapter-list": "chapters.list.txt", "json": "v.json"}
    flags = [arg for flag, name in names.items() for arg in (f"--{flag}", str(folder / name))]
    result = subprocess.run([*VIDCAP, "analyze", str(video), "--every", "0.5", "--no-progress", *flags],
                            capture_output=True, text=True, env=cli_env(), timeout=300)
    assert result.returncode == 0, result.stderr
    return video, {flag: folder / name for flag, name in names.items()}


def _subtitle_packets(path) -> list[tuple[float, float, str]]:
    with av.open(str(path)) as container:
        stream = container.streams.subtitles[0]
        return [(float(p.pts * p.time_base), float((p.pts + p.duration) * p.time_base), bytes(p).decode())
                for p in container.demux(stream) if p.size]


@pytest.mark.parametrize("kind", ["vtt", "srt"])
def test_ffmpeg_reads_the_caption_track_as_written(exported, kind):
    _, files = exported
    analysis = json.loads(files["json"].read_text())
    samples = [f["caption"] for f in analysis["frames"]]
    packets = _subtitle_packets(files[kind])
    assert 1 < len(packets) < len(samples) / 3  # stretches, not samples
    assert packets[0][0] == 0.0 and abs(packets[-1][1] - analysis["duration"]) < 0.01
    assert all(a[1] == b[0] for a, b in zip(packets, packets[1:]))  # contiguous
    assert {text for _, _, text in packets} <= set(samples)


def test_chapters_read_back_and_mux_into_a_video_with_the_subtitles(exported, tmp_path):
    video, files = exported
    moments = json.loads(files["json"].read_text())["moments"]
    with av.open(str(files["chapters"]), format="ffmetadata") as meta:
        read = meta.chapters()
    assert [Fraction(c["start"]) * c["time_base"] for c in read][1:] == [
        Fraction(round(m["t"] * 1000), 1000) for m in moments]
    assert [c["metadata"]["title"] for c in read][1:] == [m["caption"] for m in moments]
    assert [line.split(" ", 1)[1] for line in files["chapter-list"].read_text().splitlines()] == [
        c["metadata"]["title"] for c in read]
    assert _subtitle_packets(files["chapters-vtt"])[1][2] == moments[0]["caption"]

    out = tmp_path / "with-subtitles.mkv"
    with av.open(str(video)) as source, av.open(str(files["vtt"])) as track, av.open(str(out), "w") as muxed:
        video_out = muxed.add_stream_from_template(source.streams.video[0])
        text_out = muxed.add_stream_from_template(track.streams.subtitles[0])
        muxed.set_chapters(read)
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = video_out
                muxed.mux(packet)
        for packet in track.demux(track.streams.subtitles[0]):
            if packet.size:
                packet.stream = text_out
                muxed.mux(packet)
    with av.open(str(out)) as result:
        assert len(result.streams.video) == 1 and len(result.streams.subtitles) == 1
        assert [c["metadata"]["title"] for c in result.chapters()] == [c["metadata"]["title"] for c in read]
    assert [t for _, _, t in _subtitle_packets(out)] == [t for _, _, t in _subtitle_packets(files["vtt"])]


def test_footage_the_model_does_not_know_carries_a_note_in_every_export():
    """Captions that mean little (most frames unlike the model's training images) say so where they are read: a
    NOTE block in WebVTT, a first cue in SubRip (it has no comments), a comment in FFMETADATA, a first line of the
    chapter list; footage the model knows gets none of it."""
    from vidcap.domain import DomainSummary
    from vidcap.video.subtitles import export

    analysis = _analysis(["a", "a", "b", "b", "b"], [2])
    clean = {name: export(analysis, name)[0] for name in ("vtt", "srt", "chapters", "chapters-vtt", "chapter-list")}
    analysis.domain = DomainSummary(0.9, "synthetic scenes")
    noted = {name: export(analysis, name)[0] for name in clean}
    note = "vidcap: these captions are not meaningful for this footage (90% of its frames"
    assert noted["vtt"].startswith(f"WEBVTT\n\nNOTE {note}") and noted["vtt"].endswith(clean["vtt"].split("\n", 2)[2])
    assert noted["chapters-vtt"].startswith(f"WEBVTT\n\nNOTE {note}")
    assert noted["srt"].startswith(f"1\n00:00:00,000 --> 00:00:05,000\n[{note}")
    assert "2\n00:00:00,000 --> 00:00:02,000\na\n" in noted["srt"]
    assert noted["chapters"].startswith(f";FFMETADATA1\n; {note}")
    assert noted["chapter-list"].startswith(note) and noted["chapter-list"].endswith(clean["chapter-list"])
    assert all("not meaningful" not in text for text in clean.values())
    analysis.domain = DomainSummary(0.2, "synthetic scenes")  # most frames known: no note
    assert {name: export(analysis, name)[0] for name in clean} == clean
