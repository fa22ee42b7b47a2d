"""The web UI end to end: the real gRPC service (demo model), the real Gradio app (`vidcap ui`), a real headless
Chromium driven by Playwright, real video files.

Chromium is Debian's (`apt-get install chromium`; CI installs it), driven through `pip install playwright`
without `playwright install`. Set VIDCAP_SCREENSHOT_DIR to keep the screenshots (docs/img is made this way).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidcap.video.photo_footage import random_shots, write_photo_video
from vidcap.video.synth import random_segments, write_video

from conftest import free_port, REPO, VIDCAP, UdpCamera, cli_env, inprocess_server, synthetic_images

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
UI_UPLOAD_LIMIT_MB = 2

pytestmark = pytest.mark.slow


def _need_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        message = "Debian chromium is not installed (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs it: missing there is a broken CI, not a reason to skip
        pytest.skip(message)


def _wait_for_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up: {log.read_text()}")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=cli_env())


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("uploads")
    # 12 scenes of 4 s sampled every 0.25 s: ~190 frames, long enough to watch the plot grow.
    write_video(folder / "scenes.mp4", random_segments(12, seed=11, min_seconds=4, max_seconds=4), fps=10,
                size=(320, 180))
    (folder / "notavideo.mp4").write_bytes(b"this is a text file, not a video\n" * 200)
    (folder / "notanimage.png").write_bytes(b"this is a text file, not an image\n" * 20)
    (folder / "too-big.mp4").write_bytes(os.urandom((UI_UPLOAD_LIMIT_MB + 1) * 1024**2))
    pixels, _ = synthetic_images(1, seed=4, size=(320, 240))[0]
    Image.fromarray(pixels).save(folder / "scene.png")
    write_photo_video(folder / "photos.mp4", random_shots(4, seed=2, min_seconds=5, max_seconds=5), fps=10,
                      size=(320, 180))
    write_video(folder / "short.mp4", random_segments(4, seed=5, min_seconds=3, max_seconds=3), fps=10,
                size=(320, 180))
    return {p.name: p for p in folder.iterdir()}


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory, files):
    """-> (address, log file) of a gRPC service with the demo model, and a library holding scenes.mp4."""
    log = tmp_path_factory.mktemp("grpc") / "grpc.log"
    library = log.parent / "library.db"
    indexed = subprocess.run([*VIDCAP, "index", str(files["scenes.mp4"]), "--library", str(library), "--no-progress"],
                             capture_output=True, text=True, env=cli_env(), timeout=300)
    assert indexed.returncode == 0, indexed.stderr
    port = free_port()
    proc = _start(inprocess_server(log.parent / "work", "--library", str(library), "--allow-source",
                                   "udp://127.0.0.1:*") + ["--grpc-port", str(port)], log)
    deadline = time.monotonic() + 60
    while "vidcap gRPC service" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    yield f"127.0.0.1:{port}", log
    _stop(proc)


@pytest.fixture(scope="module")
def grpc_address(grpc_server):
    return grpc_server[0]


def _ui(grpc: str, log: Path, *extra: str):
    port = free_port()
    proc = _start([*VIDCAP, "ui", "--grpc", grpc, "--port", str(port), "--max-upload-mb", str(UI_UPLOAD_LIMIT_MB),
                   *extra], log)
    url = f"http://127.0.0.1:{port}/"
    _wait_for_http(url, proc, log)
    return url, proc


def _serve(tmp_path: Path, *extra: str) -> tuple[str, subprocess.Popen]:
    """A whole `vidcap serve` of its own (model in-process, its own data folder) -> (the web UI's URL, process)."""
    ui_port, log = free_port(), tmp_path / "serve.log"
    proc = _start([*VIDCAP, "serve", "--model-host", "inprocess", "--grpc-port", str(free_port()), "--http-port",
                   str(free_port()), "--ui-port", str(ui_port), "--work-dir", str(tmp_path / "work"), *extra], log)
    url = f"http://127.0.0.1:{ui_port}/"
    try:
        _wait_for_http(url, proc, log)
    except BaseException:
        proc.kill()
        raise
    return url, proc


@pytest.fixture(scope="module")
def ui_server(grpc_address, tmp_path_factory):
    """-> (url, log file) of `vidcap ui` against the module's service."""
    log = tmp_path_factory.mktemp("ui") / "ui.log"
    url, proc = _ui(grpc_address, log)
    yield url, log
    _stop(proc)


@pytest.fixture(scope="module")
def ui_url(ui_server):
    return ui_server[0]


@pytest.fixture(scope="module")
def browser():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, ui_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1100})
    page = context.new_page()
    page.goto(ui_url)
    yield page
    context.close()


