"""``vlserve finetune``: train on a data file, merge an adapter, score greedy answers.

    vlserve finetune --model M --data train.json [--eval-data held.json] -o OUTDIR
    vlserve finetune merge --model M --adapter OUTDIR -o MERGED
    vlserve finetune eval --model M [--adapter OUTDIR] --data held.json

Media are prepared with the ``[limits]`` of ``--config`` (the serving configuration), so the
model is trained on the pixels it will be served. Exit codes: 0 ok, 2 bad data or options
(message naming the record and field, no traceback).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from vlserve.errors import VlserveError

app = typer.Typer(
    name="finetune",
    help="Fine-tune a Qwen3-VL checkpoint (LoRA or full) on your conversations; merge; evaluate.",
    invoke_without_command=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", help="Serving settings file: its [limits] decide the media preparation (use the same file to serve).")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
DTypeOpt = Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")]


def _fail(err: VlserveError) -> typer.Exit:
    err_console.print(f"[bold red]error {err.code}[/]: {escape(err.message)}", highlight=False)
    return typer.Exit(code=2)


def _vision(config: Path | None, model: str) -> Any:
    from vlserve.cli.config import load_or_exit
    from vlserve.media import VisionSettings
    from vlserve.runtime.loading import resolve_checkpoint

    settings = load_or_exit(config)
    return VisionSettings.from_limits(settings.limits, checkpoint=resolve_checkpoint(model).path)


@app.callback()
def train(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Base model: tiny, a checkpoint directory or a hub id.")] = None,
    data: Annotated[Path | None, typer.Option(help="Training data: JSON array or JSONL (seed, qwen-vl-finetune "
                                                    "or OpenAI messages records).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Output folder (adapter, metrics, "
                                                                         "loss.png, checkpoint).")] = None,
    eval_data: Annotated[Path | None, typer.Option(help="Held-out data: loss and token accuracy each epoch.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Full fine-tuning instead of LoRA.")] = False,
    parts: Annotated[str, typer.Option("--train", help="Parts that train, comma-separated: lm, merger, "
                                                        "vision.")] = "lm,merger",
    epochs: Annotated[int, typer.Option(min=1, max=1000)] = 3,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default 2e-4 LoRA, 2e-5 full).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=4096)] = 2,
    grad_accum: Annotated[int, typer.Option(min=1, max=4096, help="Micro-batches per optimizer step.")] = 1,
    max_length: Annotated[int, typer.Option(min=16, max=1_048_576, help="Longest sample in tokens (media "
                                                                         "included); longer ones are bad "
                                                                         "records.")] = 4096,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUTDIR/checkpoint.")] = False,
    save_every: Annotated[int, typer.Option(min=0, help="Steps between checkpoints (0: each epoch).")] = 0,
    lora_rank: Annotated[int, typer.Option(min=1, max=4096)] = 16,
    lora_alpha: Annotated[int, typer.Option(min=1)] = 32,
    lora_dropout: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.05,
    warmup_steps: Annotated[int, typer.Option(min=0)] = 0,
    gradient_checkpointing: Annotated[bool, typer.Option(help="Recompute activations: less memory, ~30 % "
                                                              "slower.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Leave bad records out (listed in "
                                                               "OUTDIR/skipped.jsonl) instead of stopping.")] = False,
    max_records: Annotated[int, typer.Option(min=1, help="Most records a data file may hold.")] = 1_000_000,
    media_root: Annotated[Path | None, typer.Option(help="Folder relative media paths start from (default: "
                                                          "the data file's).")] = None,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
) -> None:
    """Fine-tune MODEL on DATA into OUTDIR (LoRA on the language model and the vision merger by default)."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None or data is None or output is None:
        err_console.print("[bold red]error[/]: --model, --data and -o/--output are required to train "
                          "(or use: vlserve finetune merge | eval)")
        console.print(ctx.get_help())
        raise typer.Exit(code=2)
    from vlserve.finetune.train import TrainConfig, finetune

    try:
        cfg = TrainConfig(
            method="full" if full else "lora", parts=tuple(p.strip() for p in parts.split(",") if p.strip()),
            epochs=epochs, learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum, max_length=max_length,
            seed=seed, lora_rank=lora_rank, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
            warmup_steps=warmup_steps, save_every=save_every, gradient_checkpointing=gradient_checkpointing,
            device=device, dtype=dtype,  # type: ignore[arg-type]
            skip_bad=skip_bad, max_records=max_records, media_root=media_root,
        )
        _check_parts(cfg.parts)
        vision = _vision(config, model)
        with _Progress() as progress:
            result = finetune(model, data, output, cfg, vision=vision, eval_data=eval_data, resume=resume,
                              report=progress.report)
    except VlserveError as err:
        raise _fail(err) from None
    for s in result.skipped:
        err_console.print(f"[yellow]skipped[/] record {s.index}, field {escape(s.field)}: {escape(s.problem)}",
                          highlight=False)
    console.print(
        f"[green]done[/]: {result.steps} steps, {result.samples} samples in {result.seconds:.1f} s "
        f"({result.samples_per_second:.2f} samples/s); loss {result.first_loss:.4f} → {result.last_loss:.4f}"
    )
    for row in result.evals:
        console.print(f"eval after epoch {row['epoch']}: loss {row['loss']:.4f}, "
                      f"token accuracy {row['token_accuracy']:.1%}")
    if result.skipped:
        console.print(f"{len(result.skipped)} bad records skipped: {output / 'skipped.jsonl'}")
    how = f"--model {output}" if full else f"--model {model} --adapter {output}"
    console.print(f"wrote {output} (metrics.jsonl, loss.png); serve it: vlserve serve {how}", highlight=False)


