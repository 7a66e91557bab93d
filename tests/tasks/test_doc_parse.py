"""doc_parse: QwenVL HTML from the model → layout elements in pixels of each page, and Markdown."""

from __future__ import annotations

from PIL import Image

from vlserve.runtime.protocol import ImagePart, TextPart
from vlserve.tasks.base import TaskInput
from vlserve.tasks.doc_parse import DocParse

# Page 1 is a 640 × 360 image, page 2 a 300 × 400 rendered PDF page.
INP = TaskInput(images=[Image.new("RGB", (640, 360))], pages=[Image.new("RGB", (300, 400))])
QWENVL_HTML = """```html
<html><body>
<div data-page="1">
<h1 data-bbox="100 50 900 120">Invoice 42</h1>
<p data-bbox="100 200 500 260">Total: <b>12 EUR</b></p>
<table data-bbox="0 300 1000 900"><tr><th>item</th><th>qty</th></tr><tr><td>bolt | M8</td><td>2</td></tr></table>
</div>
<div data-page="2">
<div class="image" data-bbox="10 10 500 500"></div>
<div class="formula" data-bbox="1000 990 0 900">E = mc^2</div>
<ul data-bbox="0 0 10 10"><li>one</li><li>two</li></ul>
<footer data-bbox="0 950 1000 1000">page 2</footer>
</div>
</body></html>
```"""


def test_elements_are_in_pixels_of_their_own_page() -> None:
    answer = DocParse().answer(QWENVL_HTML, INP)
    assert answer["pages"] == [{"page": 1, "size": [640, 360]}, {"page": 2, "size": [300, 400]}]
    got = [(e["type"], e["page"], e["bbox_2d"], e["box"]) for e in answer["elements"]]
    assert got == [
        ("heading", 1, [100, 50, 900, 120], [64, 18, 576, 43]),
        ("text", 1, [100, 200, 500, 260], [64, 72, 320, 94]),
        ("table", 1, [0, 300, 1000, 900], [0, 108, 640, 324]),
        ("image", 2, [10, 10, 500, 500], [3, 4, 150, 200]),
        ("formula", 2, [1000, 990, 0, 900], [0, 360, 300, 396]),  # corners swapped back
        ("list", 2, [0, 0, 10, 10], [0, 0, 3, 4]),
        ("footer", 2, [0, 950, 1000, 1000], [0, 380, 300, 400]),
    ]
    assert answer["elements"][1]["text"] == "Total: 12 EUR"
    assert answer["warnings"] == []


def test_markdown_keeps_the_structure() -> None:
    markdown = DocParse().answer(QWENVL_HTML, INP)["markdown"]
    assert markdown.split("\n\n") == [
        "# Invoice 42",
        "Total: 12 EUR",
        "| item | qty |\n| --- | --- |\n| bolt \\| M8 | 2 |",
        "![image](#page=2&box=3,4,150,200)",
        "$$\nE = mc^2\n$$",
        "- one\n- two",
        "page 2",
    ]


def test_without_page_divs_elements_belong_to_the_first_page() -> None:
    answer = DocParse().answer('<p data-bbox="0 0 1000 1000">all</p><p data-bbox="a b c">odd</p>plain tail', INP)
    assert [(e["page"], e["box"]) for e in answer["elements"]] == [(1, [0, 0, 640, 360])]
    assert answer["markdown"] == "all\n\nodd\n\nplain tail"
    assert any("not four numbers" in w for w in answer["warnings"])


def test_random_text_gives_markdown_and_no_elements() -> None:
    answer = DocParse().answer("lorem ipsum <b>dolor", INP)
    assert answer["elements"] == [] and answer["markdown"] == "lorem ipsum dolor"
    assert any("no elements" in w for w in answer["warnings"])


def test_every_page_is_shown_numbered() -> None:
    _, user = DocParse().messages(INP)
    parts = user.content
    assert [p.text for p in parts if isinstance(p, TextPart)] == ["Page 1:", "Page 2:", "QwenVL HTML"]
    assert sum(isinstance(p, ImagePart) for p in parts) == 2


def test_runaway_nesting_is_read_without_recursion_errors() -> None:
    # The model writes the HTML: thousands of nested containers must not crash the answer (a 500).
    for html in ("<div>" * 5000 + "deep", '<div data-page="1">' * 3000 + '<p data-bbox="0 0 10 10">p</p>'):
        answer = DocParse().answer(html, INP)
        assert answer["markdown"].endswith(("deep", "p"))
    shallow = DocParse().answer("<div>" * 10 + '<p data-bbox="0 0 1000 1000">kept</p>', INP)
    assert [e["text"] for e in shallow["elements"]] == ["kept"]