def _screenshot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("VIDCAP_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / name), full_page=True, type="jpeg", quality=85)


def _caption_in_image_tab(page, image: Path) -> list[str]:
    """Upload `image` in the Image tab, press Caption, wait for the caption: its words."""
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-input input[type=file]").set_input_files(image)
    page.wait_for_selector("#image-input img")
    page.click("#caption-button")
    page.wait_for_function("() => { const t = document.querySelector('#caption textarea');"
                           " return t && t.value.length > 0; }", timeout=60_000)
    return page.locator("#caption textarea").input_value().split()


def _no_traceback(page) -> None:
    text = page.content()
    assert "Traceback" not in text and 'File "/' not in text


# ---- video ---------------------------------------------------------------------------------------------------


def _analyse(page, video: Path, every: str | None = None) -> None:
    page.locator("#video-input input[type=file]").set_input_files(video)
    page.wait_for_selector("#video-input video")
    if every is not None:
        page.locator("#every input").fill(every)
        page.locator("#every input").press("Tab")
    page.click("#analyze")


def _done(page, timeout: float = 240_000) -> None:
    page.wait_for_selector("#video-status :text('Done')", timeout=timeout)


def _player_time(page) -> float:
    return page.evaluate("document.querySelector('#video-input video').currentTime")


def _seeked_to(page, t: float) -> float:
    """Wait until the player has been moved near t (and plays on from there) -> where it is."""
    page.wait_for_function(f"() => {{ const v = document.querySelector('#video-input video');"
                           f" return v && v.currentTime >= {t - 0.05} && v.currentTime <= {t + 3}; }}",
                           timeout=10_000)
    return _player_time(page)


def _pictures_loaded(page) -> list:
    """[complete, naturalWidth] of every moment card's picture."""
    return page.eval_on_selector_all("#moment-cards img", "els => els.map(e => [e.complete, e.naturalWidth])")


def test_video_streams_into_one_timeline_linked_to_the_player(page, files, tmp_path):
    _analyse(page, files["scenes.mp4"], "0.25")

    # Live: progress and a partial plot while frames are still coming in.
    page.wait_for_selector("#video-status progress", timeout=60_000)
    page.wait_for_selector("#vc-plot polyline", timeout=30_000)
    progress = page.locator("#video-status progress")
    assert int(progress.get_attribute("value")) < int(progress.get_attribute("max"))
    # Moments are shown as they stream in (their order on the stream is checked in test_grpc.py: on a fast
    # machine the whole video can be done before the page shows the first one).
    page.wait_for_selector("#moment-cards .vc-card", timeout=120_000)
    _done(page)
    _no_traceback(page)

    # The downloads hold the whole analysis, in the same shape as `vidcap analyze --json`.
    links = page.locator("#downloads a")
    hrefs = {Path(links.nth(i).get_attribute("href").split("?")[0]).name.split(".", 1)[1]:
             links.nth(i).get_attribute("href") for i in range(links.count())}
    assert set(hrefs) == {"vidcap.json", "vidcap.csv", "vidcap.png", "captions.vtt", "captions.srt", "chapters.vtt",
                          "chapters.ffmetadata.txt", "chapters.txt"}
    analysis = page.request.get(hrefs["vidcap.json"]).json()
    frames, moments = analysis["frames"], analysis["moments"]
    assert len(frames) == 192 and analysis["params"]["scorer"] == "robust"
    assert page.request.get(hrefs["vidcap.png"]).body()[:4] == b"\x89PNG"
    assert len(page.request.get(hrefs["vidcap.csv"]).text().strip().splitlines()) == len(frames) + 1
    vtt = page.request.get(hrefs["captions.vtt"]).text()
    assert vtt.startswith("WEBVTT") and "NOTE" not in vtt  # the model knows this footage: no warning in it
    chapter_lines = page.request.get(hrefs["chapters.txt"]).text().splitlines()
    assert len(chapter_lines) == len(moments) + 1 and chapter_lines[0].startswith("00:00 ")
    # The player gets the caption track, and Chromium parses its cues.
    page.wait_for_selector("#video-input video track", state="attached", timeout=30_000)
    cues = page.evaluate("""() => new Promise((done) => {
        const track = document.querySelector('#video-input video').textTracks[0];
        track.mode = 'hidden';  // loads the cues without drawing them
        const poll = () => track.cues && track.cues.length ? done(Array.from(track.cues, c => c.text))
                                                           : setTimeout(poll, 100);
        poll();
    })""")
    assert cues and set(cues) <= {f["caption"] for f in frames} and len(cues) < len(frames) / 3

    # The moments are at the scene changes (every 4 s), one marker and one card each, captions as the service gave
    # them. They were decided as the frames streamed, from at most 3 samples ahead (0.75 s at this sampling): a
    # caption that flickers a second before a cut can make one moment more than the whole-video picker would.
    truth = json.loads((files["scenes.mp4"].with_suffix(".truth.json")).read_text())["changes"]
    near = [m for m in moments if min(abs(m["t"] - c["t"]) for c in truth) <= 0.25 + 1e-6]
    assert len(near) == len(truth) and len(moments) - len(near) <= 0.2 * len(moments), (moments, truth)
    markers = page.locator("#vc-plot .vc-marker")
    cards = page.locator("#moment-cards .vc-card")
    assert markers.count() == cards.count() == len(moments)
    assert [markers.nth(i).get_attribute("data-reason") for i in range(len(moments))] == \
        [m["reason"] for m in moments]
    page.wait_for_function("() => [...document.querySelectorAll('#moment-cards img')].every(i => i.complete"
                           " && i.naturalWidth > 0)", timeout=30_000)
    assert len(_pictures_loaded(page)) == len(moments)
    for i, m in enumerate(moments):  # every card readable whole: time, reason, score, before -> after
        text = cards.nth(i).inner_text()
        assert f"{m['t']:.1f} s" in text and m["reason"] in text and f"{m['score']:.2f}" in text
        assert (m["previous_caption"] or "(start)") in text and m["caption"] in text
    # The table holds every frame at the end (the whole table, not the last rows of the stream).
    rows = page.locator("#captions tr[data-t]")
    assert rows.count() == len(frames)
    assert rows.nth(len(frames) - 1).inner_text().split("\t")[2].strip() == frames[-1]["caption"]

    _screenshot(page, "ui-video.jpg", tmp_path)

    # A click on a marker plays the video from its moment; the cursor, the card and the table row follow.
    last = len(moments) - 1
    markers.nth(last).click()
    position = _seeked_to(page, moments[last]["t"])
    assert not page.evaluate("document.querySelector('#video-input video').paused")
    page.wait_for_selector("#vc-cursor[visibility=visible]", state="attached")  # a line: no area to be "visible"
    cursor_t = page.evaluate("""() => { const s = document.querySelector('#vc-plot'),
        c = document.querySelector('#vc-cursor');
        return (+c.getAttribute('x1') - +s.dataset.left) / +s.dataset.width * +s.dataset.end; }""")
    assert abs(cursor_t - _player_time(page)) < 1.0
    page.wait_for_selector("#moment-cards .vc-card.vc-current")
    assert float(page.locator("#moment-cards .vc-current").get_attribute("data-t")) == \
        pytest.approx(moments[last]["t"], abs=1e-3)
    current_row = float(page.locator("#captions tr.vc-current").get_attribute("data-t"))
    assert current_row <= _player_time(page) + 0.3 and current_row >= position - 0.3

    # A click on a card, and on a point of the plot, seek there too.
    cards.nth(0).click()
    _seeked_to(page, moments[0]["t"])
    box = page.locator("#vc-plot").bounding_box()
    svg = page.locator("#vc-plot")
    left, width, end = (float(svg.get_attribute(a)) for a in ("data-left", "data-width", "data-end"))
    t_aim = end / 2  # the middle of the video: the plot area starts `left` units in, 1000 units wide in all
    x = box["x"] + box["width"] * (left + width * t_aim / end) / 1000
    page.mouse.click(x, box["y"] + box["height"] * 0.7)
    _seeked_to(page, t_aim - 0.5)
    assert abs(_player_time(page) - t_aim) < 3.0
    # And a row of the table.
    rows.nth(10).click()
    _seeked_to(page, frames[10]["t"])


def test_ten_analyses_one_after_another_each_show_every_picture(page, files, ui_server):
    """Each moment's picture is written once under a name of its own: none fails to load, and the server never
    sends a file that changes while it is read (h11's "Too much data for declared Content-Length")."""
    before = ""
    for run in range(10):
        _analyse(page, files["short.mp4"]) if run == 0 else page.click("#analyze")
        # Done, with this run's downloads (each run writes its own folder)
        page.wait_for_function(f"""() => {{ const a = document.querySelector('#downloads a');
            return a && a.getAttribute('href') !== {json.dumps(before)} &&
                   document.querySelector('#video-status').innerText.includes('Done'); }}""", timeout=120_000)
        before = page.locator("#downloads a").first.get_attribute("href")
        page.wait_for_function("() => [...document.querySelectorAll('#moment-cards img')].every(i => i.complete)",
                               timeout=30_000)
        pictures = _pictures_loaded(page)
        assert pictures and all(loaded and width > 0 for loaded, width in pictures), (run, pictures)
    log = ui_server[1].read_text()
    assert "Content-Length" not in log and "Traceback" not in log, log[-3000:]


def test_the_library_tab_finds_what_was_seen_and_a_click_plays_it(page, files, tmp_path):
    truth = json.loads(files["scenes.mp4"].with_suffix(".truth.json").read_text())["scenes"]
    wanted = truth[3]["objects"][0]
    query = f"{wanted['colour']} {wanted['shape']}"
    page.get_by_role("tab", name="Library").click()
    page.wait_for_selector("#library-count", timeout=30_000)
    assert "holds 1 video" in page.locator("#library-count").inner_text()  # the module's library: scenes.mp4
    page.locator("#search-query textarea, #search-query input").first.fill(query)
    page.click("#search")
    page.wait_for_selector("#search-status p", timeout=60_000)
    page.wait_for_selector("#hits img", timeout=60_000)
    status = page.locator("#search-status").inner_text()
    assert "for " in status and query in status
    labels = page.locator("#hits").inner_text()
    assert "scenes.mp4" in labels  # what it found is tested against the truth in test_library.py
    page.wait_for_function("() => [...document.querySelectorAll('#hits img')].every(i => i.complete)")
    _screenshot(page, "ui-library.jpg", tmp_path)
    page.locator("#hits img").first.click()
    page.wait_for_selector("#hit-player video", timeout=30_000)
    playing = page.wait_for_function(
        "() => { const v = document.querySelector('#hit-player video'); return v && v.currentTime > 0.2; }",
        timeout=30_000)
    assert playing
    page.locator("#search-query textarea, #search-query input").first.fill("on the of a")
    page.click("#search")
    page.wait_for_selector("#search-status :text('no words to search for')", timeout=30_000)
    assert "hits for" not in page.locator("#search-status").inner_text()  # the error replaced the last answer
    _no_traceback(page)


def test_the_live_tab_watches_a_stream_until_stop(page, tmp_path):
    camera = UdpCamera(random_segments(8, seed=3, min_seconds=4, max_seconds=4))
    camera.start()
    try:
        page.get_by_role("tab", name="Live").click()
        # Up front, before anything is tried: what this service opens.
        page.wait_for_selector("#live-allowed", timeout=30_000)
        assert "udp://127.0.0.1:*" in page.locator("#live-allowed").inner_text()
        page.locator("#live-source textarea, #live-source input").first.fill("udp://10.9.9.9:5000")
        page.click("#live-start")  # not allowed by this service: a sentence under the source, not a traceback
        page.wait_for_selector("#live-source-error :text('this server does not open udp://10.9.9.9:5000')",
                               timeout=30_000)
        page.locator("#live-source textarea, #live-source input").first.fill(camera.url)
        page.wait_for_function("() => document.querySelector('#live-source-error').innerText.trim() === ''",
                               timeout=5_000)  # a new source: the old error goes
        page.click("#live-start")
        page.wait_for_selector("#live-status :text('Watching')", timeout=60_000)
        page.wait_for_selector("#live-plot canvas, #live-plot svg", timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('#live-moments tbody tr').length >= 1 && "
                               "!document.querySelector('#live-moments tbody').innerText.includes('No data')",
                               timeout=60_000)  # a scene change reported while the stream goes on
        time.sleep(4)
        _screenshot(page, "ui-live.jpg", tmp_path)
        page.click("#live-stop")
        time.sleep(2)
        frames = page.locator("#live-status").inner_text()
        time.sleep(3)
        assert page.locator("#live-status").inner_text() == frames  # stopped: nothing more comes
        _no_traceback(page)
    finally:
        camera.stop.set()
        camera.join(timeout=30)


def test_footage_unlike_the_models_training_images_is_flagged_while_it_streams(ui_url, files):
    """The warning comes with the first frames that show it, not at the end; it links to the docs the UI serves;
    the subtitles and chapters say so too."""
    import httpx
    from gradio_client import Client, handle_file

    job = Client(ui_url, verbose=False).submit(handle_file(str(files["photos.mp4"])), 0.1, 5, "scorer default",
                                              "robust", api_name="/analyze")
    deadline = time.monotonic() + 240
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    statuses = [output[3] for output in job.outputs() if isinstance(output[3], str)]
    warned = [i for i, status in enumerate(statuses) if "domain-warning" in status]
    assert warned and "<progress" in statuses[warned[0]], statuses  # while the frames still came
    assert "Done" in statuses[-1] and "domain-warning" in statuses[-1]
    warning = statuses[-1][statuses[-1].index("domain-warning"):]
    assert "captions are not meaningful for this footage" in warning
    link = re.search(r"href='([^']+)'", warning).group(1)
    page = httpx.get(ui_url + link, timeout=10)
    assert page.status_code == 200 and "<h1>" in page.text and "vidcap train" in page.text
    downloads = {Path(f).name.split(".", 1)[1]: Path(f) for f in job.result()[4]}
    assert downloads["captions.vtt"].read_text().splitlines()[2].startswith("NOTE vidcap: these captions are not "
                                                                            "meaningful for this footage")
    srt = downloads["captions.srt"].read_text().split("\n\n")[0]
    assert srt.startswith("1\n00:00:00,000 --> ") and "[vidcap: these captions are not meaningful" in srt
    assert downloads["chapters.txt"].read_text().startswith("vidcap: these captions are not meaningful")
    assert "; vidcap: these captions" in downloads["chapters.ffmetadata.txt"].read_text()


def test_docs_are_served_by_name_and_nothing_else(ui_url):
    import httpx

    assert httpx.get(ui_url + "docs/ui.md", timeout=10).status_code == 200
    assert httpx.get(ui_url + "docs/img/ui-video.jpg", timeout=10).headers["content-type"] == "image/jpeg"
    for bad in ("docs/..%2Fpyproject.toml", "docs/%2Fetc%2Fpasswd", "docs/nope.md", "docs/img/..%2Fui.md",
                "docs/ui.md%00.jpg"):
        response = httpx.get(ui_url + bad, timeout=10)
        assert response.status_code == 404 and "[project]" not in response.text and "root:" not in response.text


def test_errors_stay_under_their_field_in_its_words_until_it_changes(page, browser, ui_url, files):
    other = browser.new_context(viewport={"width": 1280, "height": 1100}).new_page()  # a second user, at once
    try:
        other.goto(ui_url)
        other.click("#analyze")
        other.wait_for_selector("#video-error :text('Upload a video first')", timeout=30_000)
        other.locator("#video-input input[type=file]").set_input_files(files["notavideo.mp4"])  # a new file: no error
        other.wait_for_function("() => document.querySelector('#video-error').innerText.trim() === ''", timeout=10_000)
        page.locator("#every input").fill("-1")
        page.locator("#every input").press("Tab")
        page.click("#analyze")  # no video and a bad step: both said, each under its own field
        page.wait_for_selector("#every-error :text('Every N seconds must be at least 0.04')", timeout=30_000)
        assert "Upload a video first" in page.locator("#video-error").inner_text()
        other.click("#analyze")  # the service's sentence, under the upload
        other.wait_for_selector("#video-error :text('cannot open notavideo.mp4 as a video')", timeout=30_000)
        time.sleep(12)  # Gradio's pop-ups went after about 10 s; these stay
        assert "Every N seconds must be at least" in page.locator("#every-error").inner_text()
        assert "Cannot open notavideo.mp4 as a video" in other.locator("#video-error").inner_text()
        assert page.get_by_text("Error", exact=True).count() == 0  # no wordless "Error" pill on the outputs
        page.locator("#every input").fill("1")  # the field changes: its error goes, the other stays
        page.wait_for_function("() => document.querySelector('#every-error').innerText.trim() === ''", timeout=5_000)
        assert "Upload a video first" in page.locator("#video-error").inner_text()
        _no_traceback(page)
        _no_traceback(other)
    finally:
        other.context.close()


def test_an_upload_above_the_limit_is_refused_with_a_message(page, files):
    page.locator("#video-input input[type=file]").set_input_files(files["too-big.mp4"])
    page.get_by_text(re.compile(r"exceed|too large|maximum", re.I)).first.wait_for(timeout=30_000)
    _no_traceback(page)


def test_several_users_are_served_at_once(ui_url, files):
    """Two analyses submitted together: the second starts streaming before the first is finished (with Gradio's
    default of one at a time per event, it would wait in the queue)."""
    from gradio_client import Client, handle_file

    client = Client(ui_url, verbose=False)
    args = (handle_file(str(files["scenes.mp4"])), 0.25, 5, "scorer default", "robust")
    jobs = [client.submit(*args, api_name="/analyze") for _ in range(2)]
    started = time.monotonic()
    first_output, last_output, counts = [None, None], [None, None], [0, 0]  # seconds since `started`
    while not all(job.done() for job in jobs) and time.monotonic() - started < 240:
        for i, job in enumerate(jobs):
            n = len(job.outputs())
            if n != counts[i]:
                counts[i], last_output[i] = n, time.monotonic() - started
                first_output[i] = first_output[i] or last_output[i]
        time.sleep(0.05)
    assert all("Done" in job.result(timeout=10)[3] for job in jobs)  # both finished, with a status line
    # One at a time, the later job's first output would come with the other's last (measured: 5.1 s / 5.1 s);
    # served together, both stream from the start.
    later, earlier = (0, 1) if first_output[0] > first_output[1] else (1, 0)
    assert first_output[later] < last_output[earlier] - 1.0, (first_output, last_output)


def test_users_beyond_the_concurrency_limit_see_their_queue_position(browser, grpc_address, files, tmp_path):
    url, proc = _ui(grpc_address, tmp_path / "ui.log", "--concurrency", "1")
    try:
        pages = [browser.new_page() for _ in range(2)]
        for page, every in zip(pages, ("0.1", "1")):  # 480 samples: still running when the second user clicks
            page.goto(url)
            page.locator("#video-input input[type=file]").set_input_files(files["scenes.mp4"])
            page.wait_for_selector("#video-input video")
            page.locator("#every input").fill(every)
            page.locator("#every input").press("Tab")
        pages[0].click("#analyze")
        pages[0].wait_for_selector("#video-status progress", timeout=60_000)  # the first one is running
        pages[1].click("#analyze")
        pages[1].get_by_text(re.compile(r"queue: 1/1")).first.wait_for(timeout=30_000)
        for page in pages:  # and both finish
            page.wait_for_selector("#video-status :text('Done')", timeout=240_000)
            page.close()
    finally:
        _stop(proc)


def test_closing_the_page_stops_the_analysis_on_the_service(browser, ui_url, grpc_server, files):
    page = browser.new_page()
    page.goto(ui_url)
    page.locator("#video-input input[type=file]").set_input_files(files["scenes.mp4"])
    page.wait_for_selector("#video-input video")
    page.locator("#every input").fill("0.1")  # ~480 frames: far from done when the page goes
    page.locator("#every input").press("Tab")
    page.click("#analyze")
    page.wait_for_selector("#video-status progress", timeout=60_000)
    page.close()
    log, deadline = grpc_server[1], time.monotonic() + 30
    while "stopped the analysis of scenes.mp4" not in log.read_text():
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)


