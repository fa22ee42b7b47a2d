"""The library: `vidcap index` into a real SQLite file, `vidcap search` over it, on rendered videos with known
scenes; restarts, changed and deleted files, bad queries, a locked database."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vidcap.errors import InputError
from vidcap.library.store import Library
from vidcap.synthetic import Scene, SceneObject
from vidcap.video.synth import Segment, random_segments, write_video

from conftest import free_port, VIDCAP, cli_env


def vidcap(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*VIDCAP, *args], capture_output=True, text=True, env=cli_env(), timeout=timeout)


def scene(background: str, shape: str, colour: str) -> Scene:
    return Scene(background, (SceneObject(shape, colour, "large", 1, 0.5, 0.5),))


def _write(path: Path, *scenes: Scene, seconds: float = 5.0) -> Path:
    write_video(path, [Segment(s, seconds) for s in scenes], fps=10, size=(320, 180))
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("library")
    _write(folder / "garden.mp4", scene("grass", "circle", "red"), scene("snow", "square", "blue"))
    (folder / "more").mkdir()
    _write(folder / "more" / "desert.mkv", scene("sand", "star", "purple"), scene("night", "triangle", "yellow"))
    (folder / "more" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    (folder / "notes.txt").write_text("not a video, and not named like one")
    return folder


@pytest.fixture(scope="module")
def library(videos, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("db") / "library.db"
    result = vidcap("index", str(videos), "--library", str(db), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "2 indexed, 0 already indexed, 1 failed, 0 missing" in result.stdout
    assert f"failed: {videos / 'more' / 'broken.mp4'}: " in result.stdout
    return db


def search(db: Path, query: str, *more: str) -> list[dict]:
    result = vidcap("search", query, "--library", str(db), "--json", *more)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_second_run_skips_what_is_done_and_a_touched_file(videos, library):
    os.utime(videos / "garden.mp4")  # a new mtime, the same content
    again = vidcap("index", str(videos / "garden.mp4"), str(videos / "more" / "*.m*"), "--library", str(library),
                   "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "0 indexed, 2 already indexed, 1 failed" in again.stdout and "as before" in again.stdout
    with Library.open(library) as lib:
        assert lib.counts() == {"indexed": 2, "failed": 1}
        assert "cannot open broken.mp4" in lib.video(str(videos / "more" / "broken.mp4")).error


def test_search_finds_each_stretch_by_its_words_and_the_models_synonyms(videos, library):
    expected = [("red disc", "garden.mp4", (0, 5)), ("blue block on snow", "garden.mp4", (5, 10)),
                ("purple star", "desert.mkv", (0, 5)), ("yellow triangle", "desert.mkv", (5, 10))]
    for query, video, (start, end) in expected:
        hits = search(library, query, "--top", "3")
        assert hits, query
        best = hits[0]
        assert Path(best["path"]).name == video and best["score"] >= 0.6, (query, hits)
        assert start - 0.01 <= best["start"] and best["end"] <= end + 1.01, (query, hits)  # one sample of slack
        assert all(h["score"] <= best["score"] for h in hits)
    # A synonym counts by the model's own similarity: "disc" finds the circle the captions call a circle or a disc.
    assert search(library, "red circle")[0]["start"] == search(library, "red disc")[0]["start"]


def test_bad_queries_are_clear_errors_and_no_hits_is_an_empty_answer(library, tmp_path):
    assert search(library, "zebra") == []
    plain = vidcap("search", "zebra", "--library", str(library))
    assert plain.returncode == 0 and "no hits" in plain.stdout
    for query, message in [("on the left of a", "no words to search for"), ("star " * 2000, "at most 500")]:
        result = vidcap("search", query, "--library", str(library))
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    missing = vidcap("search", "star", "--library", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no library" in missing.stderr
    (tmp_path / "text.db").write_text("not a database at all " * 100)
    wrong = vidcap("search", "star", "--library", str(tmp_path / "text.db"))
    assert wrong.returncode == 2 and "not a vidcap library" in wrong.stderr


def test_a_locked_library_waits_then_says_so(library, tmp_path):
    db = tmp_path / "copy.db"
    shutil.copy(library, db)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sqlite3, sys, time; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)"), str(db)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(InputError, match="locked by another process"):
            with Library.open(db, wait=0.5) as lib:
                lib.mark("/x.mp4", "indexing")
        assert 0.4 <= time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()
    with Library.open(db, wait=0.5) as lib:  # free again
        lib.mark("/x.mp4", "missing")


def test_changed_files_are_indexed_again_and_deleted_ones_marked_missing(videos, tmp_path):
    folder = tmp_path / "videos"
    shutil.copytree(videos, folder)
    db = tmp_path / "library.db"
    assert vidcap("index", str(folder), "--library", str(db), "--no-progress").returncode == 0
    _write(folder / "more" / "desert.mkv", scene("water", "cross", "green"))  # new content
    (folder / "garden.mp4").unlink()
    result = vidcap("index", str(folder), "--library", str(db), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "1 indexed, 0 already indexed, 1 failed, 1 missing" in result.stdout
    assert f"missing: {folder / 'garden.mp4'}" in result.stdout
    assert all(Path(h["path"]).name != "garden.mp4" for h in search(db, "red circle"))
    assert not [h for h in search(db, "purple star") if h["score"] == 1.0]
    assert Path(search(db, "green cross")[0]["path"]).name == "desert.mkv"


def test_after_ctrl_c_the_same_command_continues_where_it_stopped(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(3):  # 600 samples a video: Ctrl-C lands well inside the one in progress
        write_video(folder / f"v{n}.mp4", random_segments(3, seed=n, min_seconds=20, max_seconds=20), fps=10,
                    size=(320, 180))
    db = tmp_path / "library.db"
    args = [*VIDCAP, "index", str(folder), "--library", str(db), "--every", "0.1", "--no-progress"]
    # Ctrl-C as a terminal sends it. A test runner started in the background of a non-interactive shell runs with
    # SIGINT ignored, and its children inherit that (Python then installs no KeyboardInterrupt handler): restore it.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while (_indexed(db) < 1 or _in_progress(db) < 10) and proc.poll() is None:
            assert time.monotonic() < deadline, "vidcap index did not get into its second video"
            time.sleep(0.02)
        seen = _indexed(db), _in_progress(db)
        proc.send_signal(signal.SIGINT)  # in the middle of a video
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "run the same command again to continue" in err, (out, err)
    done, kept = _indexed(db), _in_progress(db)
    assert 1 <= done < 3 and kept >= 10, (seen, done, kept, _jobs_rows(db), out, err)
    again = subprocess.run(args, capture_output=True, text=True, env=cli_env(), timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{3 - done} indexed, {done} already indexed, 0 failed" in again.stdout
    assert re.search(rf"continued: \S+v{done}\.mp4 from frame {kept} ", again.stdout), again.stdout
    # the same library as one uninterrupted run, and no progress left behind
    fresh = tmp_path / "fresh.db"
    uninterrupted = [str(fresh) if a == str(db) else a for a in args]
    assert subprocess.run(uninterrupted, capture_output=True, env=cli_env(), timeout=300).returncode == 0
    assert _frames(db) == _frames(fresh) and _in_progress(db) == 0


def _indexed(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            return connection.execute("SELECT COUNT(*) FROM videos WHERE status = 'indexed'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _in_progress(db: Path) -> int:
    """Results kept for the video `vidcap index` is in the middle of (not the one it has just written, whose record
    goes a moment after the video is marked indexed)."""
    try:
        with sqlite3.connect(db, timeout=5) as connection:
            row = connection.execute("SELECT coalesce(sum(frames), 0) FROM jobs WHERE state = 'indexing' AND path NOT "
                                     "IN (SELECT path FROM videos WHERE status = 'indexed')").fetchone()
            return row[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _jobs_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db, timeout=5) as connection:
        return connection.execute("SELECT id, state, path, frames, runs FROM jobs").fetchall()


def _frames(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT v.path, f.idx, f.t, f.caption FROM frames f JOIN videos v ON v.id = "
                                  "f.video_id ORDER BY v.path, f.idx").fetchall()


def test_ray_workers_on_a_local_cluster_index_what_one_process_does(videos, library, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'vidcap[ray]')")
    db = tmp_path / "ray.db"
    result = vidcap("index", str(videos), "--library", str(db), "--ray", "--workers", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "2 indexed, 0 already indexed, 1 failed, 0 missing" in result.stdout
    assert _frames(db) == _frames(library) and len(_frames(db)) > 10
    unreachable = vidcap("index", str(videos), "--library", str(db), "--ray", "127.0.0.1:9", "--no-progress",
                         timeout=60)
    assert "0 indexed, 2 already indexed" in unreachable.stdout  # nothing to do: no cluster needed
    (videos / "more" / "late.mp4").write_bytes((videos / "garden.mp4").read_bytes())
    try:
        unreachable = vidcap("index", str(videos), "--library", str(db), "--ray", "127.0.0.1:9", "--no-progress",
                             timeout=60)
    finally:
        (videos / "more" / "late.mp4").unlink()
    assert unreachable.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:9" in unreachable.stderr


def test_the_server_searches_the_library_over_grpc_and_http(library, tmp_path):
    import grpc
    import httpx

    from vidcap.client import VidcapClient

    grpc_port, http_port = free_port(), free_port()
    proc = subprocess.Popen([*VIDCAP, "serve", "--model-host", "inprocess", "--no-ui", "--grpc-port", str(grpc_port),
                             "--http-port", str(http_port), "--library", str(library)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        lines = [proc.stdout.readline() for _ in range(2)]
        assert "HTTP API" in lines[1], (lines, proc.stderr.read() if proc.poll() is not None else "")
        local = search(library, "red disc", "--top", "3")
        with VidcapClient(f"127.0.0.1:{grpc_port}", timeout=30) as client:
            hits = client.search("red disc", top=3).hits
            assert [(h.path, h.start, h.caption) for h in hits] == [(h["path"], h["start"], h["caption"])
                                                                    for h in local]
            assert list(client.search("zebra").hits) == []
            for query, top in [("the on a", 0), ("star", 1000)]:
                with pytest.raises(grpc.RpcError) as error:
                    client.search(query, top)
                assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        base = f"http://127.0.0.1:{http_port}"
        answer = httpx.get(f"{base}/v1/search", params={"q": "red disc", "top": 3}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert [h["start"] for h in answer.json()["hits"]] == [h["start"] for h in local]
        schema = httpx.get(f"{base}/openapi.json", timeout=30).json()
        assert "SearchResponse" in schema["components"]["schemas"] and "/v1/search" in schema["paths"]
        bad = httpx.get(f"{base}/v1/search", params={"q": "x" * 600}, timeout=30)
        assert bad.status_code == 400 and "at most 500" in bad.json()["error"]
        assert httpx.get(f"{base}/v1/search", timeout=30).status_code == 422  # no query at all
        assert httpx.get(f"{base}/healthz", timeout=30).status_code == 200  # still serving
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
