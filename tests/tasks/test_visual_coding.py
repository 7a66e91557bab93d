"""visual_coding's reading of model text: fences, parse errors, outside resources, cut-off pages."""

from __future__ import annotations

import pytest
from PIL import Image

from vlserve.config import Settings
from vlserve.errors import RequestError
from vlserve.schemas import InferOptions
from vlserve.tasks import get_task
from vlserve.tasks.base import TaskInput
from vlserve.tasks.markup import external_resources, parse_html, strip_fences
from vlserve.tasks.visual_coding import VisualCoding

INP = TaskInput(images=[Image.new("RGB", (640, 360))])
PAGE = "<!DOCTYPE html>\n<html><head><style>h1{color:red}</style></head><body><h1>Hi</h1></body></html>"


def test_the_page_is_taken_out_of_its_fence_and_checked() -> None:
    answer = VisualCoding().answer(f"Here is the page:\n```html\n{PAGE}\n```\nEnjoy!", INP)
    assert answer["html"] == PAGE
    assert answer["valid"] is True and answer["parse_errors"] == 0 and answer["warnings"] == []
    assert answer["external_resources"] == [] and answer["image_size"] == [640, 360] and answer["render"] is None


def test_outside_resources_and_parse_errors_are_reported() -> None:
    html = ("<html><head><link rel=stylesheet href='https://cdn.example/x.css'><style>@import 'a.css';"
            "body{background:url(data:image/png;base64,AA==)} div{background:url(\"bg.png\")}</style></head>"
            "<body><img src=logo.png srcset='a.png 1x, b.png 2x'><a href='https://example.com/'>link</a>"
            "<p>unclosed <b>bold</i></body></html>")
    answer = VisualCoding().answer(html, INP)
    assert answer["external_resources"] == ["https://cdn.example/x.css", "a.css", "bg.png", "logo.png", "a.png",
                                            "b.png"]
    assert answer["parse_errors"] >= 2  # no doctype, a stray </i>
    assert answer["valid"] is True  # still a page a browser shows
    assert any("not self-contained" in w for w in answer["warnings"])
    assert any("parse error" in w and "expected-doctype" in w for w in answer["warnings"])


def test_a_cut_off_page_or_plain_text_is_not_valid() -> None:
    cut = VisualCoding().answer("```html\n<!DOCTYPE html><html><body><div class=\"a", INP)
    assert cut["html"].endswith('class="a') and cut["valid"] is False
    assert any("cut off" in w for w in cut["warnings"])
    prose = VisualCoding().answer("I cannot draw that.", INP)
    assert prose["valid"] is False and any("no HTML markup" in w for w in prose["warnings"])


def test_strip_fences_prefers_the_html_block_and_drops_thinking() -> None:
    text = "<think>plan: ```css\na{}\n```</think>\n```css\nb{}\n```\n```html\n<p>x</p>\n```"
    assert strip_fences(text) == "<p>x</p>"
    assert strip_fences("```\n<p>y</p>\n```") == "<p>y</p>"
    assert strip_fences("<p>z</p>") == "<p>z</p>"


def test_links_are_not_resources() -> None:
    parsed = parse_html("<a href='https://a.example/'>a</a><form action='https://b.example/'></form>")
    assert external_resources(parsed.document) == []


def test_render_is_an_option_of_visual_coding_only() -> None:
    settings = Settings.model_validate({})
    plain = get_task("visual_coding")
    assert plain.configure(InferOptions.model_validate({}), settings) is plain  # shared when nothing is asked
    rendering = plain.configure(InferOptions.model_validate({"render": True}), settings)
    assert isinstance(rendering, VisualCoding) and rendering.rendering == settings.rendering
    with pytest.raises(RequestError, match="options.render is not an option of task 'vqa'"):
        get_task("vqa").configure(InferOptions.model_validate({"render": True}), settings)
