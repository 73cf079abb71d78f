"""Model cards: the README.md beside a model's weights, in the Hub's format (YAML front matter).
A trained model's card is written from what was actually run: the training record (data, splits,
settings, history) and the evaluation's metrics.json. Figures are copied from those files, never typed in."""

from __future__ import annotations

from pathlib import Path

from forensics.detectors.base import CARD_NAME, FULL_FACE_PX, DetectorInfo, read_config
from forensics.core import read_json, write_atomic
from forensics.faces import FRAMING_TEXT

VIDEO_SOURCE = "talking-head video"  # the source of frames of training videos
#: The per-source row of blending on whole talking-head clips held out of training.
HELD_OUT_BLENDING = f"{VIDEO_SOURCE}, held out reals vs their SBI fakes"


def holdout_sources(config: dict) -> list[str]:
    """The sources kept out of training: the config's, and the held-out videos' (whole videos)."""
    held = list(config.get("holdout_sources") or [])
    if config.get("video_frames") and config.get("holdout_videos"):
        held.append(f"{VIDEO_SOURCE}, held out")
    return held


# The optional augmentations of training.augment.draw_params (the config's shares), as the card names them.
AUGMENT_OPTIONS = (("h264_prob", "H.264 at CRF 23-40 in place of JPEG"),
                   ("lowres_prob", "small faces (shrunk to 64-192 px and compressed there)"),
                   ("smooth_prob", "edge-preserving smoothing"), ("sharpen_prob", "sharpening"),
                   ("noise_prob", "sensor-like noise"),
                   ("grade_prob", "colour grading (saturation, tone curve, gamma, colour cast)"))


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def card_text(record: dict, metrics: dict | None) -> str:
    config = record.get("config", {})
    lines = ["## Training data and splits", ""]
    framing = config.get("face_framing", "box")
    framing = "" if framing == "box" else f"{FRAMING_TEXT[framing]}, "
    lines.append(f"- Data: `{config.get('data')}`; faces cropped with the inference MTCNN crop ({framing}margin "
                 f"{config.get('face_margin', 0.3)}, the model folder's: inference crops the same way, "
                 f"smaller where the box would leave the image), cached at 256 px; crops over "
                 f"{config.get('max_padding')} padding left out.")
    lines.append(f"- Self-blended pseudo-fakes (Shiohara & Yamasaki 2022) from real faces: {config.get('sbi')}.")
    if config.get("sbi") and config.get("swap"):
        lines.append(f"- Of those pseudo-fakes, {config['swap']:g} are cross-identity face swaps made here (another "
                     "person's face warped on by the 5 landmarks, colour-matched, alpha or Poisson blended).")
    if config.get("sbi") and config.get("expression_swap"):
        lines.append(f"- Of the pseudo-fakes of talking-head frames, {config['expression_swap']:g} are expression swaps "
                     "made here (reenactment-like: the same person's face from another frame of the clip, warped on "
                     "by the landmarks, colour-matched and blended through a lower-, inner- or full-face mask).")
    if config.get("sbi") and config.get("ae_swap"):
        lines.append(f"- Of the rest, {config['ae_swap']:g} are autoencoder swaps made here (a shared encoder and one "
                     "decoder per training talking-head person redraw the face).")
    held = holdout_sources(config)
    if "sources_seen" in record:  # a source the config holds out but the data lacks was never held out of anything
        held = [h for h in held if h in record["sources_seen"] or h.endswith(", held out")]
    lines.append(f"- Held out of training entirely (unseen sources): {', '.join(held) or 'none'}; "
                 f"of the other sources {config.get('val_fraction')} of the faces, grouped, for validation.")
    for split, counts in record.get("counts", {}).items():
        lines.append(f"- {split}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if record.get("validation_note"):
        lines.append(f"- Note on validation: {record['validation_note']}")
    if config.get("init_from"):
        what = f": {record['init_from_note']}" if record.get("init_from_note") else ""
        lines.append(f"- Started from the weights of `{config['init_from']}`{what} (trained further, not from ImageNet alone).")
    if record.get("federated"):
        lines += ["", *federated_card_text(record["federated"])]
    lines += ["", "## Preprocessing", "",
              f"- RGB face crop resized to {config.get('image_size')} px, ImageNet mean/std normalisation.",
              "- Training augmentation, identical for a real face and its pseudo-fake: flip, crop 90-100%, brightness/"
              "contrast, blur, down-and-up resizing, JPEG quality 30-100, a video-codec-like pass"
              + "".join(f"; {text} ({_pct(config.get(key))} of the faces)" for key, text in AUGMENT_OPTIONS
                        if config.get(key)) + ".",
              "", "## Training command", "", "```", record.get("command") or f"python -m training train --model {config.get('model')}  # every setting: training.json", "```",
              "", f"Settings: model {config.get('model')}, {_schedule(record)}, batch {config.get('batch_size')} "
              f"real faces (+ as many pseudo-fakes), AdamW lr {config.get('lr')} (pretrained trunk x0.3), weight decay "
              f"{config.get('weight_decay')}, cosine schedule with warm-up, gradient clipping 1.0, precision "
              f"{config.get('precision')}, seed {config.get('seed')}. Best epoch: {record.get('best_epoch', {}).get('epoch')}."]
    lines += calibration_lines(record.get("calibration"), metrics)
    best_val = (record.get("best_epoch") or {}).get("val")
    if not metrics and best_val:  # not evaluated yet: what the training loop measured on its validation split
        lines += ["", "## Validation during training (best epoch)", "",
                  f"On {best_val.get('n')} validation images: held-back faces and their pseudo-fakes, the split the epoch was chosen on ("
                  "`python -m training evaluate` measures more):", "",
                  *_table(["measure", "value"], [(name, _fmt(best_val.get(key))) for name, key in
                                                 (("ROC-AUC", "roc_auc"), ("F1", "f1"), ("accuracy", "accuracy"))])]
    if metrics:
        s = metrics["summary"]
        lines += ["", "## Measured (python -m training evaluate)", "",
                  f"Validation faces: {metrics['validation_faces']} held-out faces, each real one with a self-blended "
                  f"fake ({metrics['evaluated_images']} images). \"SBI\" rows: held-back faces of the training sources "
                  "with their pseudo-fakes; the held-out sources' rows (never trained on, never used to choose an "
                  "epoch) are what says how it generalises."
                  + (f" Weights measured: SHA-256 `{metrics['detector']['weights_sha256'][:16]}`..."
                     if metrics.get("detector", {}).get("weights_sha256") else ""), "",
                  *_table(["measure", "value"], [
                      ("ROC-AUC", _fmt(s["roc_auc"])),
                      ("ROC-AUC, held-out sources only (never trained on)", _fmt(s.get("source_heldout_auc"))),
                      ("ROC-AUC after JPEG 50 (all / held-out sources only)",
                       f"{_fmt(s.get('jpeg_50_auc'))} / {_fmt(s.get('source_heldout_jpeg_50_auc'))}"),
                      (f"F1 at threshold {s['threshold']}", _fmt(s["f1"])), ("accuracy", _fmt(s["accuracy"])),
                      ("threshold tuned on validation (best F1)", _fmt(s["tuned_threshold"])),
                      ("ECE (calibration)", _fmt(metrics["calibration"]["ece"]))]), "",
                  "Per source:", "",
                  *_table(["subset", "ROC-AUC", "F1"], [(name, _fmt(m["roc_auc"]) if m else "n/a", _fmt(m["f1"]) if m else "n/a")
                                                      for name, m in metrics["per_source"].items()])]
        rob = metrics["robustness_auc"]
        lines += ["", f"Robustness (ROC-AUC on {rob.get('images')} validation images, half real and half fake, "
                  "re-scored after each transform):", "",
                  *_table(["transform", "ROC-AUC"], [(k, _fmt(v)) for k, v in rob.items() if k != "images"])]
        lines += codec_calibration_lines(metrics)
        per_source = metrics.get("robustness_auc_per_source") or {}
        if per_source:
            cases = [k for k in rob if k not in ("images", "clean")]
            lines += ["", "Robustness per source (ROC-AUC on the same images, split as in the per-source table):", "",
                      *_table(["subset", "images", "clean", *cases],
                              [(name, curve.get("images"), *(_fmt(curve.get(c)) for c in ["clean", *cases]))
                               for name, curve in per_source.items()])]
        adv = metrics.get("adversarial_accuracy") or {}
        if adv:
            lines += ["", f"Accuracy under attack ({adv['images']} validation images; budgets in pixel units of 0..255):", "",
                      *_table(["attack", "accuracy"], [(k, _fmt(v)) for k, v in adv.items() if k != "images"])]
        lines += real_face_lines(metrics.get("real_faces"))
        lines += real_photo_lines(metrics.get("real_photos"))
        lines += app_crop_path_lines(metrics.get("app_crop_path"))
        lines += expression_swap_lines(metrics.get("expression_swaps"))
        kinds = metrics.get("fake_kinds") or {}
        if kinds:
            lines += ["", "Which kind of fake (the likeliest fake class, as the app names it), on the validation fakes "
                      "(each validation real's self-blend counts as manipulated):", "",
                      *_table(["kind", "faces", *(f"called {k}" for k in kinds), "called its own kind"],
                              [(kind, m["faces"], *(m["called"].get(k, 0) for k in kinds), _fmt(m["accuracy"]))
                               for kind, m in kinds.items()])]
        videos = metrics.get("videos") or {}
        if videos.get("videos"):
            lines += ["", f"Videos never trained on (full analysis, {videos.get('frames', 16)} frames; far too few for a "
                      "stable AUC):", "",
                      *_table(["video", "label", "P(fake)"],
                              [(v["video"], v["label"], _fmt(v["fake_probability"])) for v in videos["videos"]])]
            lines += ["", f"Video-level ROC-AUC over these videos: {_fmt(videos.get('roc_auc'))}."]
            validated = [v["video"] for v in videos["videos"] if v.get("validation_clip")]
            if validated:
                lines[-1] += (f" {', '.join(validated)}: training clips that the grouped split held back whole for "
                              "validation (none of their frames trained; the epoch and the calibration were chosen "
                              "on their faces).")
            app = videos.get("app_sampling")
            if app and all(v.get("app") for v in videos["videos"]):
                lines += ["", f"The app's sampling ({app['frames']} frames; a close call sampled again at about twice "
                          f"the frames, up to {app['look_again']} times): video-level ROC-AUC {_fmt(app.get('roc_auc'))}.",
                          "", *_table(["video", "P(fake)", "frames it rested on"],
                                      [(v["video"], _fmt(v["app"]["fake_probability"]),
                                        f"{v['app']['frames']}{' (looked again)' if v['app']['looked_again'] else ''}")
                                       for v in videos["videos"]])]
            if videos.get("aggregation_auc"):
                lines += ["", "Video-level ROC-AUC by how a face's frame scores are pooled (the same pass):", "",
                          *_table(["pooling", "ROC-AUC"], [(k, _fmt(v)) for k, v in videos["aggregation_auc"].items()])]
    lines += leave_one_out_lines(record.get("leave_one_out"), config.get("holdout_videos"), metrics,
                                 record.get("leave_one_out_note"))
    generators = sorted(k.split("/", 1)[1] for k in (record.get("counts", {}).get("train") or {})
                        if k.startswith("fake/"))
    if generators:
        scope = (f"Screening faces for signs of blending (face swaps, face reenactment with pasted regions) and "
                 f"for generated faces of the generators it was trained on ({', '.join(generators)}). Faces of "
                 "other generators may pass as real: see the leave-one-generator-out figures.")
    else:
        scope = ("Screening faces for signs of blending (face swaps, face reenactment with pasted regions). "
                 "Fully synthetic faces (GAN/diffusion) leave no blending seam: see the held-out StyleGAN2 row.")
    lines += ["", "## Intended use and limits", "",
              scope + " Scores move with compression, resizing and unusual faces. A probability is evidence, not proof."]
    return "\n".join(lines)


def leave_one_out_lines(runs: list[dict] | None, own_videos: list[str] | None = None,
                        metrics: dict | None = None, note: str | None = None) -> list[str]:
    """The same recipe with one source held out whole, or other talking-head clips held out
    (``training.json``'s ``leave_one_out``, written by ``scripts/leave-one-out.py`` from those runs'
    own metrics): how the recipe does on a kind of fake it never saw, and how much its video figure
    rests on which clips are held out, beside this model's figures. ``own_videos`` are this model's
    held-out clips (file names or stems): a run that held out others says which. With such runs
    (folds), the spread and mean over the folds, this model's own (from ``metrics``) included. ``note``
    (the record's ``leave_one_out_note``) says where the runs' recipe and this model's differ, when they do
    (a model trained further than the runs were): it heads the section, and "the same recipe" is not claimed."""
    if not runs:
        return []
    own = {Path(v).stem for v in own_videos or []}
    same = "the recipe of the runs below" if note else "the same recipe"
    lines = ["", f"## Leave-one-out runs ({same}, one generator or other talking-head clips held out whole)", "",
             *([note, ""] if note else []),
             "| run | held out | subset | ROC-AUC | after JPEG 50 |", "|---|---|---|---|---|"]
    for run in runs:
        videos = run.get("held_out_videos") or []
        held = list(run.get("held_out") or [])
        if videos and set(videos) != own:
            # a model that trains on every clip has none of its own for the run to replace
            held.append(f"talking-head clips {', '.join(videos)}" + (" (instead of this model's)" if own else ""))
        held_text = ", ".join(held) or "n/a"
        for subset, figures in run["subsets"].items():
            lines.append(f"| `{run['config']}` | {held_text} | {subset} | {_fmt(figures.get('roc_auc'))} "
                         f"| {_fmt(figures.get('jpeg_50'))} |")
        if run.get("video_auc") is not None:
            count = f" ({run['videos']} videos)" if run.get("videos") else ""
            lines.append(f"| `{run['config']}` | {held_text} | videos never trained on{count}, video level "
                         f"| {_fmt(run['video_auc'])} | |")
    if any(r.get("video_auc") is not None and not r.get("videos") for r in runs) and any(r.get("videos") for r in runs):
        lines += ["", "A video figure without a count was measured before the clips a run's grouped split held back "
                  "for validation counted as unseen: it is over the clips held out by name and the other labelled "
                  "videos only."]
    lines += fold_summary_lines(runs, own, None if note else metrics, same_recipe=not note)
    lines += ["", "Reproduce: `python -m training train --config CONFIG` (after the stage its `init_from` names, "
              "trained the same way) then `python -m training evaluate "
              "--detector runs/<name>/model --data ../shared/data/labels.csv`."]
    return lines


def fold_summary_lines(runs: list[dict], own: set[str], metrics: dict | None, same_recipe: bool = True) -> list[str]:
    """Blending on held-out clips and the video-level AUC over the folds: the runs that held out
    other talking-head clips and no generator, and this model itself when it held clips out and its
    evaluation measured them. One fold's figure is one draw of which clips are held out; the spread
    says how much that draw moves it, the mean is the recipe's estimate. Nothing under two folds."""
    folds = [((r.get("subsets", {}).get(HELD_OUT_BLENDING) or {}).get("roc_auc"), r.get("video_auc"))
             for r in runs if r.get("held_out_videos") and not r.get("held_out") and set(r["held_out_videos"]) != own]
    runs_counted = len(folds)
    mine = (((metrics or {}).get("per_source") or {}).get(HELD_OUT_BLENDING) or {}).get("roc_auc"), \
        ((metrics or {}).get("videos") or {}).get("roc_auc")
    counts_mine = bool(own) and any(v is not None for v in mine)
    if counts_mine:
        folds.insert(0, mine)
    if len(folds) < 2:  # with no run, the model alone is one fold
        return []

    def spread(values: list) -> str:
        values = [v for v in values if v is not None]
        if len(values) < 2:
            return "n/a" if not values else f"{values[0]:.3f} (one fold)"
        return f"{min(values):.3f}-{max(values):.3f} (mean {sum(values) / len(values):.3f} over {len(values)} folds)"

    who = ("this model and " if counts_mine else "") + \
        f"{runs_counted} run{'s' if runs_counted > 1 else ''} above"
    who += ", the same recipe" if same_recipe else ""
    return ["", f"Over the folds of held-out talking-head clips ({who}): blending on the held-out "
            f"clips {spread([b for b, _ in folds])}, video-level ROC-AUC {spread([v for _, v in folds])}. Each fold is "
            "one draw of which clips are held out; the mean is the recipe's estimate, the spread what the draw moves."]


REAL_PHOTO_SMALL_FACE = 128  # training.false_alarms.SMALL_FACE: the size the real-photo probe splits faces at


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def false_alarm_rows(name: str, result: dict) -> list[tuple]:
    """Table rows (what, photos (with faces), faces, faces flagged, photos flagged, small faces flagged
    (count), larger faces flagged (count), mean P(fake)) for ``all`` and each subfolder."""
    rows = []
    for group, s in [("all", result["all"]), *result["groups"].items()]:
        mean = "n/a" if s["mean_p_fake"] is None else f"{s['mean_p_fake']:.3f}"
        rows.append((f"{name} ({group})" if name else group, f"{s['photos']} ({s['photos_with_faces']})", s["faces"],
                     _pct(s["faces_flagged"]), _pct(s["photos_flagged"]),
                     f"{_pct(s['faces_small_flagged'])} ({s['faces_small']})",
                     f"{_pct(s['faces_large_flagged'])} ({s['faces_large']})", mean))
    return rows


FALSE_ALARM_HEADER = ["photos (with faces)", "faces", "faces flagged", "photos flagged",
                      f"faces under {REAL_PHOTO_SMALL_FACE} px flagged", f"faces of {REAL_PHOTO_SMALL_FACE} px or more flagged", "mean P(fake)"]


def real_photo_lines(photos: dict | None) -> list[str]:
    """The card's false alarms on real photographs of another kind than its training reals
    (``metrics.json``'s ``real_photos``, from ``training.false_alarms``)."""
    if not photos or not photos.get("all"):
        return []
    left = (f" ({photos['trained_left_out']} photos below it that the model trained on left out)"
            if photos.get("trained_left_out") else "")
    return ["", f"Real photographs never trained on (`{photos.get('folder')}`{left}, through the app's analysis): the "
            f"share of faces and of photos over the threshold ({_fmt(photos.get('threshold'))}), by folder; every such "
            "call is a false alarm:", "",
            *_table(["photos", *FALSE_ALARM_HEADER], false_alarm_rows("", photos))]


def app_crop_path_lines(path: dict | None) -> list[str]:
    """The card's comparison of the two ways a face reaches the model (``metrics.json``'s
    ``app_crop_path``, from ``training.evaluate.app_crop_path``)."""
    if not path or not path.get("scored"):
        return []
    app = ("the app's crop (" + ("fitted inside the image, " if path.get("fit_inside") else "")
           + (f"cut at {path['crop_size']} px, then resized)" if path.get("crop_size") else "cut straight to the input size)"))
    rows = [(label, _fmt(path[key].get("roc_auc")), _pct(path[key].get("reals_flagged")),
             _fmt(path[key].get("mean_p_fake_reals"))) for key, label in
            (("cache", "crop cache (fitted inside the image, cut at 256 px, then resized): the figures above"),
             ("app", app))]
    return ["", f"The same validation faces cut the app's way ({path['scored']} of {path['faces']} found again in their "
            f"source images: {path['reals']} real, {path['generated']} generated; their self-blends are made from the "
            f"cache's crops only): P(fake) moves by {_fmt(path['mean_abs_delta'])} on average, {_fmt(path['p95_abs_delta'])} "
            f"at the 95th percentile and {_fmt(path['max_abs_delta'])} at most:", "",
            *_table(["crop", "generated vs real ROC-AUC", "reals flagged", "mean P(fake) of reals"], rows)]


def real_face_lines(real: dict | None) -> list[str]:
    """The card's rows on real faces never trained on: false alarms by group and after camera processing."""
    if not real or not real.get("processing"):
        return []
    t = _fmt(real.get("threshold"))
    lines = ["", f"Real validation faces (never trained on): mean P(fake) and the share flagged at the threshold ({t}), "
             "after what phone cameras and photographers do to a face and what re-encoding does after; a detector that reads "
             "smooth skin or a studio look as generated flags smoothed or colour-graded reals:", "",
             *_table(["real faces", "faces", "mean P(fake)", "flagged"],
                     [(k, v["faces"], _fmt(v["mean_p_fake"]), _fmt(v["flagged"])) for k, v in real["processing"].items()])]
    if real.get("groups"):
        lines += ["", "By group (where the source's file names say):", "",
                  *_table(["group", "faces", "mean P(fake)", "flagged"],
                          [(k, v["faces"], _fmt(v["mean_p_fake"]), _fmt(v["flagged"])) for k, v in real["groups"].items()])]
    lines += unseen_real_face_lines(real.get("unseen"))
    return lines


def unseen_real_face_lines(unseen: dict | None) -> list[str]:
    """The card's false alarms by group on the real faces its run never drew (``max_per_source`` left them
    out), with each share's 95% interval."""
    if not unseen or not unseen.get("all"):
        return []

    def flagged(v: dict) -> str:
        low, high = v["flagged_ci95"]
        return f"{_fmt(v['flagged'])} ({_fmt(low)}-{_fmt(high)})"

    drawn = ", ".join(f"{source} {n}" for source, n in unseen.get("sources", {}).items())
    rows = [("all", unseen["all"]), *unseen["groups"].items()]
    return ["", f"By group, on many more faces: the {unseen['faces']} real faces ({drawn}) that the run's per-source cap left "
            "out of every split (never trained on, validated on or calibrated on), at the same threshold; the share "
            "flagged with its 95% interval (Wilson):", "",
            *_table(["group", "faces", "mean P(fake)", "flagged (95% interval)"],
                    [(k, v["faces"], _fmt(v["mean_p_fake"]), flagged(v)) for k, v in rows])]


def expression_swap_lines(swaps: dict | None) -> list[str]:
    """The card's rows on reenactment-like fakes of validation clip frames (``training.evaluate.expression_swaps``)."""
    if not swaps or not swaps.get("swaps"):
        return []
    rows = []
    for name, label in (("clean", "as stored"), ("h264_crf_32", "H.264 (CRF 32), real and fake alike")):
        m = swaps.get(name) or {}
        rows.append((label, _fmt(m.get("roc_auc")), *(_fmt(m.get(f"roc_auc_{o}")) for o in ("lower", "inner", "full")),
                     f"{_fmt(m.get('mean_p_real'))} / {_fmt(m.get('mean_p_fake'))}", _fmt(m.get("flagged"))))
    return ["", f"Expression swaps (reenactment-like fakes made here: each of {swaps['swaps']} validation frames of "
            f"{swaps.get('clips')} talking-head clips with the same person's face from another frame of its clip "
            "blended in through a lower-, inner- or full-face mask, colour-matched, no other rendering difference):", "",
            *_table(["frames", "ROC-AUC", "lower face", "inner face", "full face", "mean P(fake): reals / swaps",
                     "swaps flagged"], rows)]


def calibration_lines(cal: dict | None, metrics: dict | None = None) -> list[str]:
    """The card's calibration section: what was fitted, and ECE with the reliability curve before and after."""
    if not cal:
        return []
    bias = f", logit bias {max(cal['logit_bias'], key=abs):+.3f} on the fake class" if cal.get("logit_bias") else ""
    names = {"temperature": "temperature scaling", "platt": "Platt scaling"}
    chosen = (" Chosen by 5-fold cross-validated ECE: "
              + ", ".join(f"{names.get(m, m)} {v:.3f}" for m, v in cal["cross_validated_ece"].items()) + "."
              if cal.get("cross_validated_ece") else "")
    lines = ["", "## Calibration", "",
             f"{cal['method'][0].upper() + cal['method'][1:]} on {cal['faces']} validation faces (the model-selection "
             f"split): temperature {cal['temperature']:.3f}{bias}, decision threshold {cal['threshold']:.3f} (best "
             f"balanced accuracy), stored in `config.json` and applied by every build (PyTorch, ONNX, int8).{chosen}", "",
             "| | ECE | accuracy |", "|---|---|---|",
             f"| before (temperature 1, threshold 0.5) | {_fmt(cal['before']['ece'])} | "
             f"{_fmt(cal['before'].get('accuracy_at_0.5'))} |",
             f"| after | {_fmt(cal['after']['ece'])} | {_fmt(cal['after'].get('accuracy_at_threshold'))} |", "",
             *threshold_spread_lines((metrics or {}).get("threshold_spread")),
             "Reliability (mean predicted P(fake) -> observed share of fakes, per occupied bin of 0.1):", ""]
    for when in ("before", "after"):
        pairs = zip(cal[when]["mean_predicted"], cal[when]["fraction_positive"])
        lines.append(f"- {when}: " + ", ".join(f"{p:.2f}->{f:.2f}" for p, f in pairs))
    return lines + small_face_lines(cal.get("small_faces"), metrics)


def threshold_spread_lines(spread: dict | None) -> list[str]:
    """How far the threshold's rule moves on the same faces drawn again (``training.calibrate.threshold_spread``)."""
    if not spread:
        return []
    return [f"Where the threshold falls is itself uncertain: on {spread['resamples']} bootstrap resamples of the "
            f"{spread['faces']} evaluated validation images (calibration kept), the same rule puts it between "
            f"{spread['p05']:.3f} and {spread['p95']:.3f} (5th-95th percentile; median {spread['median']:.3f}; on all of "
            f"them once, {spread['threshold']:.3f}). A score that close to the threshold is a call the validation faces "
            "cannot settle.", ""]


CODEC_CASE_NAMES = {"clean": "as stored", "jpeg_50": "JPEG quality 50", "h264_crf_32": "H.264 CRF 32",
                    "h264_crf_40": "H.264 CRF 40"}


def codec_calibration_lines(metrics: dict | None) -> list[str]:
    """ECE on the evaluation's robustness images as stored and after re-encoding (no temperature
    for compression is fitted: the app cannot tell how a face was compressed)."""
    codec = (metrics or {}).get("codec_calibration") or {}
    if not codec:
        return []
    images = ((metrics or {}).get("robustness_auc") or {}).get("images")
    return ["", f"After re-encoding (ECE on the {images} robustness images, half real and half fake, as stored and "
            "re-encoded: another mix of classes than the validation faces', so its first row is not the ECE above; "
            "any calibration was fitted on faces as stored, and nothing here knows how an input was compressed):", "",
            *_table(["images", "ECE"], [(name, _fmt(codec[k])) for k, name in CODEC_CASE_NAMES.items() if k in codec])]


def small_face_lines(small: dict | None, metrics: dict | None = None) -> list[str]:
    """Small faces' own temperatures (fitted on the calibration faces made small) and, when the
    evaluation measured it, ECE on validation faces that small with and without them."""
    if not small or not small.get("sides"):
        return []
    measured = (metrics or {}).get("small_face_calibration") or {}
    lines = ["", f"Small faces: the same faces shrunk to each side and compressed there (H.264, CRF {small.get('crf')}) "
             "are scored less sharply, by one more temperature per side (at least 1; between sides linear in log "
             f"side, none from {FULL_FACE_PX} px up), stored in `config.json` (`size_temperatures`) and applied to every face "
             "by its crop's side in the source:", "",
             *_table(["face side (px)", "temperature", "ROC-AUC (calibration faces)", "ECE before / after (calibration faces)",
                      "ECE without / with (validation faces)"],
                     [(side, f"{v['temperature']:.2f}", _fmt(v.get("roc_auc")),
                       f"{_fmt(v['ece_before'])} / {_fmt(v['ece_after'])}",
                       f"{_fmt(measured[side]['ece_without'])} / {_fmt(measured[side]['ece_with'])}"
                       if side in measured else "not measured")
                      for side, v in sorted(small["sides"].items(), key=lambda kv: int(kv[0]))])]
    return lines


def _table(header: list[str], rows: list) -> list[str]:
    """A Markdown table's lines: the header, its rule and one line per row (cells as given)."""
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *(f"| {' | '.join(map(str, r))} |" for r in rows)]


