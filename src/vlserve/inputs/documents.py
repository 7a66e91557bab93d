"""Render PDF pages to images with PDFium, within fixed page and pixel budgets.

The page count and every page box of the range are read before anything is
rendered, and each page's scale is chosen from its size in points so that no
bitmap exceeds ``max_page_pixels`` and all of them together stay within
``max_document_pixels`` (pages render proportionally smaller to fit): a page
declared 200 inches wide costs the same as a normal one instead of gigapixels.

``render_pdf`` runs PDFium in the calling process (PDFium is not thread-safe, so
every call into it holds one module lock). The server uses ``render_pdf_isolated``:
the same function in a worker process of ``vlserve.isolation.document_pool``,
under hard wall-clock, CPU and memory limits, so a page with a million drawing
operators or a render that wants gigabytes costs its own request a 1004 and
nobody else anything (see docs/inputs.md, "Isolation").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pypdfium2.raw as pdfium_c  # type: ignore[import-untyped]
from PIL import Image

from vlserve.errors import DocumentError, RequestError, TooManyInputsError
from vlserve.isolation import IsolationError, WorkerPool, WorkerTimeout, document_pool

__all__ = [
    "DocumentProbe",
    "PagePolicy",
    "RenderedDocument",
    "pdf_page_count",
    "probe_pdf",
    "probe_pdf_isolated",
    "render_pdf",
    "render_pdf_isolated",
]

PagePolicy = Literal["reject", "truncate"]

_PDFIUM_LOCK = threading.Lock()
_POINTS_PER_INCH = 72.0
_MAX_DPI = 1200
DEFAULT_MAX_DOCUMENT_PIXELS = 8 * 2048 * 2048
# One message for every render stopped by a limit: what the limit was is the server's business.
TOO_COMPLEX = (
    "The PDF is too large or too complex to render within this server's limits (time or memory); "
    "send fewer or simpler pages, or the pages as images."
)


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
    max_document_pixels: int = DEFAULT_MAX_DOCUMENT_PIXELS,
    policy: PagePolicy = "reject",
) -> RenderedDocument:
    """Render pages ``first_page..last_page`` (1-based, inclusive) of a PDF to RGB images.

    ``last_page`` defaults to the last page and is clamped to it. If the range
    holds more than ``max_pages`` pages, ``policy="reject"`` raises
    TooManyInputsError and ``"truncate"`` renders the first ``max_pages`` of it
    with ``truncated=True``. No page exceeds ``max_page_pixels`` and all pages
    together stay within ``max_document_pixels``. Raises DocumentError for
    corrupt, encrypted or non-PDF data and RequestError for an invalid page
    range or dpi. Runs in this process: untrusted documents go through
    ``render_pdf_isolated``.
    """
    arrays, page_count, truncated = _render_arrays(
        data,
        dpi=dpi,
        max_pages=max_pages,
        first_page=first_page,
        last_page=last_page,
        max_page_pixels=max_page_pixels,
        max_document_pixels=max_document_pixels,
        policy=policy,
    )
    return _document(arrays, page_count, truncated)


def _document(arrays: list[np.ndarray], page_count: int, truncated: bool) -> RenderedDocument:
    pages = []
    arrays.reverse()
    while arrays:  # each array is let go as its image is made: never all pages twice
        pages.append(Image.fromarray(arrays.pop()))
    return RenderedDocument(pages=pages, page_count=page_count, truncated=truncated)


def _render_arrays(
    data: bytes,
    *,
    dpi: int,
    max_pages: int,
    first_page: int,
    last_page: int | None,
    max_page_pixels: int,
    max_document_pixels: int,
    policy: PagePolicy,
) -> tuple[list[np.ndarray], int, bool]:
    """The pages as ``(h, w, 3)`` uint8 arrays (what crosses the worker's pipe cheaply), the count, truncation."""
    if not 1 <= dpi <= _MAX_DPI:
        raise RequestError(f"dpi must be between 1 and {_MAX_DPI}, got {dpi}.")
    if max_pages < 1 or max_page_pixels < 1 or max_document_pixels < 1:
        raise ValueError("max_pages, max_page_pixels and max_document_pixels must be positive")
    with _open(data) as document:
        indices, page_count, truncated = _select_pages(document, first_page, last_page, max_pages, policy)
        # Every box first: the budget of each page depends on all of them, and nothing is rendered
        # before the whole document's cost is known.
        sizes = [_page_size(document, index) for index in indices]
        budgets = _page_budgets(sizes, dpi, max_page_pixels, max_document_pixels)
        pages = [
            _render_page(document, index, size, dpi, budget)
            for index, size, budget in zip(indices, sizes, budgets, strict=True)
        ]
    return pages, page_count, truncated


def _select_pages(
    document: pdfium.PdfDocument, first_page: int, last_page: int | None, max_pages: int, policy: PagePolicy
) -> tuple[range, int, bool]:
    """Indices (0-based) of the pages to render, the page count, and whether the range was cut."""
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
    return range(first_page - 1, first_page - 1 + min(wanted, max_pages)), page_count, truncated


@dataclass(frozen=True)
class DocumentProbe:
    """What rendering a PDF would cost, read without rendering: for cost-based admission.

    ``page_sizes`` are the boxes (points) of the pages ``render_pdf`` would render with the same
    page arguments; ``render_pixels`` is how many pixels it would produce in all.
    """

    page_count: int
    page_sizes: list[tuple[float, float]]
    truncated: bool

    def render_pixels(
        self, dpi: int, max_page_pixels: int = 4096 * 4096, max_document_pixels: int = DEFAULT_MAX_DOCUMENT_PIXELS
    ) -> int:
        """Upper bound of the pixels of all rendered pages at ``dpi`` under both budgets."""
        return sum(_page_budgets(self.page_sizes, dpi, max_page_pixels, max_document_pixels))


def probe_pdf(
    data: bytes,
    *,
    max_pages: int = 20,
    first_page: int = 1,
    last_page: int | None = None,
    policy: PagePolicy = "reject",
) -> DocumentProbe:
    """Page count and the boxes of the pages that would be rendered; nothing is rendered.

    Same page arguments and errors as ``render_pdf``. Runs PDFium in this
    process: for untrusted data use ``probe_pdf_isolated``.
    """
    if max_pages < 1:
        raise ValueError("max_pages must be positive")
    with _open(data) as document:
        indices, page_count, truncated = _select_pages(document, first_page, last_page, max_pages, policy)
        sizes = [_page_size(document, index) for index in indices]
    return DocumentProbe(page_count=page_count, page_sizes=sizes, truncated=truncated)


async def probe_pdf_isolated(
    data: bytes,
    *,
    max_pages: int = 20,
    first_page: int = 1,
    last_page: int | None = None,
    policy: PagePolicy = "reject",
    pool: WorkerPool | None = None,
) -> DocumentProbe:
    """``probe_pdf`` in the PDF worker pool (parsing a hostile PDF's structure can be costly too)."""
    try:
        return await (pool or document_pool()).arun(
            probe_pdf, data, max_pages=max_pages, first_page=first_page, last_page=last_page, policy=policy
        )
    except IsolationError as err:
        raise DocumentError(TOO_COMPLEX, reason=err.reason) from err


async def render_pdf_isolated(
    data: bytes,
    *,
    dpi: int = 144,
    max_pages: int = 20,
    first_page: int = 1,
    last_page: int | None = None,
    max_page_pixels: int = 4096 * 4096,
    max_document_pixels: int = DEFAULT_MAX_DOCUMENT_PIXELS,
    policy: PagePolicy = "reject",
    pool: WorkerPool | None = None,
) -> RenderedDocument:
    """``render_pdf`` in a worker process under hard limits (``pool`` defaults to the server's).

    Same arguments, result and errors as ``render_pdf``; a render stopped by its
    worker's time, CPU or memory limit, or one that crashes PDFium, raises
    DocumentError (1004) with one fixed message. Awaiting it uses no thread of
    the event loop's default executor, so image decoding never waits behind it.
    """
    try:
        arrays, page_count, truncated = await (pool or document_pool()).arun(
            _render_arrays,
            data,
            dpi=dpi,
            max_pages=max_pages,
            first_page=first_page,
            last_page=last_page,
            max_page_pixels=max_page_pixels,
            max_document_pixels=max_document_pixels,
            policy=policy,
        )
    except WorkerTimeout as err:
        raise DocumentError(TOO_COMPLEX, reason="timeout") from err
    except IsolationError as err:
        raise DocumentError(TOO_COMPLEX, reason=err.reason) from err
    return _document(arrays, page_count, truncated)


def _page_size(document: pdfium.PdfDocument, index: int) -> tuple[float, float]:
    try:
        page = document[index]
    except pdfium.PdfiumError as err:
        raise DocumentError(f"Page {index + 1} of the PDF could not be read; it may be corrupt.") from err
    try:
        width_pt, height_pt = page.get_size()
    finally:
        page.close()
    if not (math.isfinite(width_pt) and math.isfinite(height_pt)):
        raise DocumentError(f"Page {index + 1} of the PDF has an invalid size.")
    return abs(width_pt), abs(height_pt)


def _page_budgets(
    sizes: list[tuple[float, float]], dpi: int, max_page_pixels: int, max_document_pixels: int
) -> list[int]:
    """Pixel cap of each page: its size at ``dpi`` within ``max_page_pixels``, all shrunk alike to fit the document."""
    scale = dpi / _POINTS_PER_INCH
    natural = [min(max_page_pixels, max(w, 1.0) * max(h, 1.0) * scale * scale) for w, h in sizes]
    total = sum(natural)
    shrink = min(1.0, max_document_pixels / total) if total > 0 else 1.0
    return [max(1, int(n * shrink)) for n in natural]


def _render_page(
    document: pdfium.PdfDocument, index: int, size: tuple[float, float], dpi: int, max_page_pixels: int
) -> np.ndarray:
    """One page as an ``(h, w, 3)`` RGB array (PDFium renders RGB directly: no byte swapping copy)."""
    try:
        page = document[index]
    except pdfium.PdfiumError as err:
        raise DocumentError(f"Page {index + 1} of the PDF could not be read; it may be corrupt.") from err
    try:
        scale = _page_scale(size[0], size[1], dpi, max_page_pixels)
        bitmap = page.render(scale=scale, rev_byteorder=True)
        try:
            pixels: np.ndarray = np.array(bitmap.to_numpy(), dtype=np.uint8, copy=True)
        finally:
            bitmap.close()
    except pdfium.PdfiumError as err:
        raise DocumentError(f"Page {index + 1} of the PDF could not be rendered.") from err
    finally:
        page.close()
    return pixels
