"""What looking at a video again costs (``Analyzer.look_again``): each video analysed once at the app's
16 frames alone (``look_again=0``) and once the app's way (``look_again=2``: a close call, or a video
in which no face was found, sampled again at 31 and 61 frames), in interleaved rounds, the fastest
round of each kept, and the ratio of the two.

    .venv/bin/python bench/look_again_cost.py [--detector default] [--rounds 2] [--maps]
        [--video PATH ...] [--json FILE]

Videos: by default the labelled DFDC fake ``dfdc_abqwwspghj.mp4`` from ``../shared/data/video`` (a
close call at 16 frames) and a faceless 10-second 720p clip made here (the bundled cat photo panned,
300 frames, written to a temporary folder), so both reasons to look again are timed. Without
``--maps`` the analysis draws no maps (``--explain none``), which isolates decoding, MTCNN and
scoring. Last, the search for faces too small to judge that a faceless input gets (MTCNN again down
to 20 px on at most 8 of its frames) is timed against the first search (40 px) of the same frames.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def faceless_clip(folder: Path, frames: int = 300, size: tuple[int, int] = (1280, 720)) -> Path:
    """A ``frames``-frame clip at 30 fps of the bundled cat photo (no face), panned so frames differ."""
    import cv2
    import numpy as np
    from PIL import Image

    cat = np.asarray(Image.open(ROOT / "assets" / "examples" / "chelsea-no-face.jpg").convert("RGB").resize(size))
    path = folder / "faceless-720p.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for k in range(frames):
        writer.write(np.ascontiguousarray(np.roll(cat, k * 4, axis=1)[..., ::-1]))
    writer.release()
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="default")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--maps", action="store_true", help="draw every map (the app's default) as well")
    parser.add_argument("--video", nargs="*", default=None, help="videos to time (default: see above)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.rounds < 1:
        raise SystemExit("look_again_cost: --rounds must be at least 1")

    from forensics.analysis import Analyzer
    from forensics.detectors import load_detector
    from forensics.explain import METHODS

    detector = load_detector(args.detector)
    methods = tuple(METHODS) if args.maps else ()
    with tempfile.TemporaryDirectory() as tmp:
        videos = [Path(v) for v in args.video] if args.video else [
            ROOT.parent / "shared" / "data" / "video" / "dfdc_abqwwspghj.mp4", faceless_clip(Path(tmp))]
        for video in videos:
            if not video.is_file():
                raise SystemExit(f"look_again_cost: no such video: {video}")
        rows = []
        for video in videos:
            seconds = {0: [], 2: []}
            outcome = {}
            for _ in range(args.rounds):
                for look_again in (0, 2):
                    analyzer = Analyzer(detector, methods=methods, frames=16, look_again=look_again)
                    start = time.perf_counter()
                    result = analyzer.analyze(str(video))
                    seconds[look_again].append(time.perf_counter() - start)
                    if result.error:
                        raise SystemExit(f"look_again_cost: {video.name}: {result.error}")
                    outcome[look_again] = {"label": result.label, "fake_probability": result.fake_probability,
                                           "frames": result.media.sampled_frames,
                                           "note": result.notes[0] if result.notes else ""}
            once, app = min(seconds[0]), min(seconds[2])
            rows.append({"video": video.name, "once_s": round(once, 2), "app_s": round(app, 2),
                         "ratio": round(app / once, 2), "once": outcome[0], "app": outcome[2]})
            print(f"{video.name}: {once:.2f} s at 16 frames alone, {app:.2f} s the app's way "
                  f"({app / once:.1f}x; {outcome[2]['frames']} frames, {outcome[2]['label']})\n  {outcome[2]['note']}",
                  flush=True)
        # The search for faces too small to judge (Analyzer._small_faces: no face found, MTCNN again down to
        # 20 px on at most 8 sampled frames), against the first search of the same frames at 40 px.
        from forensics.analysis import SMALL_FACE_SEARCH_FRAMES, SMALL_FACE_SEARCH_PX
        from forensics.faces import FaceDetector
        from forensics.media import load_video

        faceless = [v for v in videos if v.name == "faceless-720p.mp4"] or videos[-1:]
        frames = load_video(str(faceless[0]), frames=SMALL_FACE_SEARCH_FRAMES).frames
        finder = FaceDetector()
        finder.detect_batch(frames[:1])  # build MTCNN outside the timing
        search = {finder.min_face_size: [], SMALL_FACE_SEARCH_PX: []}
        for _ in range(args.rounds):
            for size in search:
                start = time.perf_counter()
                finder.detect_batch(frames, min_face_size=size)
                search[size].append(time.perf_counter() - start)
        first, small = min(search[finder.min_face_size]), min(search[SMALL_FACE_SEARCH_PX])
        print(f"{faceless[0].name}: MTCNN on {len(frames)} frames down to {finder.min_face_size} px {first:.2f} s, "
              f"down to {SMALL_FACE_SEARCH_PX} px {small:.2f} s ({small / first:.1f}x; {small / len(frames):.2f} s a frame)")
        small_search = {"video": faceless[0].name, "frames": len(frames), "first_s": round(first, 2),
                        "small_s": round(small, 2), "ratio": round(small / first, 2)}
    if args.json:
        Path(args.json).write_text(json.dumps({"detector": args.detector, "maps": args.maps, "rounds": args.rounds,
                                               "videos": rows, "small_face_search": small_search}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
