"""ONNX float and int8 builds: export checked against PyTorch with onnxruntime, dynamic and static
(calibrated on real MTCNN face crops) quantization, the builds as registry detectors with their
maps, the operating-point threshold, and the float-vs-int8 audit (library and CLI, pass and fail)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from forensics.int8.audit import LabelledFaces, Tolerance, faces_from_files, labelled_files, run_audit, summary_rows
from forensics.detectors import load_detector
from forensics.core import DetectorError, ForensicsError
from forensics.explain import explain
from forensics.int8.quantize import (
    BUILD_NAME,
    INT8_NAME,
    ONNX_NAME,
    build_onnx,
    choose_mode,
    operating_point_threshold,
    quantizable_units,
    quantize_onnx,
)
from tests.conftest import ROOT, cli_in_process, data_path, refusals_without_torch


@pytest.fixture(scope="module")
def labelled_tree(tmp_path_factory):
    """An ImageFolder tree of real photos: UTKFace and FFHQ reals, StyleGAN2 fakes, and a masks
    folder that must be ignored."""
    root = tmp_path_factory.mktemp("labelled")
    picks = {"real": [*sorted(data_path("faces/real/utkface").glob("*.jpg"))[:6],
                      *sorted(data_path("faces/real/ffhq").glob("*.jpg"))[:4]],
             "fake": sorted(data_path("faces/fake/stylegan2_tpdne").glob("*.jpg"))[:10]}
    for label, files in picks.items():
        (root / label).mkdir()
        for f in files:
            shutil.copy(f, root / label / f.name)
    (root / "masks").mkdir()
    shutil.copy(picks["fake"][0], root / "masks" / "m.jpg")
    return root


@pytest.fixture(scope="module")
def faces(labelled_tree, face_detector):
    return faces_from_files(labelled_tree, 64, face_detector=face_detector)


def _trained_copy(model_dirs, kind, tmp_path):
    folder = shutil.copytree(model_dirs[kind], tmp_path / kind)
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_labelled_faces_come_from_class_folders_through_mtcnn(labelled_tree, faces):
    rows = labelled_files(labelled_tree)
    assert len(rows) == 20 and {label for _, label, _ in rows} == {0, 1}  # masks/ left out
    assert len(faces) >= 18 and faces.labels.sum() >= 9  # MTCNN finds (almost) every face
    assert all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in faces.crops)
    with pytest.raises(ForensicsError, match="needs real and fake"):
        labelled_files(labelled_tree / "real")


def test_operating_point_threshold_hand_computed():
    p_float = np.array([0.1, 0.4, 0.6, 0.9])
    # int8 shifted down by 0.15: float decisions at 0.5 are [F, F, T, T]; int8 needs a lower threshold
    p_int8 = p_float - 0.15
    t = operating_point_threshold(p_float, p_int8, 0.5)
    assert 0.25 < t <= 0.45
    assert np.array_equal(p_int8 >= t, p_float >= 0.5)
    # Identical scores: the float threshold itself.
    assert operating_point_threshold(p_float, p_float, 0.5) == 0.5


@pytest.mark.parametrize("kind", ["timm-vit", "patch", "hybrid", "hf-vit"])
def test_build_exports_quantizes_and_loads_as_detectors(kind, model_dirs, faces, tmp_path):
    folder = _trained_copy(model_dirs, kind, tmp_path)
    det = load_detector(folder, cache=False)
    mode = choose_mode(det)
    assert mode == ("static" if kind == "patch" else "dynamic")
    record = build_onnx(det, faces.crops[:12])
    assert {ONNX_NAME, INT8_NAME, BUILD_NAME} <= {p.name for p in folder.iterdir()}
    assert record["float"]["max_abs_error_vs_pytorch"]["logits"] < 1e-3
    if kind in ("timm-vit", "hybrid"):  # exact GELUs run as one kernel; checked against PyTorch after
        assert record["float"]["fused_gelu"] >= 1
        assert not any(n.op_type == "Erf" for n in __import__("onnx").load(str(folder / ONNX_NAME)).graph.node)
    assert record["int8"]["mode"] == mode
    if mode == "static":
        assert record["int8"]["calibration_faces"] == 12 and "Conv" in record["int8"]["int8_ops"]
        # Mixed precision by measurement: the fewest most sensitive nodes float that keep P(fake)
        # within the bound (0.015) on the calibration faces (or every node float).
        search = record["int8"]["mixed_precision_search"]
        steps = {step["float_nodes"]: step["max_abs_delta"] for step in search["steps"]}
        kept, total = map(int, record["int8"]["float_units"].split(" of "))
        assert len(record["int8"]["kept_float"]) == kept and len(search["sensitivity"]) == total
        assert search["max_delta"] == 0.015 and (steps[kept] <= 0.015 or kept == total)
        assert all(delta > 0.015 for k, delta in steps.items() if k < kept)  # nothing fewer held
    assert (folder / INT8_NAME).stat().st_size < (folder / ONNX_NAME).stat().st_size

    batch = det.preprocess(faces.crops[:5])
    reference = det.predict(batch)
    onnx = load_detector(f"{folder}:onnx", cache=False)
    int8 = load_detector(f"{folder}:int8", cache=False)
    assert onnx.name.endswith(":onnx") and int8.name.endswith(":int8") and not int8.differentiable
    np.testing.assert_allclose(onnx.predict(batch), reference, atol=1e-4)  # a dynamic batch of 5
    assert np.abs(int8.predict(batch) - reference).max() < 0.2
    assert int8.threshold == pytest.approx(record["int8"]["threshold"])

    # The ONNX build still explains itself with what its graph outputs; Grad-CAM says why not.
    exp = explain(int8, batch[:2], ["attention", "rollout", "gradcam", "patches"])
    if kind == "patch":
        assert set(exp.maps) == {"patches"}
        torch_maps = explain(det, batch[:2], ["patches"]).maps["patches"]
        assert np.corrcoef(exp.maps["patches"].ravel(), torch_maps.ravel())[0, 1] > 0.9
    else:
        assert set(exp.maps) == {"attention", "rollout"}
        assert exp.maps["rollout"].shape == (2, 64, 64)
        float_maps = explain(load_detector(f"{folder}:onnx", cache=False), batch[:2], ["rollout"]).maps["rollout"]
        agnostic = explain(det, batch[:2], ["rollout"], options=__import__("forensics.explain", fromlist=["x"])
                           .ExplainOptions(class_weighted=False)).maps["rollout"]
        np.testing.assert_allclose(float_maps, agnostic, atol=1e-3)  # same maps as PyTorch, class-agnostic
    assert "gradcam" in exp.skipped and "gradient" in exp.skipped["gradcam"]


class _TinyNet(torch.nn.Module):
    """conv-ReLU, conv-ReLU, a residual Add, pooling and a linear head: four quantizable units."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.head = torch.nn.Conv2d(3, 4, 1), torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.Linear(4, 2)
        with torch.no_grad():  # the first convolution ignores the third channel (see the test)
            self.first.weight.copy_(torch.tensor([1.0, 1.0, 0.0]).view(1, 3, 1, 1).repeat(4, 1, 1, 1))
            self.first.bias.fill_(-1.0)
            self.second.weight.mul_(0.1)
            self.head.weight.copy_(torch.tensor([[0.0] * 4, [10.0] * 4]))
            self.head.bias.copy_(torch.tensor([0.0, -7.0]))  # P(fake) near 0.5 on uniform noise

    def forward(self, x):
        a = torch.relu(self.first(x))
        return self.head((torch.relu(self.second(a)) + a).mean(dim=(2, 3)))