# ---- image ---------------------------------------------------------------------------------------------------


def test_image_caption_with_an_attention_map_per_word(page, files, tmp_path):
    words = _caption_in_image_tab(page, files["scene.png"])
    assert len(words) >= 3
    maps = page.locator("#attention img")
    maps.nth(len(words) - 1).wait_for()
    assert maps.count() == len(words)
    page.wait_for_function("() => [...document.querySelectorAll('#attention img')].every(i => i.complete"
                           " && i.naturalWidth > 0)")
    labels = page.locator("#attention").inner_text().split()
    assert [w for w in labels if w in words] == words  # each map is labelled with its word, in order
    _no_traceback(page)
    _screenshot(page, "ui-image.jpg", tmp_path)


def test_a_file_that_is_not_an_image_gets_the_services_sentence(page, files):
    """Not Gradio's own error with its spool path and an exception's name: the sentence every door gives."""
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-input input[type=file]").set_input_files(files["notanimage.png"])
    page.click("#caption-button")
    page.wait_for_selector("#image-error :text('cannot read the upload as an image')", timeout=30_000)
    text = page.locator("body").inner_text()
    assert "/tmp" not in text and "gradio" not in text.lower() and "Error:" not in text
    _no_traceback(page)


def test_the_page_names_the_model_and_its_card(page):
    card = page.locator("#model-card")
    card.get_by_text(re.compile("vidcap-demo")).wait_for(timeout=30_000)
    text = card.inner_text()
    assert "trained on synthetic scenes" in text and "vidcap train" in text and "resnet18" in text, text
    assert "validation BLEU-4" in text


