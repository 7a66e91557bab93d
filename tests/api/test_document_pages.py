"""Documents may name the pages to read, so the 1006 advice ("choose pages with first_page/last_page")
is one the caller can follow; the 1002 advice names only what the caller can do (start/end, not the
server's truncation policy)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api.helpers import make_settings, run_server
from tests.api.samples import data_uri, mp4_bytes, pdf_bytes
from vlserve.api.app import create_app
from vlserve.client import Client
from vlserve.runtime.protocol import ImagePart
from vlserve.testing import FakeEngine

PDF = data_uri(pdf_bytes(pages=6), "application/pdf")


@pytest.fixture(scope="module")
def fake() -> FakeEngine:
    return FakeEngine("fake")


@pytest.fixture(scope="module")
def url(fake: FakeEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from run_server(create_app(make_settings(tmp_path_factory.mktemp("pages")), engine=fake))  # 3 pages max


def ask(url: str, documents: list[Any]) -> httpx.Response:
    body = {"task": "doc_analyze", "documents": documents, "options": {"max_tokens": 4}}
    return httpx.post(url + "/infer", json=body, timeout=60)


def pages_seen(fake: FakeEngine) -> int:
    return sum(isinstance(p, ImagePart) for m in fake.requests[-1].messages for p in m.parts)


def test_too_many_pages_names_the_fix_and_the_fix_works(url: str, fake: FakeEngine) -> None:
    refused = ask(url, [PDF])
    assert refused.status_code == 400 and refused.json()["code"] == 1006
    assert "first_page/last_page" in refused.json()["msg"]
    chosen = ask(url, [{"url": PDF, "first_page": 2, "last_page": 4}])
    assert chosen.status_code == 200, chosen.text
    assert pages_seen(fake) == 3
    tail = ask(url, [{"url": PDF, "first_page": 5}])  # to the end: pages 5 and 6
    assert tail.status_code == 200 and pages_seen(fake) == 2


def test_bad_page_choices_are_400(url: str) -> None:
    assert ask(url, [{"url": PDF, "first_page": 9}]).json()["code"] == 4000
    assert ask(url, [{"url": PDF, "first_page": 4, "last_page": 2}]).json()["code"] == 4000
    assert ask(url, [{"url": PDF, "first_page": 0}]).status_code in (400, 422)
    assert ask(url, [{"url": PDF, "pages": "1-2"}]).status_code in (400, 422)  # unknown fields are refused


def test_the_sdk_sends_page_choices(url: str, fake: FakeEngine, tmp_path: Any) -> None:
    path = tmp_path / "six.pdf"
    path.write_bytes(pdf_bytes(pages=6))
    with Client(url) as client:
        answer = client.ask(None, "", task="doc_analyze", documents=[{"url": path, "first_page": 6}], max_tokens=4)
    assert answer.code == 0 and pages_seen(fake) == 1


def test_a_long_video_suggests_only_what_the_caller_can_do() -> None:
    from vlserve.errors import VideoTooLongError
    from vlserve.media import VisionSettings, load_video

    with pytest.raises(VideoTooLongError) as caught:
        load_video(mp4_bytes(31, fps=1), VisionSettings())
    assert caught.value.code == 1002
    assert "start/end" in caught.value.message and "truncat" not in caught.value.message  # the operator's policy
