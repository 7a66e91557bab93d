"""`vlserve finetune` on a handful of records: resume, merge, full fine-tuning, bad records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.finetune.helpers import make_dataset
from vlserve.cli.main import app
from vlserve.errors import IncompatibleModelError
from vlserve.finetune.adapters import warn_vision_mismatch
from vlserve.media import VisionSettings
from vlserve.runtime.loading import inspect_checkpoint
from vlserve.runtime.protocol import GenerationRequest, ImagePart, Message, SamplingParams, TextPart

SMALL = ["--config", "CONFIG", "--device", "cpu", "--batch-size", "4", "--lora-rank", "4", "--seed", "3"]


def run(*args: Any) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    config = tmp_path / "vlserve.toml"
    config.write_text("[limits]\nmin_pixels = 1024\nmax_pixels = 4096\n")
    data, _ = make_dataset(tmp_path / "data", 8, seed=5, fmt="openai")
    return data, config


def opts(config: Path, *extra: Any) -> list[str]:
    return [str(config) if a == "CONFIG" else a for a in SMALL] + [str(e) for e in extra]


def test_resume_continues_to_the_same_weights(tiny_dir: Path, tmp_path: Path, small: tuple[Path, Path]) -> None:
    """A run killed after step 3 (checkpoint at step 2) and resumed with --resume ends with the
    weights of an uninterrupted run, and its metrics hold each step once."""
    from vlserve.config import Limits
    from vlserve.finetune.train import TrainConfig, finetune

    data, config = small
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run("finetune", "--model", tiny_dir, "--data", data, "-o", straight, "--epochs", 2,
               *opts(config)).exit_code == 0

    class Killed(Exception):
        pass

    def die_at_step_3(row: dict[str, Any]) -> None:
        if row.get("step") == 3:
            raise Killed

    vision = VisionSettings.from_limits(Limits(min_pixels=1024, max_pixels=4096), checkpoint=tiny_dir)
    cfg = TrainConfig(epochs=2, batch_size=4, lora_rank=4, seed=3, save_every=1, device="cpu")
    with pytest.raises(Killed):
        finetune(str(tiny_dir), data, split, cfg, vision=vision, report=die_at_step_3)
    assert json.loads((split / "checkpoint" / "state.json").read_text())["step"] == 2
    again = run("finetune", "--model", tiny_dir, "--data", data, "-o", split, "--epochs", 2, "--resume",
                "--save-every", 1, *opts(config))
    assert again.exit_code == 0, again.output
    a = load_file(str(straight / "adapter_model.safetensors"))
    b = load_file(str(split / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and a
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    other = run("finetune", "--model", tiny_dir, "--data", data, "-o", split, "--epochs", 2, "--resume",
                *opts(config), "--batch-size", "2")
    assert other.exit_code == 2 and "other settings" in other.output


def test_merge_writes_a_checkpoint_that_answers_like_base_plus_adapter(
    tiny_dir: Path, tmp_path: Path, small: tuple[Path, Path]
) -> None:
    from PIL import Image

    from vlserve.runtime.local import LocalEngine

    data, config = small
    adapter, merged = tmp_path / "adapter", tmp_path / "merged"
    assert run("finetune", "--model", tiny_dir, "--data", data, "-o", adapter, "--epochs", 1, "--lr", "0.01",
               *opts(config)).exit_code == 0
    result = run("finetune", "merge", "--model", tiny_dir, "--adapter", adapter, "-o", merged)
    assert result.exit_code == 0, result.output
    inspect_checkpoint(merged)
    for name in ("chat_template.jinja", "tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        assert (merged / name).read_bytes() == (tiny_dir / name).read_bytes()
    picture = Image.open(next((data.parent).glob("*.png")))
    request = GenerationRequest([Message("user", [ImagePart(picture), TextPart("What shape are they?")])],
                                SamplingParams(max_tokens=6))
    with_adapter = LocalEngine(tiny_dir, device="cpu", adapter=adapter).generate_sync(request)
    from_merged = LocalEngine(merged, device="cpu").generate_sync(request)
    plain = LocalEngine(tiny_dir, device="cpu").generate_sync(request)
    assert from_merged.token_ids == with_adapter.token_ids
    assert plain.token_ids != with_adapter.token_ids  # the adapter did change the model


def test_full_fine_tuning_writes_a_whole_checkpoint(tiny_dir: Path, tmp_path: Path, small: tuple[Path, Path]) -> None:
    from vlserve.runtime.local import LocalEngine

    data, config = small
    out = tmp_path / "full"
    result = run("finetune", "--model", tiny_dir, "--data", data, "-o", out, "--epochs", 1, "--full",
                 "--train", "merger,vision", *opts(config))
    assert result.exit_code == 0, result.output
    assert f"--model {out}" in result.output.replace("\n", "")
    inspect_checkpoint(out)
    base = load_file(str(tiny_dir / "model.safetensors"))
    tuned = load_file(str(out / "model.safetensors"))
    changed = {k for k in base if not torch.equal(base[k], tuned[k])}
    assert changed and all(k.startswith("model.visual.") for k in changed)  # the language model stayed frozen
    with pytest.raises(IncompatibleModelError, match="full checkpoint"):
        LocalEngine(tiny_dir, device="cpu", adapter=out)


def test_bad_records_stop_the_run_or_are_skipped_and_reported(tiny_dir: Path, tmp_path: Path,
                                                             small: tuple[Path, Path]) -> None:
    data, config = small
    lines = data.read_text().splitlines()
    broken = json.loads(lines[2])
    broken["messages"][0]["content"][0]["image_url"]["url"] = "nowhere.png"
    lines[2] = json.dumps(broken)
    lines[5] = json.dumps({"messages": [{"role": "assistant", "content": "hi"}]})
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    stopped = run("finetune", "--model", tiny_dir, "--data", data, "-o", out, *opts(config))
    assert stopped.exit_code == 2
    assert "record 2, field messages[0].content[0]: file not found" in stopped.output.replace("\n", "")
    skipped = run("finetune", "--model", tiny_dir, "--data", data, "-o", out, "--epochs", 1, "--skip-bad",
                  *opts(config))
    assert skipped.exit_code == 0, skipped.output
    report = [json.loads(line) for line in (out / "skipped.jsonl").read_text().splitlines()]
    assert [(r["index"], r["field"]) for r in report] == [(2, "messages[0].content[0]"), (5, "messages[0]")]
    assert "2 bad records skipped" in skipped.output
    meta = json.loads((out / "vlserve-finetune.json").read_text())
    assert meta["samples"] == 6 and meta["skipped"] == 2 and meta["vision"]["max_pixels"] == 4096


def test_serving_with_other_media_settings_than_training_is_flagged(tmp_path: Path) -> None:
    (tmp_path / "vlserve-finetune.json").write_text(json.dumps({"vision": {"max_pixels": 4096, "min_pixels": 1024}}))
    assert warn_vision_mismatch(tmp_path, VisionSettings(min_pixels=1024, max_pixels=4096)) == []
    diffs = warn_vision_mismatch(tmp_path, VisionSettings(min_pixels=1024, max_pixels=8192))
    assert diffs == ["max_pixels: trained with 4096, serving with 8192"]
