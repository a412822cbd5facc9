import random

import numpy as np
import pytest
import torch

from liafkd.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_state_dict_reporting,
    prune_checkpoints,
    rng_state,
    save_atomic,
    set_rng_state,
)


def test_save_atomic_round_trip_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt" / "epoch_1.pt"
    save_atomic({"model": {"w": torch.arange(3.0)}, "epoch": 1}, path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.arange(3.0))
    assert [p.name for p in path.parent.iterdir()] == ["epoch_1.pt"]


def test_truncated_checkpoint_names_previous(tmp_path):
    save_atomic({"w": torch.ones(100)}, tmp_path / "epoch_1.pt")
    save_atomic({"w": torch.ones(100)}, tmp_path / "epoch_2.pt")
    data = (tmp_path / "epoch_2.pt").read_bytes()
    (tmp_path / "epoch_2.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"corrupt or truncated.*epoch_1\.pt"):
        load_checkpoint(tmp_path / "epoch_2.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("this would run code",))


def test_checkpoint_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _Evil()}, path)
    with pytest.raises(CheckpointError, match="arbitrary code execution"):
        load_checkpoint(path)


def test_prune_keeps_last_two(tmp_path):
    for n in (1, 2, 3, 10):
        save_atomic({"n": n}, tmp_path / f"epoch_{n}.pt")
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_10.pt", "epoch_3.pt"]


def test_rng_state_survives_save_and_load(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_atomic({"rng": rng_state()}, tmp_path / "r.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_architecture_mismatch_lists_keys():
    model = torch.nn.Sequential(torch.nn.Linear(2, 3))
    state = {"0.weight": torch.zeros(4, 2), "1.bias": torch.zeros(3)}
    with pytest.raises(CheckpointError) as err:
        load_state_dict_reporting(model, state, "teacher")
    text = str(err.value)
    assert "missing keys (1): 0.bias" in text
    assert "unexpected keys (1): 1.bias" in text
    assert "0.weight: checkpoint (4, 2) vs model (3, 2)" in text
