"""Memory that holds: what a server keeps of each analysis between a visitor's events.

Once the answer is drawn (verdict, boxes, gallery), the app needs of an analysis only the face
crops and maps its later events show or recompute (another face, other explanation settings), and
the one decoded frame its report shows (reports are built on request). ``hold`` therefore drops the
other frames of the session's list, keeps the crops and maps of at most
``MAX_HELD_FACES`` faces (the most suspicious; the same faces the maps are made for) and stores the
maps at half precision. Across all sessions the held analyses share one budget
(``settings.session_memory_bytes()``): past it, the oldest are released in place, and a later event
on one says to analyse again. A visitor's session holds one analysis per tab (each replaces the
last), and Gradio drops a closed session's state after its time to live.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import weakref
from collections import OrderedDict
from typing import Any, Collection

import numpy as np

from forensics import settings

MAX_HELD_FACES = 64  # the Analyzer's default max_explained: faces beyond it have no maps to show
RELEASED = "released to free the server's memory: run the analysis again"


def _glibc():
    """The C library when it is glibc (Linux), else None: the tuning below is glibc's."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


_LIBC = _glibc()
M_ARENA_MAX = -8  # glibc's mallopt parameter


TRIM_AFTER_IDLE_S = 30.0  # an analysis's freed memory goes back to the system after this long without another


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """One malloc arena for the whole server. glibc gives each thread that allocates its own arena
    (up to 8 per core); a web server runs handlers on dozens of pool threads, and each arena keeps
    the high-water mark of the decoded frames it once held: measured with bench/soak.py, resident
    memory grew without levelling off. With one arena, memory one handler thread freed is reused by
    the next, whichever thread runs it, so it need not be faulted in again (docs/deployment.md).
    Call before the server starts its threads."""
    return bool(_LIBC is not None and _LIBC.mallopt(M_ARENA_MAX, int(arenas)))


def return_freed_memory() -> None:
    """Hand memory freed by the last analysis back to the system (glibc keeps it otherwise)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class IdleTrim:
    """Freed memory handed back once the server is idle, not after every analysis. Memory handed
    back must be faulted in again, page by page, by the next analysis: in a served app a 1080p
    video after six photos paid 0.8-1.1 s of system CPU for it when every analysis trimmed, 0.25 s
    when the last ones' memory was still there (docs/deployment.md). Each ``arm`` restarts the
    countdown; an idle server still hands everything back."""

    def __init__(self, delay_s: float = TRIM_AFTER_IDLE_S) -> None:
        self.delay_s = delay_s
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def arm(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.delay_s, self._trim)
            self._timer.daemon = True
            self._timer.start()

    @property
    def pending(self) -> bool:
        """Whether a trim is waiting for its countdown."""
        with self._lock:
            return self._timer is not None

    def _trim(self) -> None:
        with self._lock:
            if self._timer is threading.current_thread():  # not one armed since this one fired
                self._timer = None
        return_freed_memory()


IDLE_TRIM = IdleTrim()


def result_bytes(result: Any, frames: Collection[Any] = ()) -> int:
    """The arrays an analysis holds (its kept ``frames``, crops, maps), in bytes."""
    total = sum(int(getattr(frame, "nbytes", 0)) for frame in frames)
    for face in result.faces:
        total += int(face.crop.nbytes) if face.crop is not None else 0
        total += sum(int(m.nbytes) for m in face.heatmaps.values())
    return total


def slim(result: Any, frames: list | None = None, max_faces: int = MAX_HELD_FACES,
         keep_frames: Collection[int] = ()) -> None:
    """Keep only what later events use (see the module docstring); in place. ``frames``: the
    analysis's decoded frames (kept apart from the result); those at positions ``keep_frames`` stay
    (the frame a report, built on request, shows), the others become ``None`` so that positions stay
    as they were, and a list left with no frame is emptied."""
    if frames is not None:
        kept = [frame if n in keep_frames else None for n, frame in enumerate(frames)]
        frames[:] = kept if any(frame is not None for frame in kept) else []
    ranked = sorted(range(len(result.faces)), key=lambda i: -result.faces[i].fake_probability)
    for rank, i in enumerate(ranked):
        face = result.faces[i]
        if rank >= max_faces:
            face.crop, face.heatmaps = None, {}
        else:
            face.heatmaps = {m: np.asarray(h, dtype=np.float16) for m, h in face.heatmaps.items()}


def release(result: Any, frames: list | None = None) -> None:
    """Free everything an analysis holds (its ``frames`` too); its numbers (verdict, faces, tracks) stay."""
    if frames is not None:
        frames.clear()
    for face in result.faces:
        face.crop, face.heatmaps = None, {}


def is_released(result: Any) -> bool:
    return bool(result.faces) and all(face.crop is None for face in result.faces)


class HeldResults:
    """Every analysis a session holds, oldest first, weakly (Gradio's state owns them): their sizes
    add up to at most the budget; ``hold`` releases the oldest to stay within it."""

    def __init__(self) -> None:
        # id(result) -> (the result, weakly; its size; its frame list, which dies with the entry)
        self._held: OrderedDict[int, tuple[weakref.ref, int, list | None]] = OrderedDict()
        self._lock = threading.Lock()

    def hold(self, result: Any, frames: list | None = None, keep_frames: Collection[int] = ()) -> None:
        """Slim ``result`` and its ``frames`` (kept apart from it, see :func:`slim`) and count them."""
        slim(result, frames, keep_frames=keep_frames)
        size = result_bytes(result, frames or ())
        budget = settings.session_memory_bytes()
        with self._lock:
            self._held[id(result)] = (weakref.ref(result), size, frames)
            self._held.move_to_end(id(result))
            self._forget_dead()
            while len(self._held) > 1 and self.total_bytes() > budget:  # the newest is always kept
                key, (ref, _, held_frames) = next(iter(self._held.items()))
                del self._held[key]
                held = ref()
                if held is not None:
                    release(held, held_frames)
        IDLE_TRIM.arm()

    def total_bytes(self) -> int:
        return sum(size for ref, size, _ in self._held.values() if ref() is not None)

    def __len__(self) -> int:
        return sum(ref() is not None for ref, _, _ in self._held.values())

    def _forget_dead(self) -> None:
        for key in [k for k, (ref, _, _) in self._held.items() if ref() is None]:
            del self._held[key]


HELD = HeldResults()
