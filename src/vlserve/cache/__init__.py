"""Caches that cut repeated work, each bounded in bytes and counted on ``/metrics`` (docs/cache.md).

- :mod:`~vlserve.cache.response`: answers of deterministic requests (memory or Redis);
- :mod:`~vlserve.cache.media`: decoded images, and preprocessed image/video tensors, by content hash;
- :mod:`~vlserve.cache.encoder`: the vision tower's outputs in the embedded engine (imports torch:
  import it directly, it is not re-exported here).

Never imports ``api``, ``service``, ``tasks``, ``cli`` or ``scheduling``.
"""

from vlserve.cache.keys import digest
from vlserve.cache.lru import ByteLRU, CacheStats
from vlserve.cache.media import DecodedImages, FeatureCache, tag_of
from vlserve.cache.metrics import CacheCollector, CacheOwner
from vlserve.cache.response import CachedAnswer, MemoryStore, ResponseCache, ResponseStore

__all__ = [
    "ByteLRU",
    "CacheCollector",
    "CacheOwner",
    "CacheStats",
    "CachedAnswer",
    "DecodedImages",
    "FeatureCache",
    "MemoryStore",
    "ResponseCache",
    "ResponseStore",
    "digest",
    "tag_of",
]
