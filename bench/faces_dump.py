"""The faces a checkout finds on a broad sample of ../shared/data, to compare two checkouts exactly:

    git archive OLD_COMMIT | tar -x -C /tmp/old
    .venv/bin/python bench/faces_dump.py /tmp/old /tmp/old.json
    .venv/bin/python bench/faces_dump.py . /tmp/new.json
    .venv/bin/python bench/faces_dump.py --compare /tmp/old.json /tmp/new.json

The sample: every video under ``video/`` (16 frames each, through ``load_video``), every photo under
``photos/``, and a fixed random sample of ``faces/`` and ``tamper/``. Each face is kept with its
unrounded box and confidence and its landmarks; ``--compare`` says whether every file gave the same
faces, and the face-finding CPU time of each (one thread).
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
VIDEOS = (".mp4", ".avi", ".webm", ".mov")
SAMPLES = (("faces/real/utkface", 40), ("faces/real/ffhq", 30), ("faces/fake/sd21_sdfd", 30),
           ("faces/fake/stylegan2_tpdne", 20), ("tamper/casia1", 20), ("tamper/casia2", 15))


def _files() -> list[Path]:
    random.seed(0)
    files = sorted(p for p in (DATA / "video").rglob("*") if p.suffix.lower() in VIDEOS)
    files += sorted(p for p in (DATA / "photos").rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    for sub, n in SAMPLES:
        pool = sorted(p for p in (DATA / sub).rglob("*")
                      if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".bmp", ".webp"))
        files += random.sample(pool, min(n, len(pool)))
    return files


def dump(tree: str, out: str) -> None:
    sys.path.insert(0, str(Path(tree).resolve()))
    import torch

    torch.set_num_threads(1)
    from forensics.faces import FaceDetector
    from forensics.media import load_image, load_video

    detector, found, cpu = FaceDetector(), {}, 0.0
    for path in _files():
        try:
            frames = load_video(path, frames=16).frames if path.suffix.lower() in VIDEOS else [load_image(path)]
        except Exception as exc:  # the same refusal on both sides is the same answer
            found[str(path)] = str(exc)
            continue
        start = time.process_time()
        faces = detector.detect_batch(frames)
        cpu += time.process_time() - start
        found[str(path)] = [[f.to_dict() | {"raw": [*f.box, f.confidence]} for f in frame] for frame in faces]
    Path(out).write_text(json.dumps({"cpu_s": cpu, "faces": found}))
    print(f"{len(found)} files, face finding {cpu:.1f} s CPU")


def compare(a: str, b: str) -> int:
    old, new = (json.loads(Path(p).read_text()) for p in (a, b))
    differ = [k for k in old["faces"] if old["faces"][k] != new["faces"].get(k)]
    images = [frame for v in old["faces"].values() if isinstance(v, list) for frame in v]
    print(json.dumps({"files": len(old["faces"]), "images": len(images), "faces": sum(map(len, images)),
                      "files_that_differ": differ, "cpu_s": [round(old["cpu_s"], 1), round(new["cpu_s"], 1)]}))
    return 1 if differ or old["faces"].keys() != new["faces"].keys() else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--compare"]:
        raise SystemExit(compare(sys.argv[2], sys.argv[3]))
    dump(sys.argv[1], sys.argv[2])
