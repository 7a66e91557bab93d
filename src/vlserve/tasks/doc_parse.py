"""doc_parse: document pages → Markdown plus layout elements ``[{type, box, text}]``.

The model writes Qwen3-VL's own document-parsing format, *QwenVL HTML*: ordinary HTML elements
(headings, paragraphs, lists, tables, figures, formulas) each with ``data-bbox="x1 y1 x2 y2"`` in
0–1000 coordinates of its page. Several pages go in one answer, each page's elements inside a
``<div data-page="N">``. The answer is parsed as a browser would parse it (html5lib); each
outermost element with a box becomes a layout element whose box is in pixels of its page, and
the whole is written out as Markdown (tables as Markdown tables, figures as placeholders with
their box).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

from PIL import Image

from vlserve.runtime.protocol import ImagePart, Message, Part, TextPart
from vlserve.tasks.base import InputRules, Task, TaskInput
from vlserve.tasks.coords import box_to_pixels
from vlserve.tasks.markup import parse_html, strip_fences, text_of

#: ``class`` words of QwenVL HTML that name an element's role better than its tag does.
_CLASS_TYPES = ("formula", "image", "chart", "header", "footer", "footnote", "page_number", "caption", "seal",
                "code", "title")
_TAG_TYPES = {
    **{f"h{level}": "heading" for level in range(1, 7)},
    "p": "text", "ul": "list", "ol": "list", "li": "list_item", "table": "table", "img": "image",
    "figure": "image", "figcaption": "caption", "header": "header", "footer": "footer", "pre": "code",
    "code": "code", "math": "formula", "blockquote": "text", "address": "text", "caption": "caption",
}
MAX_ELEMENTS = 2000
MAX_DEPTH = 32  # containers without a box looked into; the model writes the HTML, so it is bounded


def pages_of(inp: TaskInput) -> list[Image.Image]:
    """The pages in the order the model sees them: page images first, then rendered PDF pages."""
    return [*inp.images, *inp.pages]


class DocParse(Task):
    name = "doc_parse"
    summary = ("Parse document pages (images or PDFs) into Markdown and layout elements {type, box, text, page}, "
               "from Qwen3-VL's QwenVL HTML format; boxes in pixels of each page.")
    rules = InputRules(images=(0, 16), documents=(0, 2))
    lane = "batch"
    system_prompt = (
        "You are an AI specialized in recognizing and extracting text from document images. Analyze the page "
        "images and write the result in QwenVL HTML format: standard HTML elements (<h1>-<h6>, <p>, <ul>, <ol>, "
        "<li>, <table>, <tr>, <th>, <td>, <img>, <figure>, <figcaption>, <div class=\"formula\">, <header>, "
        "<footer>); every visible block carries data-bbox=\"x1 y1 x2 y2\" with integers from 0 to 1000 relative "
        "to its page's width and height, top-left origin. Put each page's elements inside "
        "<div data-page=\"N\"> for page N. No <style>, <script> or inline CSS, and no text outside the HTML."
    )
    default_instruction = "QwenVL HTML"
    defaults = {"max_tokens": 2048, "temperature": 0.0}

    def messages(self, inp: TaskInput) -> list[Message]:
        parts: list[Part] = []
        for number, page in enumerate(pages_of(inp), 1):
            parts.append(TextPart(f"Page {number}:"))
            parts.append(ImagePart(page))
        parts.append(TextPart(self.instruction(inp)))
        return [Message("system", self.system_prompt), Message("user", parts)]

    def answer(self, text: str, inp: TaskInput) -> dict[str, Any]:
        sizes = [page.size for page in pages_of(inp)]
        parsed = parse_html(strip_fences(text))
        reader = _Reader(sizes)
        body = parsed.document.find("body")
        reader.walk(body if body is not None else parsed.document, page=1)
        warnings = list(reader.warnings)
        if parsed.cut_off:
            warnings.append("the model's HTML ends in the middle of an element (cut off at max_tokens?)")
        if not reader.elements:
            warnings.append("the model's answer has no elements with a data-bbox")
        return {
            "markdown": "\n\n".join(block for block in reader.markdown if block).strip(),
            "elements": reader.elements,
            "pages": [{"page": n, "size": list(size)} for n, size in enumerate(sizes, 1)],
            "warnings": warnings,
        }


@dataclass
class _Reader:
    """Walks the parsed QwenVL HTML once, collecting elements and Markdown blocks in reading order."""

    sizes: list[tuple[int, int]]
    elements: list[dict[str, Any]] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    _bad_boxes: int = 0

    def walk(self, node: Element, page: int, depth: int = 0) -> None:
        # Loose text and inline elements between blocks run together into one paragraph.
        inline: list[str] = [node.text or ""]

        def flush() -> None:
            text = " ".join("".join(inline).split())
            if text:
                self.markdown.append(text)
            inline.clear()

        for child in node:
            if not isinstance(child.tag, str):  # a comment: only its tail is text
                pass
            elif child.get("data-bbox") is None and str(child.tag).lower() in _INLINE_TAGS:
                inline.append("".join(child.itertext()))
            else:
                flush()
                child_page = _page_number(child.get("data-page"), len(self.sizes)) or page
                box = child.get("data-bbox")
                if box is not None:
                    self.take(child, box, child_page)
                elif child.tag in _BLOCK_TAGS or not len(child) or depth >= MAX_DEPTH:
                    # (past MAX_DEPTH nested containers, a model's runaway nesting is read as one block)
                    self.markdown.append(to_markdown(child))
                else:  # a container without a box (a page's div, a section): its children are the blocks
                    self.walk(child, child_page, depth + 1)
            inline.append(child.tail or "")
        flush()

    def take(self, element: Element, raw_box: str, page: int) -> None:
        relative = _box(raw_box)
        kind = element_type(element)
        if relative is None:
            self._bad_boxes += 1
            if self._bad_boxes == 1:
                self.warnings.append(f"an element's data-bbox is not four numbers: {raw_box[:40]!r} (kept without it)")
            self.markdown.append(to_markdown(element))
            return
        page = min(page, len(self.sizes))
        box = box_to_pixels(relative, self.sizes[page - 1])
        if len(self.elements) < MAX_ELEMENTS:
            text = _table(element) if str(element.tag).lower() == "table" else text_of(element)
            self.elements.append({"type": kind, "page": page, "bbox_2d": relative, "box": box, "text": text})
        if kind in ("image", "chart", "seal") and not text_of(element):
            self.markdown.append(f"![{kind}](#page={page}&box={','.join(map(str, box))})")
        else:
            self.markdown.append(to_markdown(element))


_INLINE_TAGS = {"a", "abbr", "b", "bdi", "bdo", "br", "cite", "code", "data", "dfn", "em", "font", "i", "kbd",
                "mark", "q", "s", "samp", "small", "span", "strong", "sub", "sup", "time", "u", "var", "wbr"}
_BLOCK_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "pre", "blockquote", "figure", "img"}


def element_type(element: Element) -> str:
    """A layout element's type: a known ``class`` word first, else what its tag means, else ``text``."""
    classes = str(element.get("class", "")).lower().replace("-", "_").split()
    for word in _CLASS_TYPES:
        if word in classes:
            return "heading" if word == "title" else word
    return _TAG_TYPES.get(str(element.tag).lower(), "text")


