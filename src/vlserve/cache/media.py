"""The media cache: a repeated image or video skips decoding, resizing and normalising.

Two levels, both keyed by the SHA-256 of the encoded bytes (and of everything else that decides
the result: the media settings, a video's fps and clip, the cache scope):

- :class:`DecodedImages` (the service): the decoded RGB image. Callers get a *view* sharing the
  cached pixels, marked read-only, so a task that draws on or pastes into its image makes Pillow
  copy first (copy on write) and never alters the cached one.
- :class:`FeatureCache` (the embedded engine): the patchified ``pixel_values`` of an image or a
  video, exactly what :func:`vlserve.media.preprocess_image` / :func:`vlserve.media.load_video`
  return for the same input.

A view carries a :class:`MediaTag` naming its content; the tag only counts while the view still
holds the cached pixel buffer (a cropped, resized or modified image is a new image, untagged),
so :func:`tag_of` never vouches for pixels that differ from the tagged content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlserve.cache.keys import digest
from vlserve.cache.lru import ByteLRU

if TYPE_CHECKING:
    from PIL import Image

    from vlserve.media import ImageFeatures, VideoFeatures, VisionSettings
    from vlserve.runtime.protocol import VideoPart

_TAG = "_vlserve_media_tag"


@dataclass(frozen=True)
class MediaTag:
    key: str  # digest of the content and the settings it was decoded with
    core: Any  # the Pillow pixel buffer (ImagingCore) the tag vouches for


def tag_of(image: Image.Image) -> str | None:
    """The content key of a cached image's view, or None (untagged, or its pixels were replaced)."""
    tag = getattr(image, _TAG, None)
    if not isinstance(tag, MediaTag):
        return None
    try:
        return tag.key if image.im is tag.core else None
    except (ValueError, AttributeError):  # closed or never loaded
        return None


def view_of(image: Image.Image, key: str) -> Image.Image:
    """A read-only view of ``image`` sharing its pixels (Pillow copies before any change), tagged."""
    view = image._new(image.im)
    view.readonly = 1
    setattr(view, _TAG, MediaTag(key, view.im))
    return view


def image_bytes(image: Image.Image) -> int:
    return image.width * image.height * len(image.getbands())


class DecodedImages:
    """Decoded images by content, at most ``max_bytes`` of pixels (0: off, every image decoded)."""

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[str, Image.Image] = ByteLRU("media_decoded", max_bytes)
        self.stats = self._lru.stats

    async def load(self, data: bytes, sha256: str, settings: VisionSettings, *, scope: str,
                   decode: Callable[[bytes, VisionSettings], Awaitable[Image.Image]]) -> Image.Image:
        """The image of ``data`` (whose SHA-256 is ``sha256``), decoded by ``decode`` unless cached."""
        if not self._lru.enabled:
            return await decode(data, settings)
        key = digest(["decoded", scope, sha256, settings])
        image = self._lru.get(key)
        if image is None:
            image = await decode(data, settings)
            image.load()
            self._lru.put(key, image, image_bytes(image))
        return view_of(image, key)


class FeatureCache:
    """Model inputs of images and videos by content, at most ``max_bytes`` (0: off).

    Each lookup also returns a *content id* (None when the input is not identified): the key of
    what the vision encoder will see, for :class:`~vlserve.cache.encoder.VisionEncoderCache`.
    """

    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[str, Any] = ByteLRU("media_features", max_bytes)
        self.stats = self._lru.stats

    def image(self, image: Image.Image, settings: VisionSettings, *, scope: str,
              compute: Callable[[], ImageFeatures], identify: bool) -> tuple[ImageFeatures, str | None]:
        """``compute()``'s features for ``image``, cached when it carries a :func:`tag_of`. With
        ``identify``, an untagged image gets a content id from its pixel values."""
        tag = tag_of(image)
        if tag is None:
            features = compute()
            return features, pixel_id(features.pixel_values, features.grid_thw, scope) if identify else None
        key = digest(["image", scope, tag, settings])
        return self._cached(key, compute), key

    def video(self, part: VideoPart, settings: VisionSettings, *, scope: str,
              compute: Callable[[], VideoFeatures], identify: bool) -> tuple[VideoFeatures, str | None]:
        """``compute()``'s features for a video given as encoded bytes (other forms: not cached)."""
        if not isinstance(part.video, bytes | bytearray):
            features = compute()
            return features, pixel_id(features.pixel_values, features.grid_thw, scope) if identify else None
        content = hashlib.sha256(part.video).hexdigest()
        key = digest(["video", scope, content, part.fps, part.start, part.end, settings])
        return self._cached(key, compute), key

    def _cached(self, key: str, compute: Callable[[], Any]) -> Any:
        if not self._lru.enabled:
            return compute()
        features = self._lru.get(key)
        if features is None:
            features = compute()
            self._lru.put(key, features, int(features.pixel_values.nbytes))
        return features


def pixel_id(pixel_values: Any, grid_thw: tuple[int, int, int], scope: str) -> str:
    """A content id from the model inputs themselves: SHA-256 of ``pixel_values`` and the grid."""
    import numpy as np

    h = hashlib.sha256(np.ascontiguousarray(pixel_values).data)
    return digest(["pixels", scope, h.hexdigest(), list(grid_thw)])
