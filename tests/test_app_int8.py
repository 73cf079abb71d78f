"""The "Float vs int8" tab on a real server: a detector's stored audit, one image through both
models, an audit on an uploaded zip (and a bad zip), through gradio_client and in Chromium."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from forensics.int8.audit import Tolerance, faces_from_files, run_audit
from forensics.detectors import load_detector
from forensics.int8.quantize import build_onnx
from tests.conftest import ROOT, data_path
from tests.served_app import api_client, assert_clean_log, base_env, serve, stop, wait_served
from tests.test_app import _shots


def _labelled_tree(root: Path, n: int = 5) -> Path:
    for label, folder in (("real", "faces/real/utkface"), ("fake", "faces/fake/stylegan2_tpdne")):
        (root / label).mkdir(parents=True)
        for f in sorted(data_path(folder).glob("*.jpg"))[:n]:
            shutil.copy(f, root / label / f.name)
    return root


@pytest.fixture(scope="module")
def int8_zoo(model_dirs, face_detector, tmp_path_factory):
    """A patch-level detector marked trained, with its ONNX builds and a stored audit."""
    root = tmp_path_factory.mktemp("int8zoo")
    folder = shutil.copytree(model_dirs["patch"], root / "q8-patch")
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    tree = _labelled_tree(tmp_path_factory.mktemp("tree"))
    faces = faces_from_files(tree, 64, face_detector=face_detector)
    build_onnx(load_detector(folder, cache=False), faces.crops)
    run_audit(str(folder), faces, Tolerance(0.0, 1.0), folder / "audit", repeats=3)
    return root


@pytest.fixture(scope="module")
def int8_tmp(tmp_path_factory):
    """The int8 server's temporary folder (TMPDIR): where its outputs go is checked."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def int8_server(int8_zoo, int8_tmp, tmp_path_factory):
    url, proc, log = serve(tmp_path_factory.mktemp("log"), base_env(FORENSICS_DETECTORS=str(int8_zoo),
                                                                   FORENSICS_HOME=str(tmp_path_factory.mktemp("home")),
                                                                   TMPDIR=str(int8_tmp)))
    wait_served(url, proc, log)
    yield url
    assert_clean_log(stop(proc, log))


def _tab():
    """The tab, laid out in a page of its own (its handlers answer {component: update})."""
    import gradio as gr

    from ui.int8 import Int8Tab

    with gr.Blocks() as demo:
        return Int8Tab(demo)


def test_stored_audit_is_shown_side_by_side(int8_zoo, monkeypatch):
    from ui import int8 as int8_ui

    monkeypatch.setenv("FORENSICS_DETECTORS", str(int8_zoo))
    assert "q8-patch" in int8_ui.int8_detectors()
    tab = _tab()
    shown = tab.show_stored_audit("q8-patch")
    verdict, table, scatter, latency = shown[tab.verdict], shown[tab.table], shown[tab.scatter], shown[tab.latency]
    assert "int8 audit PASSED" in verdict and "operating point" in verdict
    rows = table.value["data"]
    assert [r[0] for r in rows][:2] == ["ROC-AUC", "accuracy at the float threshold"]
    assert len(rows[0]) == 4  # measure + PyTorch float, ONNX float, ONNX int8
    assert scatter is not None and latency is not None
    assert "not a named" in tab.show_stored_audit("nope")[tab.verdict]


def test_bundled_audit_shows_no_server_paths_and_a_readable_disagreement_grid(tmp_path, monkeypatch):
    """The default's stored audit: its faces' origin names the model, not the server's folder. The
    default's audit, copied with two disagreements of its own (strips written as the audit writes them,
    480x160), shows them: one at a time, large, a thumbnail per face to switch, and the text says so."""
    import json
    import shutil

    import numpy as np
    from PIL import Image

    tab = _tab()
    bundled = Path(__file__).resolve().parents[1] / "assets" / "detectors" / "default"
    verdict = tab.show_stored_audit("default")[tab.verdict]
    assert "validation faces of default" in verdict and "/work/" not in verdict and "assets/" not in verdict
    folder = tmp_path / "detectors" / "q8-copy"
    (folder / "audit").mkdir(parents=True)
    shutil.copy(bundled / "config.json", folder / "config.json")
    audit = json.loads((bundled / "audit" / "audit.json").read_text())
    audit["disagreements"] = []
    for i, (label, p_float, p_int8) in enumerate([(1, 0.61, 0.55), (0, 0.57, 0.60)]):
        Image.fromarray(np.full((160, 480, 3), 40 * (i + 1), np.uint8)).save(folder / "audit" / f"disagreement-{i}.png")
        audit["disagreements"].append({"name": f"face {i}", "label": label, "p_float": p_float, "p_int8": p_int8,
                                       "image": f"disagreement-{i}.png"})
    (folder / "audit" / "audit.json").write_text(json.dumps(audit))
    monkeypatch.setenv("FORENSICS_DETECTORS", str(folder.parent))
    shown = tab.show_stored_audit("q8-copy")
    gallery = shown[tab.gallery]
    assert gallery.visible and len(gallery.value) == 2
    assert "**Below: the 2 face(s) where they disagree**" in shown[tab.verdict]
    assert all("float" in item["caption"] and "int8" in item["caption"] for item in gallery.value)
    assert tab.clear_comparison("patch") == {tab.comparison: "", tab.float_maps: [], tab.int8_maps: [], tab.files: None}


