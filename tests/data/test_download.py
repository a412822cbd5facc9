"""`liafkd data get bccd`, offline: the archive GitHub serves for the pinned commit is
rebuilt from ../shared/data/bccd/BCCD (byte for byte upstream's files) and read through
a file:// URL."""

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from liafkd.cli.main import main
from liafkd.data.download import BCCD, MARKER, DownloadError, read_manifest, safe_relative

SHARED_BCCD = Path(__file__).resolve().parents[3] / "shared" / "data" / "bccd" / "BCCD"
TOP = f"BCCD_Dataset-{BCCD.commit}"


@pytest.fixture(scope="module")
def bccd_files() -> list[Path]:
    if not SHARED_BCCD.is_dir():
        pytest.skip(f"BCCD not found at {SHARED_BCCD} (../shared/data/bccd beside the repo)")
    return sorted(p for p in SHARED_BCCD.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def bccd_tar(bccd_files, tmp_path_factory) -> Path:
    """GitHub's layout: BCCD_Dataset-<commit>/ with the repository's files, BCCD/ among them."""
    path = tmp_path_factory.mktemp("archive") / f"{BCCD.commit}.tar.gz"
    readme = tmp_path_factory.mktemp("repo") / "README.md"
    readme.write_text("upstream's README, outside BCCD/: not extracted\n")
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        archive.add(readme, f"{TOP}/README.md")
        for file in bccd_files:
            archive.add(file, f"{TOP}/BCCD/{file.relative_to(SHARED_BCCD).as_posix()}")
    return path


def write_zip(path: Path, files: list[Path], changed: str, extra: str) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for file in files:
            relative = file.relative_to(SHARED_BCCD).as_posix()
            data = file.read_bytes() + (b" " if relative == changed else b"")
            archive.writestr(f"{TOP}/BCCD/{relative}", data)
        archive.writestr(f"{TOP}/BCCD/{extra}", b"not upstream's")
    return path


def test_the_manifest_covers_every_file_of_bccd_with_its_sha256():
    manifest = read_manifest(BCCD)
    assert len(manifest) == 732  # 364 images, 364 annotations, 4 split lists
    assert sum(p.startswith("JPEGImages/") for p in manifest) == 364
    assert sum(p.startswith("Annotations/") for p in manifest) == 364
    assert all(len(digest) == 64 for digest in manifest.values())
    assert BCCD.url.endswith(f"Shenggan/BCCD_Dataset/tar.gz/{BCCD.commit}")


def test_get_bccd_extracts_and_verifies_then_a_second_run_only_checks(
    bccd_tar, bccd_files, tmp_path, capsys
):
    dest = tmp_path / "data"
    assert main(["data", "get", "bccd", "--to", str(dest), "--url", bccd_tar.as_uri()]) == 0
    extracted = sorted(p for p in (dest / "BCCD").rglob("*") if p.is_file())
    assert len(extracted) == len(bccd_files) == 732
    assert (dest / "BCCD/JPEGImages/BloodImage_00000.jpg").read_bytes() == (
        SHARED_BCCD / "JPEGImages/BloodImage_00000.jpg"
    ).read_bytes()
    assert not (dest / "README.md").exists()  # only the BCCD folder is taken
    assert json.loads((dest / MARKER).read_text())["verified"] is True
    assert sorted(p.name for p in dest.iterdir()) == [MARKER, "BCCD"]  # no archive left
    assert "root: " in capsys.readouterr().out

    missing = (tmp_path / "nowhere.tar.gz").as_uri()  # proves nothing is downloaded again
    assert main(["data", "get", "bccd", "--to", str(dest), "--url", missing]) == 0
    assert "already there" in capsys.readouterr().out


def test_a_mismatch_names_the_files_and_deletes_nothing(bccd_files, tmp_path, capsys):
    changed, extra = "Annotations/BloodImage_00007.xml", "JPEGImages/extra.jpg"
    archive = write_zip(tmp_path / "bccd.zip", bccd_files, changed, extra)
    dest = tmp_path / "data"
    assert main(["data", "get", "bccd", "--to", str(dest), "--url", archive.as_uri()]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 file(s) under")
    assert f"differs: {changed}" in err and f"not in the manifest: {extra}" in err
    assert (dest / "BCCD" / changed).is_file() and (dest / "BCCD" / extra).is_file()
    assert json.loads((dest / MARKER).read_text())["verified"] is False

    # a second run checks what is there and still refuses
    assert main(["data", "get", "bccd", "--to", str(dest), "--url", archive.as_uri()]) == 2
    assert f"remove {dest / 'BCCD'} first" in capsys.readouterr().err


def test_a_folder_liafkd_did_not_write_is_refused_untouched(tmp_path, capsys):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("a user's file")
    url = (tmp_path / "never-read.tar.gz").as_uri()
    assert main(["data", "get", "bccd", "--to", str(dest), "--url", url]) == 2
    assert "was not written by `liafkd data get`" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["notes.txt"]


def test_an_unreachable_url_is_an_error_naming_it(tmp_path, capsys):
    url = (tmp_path / "absent.tar.gz").as_uri()
    assert main(["data", "get", "bccd", "--to", str(tmp_path / "d"), "--url", url]) == 2
    assert f"cannot download {url}" in capsys.readouterr().err


def test_coco128_is_not_offered_and_says_why(tmp_path, capsys):
    assert main(["data", "get", "coco128", "--to", str(tmp_path / "c")]) == 2
    assert "not offered" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    "name, expected",
    [
        (f"{TOP}/BCCD/Annotations/a.xml", "Annotations/a.xml"),
        (f"{TOP}/README.md", None),
        (f"{TOP}/dataset/BCCD/a.xml", None),
        ("BCCD/a.xml", None),
    ],
)
def test_only_members_below_the_top_folders_bccd_are_taken(name, expected):
    relative = safe_relative(name, "BCCD")
    assert (relative.as_posix() if relative else None) == expected


def test_a_member_climbing_out_is_refused():
    with pytest.raises(DownloadError, match="unsafe path"):
        safe_relative(f"{TOP}/BCCD/../../etc/passwd", "BCCD")
