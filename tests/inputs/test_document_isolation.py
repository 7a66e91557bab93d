"""PDF rendering in worker processes: hard limits, one fixed 1004 message, and image decoding unaffected."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import numpy as np
import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest
from PIL import Image

from tests.inputs.helpers import make_pdf, make_slow_pdf
from vlserve.errors import DocumentError, TooManyInputsError
from vlserve.inputs import probe_pdf_isolated, render_pdf, render_pdf_isolated
from vlserve.inputs.documents import TOO_COMPLEX
from vlserve.isolation import WorkerLimits, WorkerPool
from vlserve.media import VisionSettings, load_image_async

PRELOAD = ("pypdfium2", "PIL.Image", "vlserve.inputs.documents")


@pytest.fixture(scope="module")
def pdf_pool() -> Iterator[WorkerPool]:
    pool = WorkerPool("pdf-test", 2, WorkerLimits(wall_seconds=2.0, cpu_seconds=2.0, memory_bytes=256 << 20,
                                                  preload=PRELOAD))
    yield pool
    pool.close()


def _page_pdf(width_pt: float, height_pt: float, pages: int = 1) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(width_pt, height_pt)
    buf = io.BytesIO()
    document.save(buf)
    document.close()
    return buf.getvalue()


def test_isolated_render_equals_in_process_render(pdf_pool: WorkerPool) -> None:
    data = make_pdf([(200, 100), (100, 150)])
    here = render_pdf(data, dpi=100)
    there = asyncio.run(render_pdf_isolated(data, dpi=100, pool=pdf_pool))
    assert there.page_count == here.page_count == 2 and not there.truncated
    for a, b in zip(here.pages, there.pages, strict=True):
        assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


def test_isolated_errors_keep_their_class_and_message(pdf_pool: WorkerPool) -> None:
    with pytest.raises(DocumentError, match="could not be read as a PDF"):
        asyncio.run(render_pdf_isolated(b"%PDF-1.4 nothing else", pool=pdf_pool))
    with pytest.raises(TooManyInputsError) as info:
        asyncio.run(render_pdf_isolated(make_pdf([(50, 50)] * 3), max_pages=2, pool=pdf_pool))
    assert info.value.code == 1006 and info.value.details == {"page_count": 3, "limit": 2}


def test_slow_pdf_is_killed_at_its_limit_while_images_keep_decoding(pdf_pool: WorkerPool) -> None:
    slow = make_slow_pdf()  # ~7 s of PDFium work in ~6 KB
    assert len(slow) < 10_000
    buf = io.BytesIO()
    Image.new("RGB", (640, 480), "teal").save(buf, "PNG")
    image_bytes = buf.getvalue()

    async def scenario() -> None:
        pdf = asyncio.ensure_future(render_pdf_isolated(slow, dpi=144, pool=pdf_pool))
        await asyncio.sleep(0.3)  # the render is under way in its worker
        for _ in range(5):
            image = await asyncio.wait_for(load_image_async(image_bytes, VisionSettings()), 10)
            assert image.size == (640, 480)
        assert not pdf.done()  # the images finished while the PDF was still rendering
        with pytest.raises(DocumentError) as info:
            await pdf
        assert info.value.code == 1004 and info.value.message == TOO_COMPLEX
        # The pool replaced the killed worker: the next document renders normally.
        doc = await render_pdf_isolated(make_pdf([(72, 72)]), dpi=72, pool=pdf_pool)
        assert doc.pages[0].size == (72, 72)

    asyncio.run(scenario())


def test_render_that_needs_more_memory_than_allowed_is_1004() -> None:
    # One 10000x10000 pt page allowed at full size: a 400 MB bitmap, beyond a 128 MiB worker.
    pool = WorkerPool("pdf-memory", 1, WorkerLimits(wall_seconds=20, cpu_seconds=20, memory_bytes=128 << 20,
                                                     preload=PRELOAD))
    try:
        data = _page_pdf(10000, 10000)
        with pytest.raises(DocumentError) as info:
            asyncio.run(render_pdf_isolated(data, dpi=72, max_page_pixels=10**8, max_document_pixels=10**8,
                                            pool=pool))
        assert info.value.message == TOO_COMPLEX
        # The same page within the default budgets renders in the same worker limits.
        doc = asyncio.run(render_pdf_isolated(data, dpi=72, max_page_pixels=2048 * 2048,
                                              max_document_pixels=2048 * 2048, pool=pool))
        assert doc.pages[0].width * doc.pages[0].height <= 2048 * 2048
    finally:
        pool.close()


def test_document_pixel_budget_shrinks_every_page_alike() -> None:
    data = _page_pdf(612, 792, pages=4)  # US Letter: 1224x1584 = 1.94 Mpx each at 144 dpi
    full = render_pdf(data, dpi=144)
    assert all(page.size == (1224, 1584) for page in full.pages)
    budget = 4 * 1000 * 1000
    shrunk = render_pdf(data, dpi=144, max_document_pixels=budget)
    assert sum(p.width * p.height for p in shrunk.pages) <= budget
    assert len({p.size for p in shrunk.pages}) == 1
    width, height = shrunk.pages[0].size
    assert abs(width / height - 612 / 792) < 0.01 and width * height > 0.95 * budget / 4


def test_page_boxes_are_all_read_before_any_page_renders() -> None:
    # A huge page after a small one: the small one shrinks too, because the budget is the document's.
    data = make_pdf([(100, 100), (5000, 5000)])
    doc = render_pdf(data, dpi=72, max_page_pixels=10**8, max_document_pixels=1_000_000)
    assert sum(p.width * p.height for p in doc.pages) <= 1_000_000
    assert doc.pages[0].size[0] < 100


def test_probe_reads_boxes_and_predicts_the_rendered_pixels(pdf_pool: WorkerPool) -> None:
    data = make_pdf([(200, 100), (100, 150), (5000, 5000)])
    probe = asyncio.run(probe_pdf_isolated(data, max_pages=3, pool=pdf_pool))
    assert probe.page_count == 3 and not probe.truncated
    assert probe.page_sizes == [(200, 100), (100, 150), (5000, 5000)]
    rendered = render_pdf(data, dpi=72, max_page_pixels=10**6, max_document_pixels=2 * 10**6)
    actual = sum(p.width * p.height for p in rendered.pages)
    predicted = probe.render_pixels(72, max_page_pixels=10**6, max_document_pixels=2 * 10**6)
    assert actual <= predicted * 1.01 and predicted <= 2 * 10**6
    with pytest.raises(TooManyInputsError):
        asyncio.run(probe_pdf_isolated(data, max_pages=2, pool=pdf_pool))
    assert asyncio.run(probe_pdf_isolated(data, max_pages=2, policy="truncate", pool=pdf_pool)).truncated


def test_probing_a_slow_pdf_does_not_render_it(pdf_pool: WorkerPool) -> None:
    probe = asyncio.run(probe_pdf_isolated(make_slow_pdf(), pool=pdf_pool))  # the render would pass 2 s
    assert probe.page_sizes == [(612, 792)]
