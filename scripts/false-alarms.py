"""How often detectors call real photographs manipulated: every image under a folder of real photos
through the app's own analysis (photos any of the detectors trained on, its ``photo_folders``, are left
out for all), and the share of faces and of
photos over each detector's threshold, per subfolder and by face size (``training/false_alarms.py``;
``python -m training evaluate`` measures the same on ``<data's folder>/photos`` for the card).

    .venv/bin/python scripts/false-alarms.py default runs/default-v7 --photos ../shared/data/photos \
        --json runs/false-alarms.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.core import write_atomic  # noqa: E402
from forensics.detectors.card import FALSE_ALARM_HEADER, false_alarm_rows  # noqa: E402
from training.false_alarms import photos_under  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detectors", nargs="+", help="bundled names or model folders")
    parser.add_argument("--photos", default="../shared/data/photos", help="folder of real photographs")
    parser.add_argument("--json", help="write every photo's scores and the summaries here")
    args = parser.parse_args(argv)
    root = Path(args.photos)
    if not root.is_dir():
        print(f"false-alarms: {root}: no such folder", file=sys.stderr)
        return 2
    photos = photos_under(root)
    if not photos:
        print(f"false-alarms: {root}: no image below it", file=sys.stderr)
        return 2
    from forensics.catalog import available_detectors, split_variant

    known = set(available_detectors())
    for name in args.detectors:
        base, _ = split_variant(name)
        if base not in known and not (Path(base) / "config.json").is_file():
            print(f"false-alarms: detector {name!r} is neither a bundled name nor a model folder", file=sys.stderr)
            return 2
    from forensics.detectors import load_detector
    from training.false_alarms import detector_trained_photos, real_photo_false_alarms

    models = [load_detector(d) for d in args.detectors]
    # The photos any of them trained on are left out for all: each is measured on the same photos.
    trained = set().union(*(detector_trained_photos(m) for m in models))
    results = [{"detector": d, **real_photo_false_alarms(m, root, photos, trained=trained)}
               for d, m in zip(args.detectors, models)]
    print("| detector | " + " | ".join(FALSE_ALARM_HEADER) + " |")
    print("|" + "---|" * (len(FALSE_ALARM_HEADER) + 1))
    for r in results:
        for row in false_alarm_rows(r["detector"], r):
            print("| " + " | ".join(str(x) for x in row) + " |")
    if args.json:
        write_atomic(Path(args.json), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
