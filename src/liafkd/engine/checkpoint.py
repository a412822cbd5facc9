"""Checkpoints: written atomically, pruned, the RNG state, state dicts loaded with a
readable mismatch report. Loading a file safely lives in `liafkd.safe_load` (the models
use it too); its names are re-exported here for the engine's callers."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from liafkd.outputs import write_atomic
from liafkd.safe_load import CheckpointError as CheckpointError
from liafkd.safe_load import epoch_checkpoints as epoch_checkpoints
from liafkd.safe_load import load_checkpoint as load_checkpoint


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`; on a
    full disk (DiskFullError) or any other failure no temp file stays, `path` unchanged."""
    write_atomic(Path(path), lambda handle: torch.save(obj, handle))


def prune_checkpoints(folder: Path, keep: int = 2) -> None:
    for p in epoch_checkpoints(folder)[:-keep]:
        p.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached": float(np_state[4]),
        },
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore `rng_state()`'s output, wherever its tensors were loaded: a checkpoint read
    with map_location=cuda brings them on the GPU, and the generators want CPU bytes."""
    torch.set_rng_state(state["torch"].cpu())
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].cpu().numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def _python_state_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def load_state_dict_reporting(
    module: torch.nn.Module, state: dict[str, torch.Tensor], what: str, strict: bool = True
) -> tuple[list[str], list[str]]:
    """load_state_dict with a readable error listing mismatched keys and shapes."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    mismatched = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if strict and (missing or unexpected or mismatched):
        lines = [f"{what}: the checkpoint does not match this architecture"]
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                shown = ", ".join(items[:20]) + (
                    f" ... (+{len(items) - 20})" if len(items) > 20 else ""
                )
                lines.append(f"  {title} ({len(items)}): {shown}")
        raise CheckpointError("\n".join(lines))
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    module.load_state_dict(usable, strict=False)
    return missing, unexpected
