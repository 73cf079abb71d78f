"""Hub downloads under control: what a repository would cost is read from its file listing before a
byte of it is fetched, only the file kinds the loader reads are asked for, and the cache they land
in keeps to a budget by removing the least recently used model repositories.

Light on purpose (huggingface_hub is imported inside the functions that call it, and torch never):
a detector name is resolved to its folder here (:func:`resolve_model_folder`, which the registry,
:mod:`forensics.detectors`, loads from), so a command line can refuse a bad name before it loads
torch (:func:`check_detector`); the limits are :mod:`forensics.settings`'s.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from forensics import settings
from forensics.catalog import HUB_ID, available_detectors, read_config, split_variant
from forensics.core import DetectorError, HubError

# What the loader reads: configs (config.json, preprocessor_config.json, training record and
# metrics), safetensors, ONNX builds and the card. Never code, never pickles (but see below).
MODEL_FILES = ("config.json", "*.safetensors", "preprocessor_config.json", "README.md", "*.onnx", "*.json")
PICKLED_WEIGHTS = "pytorch_model.bin"
PROBE_TIMEOUT_S = 3.0
LAST_USED = ".forensics-last-used"  # touched in a repo's cache folder each time it resolves


@dataclass(frozen=True)
class DownloadPlan:
    """The files of a repository that would be fetched, and their total size in bytes."""

    repo_id: str
    files: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @property
    def patterns(self) -> list[str]:
        return sorted(self.files)


def hub_endpoint(endpoint: str | None = None) -> str:
    from huggingface_hub import constants

    return (endpoint or constants.ENDPOINT).rstrip("/")


def check_reachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One TCP connect, so an unreachable Hub fails now instead of after the client's retries."""
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        raise HubError(f"cannot reach {endpoint} ({exc.strerror or exc}); check the network, "
                       "or set HF_HUB_OFFLINE=1 to work offline") from None