def test_api_compares_one_image_and_audits_an_uploaded_zip(int8_server, int8_tmp, tmp_path):
    from gradio_client import handle_file

    client = api_client(int8_server)
    text, float_maps, int8_maps = client.predict(handle_file(str(data_path("photos/face_recognition/obama.jpg"))),
                                                 "q8-patch", api_name="/compare_int8")
    assert "| 1 |" in text and "float P(fake)" in text
    assert len(float_maps) >= 3  # Grad-CAM, Grad-CAM++ and patch scores for a CNN
    assert len(int8_maps) == 1  # the int8 build shows its patch scores only (no gradients)

    tree = _labelled_tree(tmp_path / "tree", 3)
    archive = tmp_path / "labelled.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in tree.rglob("*.jpg"):
            z.write(f, f"faces/{f.relative_to(tree)}")
    verdict, table, _scatter, _latency, _gallery, files = client.predict(
        handle_file(str(archive)), "q8-patch", 0.8, 0.1, api_name="/audit_int8")
    assert "int8 audit" in verdict and "6 faces" in verdict
    assert "Faces: 6 (3 real, 3 fake), from the uploaded zip labelled.zip." in verdict  # not its temporary folder
    assert {Path(f).name for f in files} == {"audit.json", "audit.html"}
    # written where the server's outputs are removed after FORENSICS_TEMP_TTL_S, not left in its temporary folder
    assert not list(int8_tmp.glob("audit-out-*"))
    assert [p.name for p in (int8_tmp / "forensics-reports").glob("audit-out-*/audit.json")] == ["audit.json"]
    # a zip without labelled images: named as the zip, not as the server's temporary folder it was unpacked in
    unlabelled = tmp_path / "unlabelled.zip"
    with zipfile.ZipFile(unlabelled, "w") as z:
        z.write(data_path("photos/face_recognition/obama.jpg"), "photos/obama.jpg")
    with pytest.raises(Exception) as refused:
        client.predict(handle_file(str(unlabelled)), "q8-patch", 0.99, 0.01, api_name="/audit_int8")
    assert "the zip unlabelled.zip" in str(refused.value) and "/tmp" not in str(refused.value)
    # no face: said, not an empty table
    no_face, float_maps, int8_maps = client.predict(handle_file(str(ROOT / "assets" / "examples" / "chelsea-no-face.jpg")),
                                                    "q8-patch", api_name="/compare_int8")
    assert no_face.startswith("**No face found: no verdict** from either model") and not float_maps and not int8_maps

    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip at all")
    with pytest.raises(Exception, match="bad.zip: not a readable zip"):
        client.predict(handle_file(str(bad)), "q8-patch", 0.99, 0.01, api_name="/audit_int8")


@pytest.mark.browser
def test_browser_float_vs_int8_tab(int8_server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(int8_server, timeout=60_000)
    page.get_by_role("tab", name="Float vs int8").click()
    expect(page.get_by_text("int8 audit PASSED").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("latency p50 / p95, batch 1").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    page.locator("input[type=file]").last.set_input_files(str(data_path("photos/face_recognition/obama.jpg")))
    page.get_by_role("button", name="Compare", exact=True).click()
    expect(page.get_by_text("int8 P(fake)").first).to_be_visible(timeout=90_000)
    page.screenshot(path=str(_shots(tmp_path) / "int8-tab.png"), full_page=True)
    page.close()