def _schedule(record: dict) -> str:
    fed, config = record.get("federated"), record.get("config", {})
    if fed:
        return f"{fed['rounds']} federated round(s) of {fed['local_steps']} local steps per client"
    return f"epochs {config.get('epochs')}"


def federated_card_text(fed: dict) -> list[str]:
    """The federated record: strategy, clients and what each held, and the server's AUC per round."""
    lines = ["## Federated training", "",
             f"- {fed['framework']}, {fed['strategy']} (mu {fed['mu']}), {fed['rounds']} round(s) of {fed['local_steps']} "
             f"local steps per client; fraction of clients per round {fed['fraction_train']}, at least "
             f"{fed['min_train_clients']}; partition by {fed['partition']}"
             + (f" (alpha {fed['dirichlet_alpha']})" if "dirichlet_alpha" in fed else "") + ".",
             "- Each client made its pseudo-fakes from its own reals; no face left a client, only weights.",
             "- Server evaluation faces: " + ", ".join(f"{k} {v}" for k, v in fed["server_evaluation"].items())]
    for client in fed["clients"]:
        held = client["train"]
        held = ", ".join(f"{k} {v}" for k, v in held.items()) if isinstance(held, dict) else held
        lines.append(f"- Client `{client['name']}`: {held}")
    rounds = [r for r in fed.get("rounds_history", []) if r.get("server")]
    if rounds:
        lines += ["", "| round | server AUC | F1 | clients ok / failed | mean client loss |", "|---|---|---|---|---|"]
        for r in rounds:
            losses = [c["train-loss"] for c in r.get("clients") or []]
            lines.append(f"| {r['round']} | {_fmt(r['server'].get('auc'))} | {_fmt(r['server'].get('f1'))} | "
                         f"{r.get('clients_ok', '-')} / {r.get('clients_failed', '-')} | "
                         f"{_fmt(sum(losses) / len(losses)) if losses else 'n/a'} |")
    return lines


def write_card(model_dir: str | Path, metrics: dict | None = None) -> Path:
    model_dir = Path(model_dir)
    record = read_json(model_dir / "training.json") or {}
    config = read_config(model_dir)
    info = DetectorInfo.from_dict({**config.get("forensics", {}), "labels": config.get("label_names", [])})
    return write_model_card(model_dir, info, config.get("architecture", "?"), "timm", extra=card_text(record, metrics))


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
    return write_atomic(folder / CARD_NAME, "\n".join(lines) + "\n")