def to_markdown(element: Element) -> str:
    """One block of QwenVL HTML as Markdown."""
    tag = str(element.tag).lower()
    if tag in _TAG_TYPES and tag.startswith("h") and tag[1:].isdigit():
        return "#" * int(tag[1:]) + " " + text_of(element)
    if tag in ("ul", "ol"):
        items = [li for li in element.iter("li")] or [element]
        marker = (lambda i: f"{i}.") if tag == "ol" else (lambda i: "-")
        return "\n".join(f"{marker(i)} {text_of(li)}" for i, li in enumerate(items, 1))
    if tag == "li":
        return f"- {text_of(element)}"
    if tag == "table":
        return _table(element)
    if tag in ("pre", "code") or element_type(element) == "code":
        return "```\n" + "".join(element.itertext()).strip("\n") + "\n```"
    if element_type(element) == "formula":
        return f"$$\n{text_of(element)}\n$$"
    if tag == "img":
        return f"![{element.get('alt', 'image')}]()"
    return text_of(element)


def _table(table: Element) -> str:
    rows = [[text_of(cell).replace("|", "\\|") for cell in row if cell.tag in ("td", "th")] for row in table.iter("tr")]
    rows = [row for row in rows if row]
    if not rows:
        return text_of(table)
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * width]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _box(raw: str) -> list[int] | None:
    parts = raw.replace(",", " ").split()
    if len(parts) != 4:
        return None
    try:
        values = [float(part) for part in parts]
    except ValueError:
        return None
    if not all(v == v and abs(v) < 1e9 for v in values):  # NaN or absurd
        return None
    return [int(round(min(1000.0, max(0.0, v)))) for v in values]


def _page_number(raw: str | None, pages: int) -> int | None:
    if raw is None:
        return None
    try:
        number = int(raw.strip())
    except ValueError:
        return None
    return number if 1 <= number <= max(1, pages) else None
