"""Counting the experts a request activates in a mixture-of-experts model.

Forward hooks on every top-k router record which experts each token was sent to. Per request
and per MoE layer we keep the set of experts chosen by any of its tokens (prompt and generated,
padding excluded). The figure we report, ``activated_experts``, is the size of that set averaged
over the MoE layers and rounded; ``experts_per_layer`` lists the exact per-layer counts. It lies in
``[top_k, num_experts]``: a one-token request touches ``top_k`` experts per layer, a long and varied
one approaches all of them.
"""

from __future__ import annotations

from typing import Any

import torch


class ExpertTracker:
    """Records, for one forward pass at a time, which experts each batch row's tokens used."""

    def __init__(self, model: Any) -> None:
        self.routers = [m for m in model.modules() if type(m).__name__.endswith("TopKRouter")]
        self.num_experts: int = self.routers[0].num_experts if self.routers else 0
        self.used: torch.Tensor | None = None
        self.valid: torch.Tensor | None = None  # (rows, seq) mask of real tokens in this forward
        self._handles = [r.register_forward_hook(self._hook(i)) for i, r in enumerate(self.routers)]

    @property
    def enabled(self) -> bool:
        return bool(self.routers)

    def begin(self, valid: torch.Tensor) -> None:
        """Before a forward pass: ``valid`` marks the real (not padding) tokens of its input."""
        if self.enabled:
            # On the model's device: a copy to the host in each router's hook would wait for the GPU
            # 48 times a step (Qwen3-VL-30B-A3B), which made decoding 1.5x slower than without.
            device = next(self.routers[0].parameters()).device
            self.valid = valid.to(device=device, dtype=torch.bool)
            self.used = torch.zeros(valid.shape[0], len(self.routers), self.num_experts, dtype=torch.bool,
                                    device=device)

    def end(self) -> torch.Tensor | None:
        """After the forward pass: ``(rows, layers, experts)`` usage, or None for dense models."""
        used, self.used, self.valid = self.used, None, None
        return used

    def _hook(self, layer: int) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            if self.used is None or self.valid is None:
                return
            indices = output[2].detach()  # (rows*seq, top_k)
            rows, seq = self.valid.shape
            if indices.shape[0] != rows * seq:
                return  # a forward we did not set up
            hits = torch.zeros(rows * seq, self.num_experts, dtype=torch.bool, device=indices.device)
            hits.scatter_(1, indices, True)
            hits = hits.view(rows, seq, -1) & self.valid.unsqueeze(-1)
            self.used[:, layer] |= hits.any(dim=1)

        return hook

    @staticmethod
    def summarise(used_row: torch.Tensor) -> tuple[int, list[int]]:
        """``(activated_experts, experts_per_layer)`` from one request's ``(layers, experts)`` usage."""
        per_layer = used_row.sum(dim=-1).tolist()
        return max(1, round(sum(per_layer) / len(per_layer))), per_layer
