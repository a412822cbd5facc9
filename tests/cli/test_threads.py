"""`--threads N` sets torch's intra-op threads before train, distill, doctor, eval,
predict and demo do any work; without it torch's default stays."""

import pytest
import torch

import liafkd.cli.predict
import liafkd.engine.doctor
import liafkd.engine.evaluate
import liafkd.engine.runs
from liafkd.cli.main import build_parser, main


class Reached(Exception):
    """The command reached its work: the thread count is recorded."""


@pytest.fixture
def seen(monkeypatch):
    before = torch.get_num_threads()
    threads: list[int] = []

    def record(*args, **kwargs):
        threads.append(torch.get_num_threads())
        raise Reached

    for module, name in (
        (liafkd.engine.runs, "train_detector"),
        (liafkd.engine.runs, "distill_student"),
        (liafkd.engine.doctor, "diagnose"),
        (liafkd.engine.evaluate, "evaluate_checkpoint"),
        (liafkd.cli.predict, "collect_images"),
    ):
        monkeypatch.setattr(module, name, record)
    yield threads
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "CONFIG"],
        ["distill", "CONFIG"],
        ["doctor", "CONFIG"],
        ["eval", "CONFIG", "--checkpoint", "final.pt"],
        ["predict", "final.pt", "images/"],
        ["demo", "--out", "OUT"],
    ],
)
def test_threads_set_before_the_work(argv, seen, tiny_config, tmp_path):
    argv = [str(tiny_config()) if a == "CONFIG" else a for a in argv]
    argv = [str(tmp_path / "demo") if a == "OUT" else a for a in argv]
    before = torch.get_num_threads()
    with pytest.raises(Reached):
        main(argv)
    assert seen == [before]  # no --threads: torch's default
    target = 3 if before != 3 else 2
    with pytest.raises(Reached):
        main(argv + ["--threads", str(target)])
    assert seen[-1] == target


def test_threads_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "c.yaml", "--threads", "0"])
    assert "must be at least 1" in capsys.readouterr().err
