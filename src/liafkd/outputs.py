"""Where a command may write: every output path is checked against every input path
before any work is done (standard library only; `data` commands call it without torch).

The rule, for every command that writes a file or a folder:
  - an output is never the same file as one of the command's inputs (checkpoint,
    image, config, dataset file), nor an existing dataset file (image, label, split list)
    inside a dataset folder the command reads;
  - a folder of files named after the input images (`predict --draw`, `predict --format
    kitti`) is never an input folder, nor inside one;
  - an output is never one of a training run's own files (RUN_FILES, checkpoints/,
    instances/) unless the command is the run itself;
  - a file is not written where a folder is, nor a folder where a file is, and the
    folder it goes into can be created and written;
  - two outputs of one command are never the same path.
The run folder's layout (what train/distill write, and what `liafkd eval`/`viz` add beside
a run) is defined here, once: `--overwrite` deletes exactly these files and nothing else.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from liafkd.config import ConfigError, DatasetConfig

# what train/distill write at the top of output_dir: a folder holding one of these holds a run
RUN_FILES = ("final.pt", "best.pt", "summary.json", "metrics.jsonl")
# a run's own files, by sub-folder: written by train/distill ("checkpoints", "instances")
# and by commands run on a run (`liafkd eval`'s default detections, `liafkd viz`)
RUN_OWN_FILES: dict[str, re.Pattern[str]] = {
    "": re.compile(r"(final\.pt|best\.pt|summary\.json|metrics\.jsonl)"),
    "checkpoints": re.compile(r"epoch_\d+(_iter_\d+)?\.pt"),
    "instances": re.compile(r"epoch_\d+\.jsonl"),
    "eval": re.compile(r"detections(_[^/]+)?\.json"),
    "tensorboard": re.compile(r"events\.out\.tfevents\..+"),
    "viz": re.compile(r"(weight_distribution|weight_vs_instance_epoch_\d+|gt_weights)\.png"),
}
# the sub-folders only train/distill write: no other command writes into them
RUN_ONLY_DIRS = ("checkpoints", "instances")
# save_atomic's and cut_log's temporary files: .NAME.tmp-PID
TMP_FILE = re.compile(r"\.(.+)\.tmp-\d+")
# files of these kinds inside a dataset folder a command reads are never replaced
DATASET_FILE_SUFFIXES = (
    ".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp",
    ".txt", ".xml", ".csv", ".lst", ".yaml", ".yml",
)  # fmt: skip


class OutputPathError(ConfigError):
    """An output path that would overwrite an input or a run's files (exit 2)."""


class DiskFullError(RuntimeError):
    """The device ran out of space while writing a file; nothing was written (exit 1)."""


# what torch's zip writer says when a write fails for want of space
DISK_FULL_PHRASES = ("unexpected pos", "file write failed", "No space left on device")


def is_disk_full(error: BaseException) -> bool:
    """ENOSPC (or EDQUOT, a full quota) anywhere in the chain, or torch's zip writer
    failing a write (it reports ENOSPC as a RuntimeError)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if isinstance(seen, RuntimeError) and any(p in str(seen) for p in DISK_FULL_PHRASES):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write `path` through `write(handle)` into a temporary file beside it, fsync, then
    rename over `path`: a reader sees the old file or the new one, never half of one. On
    any failure the temporary file is removed and `path` is left as it was; a full disk
    raises DiskFullError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e):
            raise DiskFullError(
                f"{path}: no space left on the device, nothing written (free some space "
                f"on the device of {path.parent.resolve()} and run the command again)"
            ) from None
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`path.write_text(text)`, atomically and with a clear message on a full disk."""
    data = text.encode()
    write_atomic(Path(path), lambda handle: handle.write(data))
    return Path(path)


@dataclass(frozen=True)
class Output:
    """A path a command is about to write. `what` names the option (`--out`).
    `per_image`: a folder of files named after the input images."""

    path: Path
    what: str
    folder: bool = False
    per_image: bool = False


@dataclass(frozen=True)
class Input:
    """A path a command reads. `what` says what it is (`checkpoint`, `image`). A
    `dataset` folder protects its images, labels and lists from being replaced; `images`
    (an image file, or a folder of them) keeps per-image outputs out of its folder."""

    path: Path
    what: str
    dataset: bool = False
    images: bool = False


def dataset_inputs(cfg: DatasetConfig, what: str = "dataset") -> list[Input]:
    """A dataset's folder and the files its config names (ann_file, names_file, a split
    list), which may lie outside it."""
    inputs = [Input(Path(cfg.root), what, dataset=True)]
    named = [cfg.ann_file, cfg.names_file, cfg.split if isinstance(cfg.split, str) else None]
    for name in filter(None, named):
        path = Path(name)
        path = path if path.is_absolute() else Path(cfg.root) / path
        if path.is_file():
            inputs.append(Input(path, f"{what} file"))
    return inputs


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    """`path` is `folder` or below it."""
    real, base = _real(path), _real(folder)
    return real == base or base in real.parents


