"""Training data: labelled samples from CSVs or ImageFolder trees, label remapping, grouped splits,
and a face-crop cache made with exactly the MTCNN cropping that inference uses.

Traps this module exists to avoid (see ../shared/data/README.md): frames of one video are near
duplicates, so splits are grouped by video; one source of reals against another of fakes teaches
the source, so sources can be held out whole for validation.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from forensics.core import MediaError, write_atomic
from forensics.faces import FaceDetector, check_framing, crop_face
from forensics.core.labelled import (  # noqa: F401  (re-exported: training's callers read them here)
    IMAGE_EXTENSIONS, MASK_DIRS, Sample, image_folder, read_labels_csv, remap_labels)
from forensics.media import load_image, load_video

VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mov", ".mkv")
FRAMES_DIR = "frames"  # below the crop cache: frames sampled from training videos

def grouped_split(samples: Sequence[Sample], val_fraction: float = 0.2, seed: int = 0,
                  holdout_sources: Iterable[str] = ()) -> tuple[list[Sample], list[Sample]]:
    """Train/validation split that never separates a group, stratified by label.

    Samples of ``holdout_sources`` all go to validation (generalisation to an unseen source);
    the rest is split group by group, per label, so each label keeps about ``val_fraction``.
    """
    holdout = set(holdout_sources)
    train, val = [], [s for s in samples if s.source in holdout]
    rest = [s for s in samples if s.source not in holdout]
    rng = random.Random(seed)
    by_label: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in rest:
        by_label[s.label][s.group].append(s)
    for groups in by_label.values():
        keys = sorted(groups)
        rng.shuffle(keys)
        total = sum(len(groups[k]) for k in keys)
        taken = 0
        for key in keys:
            target = val if taken < val_fraction * total else train
            if target is val:
                taken += len(groups[key])
            target.extend(groups[key])
    return train, val


def video_frame_samples(csv_path: str | Path, folders: Sequence[str], frames: int, cache: str | Path,
                        holdout: Iterable[str] = (), source: str = "talking-head video",
                        progress: bool = True) -> list[Sample]:
    """Frames of the labelled videos under ``folders`` (paths relative to the CSV's folder) as
    image samples: ``frames`` evenly spaced frames per video, decoded by inference's
    ``load_video`` and written losslessly (PNG) under ``cache/frames`` once. Every frame of a video
    is one group (near duplicates never straddle a split). Videos whose file name is in
    ``holdout`` get the source ``"<source>, held out"``, so that a run can keep whole videos out."""
    held = set(holdout)
    rows = [s for s in read_labels_csv(csv_path, kinds=VIDEO_EXTENSIONS)
            if any(_inside(s.path, Path(csv_path).parent / f) for f in folders)]
    out: list[Sample] = []
    for row in tqdm(rows, desc="video frames", unit="video", disable=not progress or not rows):
        # Named after the video's path in the data, so a record of frames holds on any machine.
        folder = Path(cache) / FRAMES_DIR / f"{row.group.replace('/', '__')}@{frames}"
        done = folder / "done.json"
        if not done.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            video = load_video(row.path, frames=frames)
            for index, frame in zip(video.indices, video.frames):
                cv2.imwrite(str(folder / f"{index:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            write_atomic(done, {"video": row.path, "indices": video.indices})
        name = Path(row.path).name
        label_source = f"{source}, held out" if name in held else source
        for index in json.loads(done.read_text())["indices"]:
            out.append(Sample(str(folder / f"{index:06d}.png"), row.label, label_source, row.group))
    return out


def face_counts(faces: Iterable[CachedFace]) -> dict[str, int]:
    """How many faces of each ``label/source``, sorted: what a training record states of each split."""
    return dict(sorted(Counter(f"{f.label}/{f.source}" for f in faces).items()))


PHOTO_SOURCE = "real photos"  # the source of photo_folders' faces: "real photos (<folder>)"


def photo_source(folder: str | Path) -> str:
    """The source name of a ``photo_folders`` folder's faces: ``"real photos (<folder>)"``."""
    return f"{PHOTO_SOURCE} ({Path(folder).as_posix()})"


def is_photo_source(source: str) -> bool:
    """Whether ``source`` names the faces of a ``photo_folders`` folder (``photo_source``)."""
    return source.startswith(PHOTO_SOURCE + " (") and source.endswith(")")


def photo_samples(csv_path: str | Path, folders: Sequence[str]) -> list[Sample]:
    """Every image below each of ``folders`` (relative to the CSV's folder) as a real sample of the
    source ``"real photos (<folder>)"``, each photo its own group. A missing or empty folder is a
    one-line ``ValueError``."""
    from forensics.core.labelled import images_under

    out = []
    for folder in folders:
        root = Path(csv_path).parent / folder
        images = images_under(root) if root.is_dir() else []
        if not images:
            raise ValueError(f"photo_folders: {root} holds no image")
        out += [Sample(str(p), "real", photo_source(folder), str(p)) for p in images]
    return out


def _inside(path: str | Path, folder: str | Path) -> bool:
    """Whether ``path`` lies below ``folder``, as written (links are not followed: a data folder
    may link its files from elsewhere)."""
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


@dataclass
class CachedFace:
    """A cached face crop and what training needs with it."""

    crop_path: str
    label: str
    source: str
    group: str
    landmarks: list[list[float]]  # 5 points, in crop pixels
    confidence: float
    padded_fraction: float  # share of the crop outside the source image (black padding)
    margin: float = 0.3  # the margin used (smaller than asked when the box had to fit inside)
    image_path: str = ""  # the source image


class FaceCropCache:
    """Crops faces once with the inference pipeline's MTCNN and ``crop_face`` (same margin, same
    square box, same padding) and keeps them as PNGs plus a JSON index.

    ``size`` is the stored crop size; training resizes to the model's input size as inference does.
    The largest face of each image is kept (training images hold one subject). With
    ``fit_inside`` (default), a face whose square box would run past the image edge gets a smaller
    margin instead of black padding: tightly cropped sets (UTKFace) would otherwise put most reals
    on a black surround that no real input has. With ``framing="landmarks"`` the crop is framed
    around ``forensics.faces.landmark_box``; a landmark square larger than the image is shrunk
    about its centre to the image's shorter side, for the same reason.
    """

    def __init__(self, folder: str | Path, size: int = 256, margin: float = 0.3,
                 face_detector: FaceDetector | None = None, fit_inside: bool = True, framing: str = "box"):
        self.folder = Path(folder)
        self.size, self.margin, self.fit_inside, self.framing = size, margin, fit_inside, check_framing(framing)
        # Found as the training crops always were (no contrast stretch), so that the cache stays the same.
        self.face_detector = face_detector or FaceDetector(min_face_size=24, edge_pad=0.2, stretch_contrast=False)

    def _key(self, path: str) -> str:
        settings = f"{Path(path).resolve()}|{self.size}|{self.margin}|{self.fit_inside}"
        if self.framing != "box":  # box crops keep the keys they were cached under
            settings += f"|{self.framing}"
        return hashlib.sha1(settings.encode()).hexdigest()[:20]

    def build(self, samples: Sequence[Sample], progress: bool = True) -> list[CachedFace]:
        """Crop every sample (cached ones are reused); samples without a face are skipped."""
        self.folder.mkdir(parents=True, exist_ok=True)
        index_path = self.folder / "index.json"
        index = json.loads(index_path.read_text()) if index_path.exists() else {}
        out: list[CachedFace] = []
        changed = 0
        for sample in tqdm(samples, desc="face crops", unit="img", disable=not progress):
            key = self._key(sample.path)
            entry = index.get(key)
            if entry is None:
                entry = self._crop_one(sample, key)
                index[key] = entry
                changed += 1
                if changed % 50 == 0:  # a stopped run keeps most of its crops
                    write_atomic(index_path, json.dumps(index))
            if entry.get("crop_path"):
                out.append(CachedFace(label=sample.label, source=sample.source, group=sample.group,
                                      margin=entry.get("margin", self.margin), image_path=sample.path,
                                      **{k: entry[k] for k in ("crop_path", "landmarks", "confidence",
                                                               "padded_fraction")}))
        write_atomic(index_path, json.dumps(index))
        return out

    def _crop_one(self, sample: Sample, key: str) -> dict:
        try:
            image = load_image(sample.path)
        except MediaError as exc:
            return {"crop_path": None, "error": str(exc)}
        faces = self.face_detector.detect(image)
        if not faces:
            return {"crop_path": None, "error": "no face"}
        face = max(faces, key=lambda f: f.width * f.height)
        # The app crops a model's faces the same way (``forensics.faces.crop_face``, its fit_inside).
        crop = crop_face(image, face, self.size, self.margin, self.framing, fit_inside=self.fit_inside)
        x0, y0, x1, y1 = crop.crop_box
        scale = self.size / (x1 - x0)
        landmarks = [[(x - x0) * scale, (y - y0) * scale] for x, y in face.landmarks]
        h, w = image.shape[:2]
        inside = max(0, min(x1, w) - max(x0, 0)) * max(0, min(y1, h) - max(y0, 0))
        padded = 1.0 - inside / float((x1 - x0) * (y1 - y0))
        path = self.folder / f"{key}.png"
        cv2.imwrite(str(path), cv2.cvtColor(crop.image, cv2.COLOR_RGB2BGR))
        return {"crop_path": str(path), "landmarks": landmarks, "confidence": float(face.confidence),
                "padded_fraction": round(padded, 4), "margin": round(crop.margin, 4)}


def load_crop(face: CachedFace) -> np.ndarray:
    bgr = cv2.imread(face.crop_path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError(f"{face.crop_path}: cached crop is missing or unreadable")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


UTKFACE_RACES = ("White", "Black", "Asian", "Indian", "Other")  # UTKFace's race codes 0-4
AGE_GROUPS = ((12, "0-12"), (19, "13-19"), (39, "20-39"), (59, "40-59"), (200, "60+"))
# Every group name face_groups can give (what a config's group_repeats may name).
FACE_GROUPS = tuple([f"UTKFace age {band}" for _, band in AGE_GROUPS] + ["UTKFace male", "UTKFace female"]
                    + [f"UTKFace {race}" for race in UTKFACE_RACES])


def face_groups(face: CachedFace) -> list[str]:
    """The groups a face belongs to, where its source's file names say (the data README: look at
    results per age group). UTKFace names are ``age_gender_race_date``: gender 0 male, 1 female;
    race 0-4 as in ``UTKFACE_RACES``."""
    if face.source != "UTKFace":
        return []
    m = re.match(r"(\d+)_([01])_([0-4])_", Path(face.image_path).name)
    if not m:
        return []
    age = int(m[1])
    band = next(label for top, label in AGE_GROUPS if age <= top)
    return [f"UTKFace age {band}", f"UTKFace {('male', 'female')[int(m[2])]}", f"UTKFace {UTKFACE_RACES[int(m[3])]}"]


def group_members(faces: Sequence[CachedFace]) -> dict[str, list[int]]:
    """The indices of ``faces`` in each group (:func:`face_groups`) that holds one."""
    members: dict[str, list[int]] = {}
    for i, face in enumerate(faces):
        for group in face_groups(face):
            members.setdefault(group, []).append(i)
    return members
