"""Render PDF pages to images with PDFium, within fixed page and pixel budgets.

The page count is checked before anything is rendered, and each page's scale
is chosen from its size in points so that no bitmap exceeds
``max_page_pixels``: a page declared 200 inches wide costs the same as a
normal one instead of gigapixels. PDFium is not thread-safe, so every call
into it holds one module lock; callers may still run ``render_pdf`` in a
worker thread to keep the event loop free.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]
from PIL import Image

from vlserve.errors import DocumentError, RequestError, TooManyInputsError

__all__ = ["PagePolicy", "RenderedDocument", "pdf_page_count", "render_pdf"]

PagePolicy = Literal["reject", "truncate"]

_PDFIUM_LOCK = threading.Lock()
_POINTS_PER_INCH = 72.0
_MAX_DPI = 1200


@dataclass(frozen=True)
class RenderedDocument:
    """Rendered pages (RGB), the document's total page count, and whether pages were dropped."""

    pages: list[Image.Image]
    page_count: int
    truncated: bool


@contextmanager
def _open(data: bytes) -> Iterator[pdfium.PdfDocument]:
    """Open ``data`` under the PDFium lock, turning load failures into DocumentError."""
    with _PDFIUM_LOCK:
        if not data:
            raise DocumentError("The document is empty.")
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as err:
            raise DocumentError(_load_failure_message(err.err_code)) from err
        try:
            # Without a form environment, filled-in form fields render blank; it must
            # exist before the first page is loaded.
            document.init_forms()
            yield document
        finally:
            document.close()


def _load_failure_message(code: int | None) -> str:
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return "The PDF is password-protected; remove the password and send it again."
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return "The PDF uses an unsupported encryption scheme; send an unencrypted copy."
    return "The document could not be read as a PDF; it may be corrupt or not a PDF at all."


def pdf_page_count(data: bytes) -> int:
    """Number of pages in the PDF ``data``; raises DocumentError if it cannot be opened."""
    with _open(data) as document:
        return len(document)


def _page_scale(width_pt: float, height_pt: float, dpi: int, max_page_pixels: int) -> float:
    """Points-to-pixels scale: ``dpi / 72``, lowered so the bitmap stays within ``max_page_pixels``."""
    scale = dpi / _POINTS_PER_INCH
    area = max(width_pt, 1.0) * max(height_pt, 1.0)
    if area * scale * scale > max_page_pixels:
        scale = math.sqrt(max_page_pixels / area)
        # PDFium rounds each side; shave until the rounded bitmap is inside the budget too.
        while scale > 0 and math.ceil(width_pt * scale) * math.ceil(height_pt * scale) > max_page_pixels:
            scale *= 0.999
    return scale


def render_pdf(
    data: bytes,
    *,
    dpi: int = 144,
    max_pages: int = 20,
    first_page: int = 1,
    last_page: int | None = None,
    max_page_pixels: int = 4096 * 4096,
    policy: PagePolicy = "reject",
) -> RenderedDocument:
    """Render pages ``first_page..last_page`` (1-based, inclusive) of a PDF to RGB images.

    ``last_page`` defaults to the last page and is clamped to it. If the range
    holds more than ``max_pages`` pages, ``policy="reject"`` raises
    TooManyInputsError and ``"truncate"`` renders the first ``max_pages`` of it
    with ``truncated=True``. Raises DocumentError for corrupt, encrypted or
    non-PDF data and RequestError for an invalid page range or dpi.
    """
    if not 1 <= dpi <= _MAX_DPI:
        raise RequestError(f"dpi must be between 1 and {_MAX_DPI}, got {dpi}.")
    if max_pages < 1 or max_page_pixels < 1:
        raise ValueError("max_pages and max_page_pixels must be positive")
    with _open(data) as document:
        page_count = len(document)
        if page_count == 0:
            raise DocumentError("The PDF has no pages.")
        if first_page < 1 or first_page > page_count:
            raise RequestError(f"first_page must be between 1 and {page_count} (the document's page count).")
        last = page_count if last_page is None else min(last_page, page_count)
        if last < first_page:
            raise RequestError("last_page must not be before first_page.")
        wanted = last - first_page + 1
        truncated = wanted > max_pages
        if truncated and policy == "reject":
            raise TooManyInputsError(
                f"The document has {wanted} pages in the requested range, more than the limit of "
                f"{max_pages}; choose pages with first_page/last_page.",
                page_count=page_count,
                limit=max_pages,
            )
        pages = [
            _render_page(document, index, dpi, max_page_pixels)
            for index in range(first_page - 1, first_page - 1 + min(wanted, max_pages))
        ]
    return RenderedDocument(pages=pages, page_count=page_count, truncated=truncated)


def _render_page(document: pdfium.PdfDocument, index: int, dpi: int, max_page_pixels: int) -> Image.Image:
    try:
        page = document[index]
    except pdfium.PdfiumError as err:
        raise DocumentError(f"Page {index + 1} of the PDF could not be read; it may be corrupt.") from err
    try:
        width_pt, height_pt = page.get_size()
        scale = _page_scale(width_pt, height_pt, dpi, max_page_pixels)
        bitmap = page.render(scale=scale)
        try:
            # Default BGR rendering makes to_pil() copy into a standalone RGB image.
            image: Image.Image = bitmap.to_pil()
        finally:
            bitmap.close()
    except pdfium.PdfiumError as err:
        raise DocumentError(f"Page {index + 1} of the PDF could not be rendered.") from err
    finally:
        page.close()
    return image.convert("RGB") if image.mode != "RGB" else image
