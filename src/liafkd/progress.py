"""Progress of a loop: a tqdm bar on a terminal, a plain line every few seconds otherwise.

A redirected log (`liafkd train ... > train.log 2>&1`, nohup, a batch system) gets no
carriage-return frames: one line such as
`epoch 2/12: 120/500 (24%), 1:20 elapsed, 4:13 left, loss=0.512, lr=1.00e-02, img_s=12.3`
every `LINE_INTERVAL_S` seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

LINE_INTERVAL_S = 10.0


class LineProgress:
    """Iterates `iterable`, writing one line to `stream` when at least `interval_s` has
    passed since the last one (the first after `interval_s`). The tqdm calls the loops use
    (`set_postfix`, `close`) are accepted."""

    def __init__(
        self,
        iterable: Iterable[Any],
        desc: str,
        total: int | None,
        stream: TextIO,
        interval_s: float = LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total
        self.stream = stream
        self.interval_s = interval_s
        self.clock = clock
        self.done = 0
        self.postfix: dict[str, Any] = {}

    def __iter__(self) -> Iterator[Any]:
        start = last = self.clock()
        for item in self.iterable:
            yield item  # the loop's body runs here: `done` counts finished items
            self.done += 1
            now = self.clock()
            if now - last >= self.interval_s:
                self.stream.write(self.line(now - start) + "\n")
                self.stream.flush()
                last = now

    def line(self, elapsed_s: float) -> str:
        parts = [f"{self.desc}: {self.done}"]
        if self.total:
            parts[0] += f"/{self.total} ({100 * self.done // self.total}%)"
        parts.append(f"{tqdm.format_interval(elapsed_s)} elapsed")
        if self.total and self.done:
            left_s = elapsed_s / self.done * max(0, self.total - self.done)
            parts.append(f"{tqdm.format_interval(left_s)} left")
        parts += [f"{key}={value}" for key, value in self.postfix.items()]
        return ", ".join(parts)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        """Nothing to clear: every line written stays, as a log's should."""


def progress(
    iterable: Iterable[Any],
    desc: str,
    enabled: bool = True,
    stream: TextIO | None = None,
) -> tqdm | LineProgress:
    """A tqdm bar (cleared when done) when `stream` (stderr by default) is a terminal,
    else a `LineProgress`; silent when not `enabled`."""
    stream = stream if stream is not None else sys.stderr
    if not enabled or stream.isatty():
        return tqdm(
            iterable, desc=desc, dynamic_ncols=True, leave=False, disable=not enabled, file=stream
        )
    total = len(iterable) if hasattr(iterable, "__len__") else None
    return LineProgress(iterable, desc, total, stream, LINE_INTERVAL_S)