def _check_parts(parts: tuple[str, ...]) -> None:
    from vlserve.errors import RequestError
    from vlserve.finetune.adapters import PARTS

    bad = [p for p in parts if p not in PARTS]
    if bad or not parts:
        raise RequestError(f"--train takes parts among {', '.join(PARTS)}; got {', '.join(parts) or 'nothing'}")


class _Progress:
    """A rich progress bar fed by the training loop's reports: loss, epoch and ETA."""

    def __enter__(self) -> _Progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]training[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]:.2f}  loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
        )
        self.task: Any = None
        self.progress.__enter__()
        return self

    def report(self, row: dict[str, Any]) -> None:
        if row.get("event") == "start":
            console.print(f"{row['samples']} samples ({row['answer_tokens']} answer tokens), "
                          f"{row['skipped']} skipped; {row['trainable_parameters']:,} trainable parameters")
            self.task = self.progress.add_task("train", total=row["total_steps"], completed=row["done_steps"],
                                               epoch=0.0, loss=float("nan"))
        elif row.get("kind") == "train" and self.task is not None:
            self.progress.update(self.task, completed=row["step"], epoch=row["epoch"], loss=row["loss"])
        elif row.get("kind") == "eval":
            self.progress.console.print(f"eval after epoch {row['epoch']}: loss {row['loss']:.4f}, "
                                        f"token accuracy {row['token_accuracy']:.1%}")

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]


@app.command("merge")
def merge(
    model: Annotated[str, typer.Option(help="The base model the adapter was trained on.")],
    adapter: Annotated[Path, typer.Option(help="The adapter folder (vlserve finetune's OUTDIR).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the merged checkpoint.")],
    dtype: DTypeOpt = "auto",
) -> None:
    """Merge a LoRA adapter into its base model: a checkpoint that loads like any other (--model)."""
    from vlserve.finetune.adapters import merge_adapter

    try:
        with console.status("merging"):
            out = merge_adapter(model, adapter, output, dtype=dtype)  # type: ignore[arg-type]
    except VlserveError as err:
        raise _fail(err) from None
    console.print(f"[green]wrote[/] {out}; serve it: vlserve serve --model {out}", highlight=False)


@app.command("eval")
def evaluate_command(
    model: Annotated[str, typer.Option(help="tiny, a checkpoint directory or a hub id.")],
    data: Annotated[Path, typer.Option(help="Records whose last assistant turn is the reference answer.")],
    adapter: Annotated[Path | None, typer.Option(help="A LoRA adapter folder to apply.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=256)] = 8,
    max_tokens: Annotated[int, typer.Option(min=1, max=32768, help="Most tokens per answer.")] = 256,
    skip_bad: Annotated[bool, typer.Option("--skip-bad")] = False,
    media_root: Annotated[Path | None, typer.Option()] = None,
    show: Annotated[int, typer.Option(min=0, help="Print this many answers next to their references.")] = 0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    config: ConfigOpt = None,
    device: DeviceOpt = "auto",
    dtype: DTypeOpt = "auto",
) -> None:
    """Greedy answers of the real engine vs the references: exact match and token accuracy."""
    from vlserve.finetune.evaluate import evaluate
    from vlserve.runtime.local import LocalEngine

    try:
        vision = _vision(config, model)
        with console.status("loading the model"):
            engine = LocalEngine(model, device=device, dtype=dtype, vision=vision, adapter=adapter)  # type: ignore[arg-type]
        with console.status("answering"):
            report = evaluate(engine, data, batch_size=batch_size, max_tokens=max_tokens, skip_bad=skip_bad,
                              media_root=media_root)
    except VlserveError as err:
        raise _fail(err) from None
    if json_output:
        answers = [{"index": i.index, "answer": i.answer, "reference": i.reference, "exact": i.exact}
                   for i in report.items]
        print(json.dumps({**report.summary(), "answers": answers}, ensure_ascii=False))
        return
    for item in report.items[:show]:
        mark = "[green]✓[/]" if item.exact else "[red]✗[/]"
        console.print(f"{mark} record {item.index}: {escape(item.answer)!r} (reference {escape(item.reference)!r})",
                      highlight=False)
    s = report.summary()
    console.print(f"exact match {s['exact_match']:.1%}, token accuracy {s['token_accuracy']:.1%} over "
                  f"{s['records']} records ({s['skipped']} skipped) in {s['seconds']:.1f} s")
