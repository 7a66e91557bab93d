"""Training samples carry the engine's own prompt tokens and pixels, and loss only on answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlserve.finetune.collate import collate
from vlserve.finetune.records import DataError, parse_record
from vlserve.finetune.samples import IGNORE, SampleEncoder, to_messages
from vlserve.runtime.protocol import GenerationRequest


@pytest.fixture
def encoder(engine: Any) -> SampleEncoder:
    return SampleEncoder.for_model(engine.model, engine.tokenizer, engine.vision, max_length=2048)


@pytest.fixture
def record(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    Image.new("RGB", (70, 50), (200, 30, 30)).save(tmp_path / "red.png")
    Image.new("RGB", (64, 64), (30, 30, 200)).save(tmp_path / "blue.png")
    return {"image": ["red.png", "blue.png"], "conversations": [
        {"from": "system", "value": "Answer in one word."},
        {"from": "human", "value": "<image>\nWhat colour is this?"}, {"from": "gpt", "value": "red"},
        {"from": "human", "value": "And this one? <image>"}, {"from": "gpt", "value": "blue, clearly"},
    ]}, tmp_path


def decoded_labels(engine: Any, labels: list[int]) -> list[str]:
    """The labelled tokens as runs of text (one string per contiguous run)."""
    runs: list[list[int]] = []
    previous = IGNORE
    for label in labels:
        if label != IGNORE:
            if previous == IGNORE:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return [engine.tokenizer.decode(run) for run in runs]


def test_only_answers_and_their_end_tokens_carry_loss(engine: Any, encoder: SampleEncoder, record: Any) -> None:
    raw, base = record
    sample = encoder.encode(parse_record(0, raw, base=base))
    assert decoded_labels(engine, sample.labels) == ["red<|im_end|>", "blue, clearly<|im_end|>"]
    ids = np.asarray(sample.inputs.input_ids)
    labelled = np.asarray(sample.labels) != IGNORE
    # No vision token, nor any of the system or user text, is ever a target.
    assert not labelled[ids == engine.image_token_id].any()
    assert sample.inputs.image_tokens == int((ids == engine.image_token_id).sum()) > 0
    assert "Answer in one word." in sample.inputs.prompt


def test_every_answer_prompt_is_what_the_engine_builds(engine: Any, encoder: SampleEncoder, record: Any) -> None:
    """For each answer, the tokens before it and the pixels of its images are exactly the engine's
    prepared request for that conversation so far: train and serve see the same inputs."""
    raw, base = record
    conv = parse_record(0, raw, base=base)
    sample = encoder.encode(conv)
    starts = [i for i, label in enumerate(sample.labels) if label != IGNORE and sample.labels[i - 1] == IGNORE]
    for turn_end, start in zip((2, 4), starts, strict=True):
        served = engine.prepare(GenerationRequest(to_messages(conv, engine.vision, upto=turn_end)))
        assert served.input_ids == sample.inputs.input_ids[:start]
        assert served.mm_token_type_ids == sample.inputs.mm_token_type_ids[:start]
        for ours, theirs in zip(sample.inputs.images, served.images, strict=False):
            assert np.array_equal(ours.pixel_values, theirs.pixel_values)
            assert ours.grid_thw == theirs.grid_thw


def test_training_forward_predicts_what_the_engine_generates(engine: Any, encoder: SampleEncoder,
                                                             record: Any) -> None:
    """The model's prediction at the last prompt position in a training batch is the engine's first
    greedy token: positions, attention and vision inputs agree, not just the ids."""
    import torch

    from vlserve.finetune.train import _answer_loss

    raw, base = record
    conv = parse_record(0, raw, base=base)
    short = parse_record(1, {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "x"}]},
                         base=base)
    samples = [encoder.encode(conv), encoder.encode(short)]  # a padded batch of two
    batch = collate(samples, pad_token_id=engine.pad_token_id, dtype=engine.model.dtype, device=engine.device)
    inner = engine.model
    with torch.no_grad():
        hidden = inner.model(**{k: v for k, v in batch.items() if k != "labels"}).last_hidden_state
    first = samples[0].labels.index(next(label for label in samples[0].labels if label != IGNORE))
    predicted = int(inner.lm_head(hidden[0, first - 1]).argmax())
    served = engine.generate_sync(GenerationRequest(to_messages(conv, engine.vision, upto=2)))
    assert served.token_ids[0] == predicted
    loss, _ = _answer_loss(inner, batch)
    assert torch.isfinite(loss) and loss > 0


def test_over_long_samples_are_bad_records(engine: Any, record: Any) -> None:
    raw, base = record
    short = SampleEncoder.for_model(engine.model, engine.tokenizer, engine.vision, max_length=40)
    with pytest.raises(DataError, match=r"record 5, field \(record\): is \d+ tokens long .* limit is 40"):
        short.encode(parse_record(5, raw, base=base))


def test_corrupt_images_are_reported_with_their_field(engine: Any, encoder: SampleEncoder, tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    raw = {"image": ["bad.png"], "conversations": [{"from": "human", "value": "?"}, {"from": "gpt", "value": "x"}]}
    with pytest.raises(DataError, match=r"record 2, field image\[0\]: Unsupported image format"):
        encoder.encode(parse_record(2, raw, base=tmp_path))
