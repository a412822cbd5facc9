"""Progress on a terminal is a tqdm bar; in a redirected log it is a plain line every
few seconds, never carriage-return frames."""

import io

import pytest
from tqdm import tqdm

from liafkd import progress as progress_module
from liafkd.cli.main import main
from liafkd.progress import LineProgress, progress


class FakeClock:
    def __init__(self, ticks):
        self.ticks = iter(ticks)

    def __call__(self):
        return next(self.ticks)


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_line_only_when_the_interval_has_passed_with_counts_times_and_postfix():
    stream = io.StringIO()
    # start at 0; items end at 4, 10, 13, 21 s: lines after the 2nd (10 s) and 4th (21 s)
    bar = LineProgress(range(4), "epoch 1/3", 4, stream, 10.0, FakeClock([0, 4, 10, 13, 21]))
    for step in bar:
        bar.set_postfix(loss=f"{1.0 / (step + 1):.3f}")
    bar.close()
    assert stream.getvalue().splitlines() == [
        "epoch 1/3: 2/4 (50%), 00:10 elapsed, 00:10 left, loss=0.500",
        "epoch 1/3: 4/4 (100%), 00:21 elapsed, 00:00 left, loss=0.250",
    ]


def test_without_a_length_the_line_has_the_count_alone():
    stream = io.StringIO()
    items = (i for i in range(2))
    list(LineProgress(items, "decoding images", None, stream, 1.0, FakeClock([0, 5, 5.5])))
    assert stream.getvalue().splitlines() == ["decoding images: 1, 00:05 elapsed"]


def test_the_stream_decides_between_bar_and_lines():
    assert isinstance(progress(range(3), "x", stream=io.StringIO()), LineProgress)
    on_terminal = progress(range(3), "x", stream=Terminal())
    assert isinstance(on_terminal, tqdm) and not on_terminal.disable
    on_terminal.close()
    silent = progress(range(3), "x", enabled=False, stream=io.StringIO())
    assert list(silent) == [0, 1, 2] and silent.disable


@pytest.mark.slow
def test_train_into_a_log_writes_plain_progress_lines(tiny_config, capsys, monkeypatch):
    monkeypatch.setattr(progress_module, "LINE_INTERVAL_S", 0.0)  # a line after every step
    assert main(["train", str(tiny_config("run"))]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    # 2 epochs of 3 batches (9 images, batch 3), one line per batch
    assert [line.split(",")[0] for line in lines] == [
        f"epoch {e}/2: {b}/3 ({100 * b // 3}%)" for e in (1, 2) for b in (1, 2, 3)
    ]
    assert all("loss=" in line and "img_s=" in line for line in lines)
