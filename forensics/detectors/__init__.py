"""Detector registry: find a model folder (bundled name, local path or Hub id) and load it.

Families register themselves (``@register_family``) in their own modules, imported here. A
detector folder says whether it was trained (``forensics.trained``); untrained models are only
loaded when a caller asks for them explicitly (tests, benchmarks), never offered to a user.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from forensics.catalog import HUB_ID, available_detectors, detector_dirs, split_variant  # noqa: F401  (re-exported)
from forensics.core import DetectorError
from forensics.detectors import onnx_family, timm_family, transformers_family  # noqa: F401  (register them)
from forensics.detectors.base import (
    FAMILIES,
    VARIANTS,
    Detector,
    DetectorInfo,
    fake_label_indices,
    family_for,
    read_config,
    register_family,
)
from forensics.hub_download import MODEL_FILES

__all__ = [
    "Detector",
    "DetectorInfo",
    "FAMILIES",
    "available_detectors",
    "fake_label_indices",
    "load_detector",
    "register_family",
    "resolve_model_folder",
]

def resolve_model_folder(name_or_path: str | Path, offline: bool | None = None) -> Path:
    """A bundled name, a local folder, or a Hub id (``org/name[@revision]``) -> a local folder.

    Hub models are fetched with ``snapshot_download`` (only configs, safetensors, ONNX and the
    card) into the usual cache; offline, only what is cached resolves, and quickly.
    """
    text = str(name_or_path).strip()
    if not text:
        raise DetectorError("no detector given")
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    named = available_detectors()
    if text in named:
        return named[text]
    match = HUB_ID.match(text)
    if match and not path.exists() and not text.startswith((".", "/")):
        return _download(match.group(1), match.group(2), offline)
    choices = ", ".join(named) or "none bundled"
    raise DetectorError(f"detector {text!r} is not a model folder, a bundled name ({choices}) or a Hub id")


def _download(repo_id: str, revision: str | None, offline: bool | None) -> Path:
    """Fetch a Hub model under the server's policy (``forensics.settings``): only an allowed repo,
    only the model files, only when its file listing says they fit the size cap and the cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    from forensics import hub_download, settings

    if not settings.hub_allowed(repo_id):
        raise DetectorError(f"Hub model {repo_id!r}: not on this server's Hub allowlist ({settings.HUB_ALLOW_ENV})")
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    # One quick TCP probe: with the Hub unreachable, go straight to the cache instead of waiting
    # on the client's timeouts.
    endpoint = hub_download.hub_endpoint()
    local_only = offline or not hub_download.reachable(endpoint)
    try:
        patterns = list(MODEL_FILES)
        if not local_only:
            # The size is read from the repo's file listing before anything is fetched. Older repos
            # hold only a pickled checkpoint: the plan then names it (private mode only), and it is
            # loaded only if torch.load(weights_only=True) accepts it (tensors, no code).
            plan = hub_download.plan_download(repo_id, revision)
            hub_download.make_room(plan.total_bytes, keep=repo_id)
            patterns = plan.patterns
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=local_only,
                                   etag_timeout=5, cache_dir=settings.hub_cache_dir(), endpoint=endpoint)
        hub_download.mark_used(repo_id)
    except LocalEntryNotFoundError as exc:
        where = "offline and not in the local cache" if offline else "not reachable and not in the local cache"
        raise DetectorError(f"Hub model {repo_id!r}: {where}") from exc
    except RepositoryNotFoundError as exc:
        raise DetectorError(f"Hub model {repo_id!r}: no such repository (or it is private)") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise DetectorError(f"Hub model {repo_id!r}: download failed ({' '.join(str(exc).split())[:200]})") from exc
    return Path(folder)


_CACHE: dict[tuple[str, bool], Detector] = {}
_LOCK = threading.Lock()


def load_detector(name_or_path: str | Path, allow_untrained: bool = False, cache: bool = True) -> Detector:
    """Load (once, then from cache) the detector a name, folder or Hub id points at.

    ``<name>:onnx`` and ``<name>:int8`` load the folder's ONNX float and int8 builds."""
    base, variant = split_variant(str(name_or_path))
    folder = resolve_model_folder(base)
    key = (str(folder), allow_untrained) if variant is None else (f"{folder}:{variant}", allow_untrained)
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        config = read_config(folder)
        if not config.get("forensics", {}).get("trained", True) and not allow_untrained:
            raise DetectorError(f"{folder.name}: this model is marked untrained (random weights) and is not a detector")
        if variant is None:
            detector = family_for(folder, config).load(folder, config)
        else:  # split_variant knows only registered builds
            detector = VARIANTS[variant](folder, variant)
        if cache:
            _CACHE[key] = detector
        return detector
