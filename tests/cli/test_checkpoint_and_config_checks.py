"""Files given in the wrong place say what they are: a text, PNG, random or TorchScript
"checkpoint"; a garbage lock file; an `export --config` of another run."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from liafkd.cli.export import preprocessing
from liafkd.config import ConfigError, load_config
from liafkd.engine.checkpoint import CheckpointError, load_checkpoint
from liafkd.engine.rundir import LOCK_NAME, RunDirError, acquire_lock


class Doubler(torch.nn.Module):
    def forward(self, x):
        return 2 * x


def _write(path, kind):
    if kind == "png":
        Image.new("RGB", (4, 4)).save(path, format="PNG")
    elif kind == "text":
        path.write_text("model: gfl\ndepth: 18\n")
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(600))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "torchscript":
        torch.jit.save(torch.jit.trace(Doubler(), torch.zeros(2)), str(path))
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("png", "not a PyTorch checkpoint: looks like a PNG image"),
        ("text", "not a PyTorch checkpoint: looks like a text file (it starts 'model: gfl')"),
        ("random", "not a PyTorch checkpoint: looks like data of no known kind (first bytes:"),
        ("empty", "not a PyTorch checkpoint: an empty file"),
        ("torchscript", "a TorchScript archive, not a liafkd checkpoint (use the final.pt"),
    ],
)
def test_a_file_that_is_no_checkpoint_is_named(tmp_path, kind, message):
    path = _write(tmp_path / "final.pt", kind)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"{path}: {message}" or str(caught.value).startswith(
        f"{path}: {message}"
    )
    assert "arbitrary code" not in str(caught.value)


def test_a_real_checkpoint_still_loads_and_code_is_still_refused(tmp_path):
    torch.save({"model": {"w": torch.ones(2)}}, tmp_path / "ok.pt")
    assert torch.equal(load_checkpoint(tmp_path / "ok.pt")["model"]["w"], torch.ones(2))
    torch.save({"model": Doubler()}, tmp_path / "code.pt")  # pickles a Python object
    with pytest.raises(CheckpointError, match="needs arbitrary code execution"):
        load_checkpoint(tmp_path / "code.pt")


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "is empty (perhaps a run was killed while taking it)"),
        (b"garbage", "is not JSON (it starts 'garbage')"),
        (b"[1, 2]", "is JSON without an integer pid and a host ([1, 2])"),
        (b'{"pid": "7", "host": "h"}', "is JSON without an integer pid and a host"),
    ],
)
def test_a_garbage_lock_file_is_described(tmp_path, content, says):
    (tmp_path / LOCK_NAME).write_bytes(content)
    with pytest.raises(RunDirError) as caught:
        acquire_lock(tmp_path)
    message = str(caught.value)
    assert f"its lock file {tmp_path / LOCK_NAME} {says}" in message
    assert "not a lock liafkd wrote" in message and "None" not in message
    assert (tmp_path / LOCK_NAME).read_bytes() == content  # left as it was


def _meta(cfg, **model_changes) -> dict:
    return {
        "model_cfg": {**cfg.model.model_dump(mode="json"), **model_changes},
        "class_names": ["Car", "Pedestrian", "Cyclist"],
        "augment": cfg.data.augment.model_dump(mode="json"),
    }


def test_export_config_of_another_model_is_refused(tiny_config, capsys):
    path = tiny_config("run")
    cfg = load_config(path)
    assert preprocessing(str(path), _meta(cfg)) == cfg.data.augment  # its own run: fine
    for change, named in (
        ({"depth": 50}, "model.depth: config 18, checkpoint 50"),
        ({"width": 64, "fpn_channels": 256}, "model.width: config 8, checkpoint 64"),
        ({"type": "fcos", "head_channels": 16}, "model.type: config gfl, checkpoint fcos"),
    ):
        with pytest.raises(ConfigError, match="is not the config of this checkpoint's run") as e:
            preprocessing(str(path), _meta(cfg, **change))
        assert named in str(e.value)


def test_export_config_with_other_classes_is_refused_and_other_sizes_noted(tiny_config, capsys):
    path = tiny_config("run")
    cfg = load_config(path)
    raw = json.loads(cfg.model_dump_json())
    raw["data"]["train"]["classes"] = raw["data"]["val"]["classes"] = ["Car", "Van"]
    other = path.with_name("other.yaml")
    other.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=r"classes: config \['Car', 'Van'\], checkpoint"):
        preprocessing(str(other), _meta(cfg))
    meta = _meta(cfg)
    meta["augment"]["image_size"] = [192, 320]
    assert preprocessing(str(path), meta) == cfg.data.augment
    err = capsys.readouterr().err
    assert "gives another preprocessing than the checkpoint records" in err
    assert "image size [96, 160]" in err and "instead of image size [192, 320]" in err
