"""Results on disk: atomic writes (never a partial file) and the metadata saved beside every
long run (versions, hardware, wall time, and the commit when the caller knows it)."""

from __future__ import annotations

import gzip
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import torch

__all__ = ["atomic_write", "atomic_write_json", "json_gz_bytes", "atomic_write_json_gz",
           "atomic_save", "run_metadata", "source_commit"]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it to ``path``: readers
    see the old file or the new one, never a partial one; a failed write leaves no trace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, obj: object, compact: bool = False) -> None:
    """JSON to ``path``, atomically (:func:`atomic_write`); ``compact``: no whitespace."""
    def write(tmp):
        with open(tmp, "w") as f:
            if compact:
                json.dump(obj, f, separators=(",", ":"))
            else:
                json.dump(obj, f, indent=1)

    atomic_write(path, write)


def json_gz_bytes(obj: object) -> bytes:
    """``obj`` as compact JSON (no whitespace), gzip-compressed at level 9 with a header that
    holds no date (``mtime=0``) and no file name: the same content always gives the same bytes,
    so a file rewritten unchanged is no change in git. Compact JSON of the unit files shrinks
    about 2.6 times this way."""
    buf = BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(json.dumps(obj, separators=(",", ":")).encode("utf-8"))
    return buf.getvalue()


def atomic_write_json_gz(path: str | os.PathLike, obj: object) -> None:
    """:func:`json_gz_bytes` of ``obj`` to ``path``, atomically (:func:`atomic_write`)."""
    data = json_gz_bytes(obj)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_save(path: str | os.PathLike, obj: object) -> None:
    """``torch.save(obj)`` to ``path``, atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def source_commit(root: str | os.PathLike | None = None) -> str | None:
    """The commit checked out where the package lives (``None`` outside a git checkout), read
    from the ``.git`` files (worktrees and packed refs included), without running ``git``."""
    try:
        git = Path(root or Path(__file__).resolve().parent.parent) / ".git"
        if git.is_file():                       # a worktree: ".git" says where its gitdir is
            git = (git.parent / git.read_text().split("gitdir:", 1)[1].strip()).resolve()
        common = git / "commondir"
        common = (git / common.read_text().strip()).resolve() if common.exists() else git
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[4:].strip()
        for d in (git, common):
            if (d / ref).exists():
                return (d / ref).read_text().strip()
        packed = common / "packed-refs"
        for line in packed.read_text().splitlines() if packed.exists() else ():
            if line.endswith(" " + ref):
                return line.split()[0]
    except (OSError, IndexError):
        pass
    return None


#: the commit checked out when this process imported the library: the code that runs, even
#: if the checkout moves on while a long run goes on
_LOADED_COMMIT = source_commit()


def run_metadata(wall_time: float | None = None, commit: str | None = None) -> dict:
    """Commit, versions, hardware, date (and ``wall_time`` when given), saved beside every
    long run's results; ``commit`` defaults to the commit the library was imported from."""
    meta = {"commit": commit or _LOADED_COMMIT,
            "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if wall_time is not None:
        meta["wall_time_s"] = round(wall_time, 3)
    return meta
