"""The embedded engine at a real size on a GPU: tokens/s at 1/16/64 concurrent image requests,
against plain ``model.generate`` on the same prepared inputs.

    python bench/gpu_engine.py                                 # Qwen3-VL-8B and 30B-A3B shapes, cuda
    python bench/gpu_engine.py --preset tiny --device cpu      # the same code path on the tiny shape

No checkpoint can be downloaded, so each model is built from its released ``config.json`` values with
random weights, straight on the device in bfloat16 (the real tokenizer and preprocessor files are
written beside it), and handed to :meth:`LocalEngine.from_loaded`. Random weights answer with random
tokens, which costs the same per token as real ones; tokens/s counts the tokens each side produced.

For each concurrency N, in one run and on the same N requests (one 448 x 448 image and a question
each; distinct images, media caches off):

- ``engine``: ``BatchingEngine`` over ``LocalEngine`` (continuous batching, our decode loop), all N
  submitted at once, preparation included;
- ``generate, batched``: ``model.generate`` over the N prompts left-padded into one batch
  (the strongest plain baseline: every row runs until the longest is done);
- ``generate, one at a time``: what a server calling ``generate`` per request does: N times the
  measured time of one request.

The output goes to stdout and, with ``--out``, to a file (docs/runtime.md quotes a run on an H200).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlserve.config import Cache
from vlserve.runtime.batching import BatchingEngine
from vlserve.runtime.loading import Checkpoint
from vlserve.runtime.local import LocalEngine
from vlserve.runtime.protocol import GenerationRequest, ImagePart, Message, Part, SamplingParams, TextPart
from vlserve.runtime.tiny import MOE, TEXT, VISION, write_processor_files

ROPE = {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
IDS = {"bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643, "vocab_size": 151936}
RELEASED_VISION = {"depth": 27, "hidden_size": 1152, "intermediate_size": 4304, "num_heads": 16,
                   "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                   "num_position_embeddings": 2304, "deepstack_visual_indexes": [8, 16, 24],
                   "hidden_act": "gelu_pytorch_tanh", "in_channels": 3}
# The released Qwen3-VL-8B-Instruct and Qwen3-VL-30B-A3B-Instruct configs (text and vision towers).
PRESETS: dict[str, dict[str, Any]] = {
    "8b": {"moe": False, "tie": False, "vision": RELEASED_VISION, "text": {
        **IDS, "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "max_position_embeddings": 262144, "rope_parameters": ROPE}},
    "30b-a3b": {"moe": True, "tie": False, "vision": RELEASED_VISION, "text": {
        **IDS, "hidden_size": 2048, "intermediate_size": 6144, "num_hidden_layers": 48,
        "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
        "max_position_embeddings": 262144, "rope_parameters": ROPE, "num_experts": 128,
        "num_experts_per_tok": 8, "moe_intermediate_size": 768, "norm_topk_prob": True,
        "decoder_sparse_step": 1}},
    "tiny": {"moe": False, "tie": True, "vision": VISION, "text": TEXT},
    "tiny-moe": {"moe": True, "tie": True, "vision": VISION, "text": {**TEXT, **MOE}},
}


def build(preset: str, folder: Path, device: str) -> LocalEngine:
    """Random weights of ``preset``'s shape on ``device``, with the real tokenizer files beside."""
    from transformers import (
        AutoTokenizer,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
    )

    shape = PRESETS[preset]
    config_cls = Qwen3VLMoeConfig if shape["moe"] else Qwen3VLConfig
    model_cls = Qwen3VLMoeForConditionalGeneration if shape["moe"] else Qwen3VLForConditionalGeneration
    text = dict(shape["text"])
    config = config_cls(text_config=text, vision_config=dict(shape["vision"], out_hidden_size=text["hidden_size"]),
                        tie_word_embeddings=shape["tie"])
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls._from_config(config, dtype=dtype).eval()
    model.generation_config.eos_token_id = [151645, 151643]
    model.generation_config.pad_token_id = 151643
    model.generation_config.do_sample = False
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    write_processor_files(folder)
    # The weights live in memory only, so the folder holds everything of a checkpoint but them.
    checkpoint = Checkpoint(path=folder, name=f"qwen3-vl-{preset} (random weights)", model_type=config.model_type,
                            is_moe=shape["moe"], num_experts=text.get("num_experts"),
                            config=json.loads((folder / "config.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(folder, padding_side="left")
    caches_off = Cache.model_validate({"media": {"features_max_bytes": 0}, "encoder": {"max_bytes": 0}})
    return LocalEngine.from_loaded(checkpoint, model, tokenizer, device, cache=caches_off)


def requests(n: int, first_seed: int, size: int, max_tokens: int) -> list[GenerationRequest]:
    out = []
    for seed in range(first_seed, first_seed + n):
        rng = np.random.default_rng(seed)
        image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        content: list[Part] = [ImagePart(image), TextPart(f"Describe picture {seed} in detail.")]
        out.append(GenerationRequest([Message("user", content)], SamplingParams(max_tokens=max_tokens)))
    return out


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_engine(batching: BatchingEngine, reqs: list[GenerationRequest], device: str) -> tuple[float, int, list[float]]:
    async def go() -> list[Any]:
        return await asyncio.gather(*(batching.generate(r) for r in reqs))

    sync(device)
    start = time.perf_counter()
    results = asyncio.run(go())
    sync(device)
    seconds = time.perf_counter() - start
    return seconds, sum(r.usage.output_tokens for r in results), [r.timings["ttft_ms"] for r in results]


def run_generate(engine: LocalEngine, reqs: list[GenerationRequest], max_tokens: int, device: str) -> tuple[float, int]:
    """Preparation (the same as the engine's) and one ``model.generate`` over all of ``reqs``."""
    sync(device)
    start = time.perf_counter()
    batch = engine.collate([engine.prepare(r) for r in reqs])
    with torch.inference_mode():
        out = engine.model.generate(**batch, max_new_tokens=max_tokens, do_sample=False)
    sync(device)
    seconds = time.perf_counter() - start
    new = out[:, batch["input_ids"].shape[1]:].tolist()
    eos = set(engine.eos_token_ids)
    tokens = sum(next((i + 1 for i, t in enumerate(row) if t in eos), len(row)) for row in new)
    return seconds, tokens


def measure(preset: str, args: argparse.Namespace, say: Callable[[str], None], deadline: float) -> None:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        engine = build(preset, Path(tmp) / preset, args.device)
    params = sum(p.numel() for p in engine.model.parameters())
    say(f"\n{preset}: {params / 1e9:.2f} B parameters (random, {engine.model.dtype}), built in "
        f"{time.perf_counter() - started:.1f} s; {args.max_tokens} tokens per request, one {args.image} px image each"
        + (f"; cuDNN attention {'on' if torch.backends.cuda.cudnn_sdp_enabled() else 'off'}"
           if args.device.startswith("cuda") else ""))
    batching = BatchingEngine(engine, max_batch=max(args.concurrency), max_tokens=1 << 20, window_ms=5.0,
                              prepare_workers=8)
    seed = 1000
    warm = requests(2, seed, args.image, 8)
    run_engine(batching, warm, args.device)  # first kernels, allocator, tokenizer
    run_generate(engine, warm[:1], 8, args.device)
    seed += 2
    singles = [run_generate(engine, requests(1, seed + i, args.image, args.max_tokens), args.max_tokens, args.device)
               for i in range(2)]
    seed += 2
    one_tps = max(tokens / seconds for seconds, tokens in singles)  # the better of two
    say(f"  {'N':>3}  {'engine tok/s':>13} {'wall s':>7} {'ttft p50 ms':>11}  {'generate batched tok/s':>22} "
        f"{'wall s':>7}  {'one at a time tok/s':>19}  {'engine / batched':>16} {'engine / one-by-one':>19}")
    for n in args.concurrency:
        if time.perf_counter() > deadline:
            say(f"  {n:>3}  skipped: the run's --budget-s is spent")
            continue
        reqs = requests(n, seed, args.image, args.max_tokens)
        seed += n
        seconds, tokens, ttfts = run_engine(batching, reqs, args.device)
        ours = tokens / seconds
        g_seconds, g_tokens = run_generate(engine, requests(n, seed, args.image, args.max_tokens),
                                           args.max_tokens, args.device)
        seed += n
        batched = g_tokens / g_seconds
        say(f"  {n:>3}  {ours:>13.1f} {seconds:>7.2f} {statistics.median(ttfts):>11.0f}  {batched:>22.1f} "
            f"{g_seconds:>7.2f}  {one_tps:>19.1f}  {ours / batched:>15.2f}x {ours / one_tps:>18.2f}x")
    if args.device.startswith("cuda"):
        say(f"  peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB; engine steps "
            f"{batching.steps_run}, largest batch {batching.largest_batch}")
    batching.close()  # its engine thread lets go of the model
    del batching, engine
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="8b,30b-a3b", help=f"comma-separated, of {', '.join(PRESETS)}")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--image", type=int, default=448, help="image side in pixels")
    parser.add_argument("--budget-s", type=float, default=480.0, help="start no new measurement after this")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.concurrency = [int(n) for n in args.concurrency.split(",")]
    deadline = time.perf_counter() + args.budget_s
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
        if args.out is not None:
            args.out.write_text("\n".join(lines) + "\n")

    import transformers

    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    say(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {where}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, Python {sys.version.split()[0]}")
    for preset in args.preset.split(","):
        if time.perf_counter() > deadline:
            say(f"\n{preset}: skipped: the run's --budget-s is spent")
            continue
        try:
            measure(preset, args, say, deadline)
        except Exception as err:  # one preset failing (memory, a kernel) still reports the others
            say(f"\n{preset}: failed: {type(err).__name__}: {err}")
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    say(json.dumps({"presets": args.preset, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                    "image": args.image}))


if __name__ == "__main__":
    main()
