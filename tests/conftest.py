from pathlib import Path

import pytest
import torch
import yaml

torch.set_num_threads(1)  # tiny tensors: one thread is faster and avoids oversubscription

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The real datasets in ../shared/data; skips when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (../shared/data beside the repo)")
    return SHARED_DATA


TINY_MODEL = {"depth": 18, "width": 8, "fpn_channels": 16, "head_convs": 1, "head_channels": 16}


def tiny_experiment(tmp_path: Path, name: str, **train) -> dict:
    synth = {
        "format": "synthetic",
        "root": str(tmp_path / "synth"),
        "synth_images": 12,
        "synth_size": [96, 160],
    }
    return {
        "name": name,
        "output_dir": str(tmp_path / name),
        "data": {
            "train": {**synth, "split": "train"},
            "val": {**synth, "split": "val"},
            "augment": {"image_size": [96, 160]},
            "batch_size": 3,
        },
        "model": dict(TINY_MODEL),
        "train": {
            "optim": {"type": "adamw", "lr": 0.001},
            "schedule": {"epochs": 2, "warmup_iters": 2, "policy": "cosine"},
            "log_interval": 1,
            "device": "cpu",  # also on a GPU machine: these runs are the CPU reference
            **train,
        },
    }


def write_yaml(raw: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="session")
def experiment_writer():
    """(tiny_experiment, write_yaml) for fixtures of any scope that build their own configs."""
    return tiny_experiment, write_yaml


@pytest.fixture
def tiny_config(tmp_path: Path):
    """Factory: writes a tiny synthetic experiment config and returns its path."""

    def make(name: str = "run", **train) -> Path:
        return write_yaml(tiny_experiment(tmp_path, name, **train), tmp_path / f"{name}.yaml")

    return make


@pytest.fixture(scope="session")
def tiny_distill_runs(tmp_path_factory) -> dict[str, Path]:
    """Trained once per session: a tiny teacher and two students distilled from it with
    `liaf` (a learnt weighting, selector.lam 0.5) and with `none`. {"teacher" | "liaf" |
    "none": the run's config}; each run's output_dir holds final.pt (and the liaf run its
    instance dumps)."""
    from liafkd.engine.runs import distill_student, train_detector

    root = tmp_path_factory.mktemp("tiny_distill")
    teacher = write_yaml(tiny_experiment(root, "teacher"), root / "teacher.yaml")
    train_detector(str(teacher), [])
    configs = {"teacher": teacher}
    for method in ("liaf", "none"):
        raw = tiny_experiment(root, f"student_{method}")
        raw["distill"] = {
            "method": method,
            "teacher": {"config": str(teacher), "checkpoint": str(root / "teacher" / "final.pt")},
            "checks": {"teacher_sanity": False},  # a 2-epoch teacher scores about 0
        }
        if method == "liaf":  # lam 0, the default, builds no selector and dumps nothing
            raw["distill"]["liaf"] = {"selector": {"lam": 0.5}}
        configs[method] = write_yaml(raw, root / f"student_{method}.yaml")
        distill_student(str(configs[method]), [])
    return configs
