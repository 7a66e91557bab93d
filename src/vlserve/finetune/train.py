"""The training loop: LoRA or full fine-tuning of a Qwen3-VL checkpoint on conversation data.

One optimizer step covers ``batch_size * grad_accum`` conversations; the loss is the mean
cross-entropy over the answer tokens of the whole step (so long and short answers weigh per token,
whatever the split into micro-batches). Logits are computed only at answer positions: the output
head of a Qwen3-VL model is 151 936 wide, and skipping the masked positions saves most of its cost.

The output folder gets, as the run goes: ``metrics.jsonl`` (a row per step and per evaluation),
``checkpoint/`` (what ``resume`` needs, replaced atomically), and at the end the adapter or
the full checkpoint, ``loss.png``, ``vlserve-finetune.json`` and ``skipped.jsonl`` (bad records
left out with ``skip_bad``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlserve.errors import RequestError
from vlserve.finetune.adapters import (
    DEFAULT_PARTS,
    METADATA,
    Method,
    copy_processor_files,
    mark_trainable,
    vision_record,
)
from vlserve.finetune.collate import collate
from vlserve.finetune.dataset import Dataset, Skipped, load_dataset
from vlserve.finetune.plot import plot_losses, read_metrics
from vlserve.finetune.samples import IGNORE, SampleEncoder
from vlserve.media import VisionSettings
from vlserve.runtime.loading import DType, load_model, resolve_checkpoint

__all__ = ["TrainConfig", "TrainResult", "finetune"]

CHECKPOINT = "checkpoint"
METRICS = "metrics.jsonl"


@dataclass
class TrainConfig:
    """Everything that shapes a run (recorded in ``vlserve-finetune.json``)."""

    method: Method = "lora"
    parts: tuple[str, ...] = DEFAULT_PARTS
    epochs: int = 3
    learning_rate: float | None = None  # None: 2e-4 for LoRA, 2e-5 for full fine-tuning
    batch_size: int = 2
    grad_accum: int = 1
    max_length: int = 4096
    seed: int = 0
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    save_every: int = 0  # optimizer steps between checkpoints (0: at the end of each epoch only)
    gradient_checkpointing: bool = False
    device: str = "auto"
    dtype: DType = "auto"
    skip_bad: bool = False
    max_records: int | None = 1_000_000
    media_root: Path | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "lora_rank"):
            if getattr(self, name) < 1:
                raise RequestError(f"{name.replace('_', '-')} must be at least 1")
        if self.learning_rate is not None and not (0 < self.learning_rate < 1):
            raise RequestError("the learning rate must be between 0 and 1")
        if self.method not in ("lora", "full"):
            raise RequestError("method must be 'lora' or 'full'")

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-4 if self.method == "lora" else 2e-5

    def resume_key(self) -> dict[str, Any]:
        """Settings a checkpoint must share with the run resuming it."""
        return {k: v for k, v in asdict(self).items()
                if k in ("method", "parts", "batch_size", "grad_accum", "seed", "lora_rank", "lora_alpha")}


@dataclass
class TrainResult:
    outdir: Path
    steps: int
    seconds: float
    samples: int
    samples_per_second: float
    first_loss: float
    last_loss: float
    skipped: list[Skipped] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)  # rows of metrics.jsonl: "kind" is a str


Reporter = Callable[[dict[str, Any]], None]


def finetune(model: str, data: Path, outdir: Path, config: TrainConfig, *, vision: VisionSettings,
             eval_data: Path | None = None, resume: bool = False, report: Reporter | None = None) -> TrainResult:
    """Fine-tune ``model`` on ``data``; write the adapter (or full checkpoint) and metrics to ``outdir``.

    ``vision`` must be the media settings the model will be served with (build them from the
    serving configuration's ``[limits]`` with ``VisionSettings.from_limits``). ``report`` receives
    ``{"event": "start", "total_steps", "done_steps", ...}``, then a row per step and evaluation.
    """
    import torch

    report = report or (lambda row: None)
    for path in (data, eval_data):
        if path is not None and not path.is_file():  # before minutes of model loading
            raise RequestError(f"the data file {path} does not exist")
    torch.manual_seed(config.seed)
    ckpt = resolve_checkpoint(model)
    base, tokenizer, device = load_model(ckpt, device=config.device, dtype=config.dtype)
    encoder = SampleEncoder.for_model(base, tokenizer, vision, max_length=config.max_length)
    train = load_dataset(data, encoder, skip_bad=config.skip_bad, media_root=config.media_root,
                         max_records=config.max_records)
    held = (load_dataset(eval_data, encoder, skip_bad=config.skip_bad, media_root=config.media_root,
                         max_records=config.max_records) if eval_data else None)
    outdir.mkdir(parents=True, exist_ok=True)
    _write_skipped(outdir, train.skipped)

    model_t = mark_trainable(base, config.method, config.parts, rank=config.lora_rank, alpha=config.lora_alpha,
                             dropout=config.lora_dropout)
    if config.gradient_checkpointing:
        base.gradient_checkpointing_enable()
        if config.method == "lora":
            base.enable_input_require_grads()  # frozen embeddings would cut the graph otherwise
    params = [p for p in model_t.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batches = math.ceil(len(train) / config.batch_size)
    steps_per_epoch = math.ceil(batches / config.grad_accum)
    total = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _cosine(config.warmup_steps, total))
    step = 0
    if resume:
        step = _load_checkpoint(outdir / CHECKPOINT, model_t, optimizer, schedule, config)
    metrics_path = outdir / METRICS
    # Rows logged after the checkpoint (a run killed mid-epoch) are dropped: those steps run again.
    kept = [r for r in read_metrics(metrics_path) if r.get("step", 0) <= step] if resume else []
    metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    trainable = sum(p.numel() for p in params)
    report({"event": "start", "total_steps": total, "done_steps": step, "samples": len(train),
            "skipped": len(train.skipped), "trainable_parameters": trainable,
            "answer_tokens": train.answer_tokens})

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    dtype = next(base.parameters()).dtype

    def batch_of(dataset: Dataset, idx: list[int]) -> tuple[dict[str, Any], int]:
        samples = [dataset.sample(i) for i in idx]
        return collate(samples, pad_token_id=pad, device=device, dtype=dtype), sum(s.answer_tokens for s in samples)

    started = time.perf_counter()
    seen = 0
    first_loss = last_loss = float("nan")
    evals: list[dict[str, Any]] = []
    model_t.train()
    with metrics_path.open("a") as metrics:
        for epoch in range(step // steps_per_epoch, config.epochs):
            order = np.random.default_rng(config.seed + epoch).permutation(len(train)).tolist()
            micro = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
            groups = [micro[i : i + config.grad_accum] for i in range(0, len(micro), config.grad_accum)]
            for group in groups[step - epoch * steps_per_epoch :]:
                loaded = [batch_of(train, idx) for idx in group]
                tokens = sum(n for _, n in loaded)
                loss_sum = 0.0
                for batch, _ in loaded:
                    loss, _ = _answer_loss(model_t, batch)
                    (loss / tokens).backward()
                    loss_sum += float(loss.detach())
                norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                seen += sum(len(idx) for idx in group)
                elapsed = time.perf_counter() - started
                row: dict[str, Any] = {
                    "kind": "train", "step": step, "epoch": epoch + (step - epoch * steps_per_epoch) / steps_per_epoch,
                    "loss": loss_sum / tokens, "lr": schedule.get_last_lr()[0],
                    "grad_norm": float(norm), "answer_tokens": tokens, "elapsed_s": round(elapsed, 3),
                    "samples_per_s": round(seen / elapsed, 3) if elapsed > 0 else 0.0}
                if math.isnan(first_loss):
                    first_loss = row["loss"]
                last_loss = row["loss"]
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                report(row)
                if config.save_every and step % config.save_every == 0 and step < total:
                    _save_checkpoint(outdir / CHECKPOINT, model_t, optimizer, schedule, step, config)
            if held is not None:
                row = {"kind": "eval", "step": step, "epoch": epoch + 1, **evaluate_loss(model_t, held, batch_of,
                                                                                        config.batch_size)}
                evals.append(row)
                metrics.write(json.dumps(row) + "\n")
                metrics.flush()
                report(row)
                model_t.train()
            _save_checkpoint(outdir / CHECKPOINT, model_t, optimizer, schedule, step, config)
    seconds = time.perf_counter() - started
    _save_result(model_t, base, ckpt.path, outdir, config)
    plot_losses(metrics_path, outdir / "loss.png")
    meta = {"base_model": str(ckpt.path), "base_name": ckpt.name, "method": config.method,
            "parts": list(config.parts), "config": _jsonable(asdict(config)), "vision": vision_record(vision),
            "data": str(data), "samples": len(train), "skipped": len(train.skipped), "steps": step,
            "trainable_parameters": trainable, "seconds": round(seconds, 2),
            "final_loss": last_loss, "evals": evals}
    (outdir / METADATA).write_text(json.dumps(meta, indent=2))
    return TrainResult(outdir, step, seconds, seen, seen / seconds if seconds > 0 else 0.0, first_loss, last_loss,
                       train.skipped, evals)


def _answer_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Summed cross-entropy over the answer tokens of ``batch`` and how many were predicted right."""
    import torch

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    hidden = inner.model(**inputs).last_hidden_state[:, :-1]
    target = batch["labels"][:, 1:]  # position t predicts token t+1
    keep = target != IGNORE
    logits = inner.lm_head(hidden[keep]).float()
    wanted = target[keep]
    loss = torch.nn.functional.cross_entropy(logits, wanted, reduction="sum")
    return loss, (logits.argmax(-1) == wanted).sum()


def evaluate_loss(model: Any, dataset: Dataset, batch_of: Callable[[Dataset, list[int]], tuple[dict[str, Any], int]],
                  batch_size: int) -> dict[str, float]:
    """Teacher-forced loss and token accuracy over the answers of ``dataset``."""
    import torch

    model.eval()
    loss_sum = correct = tokens = 0.0
    with torch.no_grad():
        for i in range(0, len(dataset), batch_size):
            batch, n = batch_of(dataset, list(range(i, min(i + batch_size, len(dataset)))))
            loss, right = _answer_loss(model, batch)
            loss_sum += float(loss)
            correct += float(right)
            tokens += n
    return {"loss": loss_sum / tokens, "token_accuracy": correct / tokens}


def _cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up, then a cosine decay to a tenth of the learning rate."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _trainable_state(model: Any) -> dict[str, Any]:
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def _save_checkpoint(folder: Path, model: Any, optimizer: Any, schedule: Any, step: int, config: TrainConfig) -> None:
    """Everything needed to continue from ``step``; the old checkpoint is replaced atomically."""
    import torch
    from safetensors.torch import save_file

    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(_trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, "config": _jsonable(config.resume_key())}))
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(folder: Path, model: Any, optimizer: Any, schedule: Any, config: TrainConfig) -> int:
    import torch
    from safetensors.torch import load_file

    state_path = folder / "state.json"
    if not state_path.is_file():
        raise RequestError(f"nothing to resume: {folder} holds no checkpoint (start without --resume)")
    state = json.loads(state_path.read_text())
    if state.get("config") != _jsonable(config.resume_key()):
        raise RequestError(f"the checkpoint in {folder} was made with other settings {state.get('config')}; "
                           f"resume with the same method, parts, batch size, accumulation, seed and LoRA rank")
    weights = load_file(str(folder / "trainable.safetensors"))
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            named[name].copy_(value)
    extra = torch.load(folder / "optimizer.pt", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    schedule.load_state_dict(extra["schedule"])
    torch.set_rng_state(extra["rng"])
    return int(state["step"])


def _save_result(model: Any, base: Any, source: Path, outdir: Path, config: TrainConfig) -> None:
    if config.method == "lora":
        model.save_pretrained(outdir)  # adapter_config.json + adapter_model.safetensors
        return
    base.save_pretrained(outdir, safe_serialization=True)
    copy_processor_files(source, outdir)


def _write_skipped(outdir: Path, skipped: list[Skipped]) -> None:
    path = outdir / "skipped.jsonl"
    if skipped:
        path.write_text("".join(json.dumps(asdict(s)) + "\n" for s in skipped))
    elif path.exists():
        path.unlink()


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))
