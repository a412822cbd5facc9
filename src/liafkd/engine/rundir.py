"""The run folder (`output_dir`): never overwritten, never shared, never mixed.

Before `liafkd train` / `liafkd distill` builds anything, `open_run_dir`
  - refuses an `output_dir` that already holds a run (final.pt, summary.json,
    metrics.jsonl, best.pt or checkpoints) unless the command continues it
    (`--resume`) or clears it first (`--overwrite`, which deletes only the files the
    run wrote, by liafkd.outputs.RUN_OWN_FILES, and says what it kept);
  - refuses `--resume` into a finished run (final.pt or summary.json) that has no
    checkpoint left, and `--resume` of another run's checkpoint into a folder that holds
    a run (the logs would mix); the Trainer refuses resuming a finished run that would
    train further;
  - refuses an input of the run (config, teacher checkpoint) that is one of its files;
  - checks that the folder can be written (a read-only folder fails here, not after
    the first step);
  - takes an exclusive lock, `output_dir/.liafkd.lock`, holding the owner's pid, host
    and process start time: a second process on the same folder stops at once. A lock
    whose process is gone (same host) is stale: it is reported and taken over. Under
    torchrun only rank 0 takes the lock, and every rank stops when rank 0 is refused.
The lock is released when the run ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from liafkd.config import ConfigError
from liafkd.outputs import (
    RUN_OWN_FILES,
    Input,
    Output,
    OutputPathError,
    check_outputs,
    is_run_own_file,
    run_own_files,
)

LOCK_NAME = ".liafkd.lock"


class RunDirError(ConfigError):
    """The output_dir cannot take this run (exit 2)."""


def run_files(folder: Path) -> list[str]:
    """What of a run `folder` holds: its top-level files by name, a sub-folder holding
    files the run wrote as `checkpoints/` (files liafkd did not write are not listed)."""
    found = []
    for path in run_own_files(folder):
        name = path.name if path.parent == folder else f"{path.parent.name}/"
        if name not in found:
            found.append(name)
    return found


def is_finished(folder: Path) -> bool:
    """The run in `folder` reached the end of its schedule (final.pt or summary.json)."""
    return (folder / "final.pt").is_file() or (folder / "summary.json").is_file()


def clear_run(folder: Path) -> tuple[list[str], list[str]]:
    """Delete the files the run wrote (RUN_OWN_FILES, and the temporary files of an
    interrupted write: run_own_files lists both); never anything else. Returns (what was
    deleted, the files kept in the run's sub-folders because liafkd did not write them)."""
    removed = run_files(folder)
    for path in run_own_files(folder):
        path.unlink()
    kept = []
    for sub in RUN_OWN_FILES:
        where = folder / sub
        if not sub or not where.is_dir():
            continue
        files = (p for p in where.rglob("*") if p.is_file())
        kept += sorted(p.relative_to(folder).as_posix() for p in files)
        if not any(where.iterdir()):
            where.rmdir()
    return removed, kept


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_holder_alive(holder: dict) -> bool | None:
    """True/False for a lock taken on this host; None when another host holds it."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = int(holder.get("pid", -1))
    if pid <= 0 or not _pid_alive(pid):
        return False
    started = holder.get("start")
    return started is None or _process_start(pid) in (None, started)


def read_lock(path: Path) -> dict | str:
    """The lock's holder {pid, host, ...}, or what the file is when it is not a liafkd
    lock (empty, perhaps from a run killed while taking it; not JSON; other JSON)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return f"unreadable ({e.strerror})"
    if not data.strip():
        return "empty (perhaps a run was killed while taking it)"
    try:
        holder = json.loads(data)
    except ValueError:
        shown = data[:40].decode("utf-8", "backslashreplace")
        return f"not JSON (it starts {shown!r})"
    pid, host = (holder.get(k) for k in ("pid", "host")) if isinstance(holder, dict) else (0, 0)
    if not (isinstance(pid, int) and not isinstance(pid, bool) and isinstance(host, str)):
        return f"JSON without an integer pid and a host ({json.dumps(holder)[:60]})"
    return holder


def _describe(holder: dict) -> str:
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{when}"


def acquire_lock(folder: Path) -> Path:
    """Create `folder/.liafkd.lock` exclusively; RunDirError when a live process holds it."""
    path = folder / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "start": _process_start(os.getpid()),
        "since": time.time(),
    }
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = read_lock(path)
            if isinstance(holder, str):
                raise RunDirError(
                    f"{folder}: its lock file {path} is {holder}, not a lock liafkd wrote "
                    "(one holds the pid and host of the run writing here); if no liafkd "
                    f"run is writing into {folder}, delete {path} and start again"
                ) from None
            alive = lock_holder_alive(holder)
            if alive is None:
                raise RunDirError(
                    f"{folder}: in use by {_describe(holder)} ({path}); wait for it to "
                    f"finish, or delete {path} if that run is gone"
                ) from None
            if alive:
                raise RunDirError(
                    f"{folder}: another run is writing here ({_describe(holder)}); wait for "
                    "it to finish or choose another output_dir"
                ) from None
            print(f"stale lock {path} left by {_describe(holder)} (no longer running): taken over")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path
    raise RunDirError(f"{folder}: could not take the lock {path}")