def test_a_service_that_is_down_is_named_in_the_page(browser, tmp_path, files):
    closed = f"127.0.0.1:{free_port()}"
    url, proc = _ui(closed, tmp_path / "ui.log")
    try:
        page = browser.new_page()
        page.goto(url)
        page.get_by_role("tab", name="Image").click()
        page.locator("#image-input input[type=file]").set_input_files(files["scene.png"])
        page.wait_for_selector("#image-input img")
        page.click("#caption-button")
        page.get_by_text(re.compile(f"vidcap service at {re.escape(closed)} is not reachable")).first.wait_for(
            timeout=30_000)
        _no_traceback(page)
        page.close()
    finally:
        _stop(proc)
    assert proc.returncode == 0


# ---- pieces --------------------------------------------------------------------------------------------------


def test_attention_overlay_keeps_the_attended_region_bright():
    from vidcap.attention_maps import attention_overlay

    pixels = np.full((60, 90, 3), 200, np.uint8)
    weights = np.zeros((3, 3), np.float32)
    weights[0, 2] = 1.0  # top right
    out = attention_overlay(pixels, weights)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert out[10, 75].mean() > 150 and out[50, 10].mean() < 80  # attended stays, the rest fades
    with pytest.raises(ValueError):
        attention_overlay(pixels, np.zeros(9))


