"""The Hugging Face Hub: push a model folder to a repo with a generated model card, and pull one.

Pulling is ``forensics.detectors.resolve_model_folder`` (``snapshot_download`` into the usual
cache; configs, safetensors, ONNX and the card only, a pickled ``pytorch_model.bin`` only when a
repo has no safetensors, and then loaded only if ``weights_only=True`` accepts it).

Pushing sends only what is safe to load and useful to read: ``config.json``, ``*.safetensors``,
``preprocessor_config.json``, the training record and metrics, ONNX builds, and a ``README.md``
generated here from the record and the metrics (metrics, data, training settings, intended use and
limits). Pickled weights are never uploaded, and a folder that has only those is refused. The repo
is created private unless asked otherwise. The token is huggingface_hub's own: ``HF_TOKEN`` or the
login cache of ``hf auth login`` (``huggingface-cli login``), never a file inside this repository.
Offline, or with the Hub unreachable, a push fails in a second, before the client's retries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from forensics import catalog
from forensics.core import DetectorError, HubError, read_json
from forensics.hub_download import check_reachable, hub_endpoint

ROOT = Path(__file__).resolve().parents[1]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
UPLOADED = ("config.json", "preprocessor_config.json", "training.json", "metrics.json")
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def offline() -> bool:
    """Whether huggingface_hub is in offline mode (``HF_HUB_OFFLINE``), as it reads it or as set now."""
    from huggingface_hub import constants

    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return flag or bool(constants.HF_HUB_OFFLINE)


def hub_token() -> str:
    """huggingface_hub's token (``HF_TOKEN``, else the login cache), refusing a token file that
    lies inside this repository (it would be one ``git add`` away from being published)."""
    from huggingface_hub import constants, get_token

    token = get_token()
    if not token:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (huggingface-cli login)")
    if not os.environ.get("HF_TOKEN") and Path(constants.HF_TOKEN_PATH).resolve().is_relative_to(ROOT):
        raise HubError(f"the Hugging Face token file {constants.HF_TOKEN_PATH} is inside the repository; "
                       "keep it outside (the default ~/.cache/huggingface) or use HF_TOKEN")
    return token


def model_folder(name_or_path: str | Path) -> Path:
    """A named detector (bundled, $FORENSICS_DETECTORS, a job's model) or a local model folder."""
    text = str(name_or_path).strip()
    named = catalog.available_detectors()
    if text in named:
        return named[text]
    folder = Path(text).expanduser()
    if not folder.is_dir():
        raise HubError(f"{text!r} is neither a named detector nor a model folder")
    return folder.resolve()


def files_to_push(folder: Path) -> list[Path]:
    """The files a push sends (see the module docstring); refuses a folder without safetensors."""
    try:
        catalog.read_config(folder)
    except DetectorError as exc:
        raise HubError(str(exc)) from None
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in PICKLED)
        if pickled:
            raise HubError(f"{folder.name}: refused: only pickled weights ({', '.join(pickled)}); only safetensors "
                           "are pushed (convert with safetensors.torch.save_file)")
        raise HubError(f"{folder.name}: no model.safetensors to push")
    extra = [folder / name for name in UPLOADED if (folder / name).is_file()]
    return extra + weights + sorted(folder.glob("*.onnx"))


