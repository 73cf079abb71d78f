"""`python -m forensics explain-bench` end to end on a bundled detector, on two self-blended fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, data_path


def test_explain_bench_writes_one_row_per_method_with_baselines(tmp_path):
    labels = data_path("labels.csv")  # skips when ../shared/data is absent
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    proc = subprocess.run([sys.executable, "-m", "forensics", "explain-bench", "--detector", "patch",
                           "--data", str(labels), "--cache", str(tmp_path / "crops"), "--limit", "3", "--steps", "2",
                           "--road", "0", "--no-casia", "--json", str(out), "--markdown", str(table)],
                          cwd=ROOT, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["faces"] == 3 and "validation reals" in report["faces_from"]
    assert set(report["methods"]) == {"gradcam", "gradcam++"}  # a CNN: no attention maps
    for entry in report["methods"].values():
        assert {"deletion", "insertion", "random_deletion", "random_insertion", "centre_deletion",
                "deletion_minus_random_ci", "pointing_game", "region_auc", "sanity_spearman"} <= set(entry)
        low, high = entry["deletion_ci"]
        assert low <= entry["deletion"] <= high and 0.0 <= entry["deletion"] <= 1.0
    assert set(report["baselines"]) == {"random", "centre"}
    assert np.isfinite(report["cost_ms_per_face"]["faithfulness"])
    cost = report["faithfulness_cost"]
    # 2 maps + the random map, 2 curves of (steps - 1) inner points, + the crop with every pixel removed
    # (the crop itself was scored by the forward pass), through the bundled ONNX float build
    assert cost["images_per_face"] == 1 + 2 * 1 * 3 and cost["forward_passes_per_face"] == 1  # batches of 8
    assert cost["ms_per_face"] > 0 and cost["x_forward"] > 0
    assert cost["scored_by"] == "patch:onnx" and cost["x_scorer_forward"] > 0
    assert report["settings"]["removal"] == "blur" and "blurred" in report["settings"]["removed_pixels"]
    check = report["removal_check"]  # the truth as a map, and the removal's effect on the real faces
    assert check["mask_deletion"] is not None and len(check["mask_deletion_minus_random"]["ci"]) == 2
    assert 0.0 <= check["real_p_fake"]["mean"] <= 1.0 and check["real_rise_while_removing"]["mean"] is not None
    text = table.read_text()
    assert text.count("\n| ") >= 4 and "*random map*" in text and "| gradcam++ |" in text
    assert "Removal check: the blend mask" in text and "1 forward pass(es) of 7 images, run by patch:onnx" in text
    bad = subprocess.run([sys.executable, "-m", "forensics", "explain-bench", "--data", str(tmp_path / "none.csv")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "no such labels CSV or ImageFolder folder" in bad.stderr
    assert "Traceback" not in bad.stderr
    (tmp_path / "faces.txt").write_text("a file that is neither a labels CSV nor a folder")
    bad = subprocess.run([sys.executable, "-m", "forensics", "explain-bench", "--data", str(tmp_path / "faces.txt")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "faces.txt: no such labels CSV or ImageFolder folder" in bad.stderr


def test_bootstrap_resamples_whole_groups_and_leaves_out_undefined_scores():
    from training.explain_bench import bootstrap

    mean, low, high = bootstrap([0.2, 0.2, 0.2, float("nan")], [0, 1, 2, 3])
    assert mean == pytest.approx(0.2) and low == pytest.approx(0.2) and high == pytest.approx(0.2)  # NaN left out
    # Two groups: one of many faces at 0, one face at 1. Whole groups are drawn, so some resamples hold
    # only the large group (mean 0) and some only the single face (mean 1).
    values, groups = [0.0] * 9 + [1.0], [0] * 9 + [1]
    mean, low, high = bootstrap(values, groups)
    assert mean == pytest.approx(0.1) and low == 0.0 and high == 1.0
    mean, low, high = bootstrap(values, list(range(10)))  # independent faces: a narrow interval
    assert 0.0 <= low < 0.1 < high < 0.5
