"""How this server is deployed: public (any visitor) or private (an analyst on their own machine),
and the limits that follow. The policy lives here; the app, the API and the CLI only call it.

Public mode is the default whenever the app listens on a non-loopback address, is shared through a
Gradio link, or runs as a Hugging Face Space (``SPACE_ID`` is set); ``FORENSICS_MODE=public`` or
``private`` forces either. In public mode a visitor chooses only among *registered* detectors: the
named ones (bundled, in ``$FORENSICS_DETECTORS`` roots, made by this server's jobs), their ONNX
builds, and the folders and Hub ids the operator lists in ``FORENSICS_MODELS``. Every other name,
a path that exists or not, ``/etc`` or ``../x``, gets the one same message (:data:`NOT_AVAILABLE`),
so the answers tell a visitor nothing about the server's disk. In private mode local folders and
Hub ids work as they always did.

Every setting is an environment variable read when it is used (a test or an operator can change
it without restarting the library); docs/deployment.md lists them all.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from forensics.core import DEFAULT_LIMITS, MediaLimits, ZipLimits
from forensics.catalog import HUB_ID, ONNX_BUILDS, available_detectors, onnx_builds, split_variant
from forensics.core import DetectorError

MODE_ENV = "FORENSICS_MODE"
MODELS_ENV = "FORENSICS_MODELS"
HUB_ALLOW_ENV = "FORENSICS_HUB_ALLOW"
HUB_MAX_MB_ENV = "FORENSICS_HUB_MAX_MB"
HUB_CACHE_ENV = "FORENSICS_HUB_CACHE"
HUB_CACHE_MB_ENV = "FORENSICS_HUB_CACHE_MB"
MAX_IMAGE_MB_ENV = "FORENSICS_MAX_IMAGE_MB"
MAX_VIDEO_MB_ENV = "FORENSICS_MAX_VIDEO_MB"
TEMP_TTL_ENV = "FORENSICS_TEMP_TTL_S"
SESSION_MB_ENV = "FORENSICS_SESSION_MEMORY_MB"
LOOK_AGAIN_ENV = "FORENSICS_LOOK_AGAIN"

PUBLIC, PRIVATE = "public", "private"
# One message for every name a visitor may not load: it must not depend on the name.
NOT_AVAILABLE = "this detector is not available on this server; choose one from the detector list"

DEFAULT_HUB_MAX_MB = 1024.0
DEFAULT_PUBLIC_HUB_CACHE_MB = 4096.0
DEFAULT_TEMP_TTL_S = 3600
DEFAULT_SESSION_MEMORY_MB = 512.0

_served: dict[str, object] = {"host": None, "share": False}


def serving(host: str | None, share: bool = False) -> None:
    """Record where the app listens (``app.py`` calls it before launching): the mode follows it."""
    _served["host"], _served["share"] = host, bool(share)


def is_loopback(host: str | None) -> bool:
    """Whether only this machine can reach ``host`` (``0.0.0.0`` and real addresses cannot be)."""
    if not host:
        return True
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: assume it is reachable from outside


def mode() -> str:
    """``"public"`` or ``"private"`` (see the module docstring). An unknown ``FORENSICS_MODE``
    value counts as public: a typo must not open the server."""
    forced = os.environ.get(MODE_ENV, "").strip().lower()
    if forced:
        return PRIVATE if forced == PRIVATE else PUBLIC
    if os.environ.get("SPACE_ID") or _served["share"] or not is_loopback(_served["host"]):
        return PUBLIC
    return PRIVATE


def is_public() -> bool:
    return mode() == PUBLIC


def _env_list(name: str) -> list[str]:
    """A list setting: entries separated by commas or newlines (``os.pathsep`` too for folders)."""
    text = os.environ.get(name, "")
    for sep in ("\n", os.pathsep):
        text = text.replace(sep, ",")
    return [item.strip() for item in text.split(",") if item.strip()]


def _env_mb(name: str, default: float) -> float:
    """A size in MB from the environment; a bad value is a one-line error naming the variable."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise DetectorError(f"{name}={text!r} is not a number of megabytes") from None
    if value < 0:
        raise DetectorError(f"{name}={text!r} must not be negative")
    return value


def _is_hub_id(text: str) -> bool:
    return bool(HUB_ID.match(text)) and not text.startswith((".", "/", "~")) and not Path(text).exists()