def reachable(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        check_reachable(endpoint, timeout)
    except HubError:
        return False
    return True


def list_repo_files(repo_id: str, revision: str | None) -> dict[str, int]:
    """Every file of a model repository with its size (LFS files at their real size), from the
    Hub's tree listing: one API call, nothing downloaded."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hub_endpoint())
    return {f.path: int(f.lfs.size if f.lfs is not None else f.size or 0)
            for f in api.list_repo_tree(repo_id, recursive=True, revision=revision) if isinstance(f, RepoFile)}


def plan_download(repo_id: str, revision: str | None, listing: dict[str, int] | None = None) -> DownloadPlan:
    """The model files of ``repo_id`` (see :data:`MODEL_FILES`; ``pytorch_model.bin`` only when
    the repo has no safetensors and the mode allows it), refused with a one-line ``DetectorError``
    when they weigh more than ``settings.hub_max_bytes()``."""
    listing = list_repo_files(repo_id, revision) if listing is None else listing
    files = {path: size for path, size in listing.items()
             if "/" not in path and any(fnmatch.fnmatchcase(path, p) for p in MODEL_FILES)}
    if not any(p.endswith(".safetensors") for p in files) and PICKLED_WEIGHTS in listing \
            and settings.hub_pickles_allowed():
        files[PICKLED_WEIGHTS] = listing[PICKLED_WEIGHTS]
    plan = DownloadPlan(repo_id, files)
    cap = settings.hub_max_bytes()
    if plan.total_bytes > cap:
        raise DetectorError(f"Hub model {repo_id!r}: its model files take {_mb(plan.total_bytes)}, over this "
                            f"server's limit of {_mb(cap)} ({settings.HUB_MAX_MB_ENV}); nothing was downloaded")
    if not files:
        raise DetectorError(f"Hub model {repo_id!r}: no config.json or weights this app can read")
    return plan


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(settings.hub_cache_dir() or constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return cache_root() / f"models--{repo_id.replace('/', '--')}"


def _folder_bytes(folder: Path) -> int:
    total = 0
    for base, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(base) / name
            if not path.is_symlink():  # snapshots link to blobs: count each blob once
                try:
                    total += path.stat().st_size
                except OSError:
                    pass
    return total


def _last_used(folder: Path) -> float:
    marker = folder / LAST_USED
    try:
        return (marker if marker.exists() else folder).stat().st_mtime
    except OSError:
        return 0.0


def mark_used(repo_id: str) -> None:
    """Record that a cached repository was just used (the cache evicts the least recently used)."""
    folder = repo_folder(repo_id)
    if folder.is_dir():
        try:
            (folder / LAST_USED).write_text(f"{time.time():.0f}\n")
        except OSError:
            pass


def make_room(needed: int, keep: str) -> list[str]:
    """Remove least recently used model repositories from the cache until ``needed`` more bytes
    fit its budget (``settings.hub_cache_max_bytes()``; 0: unbounded). ``keep`` (the repo about
    to be fetched) is never removed. Returns the repo folders removed."""
    budget = settings.hub_cache_max_bytes()
    if budget <= 0:
        return []
    if needed > budget:
        raise DetectorError(f"Hub model {keep!r}: its model files take {_mb(needed)}, more than this server's whole "
                            f"Hub cache ({_mb(budget)}, {settings.HUB_CACHE_MB_ENV}); nothing was downloaded")
    root = cache_root()
    if not root.is_dir():
        return []
    kept = repo_folder(keep).name
    repos = [(p, _folder_bytes(p)) for p in root.glob("models--*") if p.is_dir() and p.name != kept]
    used = sum(size for _, size in repos) + (_folder_bytes(root / kept) if (root / kept).is_dir() else 0)
    removed = []
    for folder, size in sorted(repos, key=lambda item: _last_used(item[0])):
        if used + needed <= budget:
            break
        shutil.rmtree(folder, ignore_errors=True)
        used -= size
        removed.append(folder.name)
    return removed


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


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

    if not settings.hub_allowed(repo_id):
        raise DetectorError(f"Hub model {repo_id!r}: not on this server's Hub allowlist ({settings.HUB_ALLOW_ENV})")
    if offline is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    # One quick TCP probe: with the Hub unreachable, go straight to the cache instead of waiting
    # on the client's timeouts.
    endpoint = hub_endpoint()
    local_only = offline or not reachable(endpoint)
    try:
        patterns = list(MODEL_FILES)
        if not local_only:
            # The size is read from the repo's file listing before anything is fetched. Older repos
            # hold only a pickled checkpoint: the plan then names it (private mode only), and it is
            # loaded only if torch.load(weights_only=True) accepts it (tensors, no code).
            plan = plan_download(repo_id, revision)
            make_room(plan.total_bytes, keep=repo_id)
            patterns = plan.patterns
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=patterns, local_files_only=local_only,
                                   etag_timeout=5, cache_dir=settings.hub_cache_dir(), endpoint=endpoint)
        mark_used(repo_id)
    except LocalEntryNotFoundError as exc:
        where = "offline and not in the local cache" if offline else "not reachable and not in the local cache"
        named = f"{repo_id}@{revision}" if revision else repo_id  # the revision asked for is what is missing
        raise DetectorError(f"Hub model {named!r}: {where}") from exc
    except RepositoryNotFoundError as exc:
        raise DetectorError(f"Hub model {repo_id!r}: no such repository (or it is private)") from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise DetectorError(f"Hub model {repo_id!r}: download failed ({' '.join(str(exc).split())[:200]})") from exc
    return Path(folder)


def trained_config(folder: Path, allow_untrained: bool = False) -> dict:
    """The model folder's config.json, refusing a model marked untrained (random weights) unless
    ``allow_untrained``: what loading it would say first, told without torch."""
    config = read_config(folder)
    if not config.get("forensics", {}).get("trained", True) and not allow_untrained:
        raise DetectorError(f"{folder.name}: this model is marked untrained (random weights) and is not a detector")
    return config


def check_detector(name: str, allow_untrained: bool = False) -> str:
    """Every one-line refusal of ``forensics.detectors.load_detector`` that comes before the weights,
    without importing torch (a command line refuses a bad name at once), for a detector name
    (bundled name, folder or Hub id, with ``:onnx``/``:int8``). Returns what to load: the local
    folder it resolved to, with its build, so that a Hub id is not resolved a second time."""
    base, variant = split_variant(str(name))
    folder = resolve_model_folder(base)
    trained_config(folder, allow_untrained)
    return str(folder) if variant is None else f"{folder}:{variant}"
