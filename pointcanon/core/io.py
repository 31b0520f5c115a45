"""File input and output shared by every module (and image_seg): atomic writes (a temporary file in the
same folder, then ``os.replace``: never half-written), loading that never runs code, checks of output
locations, and the training checkpoint format."""
from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

FORMAT = "pointcanon-checkpoint-v1"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file to ``path``; nothing is left on failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def not_a_file(path, what: str = "file") -> str:
    """The message for ``path`` given where a file is expected and not found: a folder, or missing."""
    return f"{what} {path} is a folder, not a file" if Path(path).is_dir() else f"{what} {path} does not exist"


def check_output_dir(path, flag: str = "--out") -> Path:
    """Check up front (before any work) that ``path`` can be a folder to write into: not an existing file,
    and its nearest existing ancestor a writable folder. Raises ``ValueError`` naming ``flag``."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{flag} {path} is an existing file, not a folder")
    base = _nearest_existing(path)
    try:  # a real probe: permission bits say nothing for root or on a read-only file system
        if not base.is_dir():
            raise NotADirectoryError(base)
        tempfile.TemporaryFile(dir=base).close()
    except OSError:
        raise ValueError(f"{flag} {path}: cannot write into {base} (not a writable folder)") from None
    return path


def check_output_file(path, flag: str = "--out", *, overwrite: bool = True) -> Path:
    """Check up front that a file can be written at ``path``: not an existing folder, its folder
    creatable / writable and, with ``overwrite=False``, no existing file (or link) there. Raises
    ``ValueError`` naming ``flag`` (and ``--overwrite`` when the file exists)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a folder; give a file name")
    if not overwrite and (path.exists() or path.is_symlink()):
        raise ValueError(f"{flag} {path} exists; pass --overwrite to replace it, or choose another file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"{flag} {path} exists and is not writable")
    check_output_dir(path.parent, flag)
    return path


def write_json(path, obj: Any) -> Path:
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
    return atomic_write(path, write)


def save_checkpoint(path, state: dict) -> Path:
    """Save ``state`` (model / optimizer / scheduler states, config, counters, RNG states) atomically."""
    return atomic_write(path, lambda tmp: torch.save({"format": FORMAT, **state}, tmp))


def _refused_global(e: Exception) -> str | None:
    """What torch's weights-only unpickler refused (a global it would have to import and call), or
    ``None`` when the error is not a refusal (a truncated or garbage file)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    named = [ln for ln in lines if "Unsupported global" in ln or "GLOBAL" in ln]
    return named[0].replace("WeightsUnpickler error: ", "")[:300] if named else None


def safe_load(path, what: str = "file", map_location="cpu"):
    """``torch.load`` that never runs code from the file (``weights_only=True``: only tensors and plain
    containers — dict, list, tuple, str, numbers, bool, None — are rebuilt). A file that asks for anything
    else (a callable, a class) is refused with ``ValueError`` before it is called; a truncated or garbage
    file gives ``ValueError`` too. ``what`` names the file in the message ("checkpoint", "points file")."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if _refused_global(e):
            raise ValueError(f"refusing to load {what} {path}: it holds objects other than tensors and plain "
                             f"containers, which could run code when loaded ({_refused_global(e)})") from None
        detail = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "weights_only" not in ln
                  and "WeightsUnpickler error" not in ln and "documentation" not in ln]
        raise ValueError(f"{what} {path} is corrupt or unreadable ({(detail or ['not a torch file'])[0][:200]})") from None
    except Exception as e:  # torch raises several types for truncated / garbage files
        raise ValueError(f"{what} {path} is corrupt or unreadable ({type(e).__name__}: {str(e)[:300]})") from None


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` with :func:`safe_load` (never runs code from
    the file); a missing, truncated, foreign or code-carrying file raises ``ValueError`` naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(not_a_file(path, "checkpoint"))
    state = safe_load(path, "checkpoint", map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not a pointcanon checkpoint (expected format {FORMAT!r})")
    return state