def push_model(model: str | Path, repo_id: str, private: bool = True, endpoint: str | None = None,
               commit_message: str | None = None) -> dict:
    """Create ``repo_id`` (private by default; an existing repo is kept) and upload the model's
    safetensors, configs, record and a generated card in one commit. Returns the repo and commit URLs."""
    repo_id = (repo_id or "").strip()
    if not REPO_ID.match(repo_id):
        raise HubError(f"repo id {repo_id!r} must look like 'user-or-org/model-name'")
    folder = model_folder(model)
    files = files_to_push(folder)
    if offline():
        raise HubError("offline (HF_HUB_OFFLINE=1): pushing to the Hub needs the network; unset HF_HUB_OFFLINE")
    token = hub_token()
    endpoint = hub_endpoint(endpoint)
    check_reachable(endpoint)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory(prefix="forensics-push-") as tmp:
        stage = Path(tmp)
        for path in files:
            _link_or_copy(path, stage / path.name)
        (stage / catalog.CARD_NAME).write_text(hub_card(folder), encoding="utf-8")
        api = HfApi(endpoint=endpoint, token=token)
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            commit = api.upload_folder(repo_id=repo_id, folder_path=stage, repo_type="model",
                                       commit_message=commit_message or f"Upload {folder.name} from Deepfake Forensics Studio")
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", "?")
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HubError(f"Hub push to {repo_id} failed (HTTP {status}): {first[:300]}") from None
        except (OSError, ValueError) as exc:
            raise HubError(f"Hub push to {repo_id} failed: {' '.join(str(exc).split())[:300]}") from None
        return {"repo_id": repo_id, "repo_url": str(url), "commit_url": getattr(commit, "commit_url", None),
                "private": bool(private), "files": sorted(p.name for p in stage.iterdir())}


def hub_card(folder: Path) -> str:
    """The model card a push publishes: the model's facts, then, from its training record and
    metrics, the data, the training settings, the measured figures, and intended use and limits."""
    from forensics.detectors.base import DetectorInfo
    from forensics.detectors.card import card_text, write_model_card

    config = catalog.read_config(folder)
    record = read_json(folder / "training.json") or {}
    metrics = read_json(folder / "metrics.json")
    transformers = "model_type" in config
    labels = catalog.config_labels(config)
    forensic = {"name": folder.name, **config.get("forensics", {})}
    info = DetectorInfo.from_dict({**forensic, "labels": labels})
    architecture = (config.get("architectures") or [config.get("model_type")])[0] if transformers else config.get("architecture")
    if record:
        text, limits_heading, limits = card_text(record, metrics).partition("## Intended use and limits")
        extra = text + _settings_table(record.get("config", {})) + "\n\n" + limits_heading + limits
    else:
        extra = _card_without_record(folder, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        path = write_model_card(Path(tmp), info, architecture or "?", "transformers" if transformers else "timm",
                                extra=extra)
        return path.read_text(encoding="utf-8")


def _settings_table(config: dict) -> str:
    keys = ("model", "init_from", "teacher", "data", "labels", "sbi", "epochs", "max_steps", "batch_size", "lr",
            "weight_decay", "image_size", "holdout_sources", "val_fraction", "adversarial", "precision", "seed")
    rows = [f"| `{k}` | {json.dumps(config[k]) if not isinstance(config[k], str) else config[k]} |"
            for k in keys if config.get(k) not in (None, [], "")]
    return "\n".join(["## Training settings", "", "| setting | value |", "|---|---|", *rows])


def _card_without_record(folder: Path, metrics: dict | None) -> str:
    lines = ["## Training data and settings", "",
             "Not recorded with this model folder (it has no training.json): the data and settings it was trained "
             "with are unknown here. See the original author's card below, if any."]
    if metrics and "summary" in metrics:
        s = metrics["summary"]
        lines += ["", "## Measured (python -m training evaluate)", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in s.items()]
    else:
        lines += ["", "## Metrics", "", "Not measured yet: run `python -m training evaluate --detector <folder>`."]
    lines += ["", "## Intended use and limits", "",
              "Screening face crops for signs of manipulation, as evidence for a person to weigh. A detector only knows "
              "the manipulations it was trained on; compression, resizing and unusual faces move its scores. "
              "A probability is evidence, not proof."]
    original = catalog.read_card(folder)
    if original:
        lines += ["", "## Original card", "", re.sub(r"^#\s", "### ", original, flags=re.MULTILINE).strip()]
    return "\n".join(lines)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
