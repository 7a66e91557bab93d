"""Media preprocessing for Qwen3-VL: images and videos into vision-encoder input.

Data path::

    bytes / path ──load_image──> RGB PIL image ──preprocess_image──> ImageFeatures
    bytes / path / frames ──────────load_video──────────────────────> VideoFeatures
    bytes ──probe_image──> ImageProbe      bytes ──probe_video──> VideoProbe   (header facts, no decoding)

Encoded video is decoded in a worker process with hard limits (``vlserve.isolation``);
images on their own thread pool (``load_image_async``).

Outputs equal transformers' processors bit for bit (Pillow bicubic resize,
float32 normalisation, the encoder's patch order); see ``vision`` and ``video``
for the exact rules. Errors raised: ImageError (1001), VideoTooLongError (1002),
VideoError (1003), PayloadTooLargeError (1005).
"""

from vlserve.media.decode import SUPPORTED_VIDEO_FORMATS
from vlserve.media.image import SUPPORTED_IMAGE_FORMATS, ImageProbe, load_image, probe_image
from vlserve.media.isolated import load_image_async
from vlserve.media.settings import VideoPolicy, VisionSettings
from vlserve.media.sizing import (
    count_image_tokens,
    count_video_tokens,
    smart_resize,
    video_smart_resize,
)
from vlserve.media.video import VideoFeatures, VideoProbe, load_video, probe_video, probe_video_async
from vlserve.media.vision import ImageFeatures, preprocess_image

__all__ = [
    "SUPPORTED_IMAGE_FORMATS",
    "SUPPORTED_VIDEO_FORMATS",
    "ImageFeatures",
    "ImageProbe",
    "VideoFeatures",
    "VideoPolicy",
    "VideoProbe",
    "VisionSettings",
    "count_image_tokens",
    "count_video_tokens",
    "load_image",
    "load_image_async",
    "load_video",
    "preprocess_image",
    "probe_image",
    "probe_video",
    "probe_video_async",
    "smart_resize",
    "video_smart_resize",
]
