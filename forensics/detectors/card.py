"""Model cards: the README.md beside a model's weights, in the Hub's format (YAML front matter)."""

from __future__ import annotations

from pathlib import Path

from forensics.detectors.base import CARD_NAME, DetectorInfo
from forensics.faces import FRAMING_TEXT


def write_model_card(
    folder: Path, info: DetectorInfo, architecture: str, library: str, extra: str | None = None
) -> Path:
    """Write a minimal, truthful card; training code passes ``extra`` with data, splits and metrics."""
    status = "trained" if info.trained else "UNTRAINED (random weights, for tests only: not a detector)"
    lines = [
        "---",
        f"library_name: {library}",
        "pipeline_tag: image-classification",
        "tags: [deepfake-detection, image-forensics, deepfake-forensics-studio]",
        "---",
        f"# {info.name}",
        "",
        info.description or "A face-manipulation detector for Deepfake Forensics Studio.",
        "",
        f"- Architecture: `{architecture}`",
        f"- Status: {status}",
        f"- Labels: {', '.join(info.labels)} (fake: {', '.join(info.fake_labels) or 'by name'})",
        f"- Input: {info.input_size}x{info.input_size} RGB face crop ("
        f"{FRAMING_TEXT[info.face_framing]}, margin {info.face_margin})",
        f"- Normalisation: mean {list(info.mean)}, std {list(info.std)}",
        f"- Decision threshold on P(fake): {info.threshold}",
        "",
        "A probability is evidence, not proof.",
    ]
    if extra:
        lines += ["", extra.strip()]
    path = folder / CARD_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
