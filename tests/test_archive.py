"""Uploaded dataset zips are unpacked safely: every refusal with a real zip file, and a refused
upload leaves nothing behind."""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from pathlib import Path

import pytest

from forensics.jobs.archives import ZipLimits, dataset_root, extract_zip
from forensics.core import ArchiveError


def _zip(path: Path, entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def _refused(tmp_path: Path, archive: Path, match: str, limits: ZipLimits | None = None) -> None:
    dest = tmp_path / "out" / "data"
    with pytest.raises(ArchiveError, match=match) as err:
        extract_zip(archive, dest, limits)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{archive.name}: ")
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []  # no temp folder left either


def test_an_imagefolder_zip_unpacks_and_its_root_is_found(tmp_path):
    entries = {"faces/real/a.jpg": b"A" * 10, "faces/real/sub/b.jpg": b"B", "faces/fake/c.png": b"C",
               "__MACOSX/faces/._a.jpg": b"junk", "faces/.DS_Store": b"junk"}
    dest = extract_zip(_zip(tmp_path / "faces.zip", entries), tmp_path / "out" / "data")
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert files == ["faces/fake/c.png", "faces/real/a.jpg", "faces/real/sub/b.jpg"]
    assert (dest / "faces/real/a.jpg").read_bytes() == b"A" * 10
    assert dataset_root(dest) == dest / "faces"
    csv_zip = _zip(tmp_path / "csv.zip", {"set/labels.csv": b"path,label\n", "set/img/x.jpg": b"x"})
    assert dataset_root(extract_zip(csv_zip, tmp_path / "csv")) == tmp_path / "csv" / "set" / "labels.csv"
    # a README beside the one top folder does not make that folder a label; a loose image beside it does count
    readme = _zip(tmp_path / "readme.zip", {"README.txt": b"about", "faces/real/a.jpg": b"A", "faces/fake/b.jpg": b"B"})
    assert dataset_root(extract_zip(readme, tmp_path / "readme")) == tmp_path / "readme" / "faces"
    loose = _zip(tmp_path / "loose.zip", {"cover.jpg": b"C", "faces/real/a.jpg": b"A"})
    assert dataset_root(extract_zip(loose, tmp_path / "loose")) == tmp_path / "loose"


@pytest.mark.parametrize("name, match", [
    ("/etc/cron.d/evil", "absolute path"),
    ("C:/Windows/evil.dll", "absolute path"),
    ("../evil.py", r"outside the archive's folder \('..'\)"),
    ("faces/../../evil.py", r"outside the archive's folder \('..'\)"),
    ("faces\\..\\..\\evil.py", r"outside the archive's folder \('..'\)"),
])
def test_paths_outside_the_folder_are_refused(tmp_path, name, match):
    _refused(tmp_path, _zip(tmp_path / "slip.zip", {"faces/real/ok.jpg": b"ok", name: b"pwned"}), match)
    assert not (tmp_path / "evil.py").exists()


def test_symlinks_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("faces/real/ok.jpg", b"ok")
        link = zipfile.ZipInfo("faces/real/passwd.jpg")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    _refused(tmp_path, archive, "is a symbolic link")


def test_too_many_files_and_too_many_bytes_are_refused(tmp_path):
    many = _zip(tmp_path / "many.zip", {f"real/{i}.jpg": b"x" for i in range(4)})
    _refused(tmp_path, many, r"more than 3 files \(FORENSICS_ZIP_MAX_FILES\)", ZipLimits(max_files=3))
    big = _zip(tmp_path / "big.zip", {"real/a.jpg": os.urandom(600), "real/b.jpg": os.urandom(600)},
               zipfile.ZIP_STORED)
    _refused(tmp_path, big, r"unpacks to more than 1000 bytes", ZipLimits(max_total_bytes=1000))


def test_a_zip_bomb_is_refused_by_its_compression_ratio(tmp_path):
    bomb = _zip(tmp_path / "bomb.zip", {"real/a.jpg": bytes(8 << 20)})  # 8 MB of zeros: ~8 KB deflated
    assert bomb.stat().st_size < 100_000
    _refused(tmp_path, bomb, r"inflates \d+x \(a zip bomb\?\); the limit is 200x")


def test_a_forged_size_in_the_headers_is_caught_while_extracting(tmp_path):
    """Declared sizes say 100 bytes; 50,000 inflate. The declared-size checks pass, so only
    counting what really comes out (and the CRC) stops it."""
    archive = _zip(tmp_path / "forged.zip", {"real/a.jpg": os.urandom(50_000)}, zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    struct.pack_into("<I", data, 22, 100)  # local file header: uncompressed size
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)  # central directory: uncompressed size
    archive.write_bytes(bytes(data))
    assert zipfile.ZipFile(archive).infolist()[0].file_size == 100
    _refused(tmp_path, archive, r"forged header|Bad CRC-32")


def test_not_a_zip_and_an_empty_zip_are_refused(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not a zip file at all")
    _refused(tmp_path, junk, "not a readable zip")
    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    _refused(tmp_path, empty, "holds no files")


def test_a_zip_of_only_folders_and_metadata_holds_no_files(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("faces/", b"")
        z.writestr("__MACOSX/x", b"junk")
    (tmp_path / "dirs.zip").write_bytes(buffer.getvalue())
    _refused(tmp_path, tmp_path / "dirs.zip", "holds no files")
