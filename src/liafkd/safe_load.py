"""Reading a checkpoint or weights file safely: torch.load with weights_only=True, and
a clear message for a file that is not a checkpoint, is cut short or pickles code. A
neutral module, below every stage package: `models/` loads pretrained backbones with it."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import torch

# epoch_E.pt after epoch E; epoch_E_iter_I.pt after I batches of epoch E (mid-epoch)
CHECKPOINT_PATTERN = re.compile(r"epoch_(\d+)(?:_iter_(\d+))?\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with what to do instead."""


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with weights_only=True; explain corrupt files and code-carrying pickles."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for bad files
        kind = describe_non_checkpoint(path)
        if kind is not None:
            raise CheckpointError(f"{path}: {kind}") from None
        text = str(e)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise CheckpointError(
                f"{path}: refused: the file needs arbitrary code execution to load "
                "(it pickles Python objects, not only tensors). liafkd loads checkpoints "
                "with weights_only=True; re-save it as a plain state_dict."
            ) from None
        hint = ""
        previous = previous_checkpoint(path)
        if previous is not None:
            hint = f" The previous checkpoint {previous} may be used instead (--resume {previous})."
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {text[:200]}).{hint}"
        ) from None


# leading bytes of files people pass by mistake, and what they are
MAGIC_BYTES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x93NUMPY", "a NumPy array file (.npy)"),
    (b"\x89HDF", "an HDF5 file"),
)
TORCHSCRIPT = (
    "a TorchScript archive, not a liafkd checkpoint (use the final.pt or best.pt of a "
    "liafkd run; a TorchScript model written by `liafkd export` runs with torch.jit.load)"
)


def describe_non_checkpoint(path: Path) -> str | None:
    """What the file is when it cannot be a torch.save checkpoint (a zip holding
    data.pkl, or a pickle), for a message better than torch's; None when it may be one
    (then it is corrupt, or pickles code)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        return "not a PyTorch checkpoint: an empty file"
    if head.startswith(b"PK\x03\x04"):
        return _describe_zip(path)
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return None  # a pickle: torch's legacy format
    kind = next((what for magic, what in MAGIC_BYTES if head.startswith(magic)), None)
    if kind is None and path.suffix.lower() == ".onnx":
        kind = "an ONNX model (`liafkd predict` takes it; this command needs a .pt checkpoint)"
    if kind is None:
        kind = _describe_text(head) or f"data of no known kind (first bytes: {head[:8].hex(' ')})"
    return f"not a PyTorch checkpoint: looks like {kind}"


def _describe_zip(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return None  # a torch archive cut short: reported as truncated
    if any("/code/" in name or name.endswith("/constants.pkl") for name in names):
        return TORCHSCRIPT
    if any(name.endswith("data.pkl") for name in names):
        return None
    return "not a PyTorch checkpoint: looks like a ZIP archive of other files"


def _describe_text(head: bytes) -> str | None:
    """'a text file (it starts ...)' when `head` reads as UTF-8 text."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:  # binary, or a character cut at the 512th byte
        if e.start < len(head) - 3:
            return None
        text = head[: e.start].decode("utf-8")
    if not all(c.isprintable() or c in "\t\r\n" for c in text):
        return None
    first = text.strip().splitlines()[0][:40] if text.strip() else ""
    return f"a text file (it starts {first!r})"


def checkpoint_order(path: Path) -> tuple[int, float] | None:
    """Sort key (epoch, batches done; inf at epoch end), or None for other files."""
    m = CHECKPOINT_PATTERN.search(path.name)
    if not m:
        return None
    return int(m.group(1)), float(m.group(2)) if m.group(2) else float("inf")


def epoch_checkpoints(folder: Path) -> list[Path]:
    """Training checkpoints in `folder`, oldest first."""
    found = [(checkpoint_order(p), p) for p in folder.glob("epoch_*.pt")]
    return [p for key, p in sorted(f for f in found if f[0] is not None)]


def previous_checkpoint(path: Path) -> Path | None:
    key = checkpoint_order(path)
    older = [p for p in epoch_checkpoints(path.parent) if p != path]
    if key is not None:
        older = [p for p in older if checkpoint_order(p) < key]
    return older[-1] if older else None
