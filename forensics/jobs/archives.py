"""Unpack an uploaded zip of a dataset (an ImageFolder tree) without trusting it.

A zip names its own paths and sizes, and both lie in hostile uploads: ``../../app.py`` or
``/etc/cron.d/x`` write outside the target (zip slip), a symlink entry turns a later write into one
outside it, and a few kilobytes can inflate to terabytes (zip bomb). So every name is checked before
anything is written, the declared sizes and the compression ratio are checked against limits, and
the bytes actually inflated are counted while writing (declared sizes can be forged). Everything is
unpacked into a temporary sibling folder that is renamed into place only when all of it succeeded,
so a refused upload leaves nothing behind.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from forensics.core import ArchiveError, ZipLimits, atomic_path

CHUNK = 1 << 20


def _safe_name(name: str) -> PurePosixPath | None:
    """The entry's relative path, or None for entries that are skipped (folders, macOS metadata);
    raises for names that would land outside the target folder."""
    if "\x00" in name:
        raise ArchiveError(f"entry {name!r} has a NUL byte in its name")
    unified = name.replace("\\", "/")
    if unified.startswith("/") or (len(unified) > 1 and unified[1] == ":"):
        raise ArchiveError(f"entry {name!r} has an absolute path")
    parts = [p for p in unified.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ArchiveError(f"entry {name!r} points outside the archive's folder ('..')")
    if not parts or unified.endswith("/") or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
        return None
    return PurePosixPath(*parts)


def _is_link(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return info.create_system == 3 and stat.S_ISLNK(mode)


def check_zip(archive: zipfile.ZipFile, limits: ZipLimits) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every entry to extract, with its safe relative path; raises ``ArchiveError`` before
    anything is written when a name, a link, the file count, the total size or a ratio is wrong."""
    entries = []
    total = 0
    for info in archive.infolist():
        if _is_link(info):
            raise ArchiveError(f"entry {info.filename!r} is a symbolic link; links are not unpacked")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"entry {info.filename!r} is encrypted")
        path = _safe_name(info.filename)
        if path is None or info.is_dir():
            continue
        entries.append((info, path))
        if len(entries) > limits.max_files:
            raise ArchiveError(f"more than {limits.max_files} files (FORENSICS_ZIP_MAX_FILES)")
        total += info.file_size
        if total > limits.max_total_bytes:
            raise ArchiveError(f"unpacks to more than {_size(limits.max_total_bytes)} (FORENSICS_ZIP_MAX_BYTES)")
        if info.file_size > limits.ratio_floor and info.file_size > limits.max_ratio * max(1, info.compress_size):
            raise ArchiveError(f"entry {info.filename!r} inflates {info.file_size / max(1, info.compress_size):.0f}x "
                               f"(a zip bomb?); the limit is {limits.max_ratio:.0f}x")
    if not entries:
        raise ArchiveError("the archive holds no files")
    return entries


def extract_zip(zip_path: str | Path, dest: str | Path, limits: ZipLimits | None = None) -> Path:
    """Unpack ``zip_path`` into the new folder ``dest`` (which must not exist) and return it.

    Raises ``ArchiveError`` with a one-line message naming the archive; on any failure nothing is
    left at ``dest`` and the temporary folder is removed.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    limits = limits or ZipLimits.from_env()
    if dest.exists():
        raise ArchiveError(f"{dest}: already exists")
    try:
        with atomic_path(dest) as tmp:
            tmp.mkdir()
            try:
                with zipfile.ZipFile(zip_path) as archive:
                    _extract_checked(archive, tmp, limits)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as exc:
                raise ArchiveError(f"not a readable zip ({' '.join(str(exc).split())})") from exc
    except ArchiveError as exc:
        raise ArchiveError(f"{zip_path.name}: {exc}") from None
    return dest


def _extract_checked(archive: zipfile.ZipFile, root: Path, limits: ZipLimits) -> None:
    written = 0
    base = root.resolve()
    for info, rel in check_zip(archive, limits):
        target = root.joinpath(*rel.parts)
        if not target.resolve().is_relative_to(base):  # belt and braces: nothing above may have been missed
            raise ArchiveError(f"entry {info.filename!r} points outside the archive's folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with archive.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(CHUNK):
                count += len(chunk)
                written += len(chunk)
                # Count what really inflates: a forged header must not get past the limits.
                if count > info.file_size:
                    raise ArchiveError(f"entry {info.filename!r} inflates past its declared size (forged header)")
                if written > limits.max_total_bytes:
                    raise ArchiveError(f"unpacks to more than {_size(limits.max_total_bytes)} (FORENSICS_ZIP_MAX_BYTES)")
                out.write(chunk)


def dataset_root(folder: str | Path) -> Path:
    """The ImageFolder root inside an unpacked upload: a zip of ``faces/real/..., faces/fake/...``
    holds a single top folder, which is the root (files beside it that are not images, such as a
    README, and macOS's ``__MACOSX`` do not count); a ``labels.csv`` anywhere on the way wins."""
    from forensics.core.labelled import IMAGE_EXTENSIONS

    folder = Path(folder)
    while True:
        if (folder / "labels.csv").is_file():
            return folder / "labels.csv"
        children = [p for p in folder.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        folders = [p for p in children if p.is_dir()]
        loose_images = [p for p in children if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if len(folders) == 1 and not loose_images:
            folder = folders[0]
            continue
        return folder


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
