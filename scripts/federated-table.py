"""The comparison table of docs/federated.md from federated runs' folders (real figures only):
python scripts/federated-table.py runs/fed-central runs/fed-fedavg ..."""

from __future__ import annotations

import json
import sys
from pathlib import Path

PAIRS = {  # column: the per-source comparison of `python -m training evaluate` it shows
    "UTKFace SBI": "UTKFace reals vs their SBI fakes",
    "FFHQ SBI": "FFHQ reals vs their SBI fakes",
    "clips SBI": "talking-head clips reals vs their SBI fakes",
    "SDFD vs all reals": "Stable Diffusion 2.1 (SDFD) vs all held-out reals",
    "StyleGAN2 (unseen) vs all reals": "StyleGAN2 (thispersondoesnotexist) vs all held-out reals",
}


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def row(run: Path) -> str:
    fed = json.loads((run / "federated_metrics.json").read_text())
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    info = fed["federated"]
    name = "centralised (pooled)" if info["partition"] == "pooled" else info["strategy"]
    name += "" if info["strategy"] == "FedAvg" else f", mu {info['mu']:g}"
    clients = len(info["clients"])
    steps = info["rounds"] * clients * info["local_steps"]
    curve = " / ".join(fmt(r["server"].get("auc")) for r in fed["rounds"])
    per = metrics["per_source"]
    cells = [fmt((per.get(key) or {}).get("roc_auc")) for key in PAIRS.values()]
    s = metrics["summary"]
    return (f"| {name} | {clients} x {info['rounds']} x {info['local_steps']} = {steps} | {curve} | {fmt(s['roc_auc'])} | "
            + " | ".join(cells) + f" | {fmt(s['jpeg_50_auc'])} | {fmt(metrics['calibration']['ece'])} |")


if __name__ == "__main__":
    print("| run | steps (clients x rounds x local) | server AUC per round (0 = start) | final AUC | "
          + " | ".join(PAIRS) + " | AUC after JPEG 50 | ECE |")
    print("|---|---|---|---|" + "---|" * len(PAIRS) + "---|---|")
    for folder in sys.argv[1:]:
        print(row(Path(folder)))
