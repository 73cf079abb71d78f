"""Make the bundled manipulated example: a self-blended version of the public-domain astronaut
portrait, with the project's own self-blending code (``training/sbi.py``, the pseudo-fakes the
detectors are trained on). Deterministic: the same seed gives the same file.

    python scripts/make-example-fake.py [--seed 0]

It writes ``assets/examples/astronaut-self-blended.jpg`` and prints what the bundled detectors
say about the original and the blend (the figures in assets/examples/README.md come from here).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from forensics.analysis import Analyzer
from forensics.detectors import load_detector
from forensics.faces import FaceDetector
from forensics.media import load_image
from training.sbi import self_blend

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--outline", default="inner", choices=["full", "inner", "lower", "eyes"])
    args = parser.parse_args()
    original = EXAMPLES / "astronaut.jpg"
    image = load_image(original)
    faces = FaceDetector().detect(image)
    if len(faces) != 1:
        raise SystemExit(f"expected one face in {original.name}, found {len(faces)}")
    blended, mask = self_blend(image, np.asarray(faces[0].landmarks, np.float32), np.random.default_rng(args.seed),
                               args.outline)
    out = EXAMPLES / "astronaut-self-blended.jpg"
    Image.fromarray(blended).save(out, quality=90)
    print(f"wrote {out.name}: seed {args.seed}, outline {args.outline}, mask covers {float((mask > 0.05).mean()):.1%} "
          f"of the image, peak opacity {float(mask.max()):.2f}")
    for name in ("default", "mobilenetv2", "patch"):
        analyzer = Analyzer(load_detector(name), methods=[])
        scores = [analyzer.analyze(path).fake_probability for path in (original, out)]
        print(f"{name:<12} P(fake) original {scores[0]:.3f}  self-blended {scores[1]:.3f}  "
              f"(threshold {analyzer.detector.threshold})")


if __name__ == "__main__":
    main()
