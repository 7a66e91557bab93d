from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlserve.errors import IncompatibleModelError, ModelNotFoundError
from vlserve.runtime.loading import load_model, resolve_checkpoint
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, ImagePart, Message, SamplingParams, TextPart


def test_local_directory(tiny_dir: Path, tiny_moe_dir: Path) -> None:
    dense = resolve_checkpoint(tiny_dir)
    moe = resolve_checkpoint(str(tiny_moe_dir))
    assert (dense.model_type, dense.is_moe, dense.num_experts) == ("qwen3_vl", False, None)
    assert (moe.model_type, moe.is_moe, moe.num_experts) == ("qwen3_vl_moe", True, 8)


def test_hf_cache_entry_is_found_offline(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The layout huggingface_hub writes: models--ORG--NAME/{refs/main, snapshots/REV/...}
    repo = tmp_path / "hub" / "models--acme--qwen3-vl-tiny"
    snapshot = repo / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ckpt = resolve_checkpoint("acme/qwen3-vl-tiny")
    assert ckpt.path == snapshot
    assert ckpt.model_type == "qwen3_vl"


def test_unknown_hub_id_offline_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="not in the Hugging Face cache"):
        resolve_checkpoint("acme/does-not-exist", allow_download=False)


def test_missing_and_incompatible_checkpoints(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="missing config.json"):
        resolve_checkpoint(tmp_path)
    other = tmp_path / "llama"
    shutil.copytree(tiny_dir, other)
    config = json.loads((other / "config.json").read_text())
    config["model_type"] = "llama"
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(IncompatibleModelError, match="'llama' model"):
        resolve_checkpoint(other)
    (other / "config.json").write_text("{not json")
    with pytest.raises(IncompatibleModelError, match="not valid JSON"):
        resolve_checkpoint(other)
    no_weights = tmp_path / "noweights"
    shutil.copytree(tiny_dir, no_weights, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ModelNotFoundError, match="no weights"):
        resolve_checkpoint(no_weights)


def test_invalid_hub_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="valid hub id"):
        resolve_checkpoint("not a/valid//id", allow_download=False)


def test_an_engine_over_a_model_in_memory_answers_as_one_loaded_from_disk(tiny_moe_dir: Path,
                                                                          moe_engine: LocalEngine) -> None:
    # bench/gpu_engine.py builds random weights at a real size on the GPU and serves them this way
    checkpoint = resolve_checkpoint(tiny_moe_dir)
    model, tokenizer, device = load_model(checkpoint, device=moe_engine.device)
    twin = LocalEngine.from_loaded(checkpoint, model, tokenizer, device, name="in memory")
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    request = GenerationRequest([Message("user", [ImagePart(image), TextPart("What is this?")])],
                                SamplingParams(max_tokens=8))
    loaded, in_memory = asyncio.run(moe_engine.generate(request)), asyncio.run(twin.generate(request))
    assert in_memory.token_ids == loaded.token_ids and len(loaded.token_ids) > 0
    assert in_memory.usage == loaded.usage and in_memory.model == "in memory"
    assert in_memory.experts_per_layer == loaded.experts_per_layer and loaded.activated_experts is not None
