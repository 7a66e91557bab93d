"""The demo page in a real browser (Debian's chromium through Playwright) against a real vlserve
server running the tiny model, with the browser's network restricted to loopback."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.demo.helpers import (
    KEY,
    broken_png,
    long_video,
    magenta_pixels,
    non_background_pixels,
    photo,
    run_server,
    scene_png,
)
from vlserve.demo import STATIC_DIR

ENDED = "#answer[data-state='done'], #answer[data-state='error']"


def running_requests(server: str) -> float:
    """Requests generating now on the server's interactive lane (its /metrics)."""
    found = re.search(r'vlserve_running_requests\{lane="interactive"\} ([0-9.]+)', httpx.get(server + "/metrics").text)
    assert found, "the server reports running requests"
    return float(found.group(1))


def open_demo(page: Any, url: str, task: str) -> None:
    page.goto(f"{url}/?task={task}")
    page.wait_for_selector("body[data-ready='1']")
    assert page.input_value("#task") == task


def wait_for_answer(page: Any, timeout_s: float) -> None:
    """Until the answer is complete; an error instead fails with the message the page shows."""
    page.wait_for_selector(ENDED, timeout=timeout_s * 1000)
    assert page.get_attribute("#answer", "data-state") == "done", page.text_content("#error")


def upload(page: Any, *paths: Path) -> None:
    before = page.locator("#attachments li").count()
    page.set_input_files("#file-input", [str(p) for p in paths])
    page.wait_for_function(f"document.querySelectorAll('#attachments li').length === {before + len(paths)}")


def save(page: Any, shots: Path | None, name: str, **kwargs: Any) -> None:
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / name), **kwargs)


def test_image_question_streams_token_by_token(page: Any, demo_url: str, tmp_path: Path,
                                               shots: Path | None) -> None:
    open_demo(page, demo_url, "vqa")
    assert "1–16" in page.text_content("#task-rules")
    upload(page, scene_png(tmp_path / "scene.png"))
    page.fill("#text", "What shapes are in this picture?")
    page.fill("#opt-max-tokens", "12")
    # Count the answer's updates while it streams: one per token event, not one at the end.
    page.evaluate("""() => {
        window.updates = 0;
        new MutationObserver(() => { window.updates += 1; })
            .observe(document.getElementById('answer'), {childList: true, characterData: true, subtree: true});
    }""")
    page.click("#run")
    wait_for_answer(page, 180)
    assert page.evaluate("window.updates") >= 6  # 12 tokens streamed (some may arrive together), then the final
    meta = {el.get_attribute("data-key"): el.inner_text() for el in page.query_selector_all("#metadata > div")}
    assert {"ttft", "total", "tokens", "confidence", "experts", "degraded", "model"} <= set(meta)
    assert "/ 12" in meta["tokens"] and "no" in meta["degraded"] and "tiny" in meta["model"]
    assert page.text_content("#answer").strip()
    save(page, shots, "demo-stream.png", full_page=True)
    # The same page in Chinese.
    page.click("#lang")
    assert page.text_content("#run") == "运行"
    assert "首 token" in page.text_content("#metadata")
    assert page.text_content("#task-hint") == "就一张或多张图片提问。"
    assert page.input_value("#opt-max-tokens") == "12"  # switching language keeps what was typed
    assert not page.is_visible("#opt-step")  # the STEP option is multiview_3d's only
    save(page, shots, "demo-zh.png", full_page=True)


