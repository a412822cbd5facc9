"""`liafkd data get`: a public dataset, pinned to one upstream commit and checked file by
file against a manifest of sha256 shipped with liafkd.

GitHub's archives of a commit are not byte-stable (the compression may change), so the
check is on the extracted files, not on the archive. The destination is refused when it
holds anything liafkd did not write; a mismatch names the files and deletes nothing.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from liafkd.data.destination import MARKER, DataFolderError, check_destination, write_marker

CHUNK = 1 << 20
MAX_LISTED = 20


class DownloadError(DataFolderError):
    """The archive cannot be fetched or read, or its files do not match the manifest."""


@dataclass(frozen=True)
class PinnedDataset:
    name: str
    repository: str
    commit: str
    folder: str  # the folder of the repository that is extracted (and in the manifest)
    manifest: str  # file under liafkd/data/manifests
    licence: str

    @property
    def url(self) -> str:
        return f"https://codeload.github.com/{self.repository}/tar.gz/{self.commit}"


BCCD = PinnedDataset(
    name="bccd",
    repository="Shenggan/BCCD_Dataset",
    commit="d272fb14cdff6e473fafeeeba32aba5f560e9e43",
    folder="BCCD",
    manifest="bccd.sha256",
    licence="MIT",
)
PINNED = {BCCD.name: BCCD}

NOT_OFFERED = {
    "coco128": (
        "coco128 is not offered: its public copies (e.g. the coco128.zip release asset of "
        "ultralytics/assets) are release files that can be replaced, not a commit whose "
        "files can be checked, so liafkd cannot promise what it would download. Its images "
        "are COCO train2017's first 128: take them from https://cocodataset.org (COCO's "
        "annotations are CC BY 4.0, the images under their Flickr licences)."
    ),
}


def read_manifest(dataset: PinnedDataset) -> dict[str, str]:
    """Relative path (POSIX) -> sha256, from the `sha256sum`-format manifest."""
    text = resources.files("liafkd.data").joinpath("manifests", dataset.manifest).read_text()
    entries = {}
    for line in text.splitlines():
        digest, _, relative = line.partition("  ")
        entries[relative] = digest
    return entries


def download(url: str, into: BinaryIO) -> int:
    """Copy `url` (https:// or file://) into `into`; returns the bytes copied."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            copied = 0
            while chunk := response.read(CHUNK):
                into.write(chunk)
                copied += len(chunk)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DownloadError(f"cannot download {url}: {e}") from None
    return copied


def safe_relative(name: str, folder: str) -> PurePosixPath | None:
    """The path below `<top>/<folder>/` of an archive member, None for anything outside it.
    A member that would climb out (`..`, absolute) is an error, not skipped."""
    parts = PurePosixPath(name).parts
    if len(parts) < 3 or parts[1] != folder:
        return None
    relative = PurePosixPath(*parts[2:])
    if relative.is_absolute() or ".." in relative.parts:
        raise DownloadError(f"the archive holds an unsafe path: {name}")
    return relative


@contextmanager
def archive_files(path: Path, folder: str) -> Iterator[Iterator[tuple[PurePosixPath, BinaryIO]]]:
    """(path below `<top>/<folder>/`, readable stream) of each regular file of the archive
    (tar, any compression, or zip)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:

            def zip_members() -> Iterator[tuple[PurePosixPath, BinaryIO]]:
                for info in archive.infolist():
                    relative = safe_relative(info.filename, folder)
                    if relative is not None and not info.is_dir():
                        with archive.open(info) as stream:
                            yield relative, stream

            yield zip_members()
        return
    try:
        archive = tarfile.open(path, mode="r:*")
    except tarfile.TarError as e:
        raise DownloadError(f"the download is neither a zip nor a tar archive: {e}") from None
    with archive:

        def tar_members() -> Iterator[tuple[PurePosixPath, BinaryIO]]:
            for member in archive:
                relative = safe_relative(member.name, folder)
                if relative is None or member.isdir():
                    continue
                if not member.isfile():  # a link could point anywhere
                    raise DownloadError(f"the archive holds a link or device: {member.name}")
                stream = archive.extractfile(member)
                assert stream is not None  # a regular file always has one
                yield relative, stream

        yield tar_members()


def extract(archive: Path, folder: str, target: Path) -> dict[str, str]:
    """Write the files below `<top>/<folder>/` into `target`; relative path -> sha256."""
    written = {}
    with archive_files(archive, folder) as members:
        for relative, stream in members:
            out = target.joinpath(*relative.parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with out.open("wb") as sink:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
            written[relative.as_posix()] = digest.hexdigest()
    return written


def hash_tree(folder: Path) -> dict[str, str]:
    """Relative path (POSIX) -> sha256 of every file below `folder`."""
    hashes = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with path.open("rb") as source:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
        hashes[path.relative_to(folder).as_posix()] = digest.hexdigest()
    return hashes


def mismatches(expected: dict[str, str], written: dict[str, str]) -> list[str]:
    """One line per file that differs from the manifest, is missing or is not in it."""
    lines = [
        f"differs: {p}" for p in sorted(expected) if p in written and written[p] != expected[p]
    ]
    lines += [f"missing: {p}" for p in sorted(set(expected) - set(written))]
    lines += [f"not in the manifest: {p}" for p in sorted(set(written) - set(expected))]
    return lines


def pin_record(dataset: PinnedDataset, url: str, verified: bool) -> dict[str, object]:
    return {
        "dataset": dataset.name,
        "repository": dataset.repository,
        "commit": dataset.commit,
        "url": url,
        "verified": verified,
    }


def mismatch_error(dataset: PinnedDataset, target: Path, problems: list[str], what: str) -> str:
    listed = problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        listed.append(f"... and {len(problems) - MAX_LISTED} more")
    return (
        f"{len(problems)} file(s) under {target} do not match liafkd's manifest of "
        f"{dataset.repository}@{dataset.commit}; {what}:\n  " + "\n  ".join(listed)
    )


def get_dataset(dataset: PinnedDataset, dest: Path, url: str | None = None) -> Path:
    """Download, extract and verify `dataset` into `dest/<folder>`; returns that folder.
    A folder an earlier `data get` completed is verified again, not downloaded again.
    Raises DownloadError naming every file that does not match the manifest; nothing is
    deleted."""
    url = url or dataset.url
    check_destination(dest, "liafkd data get")
    expected = read_manifest(dataset)
    target = dest / dataset.folder
    if target.exists():
        problems = mismatches(expected, hash_tree(target))
        if problems:
            raise DownloadError(
                mismatch_error(
                    dataset, target, problems, f"to download it again, remove {target} first"
                )
            )
        print(f"{target} is already there, every file as in the manifest")
        return target
    dest.mkdir(parents=True, exist_ok=True)
    write_marker(dest, pin_record(dataset, url, verified=False))
    with tempfile.NamedTemporaryFile(dir=dest, prefix=".liafkd-download-") as archive:
        size = download(url, archive)
        archive.flush()
        print(f"downloaded {size / 1e6:.1f} MB from {url}")
        written = extract(Path(archive.name), dataset.folder, target)
    problems = mismatches(expected, written)
    if problems:
        raise DownloadError(
            mismatch_error(
                dataset, target, problems, f"left in place ({dest / MARKER}: verified false)"
            )
        )
    write_marker(dest, pin_record(dataset, url, verified=True))
    return target
