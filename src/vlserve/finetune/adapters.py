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
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlserve.errors import IncompatibleModelError
from vlserve.runtime.adapters import (
    ADAPTER_CONFIG,
    METADATA,
    VISION_KEYS,
    apply_adapter,
    check_adapter_dir,
    read_metadata,
    vision_record,
    warn_vision_mismatch,
)

__all__ = [
    "ADAPTER_CONFIG",
    "DEFAULT_PARTS",
    "VISION_KEYS",
    "check_adapter_dir",
    "vision_record",
    "warn_vision_mismatch",
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
    from vlserve.runtime.loading import DType

log = logging.getLogger("vlserve.finetune")

Method = Literal["lora", "full"]
PARTS = ("lm", "merger", "vision")
DEFAULT_PARTS = ("lm", "merger")
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
