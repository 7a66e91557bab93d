"""The media cache: a repeated image is decoded and preprocessed once, gives exactly what a fresh
decode gives, and a task that changes its image can never alter or be served the cached one.
Over a real server: a repeated image in a sampled (uncacheable) request hits the decoded-image,
feature and vision-encoder caches, visible on /metrics."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tests.cache.helpers import image_uri, infer, metric, server, settings, vqa
from vlserve.cache import DecodedImages, FeatureCache, tag_of
from vlserve.media import VisionSettings, load_image_async, preprocess_image

VISION = VisionSettings()


def png(seed: int, size: int = 80) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


class CountingDecoder:
    """The real decoder, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, data: bytes, settings: VisionSettings) -> Image.Image:
        self.calls += 1
        return await load_image_async(data, settings)


def load(cache: DecodedImages, data: bytes, decode: CountingDecoder, *, scope: str = "",
         settings: VisionSettings = VISION) -> Image.Image:
    return asyncio.run(cache.load(data, hashlib.sha256(data).hexdigest(), settings, scope=scope, decode=decode))


def test_a_repeated_image_is_decoded_once_and_equals_a_fresh_decode() -> None:
    cache, decode, data = DecodedImages(64 << 20), CountingDecoder(), png(1)
    first, second = load(cache, data, decode), load(cache, data, decode)
    assert decode.calls == 1 and cache.stats.hits == 1
    fresh = asyncio.run(load_image_async(data, VISION))
    assert np.array_equal(np.asarray(second), np.asarray(fresh)) and second.size == fresh.size
    assert tag_of(first) is not None and tag_of(first) == tag_of(second)
    load(cache, png(2), decode)
    load(cache, data, decode, scope="key:bob")  # another key's entry
    load(cache, data, decode, settings=VisionSettings(image_decode_pixels=1000))  # other decoding settings
    assert decode.calls == 4


def test_a_task_drawing_on_its_image_changes_neither_the_cache_nor_gets_its_tag() -> None:
    cache, decode, data = DecodedImages(64 << 20), CountingDecoder(), png(3)
    view = load(cache, data, decode)
    before = np.asarray(view).copy()
    ImageDraw.Draw(view).rectangle((0, 0, 40, 40), fill=(255, 0, 0))  # in place, as a task might
    assert tag_of(view) is None  # its pixels are its own now
    again = load(cache, data, decode)
    assert np.array_equal(np.asarray(again), before) and tag_of(again) is not None
    cropped = again.crop((0, 0, 10, 10))
    assert tag_of(cropped) is None


def test_the_byte_bound_evicts_decoded_images() -> None:
    cache, decode = DecodedImages(80 * 80 * 3 + 10), CountingDecoder()
    load(cache, png(4), decode)
    load(cache, png(5), decode)  # pushes 4 out
    load(cache, png(4), decode)
    assert decode.calls == 3 and cache.stats.evictions >= 1 and cache.stats.bytes <= 80 * 80 * 3 + 10


def test_features_of_a_tagged_image_are_cached_and_equal_to_preprocessing() -> None:
    decoded, features = DecodedImages(64 << 20), FeatureCache(64 << 20)
    image = load(decoded, png(6, 200), CountingDecoder())
    computed: list[int] = []

    def compute() -> Any:
        computed.append(1)
        return preprocess_image(image, VISION)

    first, key = features.image(image, VISION, scope="", compute=compute, identify=True)
    second, again = features.image(image, VISION, scope="", compute=compute, identify=True)
    assert computed == [1] and key == again and key is not None
    reference = preprocess_image(asyncio.run(load_image_async(png(6, 200), VISION)), VISION)
    assert np.array_equal(second.pixel_values, reference.pixel_values) and second.grid_thw == reference.grid_thw
    smaller = VisionSettings(max_pixels=64 * 32 * 32, min_pixels=32 * 32)
    features.image(image, smaller, scope="", compute=compute, identify=True)
    assert computed == [1, 1]  # other media settings: another entry
    untagged = image.copy()
    _, content = features.image(untagged, VISION, scope="", compute=lambda: preprocess_image(untagged, VISION),
                                identify=True)
    assert content is not None and content != key  # identified by its pixel values instead


def test_a_repeated_image_hits_every_media_cache_over_a_server(engine: Any, tmp_path: Path) -> None:
    big = io.BytesIO()
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(big, "PNG")
    image = "data:image/png;base64," + base64.b64encode(big.getvalue()).decode()
    with server(engine, settings(tmp_path)) as url:
        encoder_before = metric(url, "vlserve_cache_hits_total", cache="vision_encoder", engine="main")
        body = vqa(image, temperature=0.9)  # sampled: the response cache cannot answer it
        first, second = infer(url, body), infer(url, body)
        assert not first["result"]["metadata"]["cached"] and not second["result"]["metadata"]["cached"]
        assert metric(url, "vlserve_cache_hits_total", cache="media_decoded", engine="") == 1
        assert metric(url, "vlserve_cache_hits_total", cache="media_features", engine="main") >= 1
        assert metric(url, "vlserve_cache_hits_total", cache="vision_encoder", engine="main") == encoder_before + 1
        assert metric(url, "vlserve_cache_bytes", cache="media_decoded", engine="") == 300 * 400 * 3
        other = infer(url, vqa(image_uri(10), temperature=0.9))
        assert not other["result"]["metadata"]["cached"]
        assert metric(url, "vlserve_cache_misses_total", cache="media_decoded", engine="") == 2


def test_privacy_mode_keeps_no_media(engine: Any, tmp_path: Path) -> None:
    with server(engine, settings(tmp_path, extra={"privacy": {"enabled": True}})) as url:
        stored = metric(url, "vlserve_cache_stored_total", cache="vision_encoder", engine="main")
        features = metric(url, "vlserve_cache_stored_total", cache="media_features", engine="main")
        body = vqa(image_uri(11), temperature=0.9)
        infer(url, body)
        infer(url, body)
        # Not even an engine built with caches keeps anything of a privacy-mode request.
        assert metric(url, "vlserve_cache_stored_total", cache="vision_encoder", engine="main") == stored
        assert metric(url, "vlserve_cache_stored_total", cache="media_features", engine="main") == features
        assert metric(url, "vlserve_cache_hits_total", cache="media_decoded", engine="") == 0
        assert metric(url, "vlserve_cache_bytes", cache="media_decoded", engine="") == 0