def test_stop_ends_a_streaming_answer(page: Any, demo_url: str, vl_server: str, tmp_path: Path) -> None:
    open_demo(page, demo_url, "vqa")
    upload(page, scene_png(tmp_path / "scene.png"))
    page.fill("#text", "Describe every detail.")
    page.fill("#opt-max-tokens", "400")
    page.click("#run")
    page.wait_for_function("document.getElementById('answer').textContent.length > 0")  # tokens are arriving
    assert running_requests(vl_server) >= 1
    page.click("#stop")
    page.wait_for_selector("#answer[data-state='stopped']")
    # The abort reaches the server through the demo's pass-through: the generation stops.
    deadline = time.monotonic() + 10
    while running_requests(vl_server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert running_requests(vl_server) == 0
    assert page.is_enabled("#run") and page.is_disabled("#stop")
    assert page.locator("#metadata > div").count() == 0  # no final event came
    assert page.get_attribute("#error", "hidden") is not None


def test_grounding_draws_boxes_on_the_image(page: Any, demo_url: str, tmp_path: Path, shots: Path | None) -> None:
    open_demo(page, demo_url, "grounding")
    assert "a question is required" in page.text_content("#task-rules")
    upload(page, scene_png(tmp_path / "scene.png"))
    page.click("#run")  # no text yet: the page says what is missing before sending anything
    assert "a question is required" in page.text_content("#error")
    page.fill("#text", "the blue square")
    page.click("#run")
    wait_for_answer(page, 240)
    answer = json.loads(page.text_content("#answer"))
    assert answer["objects"], "the tiny model's greedy answer for this image has boxes"
    png = page.locator("#view canvas.grounding").screenshot()
    assert magenta_pixels(scene_png(tmp_path / "again.png").read_bytes()) == 0  # none before drawing
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    scale = (shot.width - 2) / answer["image_size"][0]  # the canvas has a 1 px border on each side
    for obj in answer["objects"]:
        x1, y1, x2, y2 = (round(v * scale) + 1 for v in obj["box"])
        # The left edge of the box, below its label: magenta where the box is, whatever the image had.
        column = [shot.getpixel((x, y)) for x in range(max(0, x1 - 2), x1 + 3)
                  for y in range(y1 + 2, max(y1 + 3, y2 - 1))]
        assert any(r > 220 and g < 60 and b > 220 for r, g, b in column), obj
    assert magenta_pixels(png) > 40
    save(page, shots, "demo-grounding.png", full_page=True)


def test_multiview_3d_viewer_and_downloads(page: Any, demo_url: str, tmp_path: Path, shots: Path | None) -> None:
    open_demo(page, demo_url, "multiview_3d")
    upload(page, photo(tmp_path / "front.png", 10), photo(tmp_path / "top.png", 11))
    labels = page.locator("#attachments input.view-label")
    assert labels.count() == 2 and labels.nth(0).input_value() == "front"
    labels.nth(1).fill("top")
    assert page.is_visible("#opt-step")
    page.fill("#opt-max-tokens", "250")
    page.click("#run")
    wait_for_answer(page, 600)  # ~40 s on an idle 2-core machine; minutes when it is shared
    page.wait_for_function("document.querySelector('#viewer') && document.querySelector('#viewer').loaded",
                           timeout=60_000)
    page.wait_for_timeout(500)  # one more frame after loading
    viewer = page.locator("#viewer").screenshot()
    assert non_background_pixels(viewer) > 2000, "the 3D canvas shows the model"
    answer = json.loads(page.text_content("#answer"))
    links = {a.get_attribute("data-format"): a for a in page.query_selector_all(".downloads a")}
    assert set(links) == set(answer["files"]) and {"glb", "stl", "obj", "ply"} <= set(links)  # a link per file
    for fmt, link in links.items():
        reply = page.request.get(link.get_attribute("href"))
        assert reply.ok and len(reply.body()) > 0, fmt
    with page.expect_download() as download:
        links["stl"].click()
    assert Path(download.value.path()).stat().st_size > 84  # an STL header plus triangles
    spec = json.loads(page.input_value("#spec"))
    assert spec["parts"]
    save(page, shots, "demo-3d.png", full_page=True)
    # Edit the spec into a plain cylinder and rebuild it on the server: a new model loads.
    before = page.get_attribute("#viewer", "src")
    edited = {"name": "edited", "parts": [{"id": "c", "shape": "cylinder", "op": "union",
                                           "size": {"diameter": 40, "height": 20}}]}
    page.fill("#spec", json.dumps(edited))
    page.click("#rebuild")
    page.wait_for_function("""(before) => {
        const viewer = document.querySelector('#viewer');
        return viewer && viewer.getAttribute('src') !== before && viewer.loaded;
    }""", arg=before, timeout=120_000)
    assert json.loads(page.input_value("#spec"))["name"] == "edited"
    assert page.text_content("#rebuild-note") == ""


def test_bad_image_shows_the_1001_message(page: Any, demo_url: str, tmp_path: Path, shots: Path | None) -> None:
    open_demo(page, demo_url, "vqa")
    upload(page, broken_png(tmp_path / "broken.png"))
    page.fill("#text", "What is this?")
    page.click("#run")
    page.wait_for_selector("#error[data-code='1001']")
    text = page.text_content("#error")
    assert "could not be read" in text and "Convert it to JPG or PNG" in text
    assert "Traceback" not in text and "request id req_" in text
    save(page, shots, "demo-error.png")
    page.click("#lang")
    assert "请转换为 JPG 或 PNG" in page.text_content("#error")


def test_long_video_shows_the_1002_message(page: Any, demo_url: str, tmp_path: Path) -> None:
    open_demo(page, demo_url, "video_qa")
    upload(page, long_video(tmp_path / "long.mp4"))
    page.fill("#text", "What happens?")
    page.click("#run")
    page.wait_for_selector("#error[data-code='1002']")
    assert "pick a window of at most 30 s" in page.text_content("#error")


def test_batch_job_progress_reaches_done(page: Any, demo_url: str, tmp_path: Path, shots: Path | None) -> None:
    open_demo(page, demo_url, "captioning")
    upload(page, scene_png(tmp_path / "a.png"), photo(tmp_path / "b.png", 3))
    page.fill("#opt-max-tokens", "6")
    page.click("#submit-jobs")
    job = page.locator("#jobs li").first
    job.wait_for()
    page.wait_for_selector("#jobs li[data-status='succeeded']", timeout=180_000)
    assert job.locator("progress").evaluate("p => p.value") == 1
    assert job.locator(".job-status").inner_text() == "done"
    job.locator(".job-show").click()
    assert page.text_content("#answer").strip()
    assert "/ 6" in page.text_content("#metadata")
    save(page, shots, "demo-jobs.png", full_page=True)


def test_inputs_by_drop_paste_video_and_pdf(page: Any, demo_url: str, tmp_path: Path) -> None:
    open_demo(page, demo_url, "video_qa")
    png = scene_png(tmp_path / "scene.png").read_bytes()
    page.evaluate("""(bytes) => {
        const file = (name, type) => new File([new Uint8Array(bytes)], name, {type});
        const dropped = new DataTransfer();
        dropped.items.add(file('dropped.png', 'image/png'));
        dropped.items.add(file('clip.mp4', 'video/mp4'));
        dropped.items.add(file('paper.pdf', 'application/pdf'));
        dropped.items.add(file('notes.txt', 'text/plain'));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dropped, bubbles: true}));
        const pasted = new DataTransfer();
        pasted.items.add(file('pasted.png', 'image/png'));
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: pasted, bubbles: true}));
    }""", list(png))
    page.wait_for_function("document.querySelectorAll('#attachments li').length === 4")
    assert page.locator("#attachments li.image").count() == 2
    note = page.text_content("#input-note")
    assert "notes.txt: only images, videos and PDF files" in note and "PDF pages to read" in note
    assert page.get_attribute("#camera-input", "capture") == "environment"
    # Keep only the video, pick a window, and send it: the server reads the request and refuses the
    # "video" (PNG bytes) with 1003, which the page explains.
    for _ in range(3):
        page.locator("#attachments li.image button.remove, #attachments li.document button.remove").first.click()
    assert page.locator("#attachments li").count() == 1
    page.fill(".video-start", "2")
    page.fill(".video-end", "9.5")
    page.fill("#text", "What happens?")
    with page.expect_request("**/api/infer_stream") as sent:
        page.click("#run")
    video = json.loads(sent.value.post_data)["videos"][0]
    assert video["start"] == 2 and video["end"] == 9.5 and video["url"].startswith("data:video/mp4;base64,")
    page.wait_for_selector("#error[data-code='1003']")
    assert "Re-encode it as H.264 MP4" in page.text_content("#error")

    # A PDF with a page range goes as {url, first_page, last_page}; a bad range is named on the page.
    page.select_option("#task", "ocr")
    page.click("#clear")
    page.set_input_files("#file-input", files=[{"name": "paper.pdf", "mimeType": "application/pdf",
                                                "buffer": b"%PDF-1.4 not really"}])
    page.wait_for_selector("#attachments li.document")
    page.fill("#attachments input.pages", "5-2")
    page.click("#run")
    assert "is not a page range" in page.text_content("#error")
    page.fill("#attachments input.pages", "2-3")
    with page.expect_request("**/api/infer_stream") as sent:
        page.click("#run")
    document = json.loads(sent.value.post_data)["documents"][0]
    assert document["first_page"] == 2 and document["last_page"] == 3
    assert document["url"].startswith("data:application/pdf;base64,")
    page.wait_for_selector("#error[data-code='1004']")
    assert "Send an unencrypted PDF" in page.text_content("#error")


def test_ocr_answer_is_shown_as_markdown(page: Any, demo_url: str, tmp_path: Path) -> None:
    open_demo(page, demo_url, "ocr")
    upload(page, scene_png(tmp_path / "page.png"))
    page.fill("#opt-max-tokens", "8")
    page.click("#run")
    wait_for_answer(page, 180)
    rendered = page.locator("#view .markdown")
    assert rendered.count() == 1 and rendered.inner_text().strip()
    # The model's words are text in our own tags, whatever they contain.
    assert rendered.evaluate("box => [...box.querySelectorAll('*')].every(n => "
                             "['P', 'BR', 'H1', 'H2', 'H3', 'H4', 'H5', 'H6', 'UL', 'OL', 'LI', 'TABLE', 'THEAD', "
                             "'TBODY', 'TR', 'TH', 'TD', 'PRE', 'CODE', 'STRONG', 'EM', 'DEL', 'HR', "
                             "'BLOCKQUOTE'].includes(n.tagName))")


def test_markdown_is_rendered_and_escaped(page: Any, demo_url: str) -> None:
    open_demo(page, demo_url, "ocr")
    html = page.evaluate("""async () => {
        const {renderMarkdown} = await import('./markdown.js');
        return renderMarkdown('# Title\\n\\n| a | b |\\n|---|---|\\n| 1 | **2** |\\n\\n'
                              + '- <img src=x onerror=alert(1)>\\n'
                              + '- [link](javascript:alert(1))\\n\\n<script>alert(1)</script>');
    }""")
    assert "<h1>Title</h1>" in html and "<table>" in html and "<strong>2</strong>" in html
    assert "<img" not in html and "<script" not in html and "javascript:" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_both_languages_have_every_text(page: Any, demo_url: str) -> None:
    open_demo(page, demo_url, "vqa")
    keys = page.evaluate("""async () => {
        const {TEXT, TASK_HINTS} = await import('./i18n.js');
        return {en: Object.keys(TEXT.en).sort(), zh: Object.keys(TEXT.zh).sort(),
                hints_en: Object.keys(TASK_HINTS.en).sort(), hints_zh: Object.keys(TASK_HINTS.zh).sort()};
    }""")
    assert keys["en"] == keys["zh"] and keys["hints_en"] == keys["hints_zh"]
    # Our own hints for the first tasks; a task added later shows the server's summary until it has one.
    assert {"vqa", "captioning", "chart_parse", "video_qa", "doc_analyze", "ocr", "grounding",
            "multiview_3d"} <= set(keys["hints_en"])
    codes = {int(k[4:]) for k in keys["en"] if k.startswith("err_") and k[4:].isdigit()}
    assert {1001, 1002, 2001, 3001} <= codes


def test_chart_and_timestamps(page: Any, demo_url: str, shots: Path | None) -> None:
    open_demo(page, demo_url, "chart_parse")
    result = page.evaluate("""async () => {
        const {plotChart, chartTable, findTimestamps} = await import('./render.js');
        const answer = {title: 'Sales', chart_type: 'bar', x_axis: {label: 'year', unit: ''},
                        y_axis: {label: 'units', unit: 'k'},
                        series: [{name: 'A', points: [{x: '2022', y: 3}, {x: '2023', y: 5}]},
                                 {name: 'B', points: [{x: '2022', y: 4}, {x: '2024', y: 1}]}]};
        const canvas = plotChart(answer);
        const table = chartTable(answer);
        document.getElementById('view').append(canvas, table);
        const stamps = findTimestamps('At <3.5 seconds> a cat, at 00:12 a dog, and 7s later 1:02:03.');
        const {timestampedAnswer} = await import('./render.js');
        const video = {currentTime: 0, play: () => Promise.resolve()};  // what the buttons need of a <video>
        const stamped = timestampedAnswer('A cat at <3.5 seconds>, a dog at 00:12.', video);
        const buttons = [...stamped.querySelectorAll('button.timestamp')];
        buttons[1].click();
        return {rows: [...table.querySelectorAll('tr')].map(r => [...r.children].map(c => c.textContent)),
                stamps: stamps.map(s => s.seconds), buttons: buttons.map(b => b.textContent),
                text: stamped.textContent, seeked: video.currentTime};
    }""")
    assert result["rows"] == [["year", "A", "B"], ["2022", "3", "4"], ["2023", "5", ""], ["2024", "", "1"]]
    assert result["stamps"] == [3.5, 12, 7, 3723]
    assert result["buttons"] == ["<3.5 seconds>", "00:12"] and result["seeked"] == 12
    assert result["text"] == "A cat at <3.5 seconds>, a dog at 00:12."
    assert non_background_pixels(page.locator("#view canvas").screenshot()) > 1500
    save(page, shots, "demo-chart.png", clip={"x": 0, "y": 0, "width": 1280, "height": 1000})


def test_unreachable_server_counts_down_to_a_retry(page: Any, tmp_path: Path) -> None:
    import socket

    from vlserve.demo import create_demo_app

    with socket.socket() as sock:  # a loopback port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for url in run_server(create_demo_app(dead)):
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready='1']")
        page.wait_for_selector("#server-status.bad")
        assert page.text_content("#server-status") == "unreachable"
        # The task list itself failed with 2001: the page says the server is busy and counts down.
        assert page.get_attribute("#error", "data-code") == "2001"
        assert "busy" in page.text_content("#error")
        countdown = page.text_content("#error .countdown")
        assert countdown in {f"Retrying in {n} s…" for n in range(1, 6)}


