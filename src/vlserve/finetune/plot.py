"""The loss curve of a run, drawn from its ``metrics.jsonl`` into a PNG."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["plot_losses", "read_metrics"]


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The rows of a ``metrics.jsonl`` (training steps have ``kind: train``, evaluations ``eval``)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_losses(metrics: Path, out: Path) -> Path:
    """Training loss per optimizer step (and evaluation loss, when there is any) → ``out`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers; the PNG is all we want
    import matplotlib.pyplot as plt

    rows = read_metrics(metrics)
    train = [r for r in rows if r.get("kind") == "train"]
    evals = [r for r in rows if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], lw=1, label="train loss")
    if evals:
        ax.plot([r["step"] for r in evals], [r["loss"] for r in evals], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy per answer token")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
