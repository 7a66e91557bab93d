from __future__ import annotations

import json
from pathlib import Path

from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<think>": 151667,
    "</think>": 151668,
}


def test_checkpoint_is_laid_out_like_a_download(tiny_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja", "preprocessor_config.json", "video_preprocessor_config.json",
                 "generation_config.json"):
        assert (tiny_dir / name).is_file(), name
    pre = json.loads((tiny_dir / "preprocessor_config.json").read_text())
    assert (pre["patch_size"], pre["merge_size"], pre["temporal_patch_size"]) == (16, 2, 2)


def test_real_tokenizer_with_special_tokens_at_real_ids(tiny_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    for token, token_id in SPECIAL_IDS.items():
        assert tok.convert_tokens_to_ids(token) == token_id
    # A real BPE vocabulary, not a toy one: common words are single tokens.
    assert len(tok.encode("hello world", add_special_tokens=False)) == 2


def test_dense_and_moe_load_with_auto_classes(tiny_dir: Path, tiny_moe_dir: Path) -> None:
    dense = AutoModelForImageTextToText.from_pretrained(tiny_dir)
    moe = AutoModelForImageTextToText.from_pretrained(tiny_moe_dir)
    assert type(dense).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(moe).__name__ == "Qwen3VLMoeForConditionalGeneration"
    assert AutoConfig.from_pretrained(tiny_moe_dir).text_config.num_experts == 8
    assert sum(p.numel() for p in dense.parameters()) < 20_000_000


def test_chat_template_renders_vision_placeholders(tiny_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "image"}, {"type": "video"}, {"type": "text", "text": "What?"}]},
    ]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
        "<|vision_start|><|video_pad|><|vision_end|>What?<|im_end|>\n<|im_start|>assistant\n"
    )