# -- what a visitor may load -----------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """One detector a visitor may choose: the name shown and what the loader is given."""

    name: str
    source: str  # a folder or a Hub id (``org/name[@revision]``)
    shown: bool = True  # offered in the detector boxes (a folder's path as written is not)


def operator_models() -> list[Registered]:
    """The folders and Hub ids listed in ``FORENSICS_MODELS``: a folder is offered by its folder
    name (and by the path as written), a Hub id by itself."""
    found = []
    for entry in _env_list(MODELS_ENV):
        folder = Path(entry).expanduser()
        if folder.is_dir():
            found.append(Registered(folder.name, str(folder.resolve())))
            found.append(Registered(entry, str(folder.resolve()), shown=False))
        elif _is_hub_id(entry):
            found.append(Registered(entry, entry))
    return found


def registered_detectors() -> dict[str, str]:
    """Visitor-facing name -> what to load, for public mode (names first come, first kept)."""
    found: dict[str, str] = {name: str(folder) for name, folder in available_detectors().items()}
    for name in onnx_builds():
        base, variant = split_variant(name)
        found.setdefault(name, f"{found[base]}:{variant}")
    for entry in operator_models():
        found.setdefault(entry.name, entry.source)
    return found


def operator_choices() -> list[str]:
    """The operator's listed models as the detector boxes offer them (folder names, Hub ids)."""
    named = available_detectors()
    return list(dict.fromkeys(e.name for e in operator_models() if e.shown and e.name not in named))


def allowed_detector(name: str) -> str:
    """What the loader is given for a name a caller typed or chose.

    Private mode: the name itself. Public mode: the registered source, or ``DetectorError``
    with :data:`NOT_AVAILABLE`, the same for every unregistered name. ``<name>:onnx`` and
    ``<name>:int8`` of a registered folder are registered too."""
    text = str(name or "").strip()
    if not is_public():
        return text
    registered = registered_detectors()
    if text in registered:
        return registered[text]
    base, variant = split_variant(text)
    if variant is not None and base in registered and ":" not in registered[base].rpartition("/")[2]:
        folder = Path(registered[base])
        # a folder without that build is as unavailable as any other name (and its path stays the server's);
        # a Hub id's build is known only once downloaded (the loader then says so without a path)
        if not folder.is_dir() or (folder / ONNX_BUILDS[variant]).is_file():
            return f"{registered[base]}:{variant}"
    raise DetectorError(NOT_AVAILABLE)


def visible_detector(name: str | None) -> str | None:
    """``allowed_detector`` for read-only uses (the labels a detector box offers): None when refused."""
    try:
        return allowed_detector(name or "") if name else None
    except DetectorError:
        return None


# -- Hub downloads --------------------------------------------------------------------------------


def hub_allowed(repo_id: str) -> bool:
    """Whether ``repo_id`` may be downloaded. ``FORENSICS_HUB_ALLOW``: Hub ids or patterns
    (``org/*``), or ``any``. Its default is ``any`` in private mode; in public mode ``any`` is
    ignored and the Hub ids registered in ``FORENSICS_MODELS`` are always allowed."""
    allow = _env_list(HUB_ALLOW_ENV)
    public = is_public()
    if not public and (not allow or "any" in (a.lower() for a in allow)):
        return True
    if public:
        allow = [a for a in allow if a.lower() != "any"]
        allow += [e.source.partition("@")[0] for e in operator_models() if e.name == e.source]
    return any(fnmatch.fnmatchcase(repo_id, pattern.partition("@")[0]) for pattern in allow)


def hub_max_bytes() -> int:
    """The most a Hub repository's model files may weigh, checked before downloading (``FORENSICS_HUB_MAX_MB``)."""
    return int(_env_mb(HUB_MAX_MB_ENV, DEFAULT_HUB_MAX_MB) * 2**20)


def hub_cache_dir() -> str | None:
    """Where Hub models are cached: ``FORENSICS_HUB_CACHE``, else huggingface_hub's own cache."""
    folder = os.environ.get(HUB_CACHE_ENV, "").strip()
    return str(Path(folder).expanduser()) if folder else None


def hub_cache_max_bytes() -> int:
    """The cache's budget (``FORENSICS_HUB_CACHE_MB``; 0: unbounded, the private default; 4096 in
    public mode). Least recently used model repositories are removed to make room."""
    default = DEFAULT_PUBLIC_HUB_CACHE_MB if is_public() else 0.0
    return int(_env_mb(HUB_CACHE_MB_ENV, default) * 2**20)


