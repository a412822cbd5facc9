"""A check's verdict and how it is printed: one row per check, the fix under a FAIL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from liafkd.config import ConfigError

Status = Literal["PASS", "WARN", "FAIL", "SKIP"]


@dataclass
class CheckResult:
    name: str
    status: Status
    detail: str  # what the check found
    fix: str = ""  # what to do about it: required for a FAIL

    def __post_init__(self) -> None:
        if self.failed and not self.fix:
            raise ValueError(f"check {self.name!r}: a FAIL needs its fix")

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


class GuardrailError(ConfigError):
    """Checks failed before training; the message lists each failure and its fix."""

    def __init__(self, results: list[CheckResult]) -> None:
        self.results = results
        failed = [r for r in results if r.failed]
        lines = [f"{len(failed)} check(s) failed before training:"]
        for r in failed:
            lines += [f"- {r.name}: {r.detail}", f"  fix: {r.fix}"]
        super().__init__("\n".join(lines))


def format_table(results: list[CheckResult]) -> str:
    """One row per check; under a FAIL, its fix."""
    width = max((len(r.name) for r in results), default=0)
    lines = []
    for r in results:
        lines.append(f"{r.status:<5} {r.name:<{width}}  {r.detail}")
        if r.failed:
            lines.append(f"{'':<5} {'fix:':<{width}}  {r.fix}")
    return "\n".join(lines)


def some_keys(keys: list[str], limit: int = 10) -> str:
    more = f" ... (+{len(keys) - limit})" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more
