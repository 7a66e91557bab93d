"""What the budget invariant of structured output costs per generated token, beside the grammar.

For the tasks' schemas, walks llguidance's grammar with random allowed tokens (as a random model
would) and times, per token, llguidance computing the next-token mask (work every constrained
step does anyway) next to our completer reading the token and building the shortest valid ending
(the budget check this step adds). Prints medians and p90s side by side, and their ratio.

    python bench/structured.py [--walks 6] [--steps 200]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from vlserve.recon3d import spec_json_schema
from vlserve.runtime.constrained import GrammarCompiler
from vlserve.runtime.loading import resolve_checkpoint
from vlserve.tasks.chart_parse import CHART_SCHEMA
from vlserve.tasks.grounding import GROUNDING_SCHEMA

SCHEMAS = {"chart_parse": CHART_SCHEMA, "grounding": GROUNDING_SCHEMA, "multiview_3d": spec_json_schema(compact=True)}


def walk(compiler: GrammarCompiler, schema: dict, steps: int, rng: random.Random) -> tuple[list[float], list[float]]:
    import llguidance
    import llguidance.numpy

    plan = compiler.check(schema, 1 << 20)
    assert plan.completer is not None
    completer = plan.completer
    matcher = llguidance.LLMatcher(compiler.lltok, plan.grammar, log_level=0)
    bitmask = np.zeros((1, (compiler.vocab_size + 31) // 32), dtype=np.int32)
    state = completer.start()
    mask_times, ending_times = [], []
    for _ in range(steps):
        start = time.perf_counter()
        llguidance.numpy.fill_next_token_bitmask(matcher, bitmask, 0)
        mask_times.append(time.perf_counter() - start)
        bits = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[: compiler.vocab_size].astype(bool)
        bits[compiler.eos_token_ids] = False
        ids = np.flatnonzero(bits)
        if len(ids) == 0:
            break
        token = int(rng.choice(ids.tolist()[:64] if rng.random() < 0.5 else ids.tolist()))
        start = time.perf_counter()
        state = completer.feed(state, compiler.lltok.decode_bytes([token]))
        completer.completion(state)
        ending_times.append(time.perf_counter() - start)
        matcher.consume_token(token)
    return mask_times, ending_times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--walks", type=int, default=6)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint("tiny").path)
    compiler = GrammarCompiler(tokenizer, 151936, [tokenizer.eos_token_id])
    rng = random.Random(0)
    print(f"{'schema':<14}{'tokens':>8}{'mask median':>14}{'ending median':>16}{'mask p90':>11}"
          f"{'ending p90':>12}{'ending/mask':>13}")
    for name, schema in SCHEMAS.items():
        masks: list[float] = []
        endings: list[float] = []
        for _ in range(args.walks):
            m, e = walk(compiler, schema, args.steps, rng)
            masks += m
            endings += e
        mm, em = statistics.median(masks) * 1e6, statistics.median(endings) * 1e6
        mp, ep = (statistics.quantiles(x, n=10)[-1] * 1e6 for x in (masks, endings))
        print(f"{name:<14}{len(endings):>8}{mm:>12.0f}µs{em:>14.0f}µs{mp:>9.0f}µs{ep:>10.0f}µs{em / mm:>12.2f}×")


if __name__ == "__main__":
    main()
