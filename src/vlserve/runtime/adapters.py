"""LoRA adapters written by ``vlserve finetune``, as the engine loads them.

An adapter folder holds peft's ``adapter_config.json`` + ``adapter_model.safetensors`` and our
``vlserve-finetune.json`` (how the run was made, including the media settings it trained with).
The engine merges the adapter into the weights once at load (:func:`apply_adapter`), so serving
it costs nothing per token. Training lives in :mod:`vlserve.finetune`, above the runtime.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlserve.errors import IncompatibleModelError, ModelNotFoundError

if TYPE_CHECKING:
    from vlserve.media import VisionSettings

log = logging.getLogger("vlserve.finetune")

METADATA = "vlserve-finetune.json"
ADAPTER_CONFIG = "adapter_config.json"


def read_metadata(folder: Path) -> dict[str, Any]:
    """``vlserve-finetune.json`` of a run's output folder (``{}`` when absent)."""
    path = folder / METADATA
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def check_adapter_dir(adapter: Path) -> Path:
    """``adapter`` if it holds a LoRA adapter; typed errors for the usual mistakes."""
    adapter = Path(adapter).expanduser()
    if not adapter.is_dir():
        raise ModelNotFoundError(f"adapter folder {adapter} does not exist")
    if not (adapter / ADAPTER_CONFIG).is_file():
        if (adapter / "config.json").is_file():
            raise IncompatibleModelError(
                f"{adapter} holds a full checkpoint (full fine-tuning or a merge), not an adapter: "
                f"serve it with --model {adapter}"
            )
        raise ModelNotFoundError(f"{adapter} holds no LoRA adapter ({ADAPTER_CONFIG} is missing)")
    return adapter


def apply_adapter(model: Any, adapter: Path) -> Any:
    """``model`` with the LoRA adapter in ``adapter`` merged into its weights (no run-time cost)."""
    from peft import PeftModel

    folder = check_adapter_dir(adapter)
    try:
        peft_model = PeftModel.from_pretrained(model, folder)
    except (ValueError, RuntimeError, KeyError, OSError) as err:
        raise IncompatibleModelError(f"the adapter in {folder} does not fit this model: {err}") from err
    return peft_model.merge_and_unload()


# The media settings that decide which pixels and how many vision tokens a model sees.
VISION_KEYS = ("patch_size", "merge_size", "temporal_patch_size", "min_pixels", "max_pixels", "video_fps",
               "video_max_frames", "video_min_pixels", "video_max_pixels", "video_total_pixels")


def vision_record(vision: VisionSettings) -> dict[str, Any]:
    """What ``vlserve-finetune.json`` records of the media settings used in training."""
    return {k: getattr(vision, k) for k in VISION_KEYS}


def warn_vision_mismatch(adapter: str | os.PathLike[str], vision: VisionSettings) -> list[str]:
    """Log (and return) the media settings that differ between training and serving ``adapter``:
    the model would then see other pixels than it learned on."""
    trained = read_metadata(Path(adapter)).get("vision") or {}
    now = vision_record(vision)
    diffs = [f"{k}: trained with {trained[k]!r}, serving with {now[k]!r}" for k in VISION_KEYS
             if k in trained and trained[k] != now[k]]
    if diffs:
        log.warning("adapter %s was trained with other media settings (serve with the training [limits]): %s",
                    adapter, "; ".join(diffs))
    return diffs
