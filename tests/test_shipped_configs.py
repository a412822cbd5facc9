"""Every config shipped in configs/ validates (data need not exist)."""

from pathlib import Path

import pytest

from liafkd.config import load_config, load_dataset_config
from liafkd.distill.config import load_distill_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(
    p for p in CONFIGS.rglob("*.yaml") if p.parent.name not in ("datasets", "bench")
)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_experiment_config_validates(path):
    cfg = load_config(path)
    if cfg.distill is not None:
        dcfg = load_distill_config(cfg.distill, str(path))
        if dcfg.teacher is not None:
            assert Path(dcfg.teacher.config).is_file(), dcfg.teacher.config


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "datasets").glob("*.yaml")), ids=lambda p: p.name
)
def test_dataset_config_validates(path):
    load_dataset_config(path)
