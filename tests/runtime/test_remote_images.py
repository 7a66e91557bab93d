"""Images leaving a gateway: the caller's own bytes when they need no work, re-encoded otherwise.

Every image here goes through the real loader (``load_image``, with all its checks) and the real
``RemoteEngine`` over loopback HTTP to FakeVllm (the stand-in for vLLM), which records what it
was sent; the assertions read the images back from those request bodies."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image, ImageDraw

from tests.runtime.upstreams import FakeVllm, gateway, gateway_settings
from vlserve.config import Upstream
from vlserve.media import VisionSettings, count_image_tokens, load_image
from vlserve.runtime.protocol import GenerationRequest, GenerationResult, ImagePart, Message, SamplingParams, TextPart
from vlserve.runtime.remote import RemoteEngine


def encoded(fmt: str, width: int = 96, height: int = 64, *, mode: str = "RGB", **save: Any) -> bytes:
    rng = np.random.default_rng(width * height)
    pixels = rng.integers(0, 256, (height, width, len(mode)), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, mode).save(buf, fmt, **save)
    return buf.getvalue()


def rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90 degrees clockwise to display
    return encoded("JPEG", 96, 64, exif=exif.tobytes())


def images_in(body: dict[str, Any]) -> list[bytes]:
    uris = [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]
    return [base64.b64decode(uri.split(",", 1)[1]) for uri in uris]


def sent_images(images: list[Image.Image], vision: VisionSettings, **options: Any) -> tuple[list[bytes], int]:
    """The images' bytes as the upstream received them, and the image tokens counted here."""
    fake = FakeVllm()
    with fake.serve() as url:
        async def run() -> GenerationResult:
            eng = RemoteEngine(url, Upstream(upstreams=[url], **options), vision, name="v")
            try:
                parts = [*(ImagePart(image) for image in images), TextPart("What is it?")]
                return await eng.generate(GenerationRequest([Message("user", parts)], SamplingParams(max_tokens=4)))
            finally:
                await eng.aclose()

        result = asyncio.run(run())
    return images_in(fake.bodies[0]), result.usage.image_tokens


def test_images_within_limits_travel_as_the_callers_own_bytes() -> None:
    vision = VisionSettings()
    png, jpeg = encoded("PNG"), encoded("JPEG", quality=80)
    sent, tokens = sent_images([load_image(png, vision), load_image(jpeg, vision)], vision)
    assert sent == [png, jpeg]  # byte for byte: no decode-and-re-encode on the way
    assert tokens == 2 * count_image_tokens(96, 64, vision)


def test_images_that_need_work_are_re_encoded_as_checked() -> None:
    vision = VisionSettings()
    png = encoded("PNG")
    sources = {
        "exif-rotated": rotated_jpeg(),  # the upstream must see it upright, as we counted it
        "transparent": encoded("PNG", mode="RGBA"),  # composited onto white here
        "webp": encoded("WEBP", lossless=True),  # not every upstream decodes WebP
    }
    images = [load_image(data, vision) for data in sources.values()]
    images.append(load_image(png, vision).copy())  # a derived image: its pixels may differ from the file's
    drawn = load_image(png, vision)
    ImageDraw.Draw(drawn).rectangle((0, 0, 20, 20), fill=(255, 0, 0))  # changed in place after decoding
    images.append(drawn)
    sent, _ = sent_images(images, vision)
    assert len(sent) == 5
    for original, data, image in zip([*sources.values(), png, png], sent, images, strict=True):
        assert data != original and data.startswith(b"\x89PNG")  # re-encoded as image_format = png
        received = Image.open(io.BytesIO(data))
        assert received.size == image.size and received.mode == "RGB"
        assert np.array_equal(np.asarray(received), np.asarray(image))  # exactly the pixels we checked
    assert images[0].size == (64, 96)  # rotated upright


def test_large_images_are_sent_at_the_size_the_model_sees() -> None:
    vision = VisionSettings(min_pixels=32 * 32, max_pixels=64 * 64)
    png = encoded("PNG", 256, 128)
    sent, tokens = sent_images([load_image(png, vision)], vision)
    received = Image.open(io.BytesIO(sent[0]))
    assert received.width * received.height <= 64 * 64 < 256 * 128
    assert tokens == count_image_tokens(256, 128, vision)


def test_passthrough_off_always_re_encodes() -> None:
    vision = VisionSettings()
    jpeg = encoded("JPEG", quality=80)
    image = load_image(jpeg, vision)
    sent, _ = sent_images([image], vision, image_passthrough=False)
    assert sent[0] != jpeg and sent[0].startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(sent[0]))), np.asarray(image))


def test_through_a_gateway_the_upstream_gets_the_callers_bytes(tmp_path: Path) -> None:
    # The whole service path: fetch, price, decode (the second time from the decoded-image cache,
    # which hands out views of the cached pixels), task prompt, then the pool's RemoteEngine.
    png = encoded("PNG")
    request = {"task": "vqa", "images": ["data:image/png;base64," + base64.b64encode(png).decode()],
               "text": "What is it?", "options": {"max_tokens": 4}}
    fake = FakeVllm()
    with fake.serve() as url, gateway(gateway_settings(tmp_path, [url], dialect="vllm")) as gw:
        for _ in range(2):
            answer = httpx.post(gw + "/infer", json=request, timeout=60)
            assert answer.status_code == 200, answer.text
    assert [images_in(body) for body in fake.bodies] == [[png], [png]]
