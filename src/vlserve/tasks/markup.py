"""Reading HTML that a model wrote: out of its Markdown fences, parsed by a WHATWG-conformant
parser (html5lib, the reference algorithm browsers implement), with the parse errors and the
outside resources it would load reported rather than hidden."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.DOTALL)
_OPEN_FENCE = re.compile(r"```[ \t]*[A-Za-z0-9_+-]*[ \t]*\r?\n")
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""", re.IGNORECASE)
_TAG = re.compile(r"<\s*[A-Za-z!]")
#: Schemes a rendered page can use without reaching anything outside itself.
_INLINE = ("data:", "#", "about:blank")
#: Parse errors html5lib reports when the input stops in the middle of a construct (a cut-off answer).
_CUT_OFF = "eof-in-"
MAX_REPORTED_ERRORS = 5


def strip_fences(text: str, prefer: tuple[str, ...] = ("html",)) -> str:
    """The code a model's answer holds: a ``<think>`` block dropped, then the first fenced block
    whose language is in ``prefer`` (else the first fenced block, else an unclosed fence's rest,
    else the whole text)."""
    text = _THINK.sub("", text).strip()
    blocks = _FENCE.findall(text)
    for language, body in blocks:
        if language.lower() in prefer:
            return str(body).strip()
    if blocks:
        return str(blocks[0][1]).strip()
    opened = _OPEN_FENCE.search(text)
    if opened is not None and opened.start() == 0:  # cut off before its closing fence
        return text[opened.end():].strip()
    return text


@dataclass
class ParsedHtml:
    """A document as a browser builds it; ``errors``: html5lib's parse errors, as ``line:col code``."""

    document: Element
    errors: list[str] = field(default_factory=list)
    cut_off: bool = False  # the input ended inside a tag, comment or element that needs closing
    has_markup: bool = False  # any tag at all (plain text is a "valid" HTML document, but not a page)

    def warnings(self) -> list[str]:
        out = []
        if self.errors:
            shown = "; ".join(self.errors[:MAX_REPORTED_ERRORS])
            hidden = len(self.errors) - MAX_REPORTED_ERRORS
            more = f" (and {hidden} more)" if hidden > 0 else ""
            out.append(f"{len(self.errors)} HTML parse error(s): {shown}{more}")
        if self.cut_off:
            out.append("the HTML ends in the middle of an element (cut off at max_tokens?)")
        if not self.has_markup:
            out.append("the answer contains no HTML markup")
        return out


def parse_html(text: str) -> ParsedHtml:
    """Parse ``text`` the way a browser would (never raises: HTML has no invalid input)."""
    import html5lib

    parser = html5lib.HTMLParser(tree=html5lib.getTreeBuilder("etree"), namespaceHTMLElements=False)
    document = parser.parse(text)
    errors: list[str] = []
    cut_off = False
    for (line, column), code, _data in parser.errors:
        errors.append(f"{line}:{column} {code}")
        cut_off = cut_off or str(code).startswith(_CUT_OFF)
    return ParsedHtml(document, errors, cut_off, bool(_TAG.search(text)))


def external_resources(document: Element) -> list[str]:
    """URLs of what rendering ``document`` would load from outside it (stylesheets, scripts,
    images, fonts, frames, CSS ``url()`` and ``@import``), in document order, without repeats.
    Links a reader could follow (``<a href>``, form actions) are not loaded, so not listed."""
    found: dict[str, None] = {}

    def add(url: Any) -> None:
        url = str(url).strip()
        if url and not url.lower().startswith(_INLINE):
            found.setdefault(url[:300], None)

    for element in document.iter():
        tag = element.tag if isinstance(element.tag, str) else ""
        attrs = element.attrib
        for name in ("src", "poster", "background"):
            if name in attrs:
                add(attrs[name])
        if "srcset" in attrs:
            for candidate in str(attrs["srcset"]).split(","):
                add(candidate.strip().split(" ")[0])
        if tag == "object" and "data" in attrs:
            add(attrs["data"])
        if tag in ("link", "image", "use", "feimage") and "href" in attrs:
            add(attrs["href"])
        for name, value in attrs.items():
            if str(name).endswith("href") and tag in ("image", "use", "feimage"):
                add(value)
        if "style" in attrs:
            _css_urls(str(attrs["style"]), add)
        if tag == "style" and element.text:
            _css_urls(element.text, add)
    return list(found)


def _css_urls(css: str, add: Any) -> None:
    for match in _CSS_URL.finditer(css):
        add(match.group(1) or match.group(2))


def text_of(element: Element) -> str:
    """The element's text as a reader sees it: all descendants' text, whitespace collapsed."""
    return " ".join("".join(element.itertext()).split())
