"""render_pdf / pdf_page_count with PDFs made in the test (Pillow, PDFium, and by hand)."""

from __future__ import annotations

import io

import pypdfium2 as pdfium  # type: ignore[import-untyped]
import pytest

from tests.inputs.helpers import make_encrypted_pdf, make_pdf
from vlserve.errors import DocumentError, RequestError, TooManyInputsError
from vlserve.inputs import pdf_page_count, render_pdf

SIZES = [(200, 100), (100, 150), (300, 300)]  # points


@pytest.fixture(scope="module")
def pdf() -> bytes:
    return make_pdf(SIZES)


def huge_page_pdf(width_pt: float, height_pt: float) -> bytes:
    document = pdfium.PdfDocument.new()
    document.new_page(width_pt, height_pt)
    buf = io.BytesIO()
    document.save(buf)
    document.close()
    return buf.getvalue()


def test_page_count(pdf: bytes) -> None:
    assert pdf_page_count(pdf) == 3


@pytest.mark.parametrize("dpi", [72, 144, 36])
def test_pages_render_at_the_requested_dpi(pdf: bytes, dpi: int) -> None:
    rendered = render_pdf(pdf, dpi=dpi)
    assert rendered.page_count == 3 and not rendered.truncated
    for image, (w, h) in zip(rendered.pages, SIZES, strict=True):
        assert image.mode == "RGB"
        assert abs(image.width - w * dpi / 72) <= 1
        assert abs(image.height - h * dpi / 72) <= 1


def test_page_range_selects_pages_and_clamps_the_end(pdf: bytes) -> None:
    rendered = render_pdf(pdf, dpi=72, first_page=2, last_page=99)
    assert [image.size for image in rendered.pages] == SIZES[1:]
    assert render_pdf(pdf, dpi=72, first_page=3, last_page=3).pages[0].size == SIZES[2]


@pytest.mark.parametrize(("first", "last"), [(0, None), (4, None), (3, 2)])
def test_invalid_page_ranges_are_request_errors(pdf: bytes, first: int, last: int | None) -> None:
    with pytest.raises(RequestError):
        render_pdf(pdf, first_page=first, last_page=last)


def test_more_pages_than_the_limit_rejects_by_default(pdf: bytes) -> None:
    with pytest.raises(
        TooManyInputsError, match="3 pages in the requested range, more than the limit of 2"
    ) as info:
        render_pdf(pdf, max_pages=2)
    assert info.value.code == 1006
    render_pdf(pdf, max_pages=2, first_page=2)  # a range within the limit is fine


def test_more_pages_than_the_limit_truncates_when_asked(pdf: bytes) -> None:
    rendered = render_pdf(pdf, dpi=72, max_pages=2, policy="truncate")
    assert rendered.truncated and rendered.page_count == 3
    assert [image.size for image in rendered.pages] == SIZES[:2]


def test_huge_page_is_scaled_down_to_the_pixel_budget() -> None:
    data = huge_page_pdf(14400, 14400)  # 200 x 200 inches: 28800 x 28800 px at 144 dpi
    (image,) = render_pdf(data).pages
    assert image.width * image.height <= 4096 * 4096
    assert image.width >= 4090 and image.height >= 4090
    (small,) = render_pdf(data, max_page_pixels=100_000).pages
    assert small.width * small.height <= 100_000


def test_long_thin_page_keeps_its_aspect_within_the_budget() -> None:
    (image,) = render_pdf(huge_page_pdf(14400, 144), max_page_pixels=1_000_000).pages
    assert image.width * image.height <= 1_000_000
    assert 95 <= image.width / image.height <= 105


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pdf at all",
        b"%PDF-1.7\n% garbage that is no PDF\n%%EOF",
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
    ],
)
def test_corrupt_or_non_pdf_data_is_a_document_error(data: bytes) -> None:
    with pytest.raises(DocumentError) as info:
        render_pdf(data)
    assert info.value.code == 1004
    with pytest.raises(DocumentError):
        pdf_page_count(data)


def test_truncated_pdf_is_a_document_error_or_renders_what_survives(pdf: bytes) -> None:
    # PDFium repairs what it can; the only acceptable outcomes are images or DocumentError.
    try:
        rendered = render_pdf(pdf[: len(pdf) // 3])
    except DocumentError:
        return
    assert all(image.mode == "RGB" for image in rendered.pages)


def test_password_protected_pdf_is_a_document_error_saying_so() -> None:
    with pytest.raises(DocumentError, match="password-protected"):
        render_pdf(make_encrypted_pdf())


def test_dpi_out_of_range_is_a_request_error(pdf: bytes) -> None:
    with pytest.raises(RequestError, match="dpi"):
        render_pdf(pdf, dpi=0)
    with pytest.raises(RequestError, match="dpi"):
        render_pdf(pdf, dpi=100_000)
