"""Fabricated results.jsonl files with hand-picked numbers, for report tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

NONE_AP = {0: 0.400, 1: 0.405, 2: 0.415}
LIAF_AP = {0: 0.410, 1: 0.420, 2: 0.430}


def _kitti(moderate: float) -> dict:
    difficulty = {
        "easy": {"R40": moderate + 5, "R11": moderate + 5},
        "moderate": {"R40": moderate, "R11": moderate},
        "hard": {"R40": moderate - 5, "R11": moderate - 5},
    }
    return {"Car": difficulty, "Pedestrian": difficulty, "moderate_mean": moderate}


def _metrics(ap: float) -> dict:
    return {
        "AP": ap,
        "AP50": ap + 0.2,
        "AP75": ap - 0.05,
        "APs": ap - 0.2,
        "APm": ap,
        "APl": None,
        "per_class": {},
        "kitti": _kitti(100 * ap + 10),
    }


def _run(method: str, seed: int, ap: float, weights: bool) -> dict:
    moments = {"n": 4, "sum": 4.4, "sum_sq": 4.9}
    return {
        "kind": "run",
        "key": f"{method}-{seed}",
        "bench": "fake",
        "finished_at": "2026-01-01T00:00:00+00:00",
        "dataset": "synth",
        "method": method,
        "base_method": method,
        "seed": seed,
        "metrics": _metrics(ap),
        "epochs": [
            {"epoch": 1, "AP": ap / 2, "AP50": ap},
            {"epoch": 2, "AP": ap, "AP50": ap + 0.2},
        ],
        "instance_weights": {
            "epoch": 2,
            "all": moments,
            "by_size": {"0-16": moments, "16-32": {"n": 2, "sum": 1.8, "sum_sq": 1.64}},
            "by_occlusion": {"0": moments, "2": {"n": 1, "sum": 0.7, "sum_sq": 0.49}},
        }
        if weights
        else None,
        "timings": {"train_s": 120.0, "wall_s": 130.0, "eval_s": 3.0},
        "versions": {"liafkd": "0.1.0", "git": "abc", "torch": "2.x", "device": "cpu"},
    }


def fake_records() -> list[dict]:
    records = [
        {
            "kind": "bench",
            "key": "bench",
            "bench": "fake",
            "finished_at": "2026-01-01T00:00:00+00:00",
            "name": "fake",
            "description": "A fabricated bench.",
            "expected_wall_time": "no time at all",
            "methods": [{"name": "none", "method": "none"}, {"name": "liaf", "method": "liaf"}],
            "seeds": [0, 1, 2],
            "comparisons": [["liaf", "none"], ["liaf", "fgd"]],  # fgd has no runs: left out
            "datasets": {
                "synth": {"format": "synthetic", "train_split": "train", "val_split": "val"}
            },
        },
        {
            "kind": "teacher",
            "key": "teacher",
            "bench": "fake",
            "finished_at": "2026-01-01T00:00:00+00:00",
            "dataset": "synth",
            "metrics": _metrics(0.5),
            "timings": {"train_s": 600.0, "wall_s": 610.0},
        },
    ]
    records += [_run("none", s, ap, False) for s, ap in NONE_AP.items()]
    records += [_run("liaf", s, ap, True) for s, ap in LIAF_AP.items()]
    variant = {"distill_share": None, "distill_ms": None, "step_ms_spread": [0, 0]}
    records.append(
        {
            "kind": "cost",
            "key": "cost",
            "bench": "fake",
            "finished_at": "2026-01-01T00:00:00+00:00",
            "dataset": "synth",
            "device": "cpu (2 threads)",
            "batch_size": 8,
            "image_shape": [192, 320],
            "warmup": 3,
            "steps": 20,
            "rounds": 4,
            "order": ["none", "liaf", "floor"],
            "memory_method": "cpu profiler",
            "variants": {
                "none": {**variant, "method": "none", "step_ms": 100.0, "peak_mib": 50.0},
                "floor": {**variant, "method": "floor", "step_ms": 120.0, "peak_mib": 60.0},
                "liaf": {
                    **variant,
                    "method": "liaf",
                    "step_ms": 126.0,
                    "peak_mib": 63.0,
                    "distill_share": 0.03,
                    "distill_ms": 3.78,
                },
            },
            "student": {
                "params": 2_500_000,
                "flops": 3_000_000_000,
                "latency_ms": 12.5,
                "image_shape": [192, 320],
                "identical_across_methods": True,
            },
        }
    )
    return records


@pytest.fixture
def fake_bench(tmp_path: Path) -> Path:
    """A bench folder holding only a fabricated results.jsonl."""
    folder = tmp_path / "fake_bench"
    folder.mkdir()
    lines = [json.dumps(r) for r in fake_records()]
    (folder / "results.jsonl").write_text("\n".join(lines) + "\n")
    return folder
