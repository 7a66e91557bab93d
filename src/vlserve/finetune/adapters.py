"""Which weights train, and what a fine-tuning run leaves behind.

Parts of a Qwen3-VL checkpoint (module names as in ``transformers``):

======== ============================================================== ======================
part     modules                                                        trains by default
======== ============================================================== ======================
``lm``   ``model.language_model.*`` (+ ``lm_head``, tied to embeddings)  yes
merger   ``model.visual.merger``, ``model.visual.deepstack_merger_list`` yes
vision   ``model.visual.blocks``, ``patch_embed``, ``pos_embed``         no
======== ============================================================== ======================

With LoRA (``peft``) the linear layers of the chosen parts get low-rank adapters and everything
else is frozen; the output folder holds ``adapter_config.json`` + ``adapter_model.safetensors``
(peft's own layout). With full fine-tuning every weight of the chosen parts trains and the output
folder is a complete checkpoint (weights, config, tokenizer, chat template, preprocessor configs)
that loads like a downloaded one. Both also hold ``vlserve-finetune.json`` describing the run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlserve.errors import IncompatibleModelError, ModelNotFoundError

__all__ = [
    "DEFAULT_PARTS",
    "METADATA",
    "PARTS",
    "Method",
    "apply_adapter",
    "copy_processor_files",
    "mark_trainable",
    "merge_adapter",
    "part_of",
    "read_metadata",
]

if TYPE_CHECKING:
    from vlserve.media import VisionSettings
    from vlserve.runtime.loading import DType

log = logging.getLogger("vlserve.finetune")

Method = Literal["lora", "full"]
PARTS = ("lm", "merger", "vision")
DEFAULT_PARTS = ("lm", "merger")
METADATA = "vlserve-finetune.json"
ADAPTER_CONFIG = "adapter_config.json"
_PREFIXES = {
    "lm": ("model.language_model.", "lm_head"),
    "merger": ("model.visual.merger.", "model.visual.deepstack_merger_list."),
    "vision": ("model.visual.blocks.", "model.visual.patch_embed.", "model.visual.pos_embed"),
}
# Files of a checkpoint that are not weights: copied next to merged or fully trained weights so the
# result loads (tokenizer, chat template, preprocessing) exactly like the base checkpoint.
_PROCESSOR_FILES = ("*.jinja", "tokenizer*", "vocab.json", "merges.txt", "special_tokens_map.json",
                    "added_tokens.json", "preprocessor_config.json", "video_preprocessor_config.json",
                    "processor_config.json", "chat_template.json", "generation_config.json")


def part_of(name: str) -> str | None:
    """The part (``lm``, ``merger``, ``vision``) a parameter or module name belongs to."""
    for part, prefixes in _PREFIXES.items():
        if any(name.startswith(p) for p in prefixes):
            return part
    return None


def lora_targets(model: Any, parts: tuple[str, ...]) -> list[str]:
    """Full names of the ``nn.Linear`` layers of ``parts`` (MoE routers and the output head left out:
    a router must keep choosing the experts it was trained with, and the head is the embedding)."""
    import torch

    return [
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and part_of(name) in parts
        and not name.endswith("mlp.gate") and name != "lm_head"
    ]


def mark_trainable(model: Any, method: Method, parts: tuple[str, ...], *, rank: int = 16, alpha: int = 32,
                   dropout: float = 0.05) -> Any:
    """Freeze ``model`` except what ``method`` trains in ``parts``; returns the model to train
    (a ``peft`` model for LoRA)."""
    unknown = set(parts) - set(PARTS)
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {', '.join(PARTS)}; got {', '.join(parts) or '-'}")
    for param in model.parameters():
        param.requires_grad_(False)
    if method == "full":
        for name, param in model.named_parameters():
            if part_of(name) in parts:
                param.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    targets = lora_targets(model, parts)
    if not targets:
        raise IncompatibleModelError(f"no linear layers found in parts {', '.join(parts)}")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    return get_peft_model(model, config)


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


def copy_processor_files(source: Path, target: Path) -> None:
    """Copy tokenizer, chat template and preprocessor configs of ``source`` into ``target``."""
    for pattern in _PROCESSOR_FILES:
        for path in source.glob(pattern):
            if path.is_file():
                shutil.copyfile(path, target / path.name)


def merge_adapter(model: str, adapter: Path, out: Path, *, dtype: DType = "auto") -> Path:
    """Write base ``model`` + ``adapter`` merged as a checkpoint in ``out`` that loads like any other.

    Merging runs on the CPU; ``dtype`` ``auto`` keeps float32 there (pass ``bfloat16`` for large
    models: half the memory, and the dtype they are published in)."""
    from vlserve.runtime.loading import inspect_checkpoint, load_model, resolve_checkpoint

    ckpt = resolve_checkpoint(model)
    merged, _, _ = load_model(ckpt, device="cpu", dtype=dtype, adapter=adapter)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    copy_processor_files(ckpt.path, out)
    meta = read_metadata(adapter)
    meta.update(merged_from={"model": str(ckpt.path), "adapter": str(Path(adapter).resolve())})
    (out / METADATA).write_text(json.dumps(meta, indent=2))
    inspect_checkpoint(out)  # the result must pass the same checks as any checkpoint we serve
    return out


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
