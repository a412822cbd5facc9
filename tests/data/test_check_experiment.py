"""`liafkd data check` on an experiment config checks its data.train and data.val; on a
file that is neither a dataset YAML nor an experiment config it says what it expects."""

import json
import re
from pathlib import Path

import yaml
from dataset_fixtures import make_voc, voc_xml

from liafkd.cli.main import main

SRC = Path(__file__).resolve().parents[2] / "src"


def write(path: Path, raw: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def voc_experiment(tmp_path: Path, val_policy: str = "drop") -> Path:
    """configs/base.yaml holds the data (root relative to it); configs/run.yaml inherits it."""
    root = tmp_path / "voc"
    make_voc(root, {"a": voc_xml([("cell", 1, 1, 30, 30)]), "b": voc_xml([("cell", 5, 5, 9, 9)])})
    make_voc(root, {"c": voc_xml([("cell", 2, 2, 2, 20)])}, split="val")  # a zero-width box
    block = {"format": "voc", "root": "../voc", "classes": ["cell"]}
    base = write(
        tmp_path / "configs" / "base.yaml",
        {
            "data": {
                "train": {**block, "split": "train"},
                "val": {**block, "split": "val", "policy": val_policy},
            }
        },
    )
    return write(
        tmp_path / "configs" / "run.yaml",
        {"_base_": base.name, "name": "run", "model": {"depth": 18}, "distill": {"x": 1}},
    )


def test_an_experiment_config_has_its_train_and_val_data_checked(tmp_path, capsys):
    config = voc_experiment(tmp_path)
    out = tmp_path / "summary.json"
    assert main(["data", "check", str(config), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    train, val = printed.split(f"== data.val of {config}")
    assert train.startswith(f"== data.train of {config}")
    assert "(split train)" in train and "images: 2" in train
    assert "(split val)" in val and "images: 1" in val and "zero_area_box: 1" in val
    assert json.loads((tmp_path / "summary.train.json").read_text())["images"] == 2
    assert json.loads((tmp_path / "summary.val.json").read_text())["images"] == 1


def test_a_strict_val_split_with_problems_fails_the_check(tmp_path, capsys):
    assert main(["data", "check", str(voc_experiment(tmp_path, val_policy="strict"))]) == 1
    assert capsys.readouterr().err.startswith("error: policy is strict and there are 1 problem")


def test_an_experiment_without_val_data_names_that_key_alone(tmp_path, capsys):
    block = {"format": "voc", "root": str(tmp_path), "split": "train"}
    config = write(tmp_path / "run.yaml", {"name": "x", "data": {"train": block}})
    assert main(["data", "check", str(config)]) == 2
    assert capsys.readouterr().err == f"error: {config}: data.val: Field required\n"


def test_a_file_of_neither_kind_says_what_the_command_expects(tmp_path, capsys):
    config = write(tmp_path / "other.yaml", {"model": {"depth": 18}, "seeds": [0]})
    assert main(["data", "check", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {config}: expected a dataset YAML")
    assert "experiment config (data.train and data.val)" in err
    assert "top-level keys: model, seeds" in err


def test_a_folder_is_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: a folder, not a YAML config file\n"


def test_no_message_says_capital_error():
    """Every message a user reads starts `error:` (argparse's own word), none `Error:`."""
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"""["'](\\n)?Error:""", line)
    ]
    assert offenders == []
