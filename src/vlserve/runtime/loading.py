"""Finding and loading Qwen3-VL checkpoints: a local directory, an HF cache entry or a hub id."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlserve.errors import IncompatibleModelError, ModelNotFoundError
from vlserve.runtime.tiny import TINY_NAMES, ensure_tiny

if TYPE_CHECKING:
    import torch

SUPPORTED_MODEL_TYPES = {"qwen3_vl": False, "qwen3_vl_moe": True}
REQUIRED_FILES = ("config.json", "tokenizer_config.json")

Device = Literal["auto", "cpu", "cuda"] | str
DType = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class Checkpoint:
    """A resolved checkpoint directory and what its config says about it."""

    path: Path
    name: str
    model_type: str
    is_moe: bool
    num_experts: int | None
    config: dict[str, Any]


def resolve_checkpoint(model: str | os.PathLike[str], *, allow_download: bool | None = None) -> Checkpoint:
    """Turn ``model`` into a checkpoint directory.

    ``model`` may be ``tiny`` / ``tiny-moe`` (built once into the user cache), a local directory, or
    a hub id such as ``Qwen/Qwen3-VL-8B-Instruct``: the HF cache is tried first, then a download
    unless ``allow_download`` is false or ``HF_HUB_OFFLINE`` is set.
    """
    name = str(model)
    if name in TINY_NAMES:
        path = ensure_tiny(name)
    elif Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
    elif Path(name).expanduser().exists():
        raise ModelNotFoundError(f"{name!r} is a file; pass the checkpoint directory that holds config.json")
    else:
        path = _from_hub(name, allow_download)
    return inspect_checkpoint(path, name=name)


def inspect_checkpoint(path: Path, *, name: str | None = None) -> Checkpoint:
    """Check that ``path`` holds a Qwen3-VL checkpoint we can serve."""
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        raise ModelNotFoundError(f"{path} is not a model checkpoint: missing {', '.join(missing)}")
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise IncompatibleModelError(f"{path / 'config.json'} is not valid JSON: {err}") from err
    model_type = config.get("model_type", "")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise IncompatibleModelError(
            f"{path} holds a {model_type or 'unknown'!r} model; vlserve serves Qwen3-VL checkpoints "
            f"(model_type {' or '.join(sorted(SUPPORTED_MODEL_TYPES))})"
        )
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise ModelNotFoundError(f"{path} has a config but no weights (*.safetensors)")
    is_moe = SUPPORTED_MODEL_TYPES[model_type]
    text = config.get("text_config", {})
    return Checkpoint(
        path=path,
        name=name or path.name,
        model_type=model_type,
        is_moe=is_moe,
        num_experts=(text.get("num_experts") or text.get("num_local_experts")) if is_moe else None,
        config=config,
    )


def _from_hub(repo_id: str, allow_download: bool | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    if allow_download is None:
        allow_download = os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError):
        pass
    except HFValidationError as err:
        raise ModelNotFoundError(
            f"{repo_id!r} is neither a local directory nor a valid hub id (like 'Qwen/Qwen3-VL-8B-Instruct')"
        ) from err
    if not allow_download:
        raise ModelNotFoundError(
            f"{repo_id!r} is not a local directory and not in the Hugging Face cache; downloads are off "
            "(HF_HUB_OFFLINE). Point --model at a checkpoint directory or use 'tiny'."
        )
    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja"]))
    except Exception as err:  # network, auth and 404 errors all mean the same thing to the user
        raise ModelNotFoundError(f"could not download {repo_id!r} from the hub: {err}") from err


def pick_device(device: Device = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise IncompatibleModelError("device 'cuda' was requested but no CUDA GPU is available")
    return str(device)


def pick_dtype(dtype: DType, device: str) -> torch.dtype:
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def load_model(
    ckpt: Checkpoint, *, device: Device = "auto", dtype: DType = "auto", adapter: str | os.PathLike[str] | None = None
) -> tuple[Any, Any, str]:
    """Load the model and tokenizer; returns ``(model, tokenizer, device)``.

    ``adapter`` is a LoRA adapter folder written by ``vlserve finetune``: it is merged into the
    weights once here, so serving it costs nothing per token."""
    from transformers import (
        AutoTokenizer,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeForConditionalGeneration,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our CLI and server report loading themselves
    dev = pick_device(device)
    cls = Qwen3VLMoeForConditionalGeneration if ckpt.is_moe else Qwen3VLForConditionalGeneration
    try:
        model = cls.from_pretrained(ckpt.path, dtype=pick_dtype(dtype, dev))
        if adapter is not None:
            from vlserve.runtime.adapters import apply_adapter

            model = apply_adapter(model, Path(adapter))
        # transformers wraps ``to`` with ``@wraps(torch.nn.Module.to)``, so mypy sees the unbound
        # signature, whose first parameter is ``self``.
        model = model.to(dev).eval()  # type: ignore[arg-type]
        tokenizer = AutoTokenizer.from_pretrained(ckpt.path, padding_side="left")
    except (OSError, ValueError, RuntimeError) as err:
        raise IncompatibleModelError(f"could not load the checkpoint at {ckpt.path}: {err}") from err
    return model, tokenizer, dev
