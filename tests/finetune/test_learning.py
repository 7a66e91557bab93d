"""The proof: a tiny Qwen3-VL from random weights learns a visual task, and serves what it learned.

The task (``helpers``): pictures of 1-3 shapes, all of one colour and one kind; questions ask the
colour, the shape or the count (three answers each, so guessing scores ~33 %; the untrained model
answers gibberish and scores 0 %). Everything goes through the commands a user types:
``vlserve finetune``, ``vlserve finetune eval`` before and after, then a real server on loopback
loads the result from its configuration and answers over HTTP.

Why full fine-tuning for the learning proof: the tiny model's 151 936-row embedding (tied to the
output head) is random, and LoRA leaves it frozen, so a LoRA run must rotate the final hidden state
onto nine arbitrary random directions: measured on this task (rank 32 on every part, lr 1e-2, batch
16), its loss stalls near 3.9 per answer token from step 20 on, where full fine-tuning goes below 1
and on. Full fine-tuning moves the answer tokens' embeddings too and learns in minutes. A real
checkpoint's embeddings already mean something, which is what LoRA relies on. The LoRA path itself
(training, the adapter served from the configuration, the same answers over HTTP as from the
engine) is proven by ``test_lora_adapter_is_served_from_the_configuration``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests.finetune.helpers import data_uri, make_dataset, serve_in_thread
from vlserve.cli.main import app

# Images are 64 x 64 (4 vision tokens); the same [limits] drive training, evaluation and serving.
LIMITS = {"min_pixels": 32 * 32, "max_pixels": 64 * 64}
# Sized for CI on two CPU cores (a few minutes); the slow variant trains on more data.
# Training records ask all three questions about their picture (multi-turn: three answers to learn
# from per image for little more compute); held-out records ask one.
QUICK = {"train": 300, "held": 60, "epochs": 4, "batch": 8, "lr": "3e-3"}
LONG = {"train": 900, "held": 150, "epochs": 4, "batch": 8, "lr": "3e-3"}


def cli(*args: Any) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def write_config(folder: Path) -> Path:
    config = folder / "vlserve.toml"
    config.write_text("[limits]\n" + "".join(f"{k} = {v}\n" for k, v in LIMITS.items()))
    return config


def eval_scores(model: Path, data: Path, config: Path, *extra: Any) -> dict[str, Any]:
    out = cli("finetune", "eval", "--model", model, "--data", data, "--config", config, "--device", "cpu",
              "--batch-size", "32", "--max-tokens", "8", "--json", *extra)
    return dict(json.loads(out.strip().splitlines()[-1]))


def served_answers(settings: dict[str, Any], items: list[dict[str, str]]) -> list[str]:
    """Greedy answers to ``items`` from a real vlserve on loopback, via /v1/chat/completions."""
    from vlserve.api.app import create_app
    from vlserve.config import Settings

    answers = []
    for url in serve_in_thread(create_app(Settings.model_validate({"device": "cpu", "limits": LIMITS, **settings}))):
        with httpx.Client(base_url=url, timeout=120) as client:
            deadline = time.monotonic() + 300
            while (ready := client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, ready.text
                time.sleep(0.2)
            for item in items:
                body = {"model": "main", "temperature": 0, "max_tokens": 8, "messages": [{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": data_uri(item["image"])}},
                    {"type": "text", "text": item["question"]}]}]}
                reply = client.post("/v1/chat/completions", json=body)
                assert reply.status_code == 200, reply.text
                answers.append(reply.json()["choices"][0]["message"]["content"])
    return answers


def learn_and_serve(tiny_dir: Path, tmp_path: Path, size: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    train, _ = make_dataset(tmp_path / "train", size["train"], seed=1, questions=3)
    held, held_plain = make_dataset(tmp_path / "held", size["held"], seed=2)
    out = tmp_path / "tuned"

    before = eval_scores(tiny_dir, held, config)
    started = time.perf_counter()
    log = cli("finetune", "--model", tiny_dir, "--data", train, "--eval-data", held, "-o", out, "--config", config,
              "--full", "--train", "lm,merger,vision", "--epochs", size["epochs"], "--batch-size", size["batch"],
              "--lr", size["lr"], "--device", "cpu")
    trained_s = time.perf_counter() - started
    after = eval_scores(out, held, config)
    with capsys.disabled():
        print(f"\nheld-out exact match: before {before['exact_match']:.1%} -> after {after['exact_match']:.1%} "
              f"(token accuracy {before['token_accuracy']:.1%} -> {after['token_accuracy']:.1%}); "
              f"{size['train']} samples x {size['epochs']} epochs trained in {trained_s:.0f} s")
    assert before["exact_match"] <= 0.34, before  # the untrained model is no better than guessing
    assert after["exact_match"] >= 0.9, (after, log)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["kind"] == "train"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 / 10
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"

    # The trained checkpoint behind a real server answers over HTTP as the engine did in eval.
    items = held_plain[:20]
    answers = served_answers({"model": str(out), "data_dir": str(tmp_path / "srv")}, items)
    right = sum(a.strip() == item["answer"] for a, item in zip(answers, items, strict=True))
    with capsys.disabled():
        print(f"served over HTTP: {right}/{len(items)} held-out answers right")
    assert answers == [a["answer"] for a in after["answers"][: len(items)]]
    assert right >= 0.9 * len(items)


def test_a_tiny_model_learns_shapes_and_serves_them(tiny_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    learn_and_serve(tiny_dir, tmp_path, QUICK, capsys)


@pytest.mark.slow
def test_a_tiny_model_learns_shapes_on_more_data(tiny_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    learn_and_serve(tiny_dir, tmp_path, LONG, capsys)


def test_lora_adapter_is_served_from_the_configuration(tiny_dir: Path, tmp_path: Path) -> None:
    """A short LoRA run: the loss falls, and a server configured with ``adapter = OUT`` gives over
    HTTP exactly the engine's greedy answers with that adapter (and not the base model's)."""
    config = write_config(tmp_path)
    train, _ = make_dataset(tmp_path / "train", 48, seed=3)
    held, held_plain = make_dataset(tmp_path / "held", 6, seed=4)
    out = tmp_path / "adapter"
    cli("finetune", "--model", tiny_dir, "--data", train, "-o", out, "--config", config, "--epochs", 3,
        "--batch-size", 8, "--lr", "1e-2", "--lora-rank", 16, "--train", "lm,merger,vision", "--device", "cpu")
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 * 0.6
    with_adapter = eval_scores(tiny_dir, held, config, "--adapter", out)["answers"]
    base = eval_scores(tiny_dir, held, config)["answers"]
    answers = served_answers({"model": str(tiny_dir), "adapter": str(out), "data_dir": str(tmp_path / "srv")},
                             held_plain)
    assert answers == [a["answer"] for a in with_adapter]
    assert answers != [a["answer"] for a in base]
