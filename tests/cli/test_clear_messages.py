"""Clear messages instead of tracebacks: a file name that is not UTF-8 prints (data
check, and mid-epoch in train), and a `--set` value YAML cannot read is named."""

import io
import os
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from liafkd.cli.main import main

NOT_UTF8 = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: a lone surrogate in Python


def strict_console(monkeypatch):
    """Replace stdout and stderr by streams that raise on what UTF-8 cannot encode (a
    UTF-8 locale other than C.UTF-8); returns a function giving what was written.
    Called inside the test: pytest puts its own streams back after fixtures run."""
    streams = {
        name: io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
        for name in ("stdout", "stderr")
    }
    for name, stream in streams.items():
        monkeypatch.setattr(sys, name, stream)

    def written() -> tuple[str, str]:
        for stream in streams.values():
            stream.flush()
        return tuple(s.buffer.getvalue().decode("utf-8") for s in streams.values())

    return written


def kitti_line(box=(10, 5, 60, 30)) -> str:
    x1, y1, x2, y2 = box
    return f"Car 0.00 0 -1.57 {x1} {y1} {x2} {y2} 1.5 1.6 3.9 1.0 1.7 20.0 -1.5"


def non_utf8_kitti(root: Path, stems: list[str]) -> Path:
    for folder in ("image_2", "label_2"):
        (root / "training" / folder).mkdir(parents=True, exist_ok=True)
    for stem in stems:
        Image.new("RGB", (96, 64), (90, 120, 150)).save(
            root / "training" / "image_2" / f"{stem}.png"
        )
        (root / "training" / "label_2" / f"{stem}.txt").write_text(
            kitti_line() + "\nnot a kitti line\n"
        )
    return root


def test_data_check_prints_a_non_utf8_file_name(tmp_path, monkeypatch):
    root = non_utf8_kitti(tmp_path / "k", ["000001", NOT_UTF8])
    config = tmp_path / "ds.yaml"
    config.write_text(yaml.safe_dump({"format": "kitti", "root": str(root)}))
    written = strict_console(monkeypatch)
    assert main(["data", "check", str(config)]) == 0
    out, err = written()
    assert "caf\\udce9.txt:2" in out and "000001.txt:2" in out
    assert "Traceback" not in err


def test_train_prints_a_non_utf8_file_name_mid_epoch(tmp_path, monkeypatch, experiment_writer):
    stems = [f"00000{i}" for i in range(3)] + [NOT_UTF8]
    root = non_utf8_kitti(tmp_path / "k", stems)
    broken = root / "training" / "image_2" / f"{NOT_UTF8}.png"
    broken.write_bytes(broken.read_bytes()[:120])  # header intact, pixels cut
    tiny_experiment, _ = experiment_writer
    raw = tiny_experiment(tmp_path, "run", max_steps=2)
    dataset = {"format": "kitti", "root": str(root), "classes": ["Car"]}
    raw["data"].update(train=dataset, val=dataset, batch_size=4)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(raw))
    written = strict_console(monkeypatch)
    assert main(["train", str(config)]) == 0
    out, err = written()
    assert "dropped an unreadable image" in out and "caf\\udce9.png" in out
    assert (tmp_path / "run" / "final.pt").is_file()


@pytest.mark.parametrize(
    "override, problem",
    [
        ("name=[unclosed", "while parsing a flow sequence, expected ',' or ']'"),
        ("data.batch_size={a: 1", "while parsing a flow mapping"),
        ('name="open', "while scanning a quoted scalar"),
        ("train.seed=!!int abc", "invalid literal for int()"),
        ("name=!!python/object/apply:os.system [ls]", "(!!python/...) are refused"),
        ("name=!!python/name:os.system", "(!!python/...) are refused"),
    ],
)
def test_a_bad_set_value_is_named_without_a_traceback(tiny_config, capsys, override, problem):
    assert main(["train", str(tiny_config("run")), "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --set {override}: ") and problem in err
    assert "Traceback" not in err