def hub_pickles_allowed() -> bool:
    """Whether a repo without safetensors may have its ``pytorch_model.bin`` fetched (private mode
    only; it is loaded only if ``torch.load(weights_only=True)`` accepts it)."""
    return not is_public()


# -- uploads and memory ---------------------------------------------------------------------------


def media_limits() -> MediaLimits:
    """The upload limits the app, the API and the CLI all apply (``FORENSICS_MAX_IMAGE_MB``,
    ``FORENSICS_MAX_VIDEO_MB``; defaults: ``MediaLimits``'s 50 and 500 MB)."""
    image = _env_mb(MAX_IMAGE_MB_ENV, DEFAULT_LIMITS.max_image_bytes / 2**20)
    video = _env_mb(MAX_VIDEO_MB_ENV, DEFAULT_LIMITS.max_video_bytes / 2**20)
    return MediaLimits(**{**DEFAULT_LIMITS.__dict__, "max_image_bytes": int(image * 2**20),
                          "max_video_bytes": int(video * 2**20)})


def max_upload_bytes() -> int:
    """What Gradio accepts at the door (``launch(max_file_size=...)``), so anything bigger is
    refused before it is written to disk: the larger media limit. In private mode the door also
    admits the Train tab's dataset zips (``FORENSICS_ZIP_MAX_BYTES``); in public mode a visitor
    cannot start a job, so a zip gets no more room than a video."""
    limits = media_limits()
    door = max(limits.max_image_bytes, limits.max_video_bytes)
    return door if is_public() else max(door, ZipLimits.from_env().max_total_bytes)


def temp_file_ttl_s() -> int:
    """How long uploads, outputs and reports stay on disk (``FORENSICS_TEMP_TTL_S``, default an hour)."""
    text = os.environ.get(TEMP_TTL_ENV, "").strip()
    if not text:
        return DEFAULT_TEMP_TTL_S
    if not text.isdigit():
        raise DetectorError(f"{TEMP_TTL_ENV}={text!r} must be a whole number of seconds (at least 60)")
    return max(60, int(text))


def look_again_passes() -> int:
    """The most times the app and its API sample a video again after a close call or no face (``FORENSICS_LOOK_AGAIN``,
    default 2: up to about 4x the frames asked for; 0 never): each pass costs about as much as the
    frames it adds, so an operator can bound what one upload may cost. A bad value is a one-line error."""
    text = os.environ.get(LOOK_AGAIN_ENV, "").strip()
    if not text:
        return 2
    if not text.isdigit() or int(text) > 4:
        raise DetectorError(f"{LOOK_AGAIN_ENV}={text!r} must be a whole number from 0 to 4")
    return int(text)


def session_memory_bytes() -> int:
    """The memory all held analyses may take together (``FORENSICS_SESSION_MEMORY_MB``); beyond
    it the oldest are released."""
    return int(_env_mb(SESSION_MB_ENV, DEFAULT_SESSION_MEMORY_MB) * 2**20)


def check() -> None:
    """Every setting read once, so that a bad value stops the server at its start, in one line
    (``ForensicsError``), rather than failing each visitor's request later."""
    media_limits(), max_upload_bytes(), temp_file_ttl_s(), look_again_passes(), session_memory_bytes()
    hub_max_bytes(), hub_cache_max_bytes()
    listed = {e.source for e in operator_models()} | {e.name for e in operator_models()}
    for entry in _env_list(MODELS_ENV):
        if entry not in listed:
            raise DetectorError(f"{MODELS_ENV}: {entry!r} is neither a model folder nor a Hub id")


def describe() -> str:
    """One line for the server log: the mode and what it allows."""
    if is_public():  # "any" counts for nothing there; the operator's listed Hub ids always do
        listed = [a for a in _env_list(HUB_ALLOW_ENV) if a.lower() != "any"]
        listed += [e.source.partition("@")[0] for e in operator_models() if e.name == e.source]
        hub = ", ".join(dict.fromkeys(listed)) or "none"
    else:
        hub = "any" if hub_allowed("any/any") else ", ".join(_env_list(HUB_ALLOW_ENV))
    return (f"mode {mode()}: detectors {'registered only' if is_public() else 'any name, folder or Hub id'}; "
            f"Hub downloads {hub} (at most {hub_max_bytes() / 2**20:.0f} MB each); uploads at most "
            f"{max_upload_bytes() / 2**20:.0f} MB; videos with a close call or no face sampled again at most {look_again_passes()} times")