def is_run_own_file(path: Path) -> bool:
    """Whether `path` (relative to its run folder's layout) names a file a run writes:
    RUN/final.pt, RUN/checkpoints/epoch_3.pt, RUN/eval/detections.json, their .tmp files."""
    name = path.name
    tmp = TMP_FILE.fullmatch(name)
    if tmp:
        name = tmp.group(1)
    return any(
        (not sub or path.parent.name == sub) and pattern.fullmatch(name)
        for sub, pattern in RUN_OWN_FILES.items()
    )


def run_folder_of(path: Path) -> Path | None:
    """The run folder `path` belongs to (its parent, or grandparent for RUN/checkpoints/x),
    when that folder holds a run; None otherwise."""
    for folder in (path.parent, path.parent.parent):
        if holds_run(folder):
            return folder
    return None


def run_own_files(folder: Path) -> list[Path]:
    """Every file in `folder` that a run (or eval/viz on it) wrote, by RUN_OWN_FILES."""
    found = []
    for sub in RUN_OWN_FILES:
        where = folder / sub if sub else folder
        if where.is_dir():
            found += [p for p in sorted(where.iterdir()) if p.is_file() and is_run_own_file(p)]
    return found


def holds_run(folder: Path) -> bool:
    """A folder holding final.pt, best.pt, summary.json, metrics.jsonl or a checkpoint."""
    if any((folder / name).is_file() for name in RUN_FILES):
        return True
    ckpts = folder / "checkpoints"
    return ckpts.is_dir() and any(is_run_own_file(p) for p in ckpts.iterdir())


def _type_problem(out: Output) -> str | None:
    path = out.path
    if out.folder and path.exists() and not path.is_dir():
        return f"{path}: is a file, and {out.what} names a folder; choose a folder path"
    if not out.folder and path.is_dir():
        return (
            f"{path}: is a folder, and {out.what} names a file; give a file path "
            f"(e.g. {path / 'out.json'})"
        )
    start = path if out.folder else path.parent
    existing = next(p for p in (start, *start.parents) if p.exists())
    if not existing.is_dir():
        return f"{path}: cannot be created: {existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{path}: cannot be written: no write permission in {existing}"
    return None


def _input_problem(out: Output, inp: Input) -> str | None:
    path = out.path
    if not out.folder and inp.path.is_file() and _same(path, inp.path):
        return (
            f"{path}: is the {inp.what} this command reads; liafkd never writes over its "
            f"inputs: choose another {out.what}"
        )
    if out.per_image and inp.images:
        # an input folder or below it; the folder of an input image given as a file
        folder = inp.path if inp.path.is_dir() else inp.path.parent
        if _inside(path, folder) if inp.path.is_dir() else _same(path, folder):
            return (
                f"{path}: {out.what} writes one file per input image, and {folder} holds "
                f"input images: it could replace them; choose a folder outside it"
            )
    if (
        inp.dataset
        and not out.folder
        and path.is_file()
        and path.suffix.lower() in DATASET_FILE_SUFFIXES
        and _inside(path, inp.path)
    ):
        return (
            f"{path}: is a file of the dataset in {inp.path} (an input); liafkd never "
            f"replaces dataset files: choose another {out.what}"
        )
    return None


def _run_problem(out: Output, own_run: Path | None) -> str | None:
    path = out.path
    candidates = [path] if not out.folder else []
    if out.folder and path.name in RUN_ONLY_DIRS and holds_run(path.parent):
        return (
            f"{path}: is the {path.name}/ folder of the run in {path.parent}; "
            f"choose a folder outside it ({out.what})"
        )
    for candidate in candidates:
        run = run_folder_of(candidate)
        if run is None or (own_run is not None and _same(run, own_run)):
            continue
        top_level = _same(candidate.parent, run)
        if (top_level and candidate.name in RUN_FILES) or (
            not top_level and candidate.parent.name in RUN_ONLY_DIRS
        ):
            return (
                f"{path}: is one of the run's own files in {run}; liafkd never writes over "
                f"a run's files from another command: choose another {out.what}"
            )
    return None


def check_outputs(outputs: list[Output], inputs: list[Input], own_run: Path | None = None) -> None:
    """Raise OutputPathError listing every output that would overwrite an input, a
    run's files or a folder, before the command does any work. `own_run`: the run
    folder the command itself is writing (train/distill), exempt from the run rule."""
    problems: list[str] = []
    for k, out in enumerate(outputs):
        problem = _type_problem(out)
        if problem is None:
            problem = next(
                (p for p in (_input_problem(out, i) for i in inputs) if p is not None), None
            )
        if problem is None:
            problem = _run_problem(out, own_run)
        if problem is None:
            earlier = next((o for o in outputs[:k] if _same(o.path, out.path)), None)
            if earlier is not None:
                problem = f"{out.path}: {out.what} and {earlier.what} name the same path"
        if problem is not None:
            problems.append(problem)
    if len(problems) == 1:
        raise OutputPathError(f"{problems[0]}; nothing written")
    if problems:
        raise OutputPathError("\n  ".join(["nothing written:", *problems]))