def _tiny_model(path):
    from forensics.detectors.onnx_family import INPUT_NAME

    torch.onnx.export(_TinyNet().eval(), (torch.rand(2, 3, 8, 8),), str(path), input_names=[INPUT_NAME],
                      output_names=["logits"], dynamo=False, opset_version=17,
                      dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}})
    return path


def _float_convs(path) -> set[str]:
    """Convolutions of a QDQ model whose weights are float initializers (no DequantizeLinear)."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    return {n.name for n in graph.node if n.op_type == "Conv" and n.input[1] in weights}


def test_static_search_keeps_only_the_sensitive_node_float(tmp_path):
    """A calibration set whose third channel holds one huge value: per-tensor int8 of the input
    then rounds the other channels' detail away, so the first convolution (which reads the input)
    is the one node that cannot be int8, while the rest, which never see that channel, can."""
    from forensics.detectors.onnx_family import open_session
    from forensics.int8.quantize import _probabilities

    src = _tiny_model(tmp_path / "tiny.onnx")
    units = quantizable_units(src, ["Conv", "MatMul", "Gemm", "Clip", "Relu", "Add"])
    assert [len(u) for u in units] == [2, 2, 1, 1]  # each conv with its ReLU, the Add, the head
    first = units[0][0]
    rng = np.random.default_rng(0)
    calibration = rng.random((24, 3, 8, 8)).astype(np.float32)
    calibration[0, 2, 0, 0] = 500.0
    # 7-bit weights: on a CPU without VNNI (AVX2 only) the head's uint8 x int8 products saturate at full
    # range (measured on an AMD EPYC: the head alone in int8 moved P(fake) by 0.62, and by 0.003 with
    # reduce_range), so only with it is the first convolution the one sensitive node on every CPU.
    info = quantize_onnx(src, tmp_path / "int8.onnx", "static", calibration, max_delta=0.02, temperature=1.5,
                         reduce_range=True)
    assert info["weights"] == "int8 (7-bit range: reduce_range)"
    search = info["mixed_precision_search"]
    sensitivity = search["sensitivity"]
    assert max(sensitivity, key=sensitivity.get) == first and sensitivity[first] > 0.1
    assert info["float_units"] == "1 of 4" and [k["node"] for k in info["kept_float"]] == [first]
    assert info["kept_float"][0]["with"] == units[0][1:] and info["kept_float"][0]["sensitivity"] == sensitivity[first]
    steps = {s["float_nodes"]: s["max_abs_delta"] for s in search["steps"]}
    assert steps[0] > 0.02 >= steps[1]
    assert _float_convs(tmp_path / "int8.onnx") == {first}  # the other convolution is int8
    # The recorded figure is what the written file does, at the temperature asked for.
    p = _probabilities(open_session(tmp_path / "int8.onnx"), calibration, 1.5)[:, 1]
    ref = _probabilities(open_session(src), calibration, 1.5)[:, 1]
    assert np.abs(p - ref).max() == pytest.approx(steps[1], abs=1e-4)
    # A looser bound puts everything in int8; an explicit list keeps exactly those nodes float.
    loose = quantize_onnx(src, tmp_path / "loose.onnx", "static", calibration, max_delta=1.0)
    assert loose["float_units"] == "0 of 4" and _float_convs(tmp_path / "loose.onnx") == set()
    assert loose["weights"] == "int8"  # full range unless asked
    named = quantize_onnx(src, tmp_path / "named.onnx", "static", calibration, keep_float=[units[1][0]])
    assert _float_convs(tmp_path / "named.onnx") == {units[1][0]} and "mixed_precision_search" not in named


def test_onnx_builds_are_listed_and_refused_clearly(model_dirs, tmp_path, monkeypatch):
    from forensics import catalog

    folder = _trained_copy(model_dirs, "timm-vit", tmp_path)
    monkeypatch.setenv("FORENSICS_DETECTORS", str(tmp_path))
    assert "timm-vit:int8" not in catalog.detector_choices()
    with pytest.raises(DetectorError, match="no model_quantized.onnx; make it with"):
        load_detector(f"{folder}:int8", cache=False)
    build_onnx(load_detector(folder, cache=False), [], mode="dynamic")
    assert {"timm-vit", "timm-vit:onnx", "timm-vit:int8"} <= set(catalog.detector_choices())
    assert catalog.target_choices("timm-vit:int8")[:2] == ["fake", "real"]
    (folder / INT8_NAME).write_bytes(b"not an onnx model")
    with pytest.raises(DetectorError, match="onnxruntime cannot load it"):
        load_detector(f"{folder}:int8", cache=False)
    with pytest.raises(DetectorError, match="static int8 quantization needs calibration"):
        build_onnx(load_detector(folder, cache=False), [], mode="static")


def test_audit_side_by_side_with_disagreements_and_tolerance(model_dirs, faces, tmp_path):
    folder = _trained_copy(model_dirs, "patch", tmp_path)
    build_onnx(load_detector(folder, cache=False), faces.crops[:12])
    out = tmp_path / "audit"
    audit = run_audit(str(folder), faces, Tolerance(0.0, 1.0), out, repeats=4)
    c = audit["comparison"]
    assert audit["faces"]["count"] == len(faces)
    assert set(audit["models"]) == {"float", "onnx", "int8"}
    for model in audit["models"].values():
        assert model["file_bytes"] > 0 and model["load_s"] > 0
        assert model["latency"]["batch_1"]["p95_ms"] >= model["latency"]["batch_1"]["p50_ms"] > 0
        assert "batch_8" in model["latency"]
    b1 = {name: m["latency"]["batch_1"]["p50_ms"] for name, m in audit["models"].items()}
    assert audit["speedup"]["int8_vs_onnx_batch_1"] == pytest.approx(b1["onnx"] / b1["int8"])
    rows = {row[0]: row[1:] for row in summary_rows(audit)}  # the table the app, the CLI and the report show
    assert rows["speed-up vs ONNX float, batch 1"] == [f"{b1['onnx'] / b1['float']:.2f}x", "1.00x",
                                                         f"{b1['onnx'] / b1['int8']:.2f}x"]
    assert rows["speed-up vs PyTorch float, batch 1"][2] == f"{b1['float'] / b1['int8']:.2f}x"
    p_float, p_int8 = np.array(audit["scores"]["float"]), np.array(audit["scores"]["int8"])
    assert c["max_abs_delta"] == pytest.approx(np.abs(p_int8 - p_float).max(), abs=1e-4)
    t8 = c["int8_threshold_stored"]  # the build's own threshold, tuned on its calibration faces
    assert c["agreement"] == pytest.approx(np.mean((p_int8 >= t8) == (p_float >= 0.5)))
    assert c["agreement_at_float_threshold"] == pytest.approx(np.mean((p_int8 >= 0.5) == (p_float >= 0.5)))
    assert audit["tolerance"]["passed"]
    # The disagreements are exactly the faces decided differently, each with both models' maps.
    expected = {i for i in range(len(faces)) if (p_int8[i] >= t8) != (p_float[i] >= 0.5)}
    assert {d["index"] for d in audit["disagreements"]} == expected
    for entry in audit["disagreements"][:8]:
        assert (out / entry["image"]).is_file()
    html = (out / "audit.html").read_text()
    assert "Float vs int8" in html and "plotly" in html.lower()
    assert json.loads((out / "audit.json").read_text())["comparison"] == c
    # An impossible tolerance fails, and says why.
    failed = run_audit(str(folder), faces, Tolerance(1.01, 0.0, 0.0), None, repeats=2, maps=False)
    assert not failed["tolerance"]["passed"]
    assert any("agreement" in f for f in failed["tolerance"]["failures"])
    assert any("max |delta P(fake)|" in f for f in failed["tolerance"]["failures"])


def test_audit_refuses_a_detector_without_int8(model_dirs, tmp_path):
    folder = _trained_copy(model_dirs, "timm-vit", tmp_path)
    empty = LabelledFaces([np.zeros((64, 64, 3), np.uint8)] * 2, np.array([0, 1]), ["a", "b"], ["x", "y"])
    with pytest.raises(DetectorError, match="no int8 build"):
        run_audit(str(folder), empty)


def test_cli_quantize_and_audit_fail_loudly(model_dirs, labelled_tree, tmp_path):
    folder = _trained_copy(model_dirs, "patch", tmp_path)
    env = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    run = lambda *args: subprocess.run([sys.executable, "-m", "forensics", *args], cwd=ROOT, env=env,  # noqa: E731
                                       capture_output=True, text=True, timeout=600)
    q = run("quantize", "--detector", str(folder), "--calibration", str(labelled_tree), "--limit", "8", "--reduce-range")
    assert q.returncode == 0, q.stderr
    assert "model_quantized.onnx" in q.stdout and "static int8" in q.stdout
    assert json.loads((folder / "onnx.json").read_text())["int8"]["weights"] == "int8 (7-bit range: reduce_range)"
    (folder / "audit").mkdir()
    (folder / "audit" / "disagreement-99999.png").write_bytes(b"an earlier audit's strip")
    ok = run("audit", "--detector", str(folder), "--data", str(labelled_tree), "--out", str(tmp_path / "a"),
             "--min-agreement", "0", "--max-auc-delta", "1", "--repeats", "2", "--no-maps", "--bundle")
    assert ok.returncode == 0, ok.stderr
    assert "PASSED" in ok.stdout and "latency p50 / p95, batch 1" in ok.stdout
    from forensics.int8.audit import cpu_info

    assert f"measured on: {cpu_info()['model']} ({cpu_info()['int8']})" in ok.stdout  # the CPU its figures hold for
    # --bundle keeps this audit with the detector, and only this audit's disagreement strips
    kept = json.loads((folder / "audit" / "audit.json").read_text())
    strips = {e["image"] for e in kept["disagreements"] if "image" in e}
    assert {p.name for p in (folder / "audit").glob("*.png")} == strips
    main = cli_in_process  # the same command lines in this process (a process costs ~6 s of imports)
    bad = main("audit", "--detector", str(folder), "--data", str(labelled_tree), "--out", str(tmp_path / "b"),
               "--min-agreement", "1.01", "--repeats", "2", "--no-maps")
    assert bad.returncode == 3
    assert "int8 audit FAILED: agreement" in bad.stderr
    # refused in one line each before torch is loaded: no labelled images, a bound out of range, no such detector
    *said, (code, unknown) = refusals_without_torch("forensics.cli", [
        ["audit", "--detector", folder, "--data", tmp_path / "nowhere"],
        ["quantize", "--detector", folder, "--calibration", labelled_tree, "--max-delta", "2"],
        ["quantize", "--detector", folder, "--calibration", tmp_path / "nowhere"],
        ["quantize", "--detector", tmp_path / "no-model", "--calibration", labelled_tree]])
    assert said == [(1, f"error: {tmp_path / 'nowhere'}: not a folder of class subfolders or a labels .csv"),
                    (1, "--max-delta must be between 0 and 1, got 2"),
                    (1, f"error: {tmp_path / 'nowhere'}: not a folder of class subfolders or a labels .csv")]
    assert code == 1 and unknown.startswith(f"error: detector '{tmp_path / 'no-model'}' is not a model folder")
    # the faces are cut as the detector's loader reads its config: a bad crop size is refused before any face is cut
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["crop_size"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    broken = main("audit", "--detector", str(folder), "--data", str(labelled_tree), "--out", str(tmp_path / "c"))
    assert broken.returncode == 1 and not (tmp_path / "c").exists()
    assert broken.stderr.strip().splitlines() == [
        f"error: {folder.name}: config.json: crop_size 5 must be a whole number of pixels from 16 to 4096"]


def test_cpu_info_says_whether_int8_products_can_saturate(tmp_path):
    """An audit records the CPU it measured on: with VNNI onnxruntime's int8 products cannot saturate,
    on an AVX2-only CPU they can (docs/int8.md), so |delta P| and speed may differ between the two."""
    from forensics.int8.audit import cpu_info

    def info(model: str, flags: str) -> dict:
        path = tmp_path / "cpuinfo"
        path.write_text(f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"
                        f"processor\t: 1\nmodel name\t: {model}\nflags\t\t: {flags}\n")
        return cpu_info(path)

    assert info("AMD EPYC", "fpu sse avx avx2 fma") == {
        "model": "AMD EPYC", "int8": "AVX2 without VNNI: uint8 x int8 products can saturate"}
    assert info("Intel Xeon", "avx2 avx512f avx512_vnni amx_int8")["int8"] == "VNNI (amx_int8, avx512_vnni)"
    assert info("Intel Core", "avx2 avx_vnni")["int8"] == "VNNI (avx_vnni)"
    assert info("ARM", "fp asimd")["int8"] == "no x86 int8 dot-product flags"
    assert cpu_info(tmp_path / "missing")["int8"] == "unknown (no /proc/cpuinfo)"
    here = cpu_info()  # this machine's, as the audit records it
    assert here["model"] and here["int8"]
