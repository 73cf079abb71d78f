"""Labelled data as listed on disk, before any face is cropped: rows of a labels CSV and the
images of an ImageFolder tree. The lowest layer, so that a job's data can be checked at submission
(:mod:`forensics.jobs.settings`) by the same reading that training (:mod:`training.data`) uses."""

from __future__ import annotations

import csv
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}

MASK_DIRS = {"mask", "masks", "gt", "groundtruth", "ground_truth"}


@dataclass(frozen=True)
class Sample:
    path: str
    label: str
    source: str
    group: str  # what must not be split apart: a video, an identity; defaults to the file itself

    def to_dict(self) -> dict:
        return asdict(self)


def read_labels_csv(csv_path: str | Path, root: str | Path | None = None,
                    kinds: Iterable[str] = IMAGE_EXTENSIONS) -> list[Sample]:
    """Rows ``path,label[,source[,group]]``; paths relative to ``root`` (default: the CSV's folder)."""
    csv_path = Path(csv_path)
    root = Path(root) if root else csv_path.parent
    wanted = {k.lower() for k in kinds}
    samples = []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = root / row["path"]
            if path.suffix.lower() not in wanted:
                continue
            samples.append(Sample(str(path), row["label"].strip(), (row.get("source") or "unknown").strip(),
                                  (row.get("group") or row["path"]).strip()))
    return samples


def images_under(folder: str | Path) -> list[Path]:
    """The image files anywhere below ``folder``, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def image_folder(root: str | Path, skip_masks: bool = True) -> list[Sample]:
    """An ImageFolder tree (``root/<label>/**/*.jpg``); folders of masks are skipped.

    The source is the first folder below the label (e.g. ``fake/stylegan2/x.jpg``), else the label.
    """
    root = Path(root)
    samples = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(label_dir.rglob("*")):
            if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
                continue
            parts = path.relative_to(label_dir).parts
            if skip_masks and any(part.lower() in MASK_DIRS for part in parts[:-1]):
                continue
            if skip_masks and re.search(r"(_mask|_gt)\.\w+$", path.name, re.IGNORECASE):
                continue
            source = parts[0] if len(parts) > 1 else label_dir.name
            samples.append(Sample(str(path), label_dir.name, source, str(path.relative_to(root))))
    return samples


def remap_labels(samples: Sequence[Sample], mapping: dict[str, str]) -> list[Sample]:
    """Rename labels (e.g. ``{"deepfake": "fake", "FAKE": "fake"}``); unmapped labels stay."""
    return [Sample(s.path, mapping.get(s.label, s.label), s.source, s.group) for s in samples]
