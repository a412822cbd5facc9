"""Per-iteration learning-rate factor: linear warmup, then step or cosine decay."""

from __future__ import annotations

import math

from liafkd.config import ScheduleConfig


def lr_factor(step: int, iters_per_epoch: int, sched: ScheduleConfig) -> float:
    """Multiplier of the base lr at optimizer step `step` (0-based)."""
    total = max(1, sched.epochs * iters_per_epoch)
    if sched.policy == "step":
        epoch = step // max(1, iters_per_epoch)
        decay = sched.gamma ** sum(1 for s in sched.steps if epoch >= s)
    else:
        decay = 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    if step < sched.warmup_iters:
        warm = sched.warmup_ratio + (1.0 - sched.warmup_ratio) * step / sched.warmup_iters
        return warm * decay
    return decay