def test_with_an_api_key_browsers_log_in_and_the_ui_passes_the_key_to_the_service(browser, tmp_path, files):
    """`vidcap serve --api-key-file`: the page asks for the key (user "vidcap") and its calls to the gRPC service,
    which refuses calls without the key, carry it."""
    (tmp_path / "key").write_text("ui-test-key-0123456789abcdef\n")
    url, proc = _serve(tmp_path, "--api-key-file", str(tmp_path / "key"))
    try:
        for key in ("wrong-key-0123456789", "ui-test-key-0123456789abcdef"):
            page = browser.new_page()
            page.goto(url)
            page.get_by_label("username").fill("vidcap")
            page.get_by_label("password").fill(key)
            page.get_by_role("button", name="Login").click()
            if key.startswith("wrong"):
                page.get_by_text(re.compile("Incorrect", re.I)).first.wait_for(timeout=30_000)
                page.close()
        assert len(_caption_in_image_tab(page, files["scene.png"])) >= 3
        _no_traceback(page)
        page.close()
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_an_empty_library_says_how_to_fill_it_and_add_to_library_fills_it(browser, tmp_path, files):
    """A fresh `vidcap serve` (its own data folder, no live source allowed): the Library tab says it is empty and
    how to fill it; the Live tab says up front that no source is open, and gives one piece of advice for files;
    Add to library after an analysis runs a job whose progress shows, after which search finds the video."""
    url, proc = _serve(tmp_path)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Library").click()
        page.wait_for_selector("#library-count", timeout=30_000)
        intro = page.locator("#library-count").inner_text()
        assert "The library is empty" in intro and "Add to library" in intro and "vidcap index" in intro
        page.locator("#search-query textarea, #search-query input").first.fill("red circle")
        page.click("#search")
        page.wait_for_selector("#search-status :text('The library is empty')", timeout=30_000)
        assert "No hits" not in page.locator("#search-status").inner_text()

        page.get_by_role("tab", name="Live").click()
        page.wait_for_selector("#live-allowed", timeout=30_000)
        assert "This service opens no live source" in page.locator("#live-allowed").inner_text()
        advice = {}
        for source in ("/dev/video0", "file:///etc/passwd", "/etc/passwd"):
            page.locator("#live-source textarea, #live-source input").first.fill(source)
            page.click("#live-start")
            page.wait_for_selector("#live-refused", timeout=30_000)
            advice[source] = page.locator("#live-refused").inner_text()
            page.locator("#live-source textarea, #live-source input").first.fill("")
            page.wait_for_selector("#live-refused", state="detached", timeout=5_000)
        assert "/dev/video0" in advice["/dev/video0"]  # quoted whole, as typed
        assert all("send a file as an upload" in advice[s] for s in ("file:///etc/passwd", "/etc/passwd")), advice

        page.get_by_role("tab", name="Video").click()
        assert page.locator("#add-to-library").is_disabled()
        _analyse(page, files["short.mp4"])
        _done(page)
        page.wait_for_selector("#add-to-library:not([disabled])", timeout=10_000)
        page.click("#add-to-library")
        page.wait_for_selector("#add-status :text('Adding short.mp4 to the library')", timeout=30_000)
        page.wait_for_selector("#added", timeout=120_000)
        assert "now holds 1 video" in page.locator("#add-status").inner_text()
        page.get_by_role("tab", name="Library").click()  # opening the tab says what the library holds now
        page.wait_for_function("() => document.querySelector('#library-count').innerText.includes('holds 1 video')",
                               timeout=30_000)
        truth = json.loads(files["short.mp4"].with_suffix(".truth.json").read_text())["scenes"]
        wanted = truth[1]["objects"][0]
        page.locator("#search-query textarea, #search-query input").first.fill(f"{wanted['colour']} {wanted['shape']}")
        page.click("#search")
        page.wait_for_selector("#hits img", timeout=60_000)
        assert "short.mp4" in page.locator("#hits").inner_text()
        page.wait_for_function("() => document.querySelector('#library-count').innerText.includes('holds 1 video')",
                               timeout=30_000)
        _no_traceback(page)
        page.close()
    finally:
        _stop(proc)
    assert proc.returncode == 0
