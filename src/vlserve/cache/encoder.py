"""The vision-encoder cache of the embedded engine: a repeated image skips the vision tower.

Qwen3-VL's forward takes the vision tower's outputs precomputed (``mm_encoder_outputs``: per
image the merged embeddings, and per DeepStack layer its features). Before a prefill we look up
every image and video of the batch by its content id (:mod:`vlserve.cache.media`: content hash
and media settings, or a hash of ``pixel_values`` and ``grid_thw``), run the tower once on the
missing ones together, store their outputs and hand the model the assembled outputs instead of
``pixel_values``. The model then computes exactly what it would have from the cached tensors.

Entries live on the model's device, bounded by ``max_bytes`` (least recently used first).
Imported by the embedded engine only (it needs torch).
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import BaseModelOutputWithDeepstackFeatures

from vlserve.cache.lru import ByteLRU

_MODALITIES = (("image", "pixel_values", "image_grid_thw"), ("video", "pixel_values_videos", "video_grid_thw"))

Entry = tuple[torch.Tensor, tuple[torch.Tensor, ...]]  # embeddings, DeepStack features by layer


class VisionEncoderCache:
    def __init__(self, max_bytes: int) -> None:
        self._lru: ByteLRU[tuple[str, str], Entry] = ByteLRU("vision_encoder", max_bytes)
        self.stats = self._lru.stats

    @property
    def enabled(self) -> bool:
        return self._lru.enabled

    @staticmethod
    def supports(model: Any) -> bool:
        """Whether ``model``'s forward accepts precomputed vision outputs (transformers ≥ 5.x)."""
        try:
            return "mm_encoder_outputs" in inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            return False

    def inputs(self, model: Any, batch: dict[str, torch.Tensor],
               keys: dict[str, list[str | None]]) -> dict[str, Any]:
        """``batch`` with its pixel values replaced by the vision tower's outputs, cached or computed.

        ``keys["image"]`` / ``keys["video"]`` hold one content id per image / video in batch order
        (None: not cached, computed each time). Call under the engine's lock, in inference mode.
        """
        out: dict[str, Any] = dict(batch)
        encoded: dict[str, Any] = {}
        for modality, pixels_name, grid_name in _MODALITIES:
            if pixels_name not in batch:
                continue
            encode = model.get_image_features if modality == "image" else model.get_video_features
            encoded[modality] = self._encode(encode, out.pop(pixels_name), batch[grid_name],
                                             keys.get(modality, []), modality)
        if encoded:
            out["mm_encoder_outputs"] = encoded
        return out

    def _encode(self, encode: Any, pixels: torch.Tensor, grid: torch.Tensor, keys: list[str | None],
                modality: str) -> BaseModelOutputWithDeepstackFeatures:
        rows = grid.prod(-1).tolist()
        starts = [sum(rows[:i]) for i in range(len(rows))]
        ids = list(keys) + [None] * (len(rows) - len(keys))
        entries: list[Entry | None] = [self._lru.get((modality, k)) if k else None for k in ids]
        missing = [i for i, e in enumerate(entries) if e is None]
        if missing:
            chunk = torch.cat([pixels[starts[i] : starts[i] + rows[i]] for i in missing])
            result = encode(chunk, grid[missing], return_dict=True)
            for j, i in enumerate(missing):
                entry: Entry = (result.pooler_output[j], tuple(layer[j] for layer in result.deepstack_features))
                key = ids[i]
                if key is not None and self.enabled:
                    # Own copies: a slice would keep the whole batch's output tensor alive.
                    entry = (entry[0].clone(), tuple(f.clone() for f in entry[1]))
                    self._lru.put((modality, key), entry, _nbytes(entry))
                entries[i] = entry
        done = [e for e in entries if e is not None]
        layers = len(done[0][1]) if done else 0
        deepstack = [tuple(e[1][n] for e in done) for n in range(layers)]
        embeds = tuple(e[0] for e in done)
        # Per item, as get_image_features splits them (its annotations say otherwise).
        return BaseModelOutputWithDeepstackFeatures(pooler_output=embeds,  # type: ignore[arg-type]
                                                    deepstack_features=deepstack)  # type: ignore[arg-type]


def _nbytes(entry: Entry) -> int:
    embeds, deep = entry
    return sum(t.numel() * t.element_size() for t in (embeds, *deep))
