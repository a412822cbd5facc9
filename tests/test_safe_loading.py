"""Safe loading: no code runs from a file, and config paths mean the same from any cwd.

- every torch.load passes weights_only=True (checked over the source tree), YAML is
  read with safe_load, and no eval/exec/pickle appears in the package;
- a checkpoint or pretrained file that needs code execution is refused with the reason;
- relative paths in a config resolve against the config file: dataset roots,
  model.pretrained, distill.teacher.{config,checkpoint}; output_dir (an output) stays
  relative to the working directory.
"""

import ast
from pathlib import Path

import pytest
import torch

from liafkd.config import ConfigError, load_config
from liafkd.distill.config import load_distill_config
from liafkd.engine.checkpoint import CheckpointError
from liafkd.models.backbone import ResNetBackbone

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "liafkd"

BASE = """
data:
  train: {format: synthetic, root: data/synth, split: train}
  val: {format: synthetic, root: data/synth, split: val}
"""


UNSAFE_CALLS = {"yaml.load", "yaml.unsafe_load", "yaml.full_load", "eval", "exec"}
UNSAFE_MODULES = {"pickle", "dill", "marshal", "shelve"}


def unsafe_uses(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            weights_only = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
            safe = isinstance(weights_only, ast.Constant) and weights_only.value is True
            if name == "torch.load" and not safe:
                found.append((node.lineno, "torch.load without weights_only=True"))
            if name in UNSAFE_CALLS:
                found.append((node.lineno, f"{name}(...)"))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            if UNSAFE_MODULES & {str(n).split(".")[0] for n in names}:
                found.append((node.lineno, f"import {names}"))
    return found


def test_unsafe_uses_are_detected():
    code = "import pickle\ntorch.load(f)\ntorch.load(f, weights_only=False)\nyaml.load(s)\neval(x)"
    assert [line for line, _ in unsafe_uses(ast.parse(code))] == [1, 2, 3, 4, 5]


def test_source_tree_loads_only_safely():
    unsafe = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {what}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, what in unsafe_uses(ast.parse(path.read_text(), str(path)))
    ]
    assert unsafe == []


class _RunsCode:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_pretrained_file_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save({"conv1.weight": torch.zeros(1), "x": _RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused: the file needs arbitrary code execution"):
        ResNetBackbone(18).load_pretrained(path)


def test_model_pretrained_resolves_against_the_config_file(tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    path = configs / "exp.yaml"
    path.write_text(BASE + "model: {pretrained: ../weights/resnet18.pth}\noutput_dir: runs/x\n")
    monkeypatch.chdir(tmp_path.parent)  # the working directory does not matter
    cfg = load_config(path)
    assert cfg.model.pretrained == str(tmp_path / "weights" / "resnet18.pth")
    assert cfg.data.train.root == str(configs / "data" / "synth")
    assert cfg.output_dir == str(tmp_path.parent / "runs" / "x")


def test_absolute_and_home_paths_are_kept(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(BASE + f"model: {{pretrained: {tmp_path}/w.pth}}\n")
    assert load_config(path).model.pretrained == f"{tmp_path}/w.pth"
    path.write_text(BASE + "model: {pretrained: ~/w.pth}\n")
    assert load_config(path).model.pretrained == str(Path.home() / "w.pth")


def test_teacher_paths_resolve_against_the_experiment_config(tmp_path):
    raw = {"method": "mimic", "teacher": {"config": "t/teacher.yaml", "checkpoint": "t/best.pt"}}
    cfg = load_distill_config(raw, "exp.yaml", base_dir=tmp_path)
    assert cfg.teacher.config == str(tmp_path / "t" / "teacher.yaml")
    assert cfg.teacher.checkpoint == str(tmp_path / "t" / "best.pt")


@pytest.mark.parametrize("data", ["data: [1, 2]", "data: {train: 3, val: x}"])
def test_paths_of_a_malformed_config_give_a_config_error(tmp_path, data):
    path = tmp_path / "exp.yaml"
    path.write_text(data + "\nmodel: 5\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: (data|model)"):
        load_config(path)