def test_served_by_the_server_itself_at_ui(page: Any, vl_server: str) -> None:
    page.goto(vl_server + "/ui")
    page.wait_for_selector("body[data-ready='1']")
    tasks = page.eval_on_selector_all("#task option", "opts => opts.map(o => o.value)")
    assert {"vqa", "grounding", "chart_parse", "ocr", "doc_analyze", "video_qa", "multiview_3d"} <= set(tasks)
    page.wait_for_selector("#server-status.ok")


PAGE_FILES = sorted(p.name for p in STATIC_DIR.iterdir() if p.suffix in (".html", ".js", ".css"))


def test_the_page_has_its_files() -> None:
    assert {"index.html", "app.js", "api.js", "i18n.js", "jobs.js", "markdown.js", "render.js", "viewer3d.js",
            "style.css"} <= set(PAGE_FILES)


def test_ui_on_a_server_with_keys_asks_for_one(page: Any, keyed_server: str, tmp_path: Path) -> None:
    page.goto(keyed_server + "/ui/?task=vqa")
    page.wait_for_selector("body[data-ready='1']")
    upload(page, scene_png(tmp_path / "scene.png"))
    page.fill("#text", "What is it?")
    page.fill("#opt-max-tokens", "4")
    page.click("#run")
    page.wait_for_selector("#error[data-code='4001']")
    assert "Enter a valid key under Connection" in page.text_content("#error")
    assert page.evaluate("document.getElementById('connection').open")
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")  # a change event: the page keeps the key for this tab
    page.click("#run")
    wait_for_answer(page, 120)
    assert "/ 4" in page.text_content("#metadata")