def release_lock(path: Path) -> None:
    """Remove the lock if this process still owns it."""
    try:
        holder = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return
    if holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)


def check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"{folder}: cannot create output_dir ({e.strerror})") from None
    probe = folder / f".write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunDirError(
            f"{folder}: output_dir is not writable ({e.strerror}); choose another output_dir "
            "(--set output_dir=...)"
        ) from None


def check_inputs_outside_run(folder: Path, inputs: list[Input]) -> None:
    """No input of the run (config, teacher checkpoint) is a file the run writes or
    --overwrite deletes."""
    try:
        check_outputs([Output(folder, "output_dir", folder=True)], inputs, own_run=folder)
    except OutputPathError as e:  # a RunDirError reaches every rank under torchrun
        raise RunDirError(str(e)) from None
    base = Path(os.path.realpath(folder))
    for inp in inputs:
        real = Path(os.path.realpath(inp.path))
        if base not in real.parents:
            continue
        rel = real.relative_to(base)
        in_layout = len(rel.parts) == 1 or (len(rel.parts) == 2 and rel.parts[0] in RUN_OWN_FILES)
        if in_layout and is_run_own_file(real):
            raise RunDirError(
                f"{inp.path}: the {inp.what} is one of the run files of output_dir {folder}, "
                "which this run writes (and --overwrite deletes); copy it elsewhere or train "
                "into another output_dir"
            )


def check_resume(folder: Path, resume: str | None) -> None:
    """`--resume` continues the run in `folder` only: never a finished run it would
    retrain, never another run's checkpoint into a folder that holds a run."""
    if resume is None:
        return
    found = run_files(folder)
    own = folder / "checkpoints"
    if resume != "latest":
        from_here = Path(os.path.realpath(own)) in Path(os.path.realpath(resume)).parents
        if not from_here and found:
            raise RunDirError(
                f"--resume {resume}: the checkpoint is not one of {own}, and {folder} holds "
                f"another run ({', '.join(found)}): resuming would mix the two runs' logs and "
                "weights. Resume into an empty output_dir (--set output_dir=NEW)"
            )
        return
    has_checkpoint = own.is_dir() and any(is_run_own_file(p) for p in own.iterdir())
    if is_finished(folder) and not has_checkpoint:
        raise RunDirError(
            f"{folder} holds a finished run ({', '.join(found)}) and no checkpoint in {own}: "
            "there is nothing to resume, and training again would replace it. Train into "
            "another output_dir (--set output_dir=...), or retrain here with --overwrite "
            "(deletes that run's files)"
        )


def prepare(
    folder: Path, resume: str | None, overwrite: bool, inputs: list[Input] | None = None
) -> Path:
    """Check, lock and (with overwrite) clear `folder`; returns the lock file.
    `resume`: None, "latest" or a checkpoint path."""
    if resume is not None and overwrite:
        raise RunDirError("--resume and --overwrite exclude each other")
    check_writable(folder)
    check_inputs_outside_run(folder, inputs or [])
    lock = acquire_lock(folder)
    try:
        found = run_files(folder)
        check_resume(folder, resume)
        if found and overwrite:
            _, kept = clear_run(folder)
            note = f"; kept what liafkd did not write: {', '.join(kept)}" if kept else ""
            print(f"--overwrite: deleted the previous run's {', '.join(found)} in {folder}{note}")
        elif found and resume is None:
            raise RunDirError(
                f"{folder} already holds a run ({', '.join(found)}); continue it with "
                "--resume, train into another output_dir (--set output_dir=...), or start "
                "over with --overwrite (deletes that run's files first)"
            )
    except BaseException:
        release_lock(lock)
        raise
    return lock


@contextlib.contextmanager
def open_run_dir(
    output_dir: str | Path,
    resume: str | None,
    overwrite: bool = False,
    inputs: list[Input] | None = None,
) -> Iterator[None]:
    """Hold `output_dir` for one train/distill command (rank 0 decides under torchrun).
    `resume`: None, "latest" or a checkpoint path; `inputs`: the files the run reads."""
    from liafkd.engine.distributed import broadcast_object, context

    folder = Path(output_dir)
    ctx = context()
    lock: Path | None = None
    error: str | None = None
    if ctx.is_main:
        try:
            lock = prepare(folder, resume, overwrite, inputs)
        except RunDirError as e:
            error = str(e)
    if ctx.enabled:
        error = broadcast_object(error)
    if error is not None:
        raise RunDirError(error if ctx.is_main else f"rank 0 refused the run: {error}")
    try:
        yield
    finally:
        if lock is not None:
            release_lock(lock)
