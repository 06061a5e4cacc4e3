"""The one training loop of every toy (arbiter, anchored, the SIIT family): AdamW, a linear warm-up then a
cosine decay to 10% of the rate, gradient clipping at 1; the caller's `step_loss(step)` builds the batch
and returns (loss, {part: float}). Deterministic given the caller's seeds (torch's deterministic algorithms
are switched on for the run)."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch


def train_loop(model: torch.nn.Module, steps: int, lr: float, warmup: int,
               step_loss: Callable[[int], tuple[torch.Tensor, dict]], log: Callable[[str], None] | None = None,
               label: str = "", log_every: int = 100) -> list[dict]:
    """Run `steps` optimizer steps on the parameters that require grad -> per step {"loss", **parts}."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, cosine decay to 10%
            opt, lambda k: min(1.0, (k + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * min(k, steps) / steps)))
        model.train()
        history, t0 = [], time.time()
        for step in range(steps):
            loss, parts = step_loss(step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            history.append({"loss": loss.item(), **parts})
            if log and (step + 1) % log_every == 0:
                last = history[-log_every:]
                avg = {k: sum(h[k] for h in last) / len(last) for k in last[0]}
                log(f"[{label}] step {step + 1}/{steps} " + " ".join(f"{k} {v:.4f}" for k, v in avg.items())
                    + f" ({time.time() - t0:.0f}s)")
        model.eval()
        return history
    finally:
        torch.use_deterministic_algorithms(was_deterministic)