@pytest.mark.parametrize("name", PAGE_FILES)
def test_page_files_reference_nothing_remote(name: str) -> None:
    text = (STATIC_DIR / name).read_text()
    assert not re.search(r"https?://|(^|[\s\"'(=])//[\w.-]+\.[a-z]{2,}/", text)  # no absolute or protocol-relative URL
    if name.endswith(".css"):
        assert "@import" not in text and "url(" not in text and "@font-face" not in text


def test_a_jobs_only_task_runs_as_a_job_with_streamed_progress(page: Any, demo_url: str, engine: Any,
                                                               tmp_path: Path) -> None:
    """video_summary is jobs_only in /tasks: the page submits a job, follows GET /jobs/{id}/events (never
    /infer_stream), shows the job's status and progress, then the answer and its metadata."""
    from vlserve.tasks import get_task
    from vlserve.testing.videos import timeline_video

    engine.grammar.matcher(get_task("video_summary").schema(), 64)  # set up outside the job (GIL-heavy)
    video = tmp_path / "meeting.mp4"
    video.write_bytes(timeline_video(6, fps=10, width=96, height=64))
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    open_demo(page, demo_url, "video_summary")
    upload(page, video)
    page.fill("#opt-max-tokens", "16")
    page.click("#run")
    page.wait_for_selector("#job-progress:not([hidden])")
    wait_for_answer(page, 300)
    box = page.locator("#job-progress")
    assert box.get_attribute("data-status") == "succeeded"
    assert int(box.get_attribute("data-events") or 0) >= 2  # its state when followed, then the final event
    assert page.locator("#job-bar").evaluate("p => p.value") == 1
    assert "done" in page.text_content("#job-status") and "100 %" in page.text_content("#job-status")
    job_id = box.get_attribute("data-job")
    assert any(url.endswith(f"/api/jobs/{job_id}/events") for url in sent), sent
    assert not any(url.endswith("/infer_stream") or url.endswith("/infer") for url in sent)
    answer = json.loads(page.text_content("#answer"))
    assert answer["duration"] == 6.0 and [w["start"] for w in answer["windows"]] == [0.0]
    assert "/ " in page.text_content("#metadata")
