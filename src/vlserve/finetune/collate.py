"""Samples → one padded training batch of tensors.

Rows are padded on the right: with causal attention and the model's own position ids, a row's
real tokens then get exactly the positions and attention they get when the engine serves that
conversation alone (the engine pads on the left and shifts positions to match; see
``LocalEngine.prefill_positions``). Vision tensors are concatenated in row order, as the engine
does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlserve.finetune.samples import IGNORE, Sample

__all__ = ["collate"]


def collate(samples: list[Sample], *, pad_token_id: int, device: Any = "cpu", dtype: Any = None) -> dict[str, Any]:
    """``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``labels`` ``(rows, width)`` int64
    plus ``pixel_values``/``image_grid_thw`` (and the video twins) when any row has media."""
    import torch

    width = max(s.length for s in samples)
    rows = len(samples)
    ids = np.full((rows, width), pad_token_id, dtype=np.int64)
    labels = np.full((rows, width), IGNORE, dtype=np.int64)
    types = np.zeros((rows, width), dtype=np.int64)
    mask = np.zeros((rows, width), dtype=np.int64)
    vision: dict[str, list[np.ndarray]] = {}
    for b, sample in enumerate(samples):
        n = sample.length
        ids[b, :n] = sample.inputs.input_ids
        labels[b, :n] = sample.labels
        types[b, :n] = sample.inputs.mm_token_type_ids
        mask[b, :n] = 1
        for key, value in sample.inputs.vision_kwargs().items():
            vision.setdefault(key, []).append(value)
    batch: dict[str, Any] = {
        "input_ids": torch.from_numpy(ids),
        "attention_mask": torch.from_numpy(mask),
        "mm_token_type_ids": torch.from_numpy(types),
        "labels": torch.from_numpy(labels),
    }
    for key, values in vision.items():
        tensor = torch.from_numpy(np.concatenate(values))
        batch[key] = tensor.to(dtype) if key.startswith("pixel") and dtype is not None else tensor
    return {k: v.to(device) for k, v in batch.items()}
