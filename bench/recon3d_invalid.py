"""The invalid rate of photos → spec → files, as a measured figure (issue 14.2).

    python bench/recon3d_invalid.py [--runs 15] [--model tiny] [--formats glb,stl,obj,ply,scad,py,png]

Runs the multiview_3d task's own path — photo checks, prompts, schema-constrained decoding on the
model, reading the answer (completing a cut-off one), the bounded build in worker processes —
many times with sampling: temperatures 0.7 / 1.0 / 1.3, a new seed each run, and budgets of
24 / 64 / 160 tokens (small, so that many runs fit on a CPU; a budget below what the smallest spec needs
is refused up front with 4000 by the engine). Every run ends in one of:

* **model** — files written (possibly with repairs, reported as warnings);
* **refusal** — a coded error a client can act on (4000 / 4013 family: the message says what to change);
* **crash** — anything else (a traceback, or a 5xxx internal error). The goal is 0.

The tiny model is random, so its specs are the hardest input there is: odd sizes, invalid parts,
answers that stop anywhere. A real checkpoint only does better.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

TEMPERATURES = (0.7, 1.0, 1.3)
BUDGETS = (24, 64, 160)


def product_photo(seed: int, size: int = 320) -> Image.Image:
    """A synthetic product shot: a shaded, textured disc and box on a white backdrop."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    r = int(size * rng.uniform(0.2, 0.35))
    c = size // 2
    draw.ellipse((c - r, c - r, c + r, c + r), fill=tuple(int(v) for v in rng.integers(60, 200, 3)))
    draw.rectangle((c - r // 3, c - r // 3, c + r // 3, c + r // 3), fill=(40, 40, 40))
    pixels = np.asarray(image, dtype=np.int16) + rng.integers(-6, 7, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--formats", default="glb,stl,obj,ply,scad,py,png")
    args = parser.parse_args()

    from vlserve.config import Settings
    from vlserve.errors import VlserveError
    from vlserve.media import VisionSettings
    from vlserve.runtime.loading import resolve_checkpoint
    from vlserve.runtime.local import LocalEngine
    from vlserve.runtime.protocol import GenerationRequest, SamplingParams
    from vlserve.tasks import TaskInput, get_task

    settings = Settings()
    ckpt = resolve_checkpoint(args.model)
    vision = VisionSettings.from_limits(settings.limits, checkpoint=ckpt.path)
    engine = LocalEngine(ckpt.path, device="cpu", vision=vision, name=args.model)
    task = get_task("multiview_3d")
    outcomes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    by_budget: dict[int, collections.Counter[str]] = {b: collections.Counter() for b in BUDGETS}
    repaired = 0
    started = time.perf_counter()
    print(f"recon3d invalid rate — model {args.model}, {args.runs} runs, temperatures {TEMPERATURES}, "
          f"budgets {BUDGETS} tokens, formats {args.formats}")
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            temperature, budget = TEMPERATURES[run % 3], BUDGETS[(run // 3) % len(BUDGETS)]
            out = Path(tmp) / f"run{run}"
            inp = TaskInput(images=[product_photo(run * 2), product_photo(run * 2 + 1)], labels=["front", "top"],
                            artifacts_dir=out, artifacts_url="", recon3d=settings.recon3d,
                            formats=args.formats.split(","))
            t0 = time.perf_counter()
            try:
                task.prepare(inp)
                params = SamplingParams(max_tokens=budget, temperature=temperature, seed=1000 + run,
                                        json_schema=task.schema())
                result = engine.generate_sync(GenerationRequest(task.messages(inp), params))
                t1 = time.perf_counter()
                answer = task.answer(result.text, inp)
                kind = "model"
                detail = (f"generate {t1 - t0:5.1f} s, build {time.perf_counter() - t1:5.1f} s, "
                          f"{len(answer['files'])} files, {len(answer['warnings'])} warnings")
                if any("cut off" in w for w in answer["warnings"]):
                    detail += " (answer cut off, completed)"
                repaired += any("dropped" in w or "replaced" in w or "cut off" in w for w in answer["warnings"])
            except VlserveError as err:
                kind = "refusal" if err.code < 5000 else "crash"
                detail = f"{err.code} {err.message[:90]}"
                reasons[f"{err.code} {err.message.split(';')[0][:70]}"] += 1
            except Exception as err:  # noqa: BLE001 — a crash is what this bench counts
                kind, detail = "crash", f"{type(err).__name__}: {err}"
                traceback.print_exc()
            outcomes[kind] += 1
            by_budget[budget][kind] += 1
            print(f"  run {run:3d}  T={temperature:<4} max_tokens={budget:<5} {kind:8s} "
                  f"{time.perf_counter() - t0:6.1f} s  {detail}")
    total = sum(outcomes.values())
    print()
    print(f"{'outcome':<10}{'runs':>6}{'share':>9}")
    for kind in ("model", "refusal", "crash"):
        print(f"{kind:<10}{outcomes[kind]:>6}{outcomes[kind] / total:>9.1%}")
    print(f"models built after a repair or completion: {repaired} of {outcomes['model']}")
    print("by budget: " + "; ".join(f"{b} tokens: " + ", ".join(f"{k} {c[k]}" for k in ("model", "refusal", "crash"))
                                    for b, c in by_budget.items()))
    if reasons:
        print("refusals:")
        for reason, count in reasons.most_common():
            print(f"  {count:3d} × {reason}")
    print(f"crashes: {outcomes['crash']} (goal 0) — {time.perf_counter() - started:.0f} s in all")
    engine.close()


if __name__ == "__main__":
    main()
