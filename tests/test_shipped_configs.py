"""Every config shipped in configs/ validates (data need not exist), and every shipped
distillation config uses the published loss weights."""

from pathlib import Path

import pytest
import yaml

from liafkd.config import load_config, load_dataset_config
from liafkd.distill.config import DistillConfig, load_distill_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NOT_EXPERIMENTS = ("datasets", "bench")  # top folders of configs/ (bench has archive/)
EXPERIMENTS = sorted(
    p for p in CONFIGS.rglob("*.yaml") if p.relative_to(CONFIGS).parts[0] not in NOT_EXPERIMENTS
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


# the loss weights of each method block; their defaults are the published ones
WEIGHT_FIELDS = {
    "mimic": ("weight",),
    "fgd": ("alpha_fg", "beta_bg", "gamma_att", "lambda_global"),
    "aid": ("alpha_fg", "beta_bg", "gamma_att", "lambda_global"),
    "liaf": ("alpha_fg", "beta_bg", "gamma_att"),
    "ld": ("weight",),
    "pkd": ("weight",),
    "crosskd": ("weight_qfl", "weight_kl"),
}
PUBLISHED = DistillConfig(method="none")


def _weights(cfg: DistillConfig) -> dict[str, float]:
    return {
        f"{block}.{name}": getattr(getattr(cfg, block), name)
        for block, names in WEIGHT_FIELDS.items()
        for name in names
    }


DISTILL_EXPERIMENTS = [p for p in EXPERIMENTS if "distill:" in p.read_text()]


@pytest.mark.parametrize("path", DISTILL_EXPERIMENTS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_distill_configs_use_the_published_weights(path):
    dcfg = load_distill_config(load_config(path).distill, str(path))
    assert _weights(dcfg) == _weights(PUBLISHED)
    assert dcfg.feature_norm == "teacher_rms"


@pytest.mark.parametrize(
    "path", sorted((CONFIGS / "bench").rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONFIGS))
)
def test_bench_presets_apply_no_weights_to_every_row(path):
    """Rows may ablate a weight by name (e.g. fgd-x10); distill_options, which reach every
    row, carry none."""
    options = yaml.safe_load(path.read_text()).get("distill_options", {})
    overridden = {
        f"{block}.{name}"
        for block, names in WEIGHT_FIELDS.items()
        for name in names
        if name in options.get(block, {})
    }
    assert not overridden
