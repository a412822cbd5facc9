"""Where the bench presets live; light to import (the CLI lists them in its help)."""

from __future__ import annotations

from pathlib import Path

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs" / "bench"


def preset_names() -> list[str]:
    """The bench presets shipped in configs/bench (empty outside a source checkout)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml")) if PRESET_DIR.is_dir() else []
