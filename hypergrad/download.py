"""Where the data lives and how it arrives: the data folder, checksums, atomic downloads with
timeouts and an overall deadline, and the argument checks of the data functions.

:func:`fetch` streams a file into a temporary file beside its destination, checks its MD5 and
only then renames it into place, so an interrupted or corrupt download never leaves a file
behind. A mirror that does not connect, or stops sending, for ``$HYPERGRAD_DOWNLOAD_TIMEOUT``
seconds (default 10) is given up for the next one; a file not downloaded within
``$HYPERGRAD_DOWNLOAD_DEADLINE`` seconds (default 1800, all mirrors together) is given up; the
error names each mirror and why it failed. (The datasets themselves are :mod:`hypergrad.data`.)
"""

from __future__ import annotations

import hashlib
import http.client
import math
import numbers
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = ["DataError", "ENV_VAR", "data_root", "fetch", "md5sum"]

ENV_VAR = "HYPERGRAD_DATA"


class DataError(ValueError):
    """A data file is corrupt, truncated, has the wrong checksum or could not be downloaded."""


# ---------------------------------------------------------------------- argument validation
# One layer at the edge: every public function checks its arguments here, before it reads or
# downloads anything, and the error names the argument and the value.

#: Images in the official MNIST test file (``t10k-*``) that :func:`mnist_split` divides.
MNIST_TEST_SIZE = 10000


def _check_int(name: str, value, low: int = 1, high: int | None = None, why: str = "") -> int:
    """``value`` as an ``int`` in ``low..high``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be {bounds}{why}, got {value}")
    return value


def _check_seed(name: str, value) -> int:
    """A seed torch's generators accept: an integer in -2**63 .. 2**64 - 1."""
    return _check_int(name, value, -(2**63), 2**64 - 1)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _check_dtype(dtype) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(
            f"dtype must be a floating torch.dtype such as torch.float32 or "
            f"torch.float64, got {dtype!r}"
        )
    return dtype


def _check_device(device, name: str = "device") -> torch.device | None:
    """``None`` (stay on the CPU) or a device that exists and can hold data on this machine."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise ValueError(
            f"{name}={device!r} is not a device (e.g. 'cpu', 'cuda', 'cuda:0'): {e}"
        ) from None
    if dev.type == "meta":
        raise ValueError(f"{name}={device!r}: the meta device holds no data")
    try:
        torch.empty(0, device=dev)
    except Exception as e:  # torch raises AssertionError, RuntimeError, NotImplementedError…
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{name}={device!r} is not available on this machine ({reason})") from None
    return dev


def _check_md5_arg(name: str, value, allow_none: bool = True) -> str | None:
    if (value is None and allow_none) or (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    ):
        return value
    alternative = "None or " if allow_none else ""
    raise ValueError(
        f"{name} must be {alternative}32 lower-case hex digits (an MD5), got {value!r}"
    )


def _check_root(root) -> None:
    if root is not None and (not isinstance(root, str | os.PathLike) or str(root) == ""):
        raise TypeError(f"root must be a folder path (str or os.PathLike) or None, got {root!r}")


def _check_xy(name: str, data) -> tuple[torch.Tensor, torch.Tensor]:
    """``data`` as a pair ``(x, y)`` of tensors with the same, non-zero, number of rows."""
    if not isinstance(data, tuple | list) or len(data) != 2:
        hint = " (e.g. split['train'], not the whole split)" if isinstance(data, dict) else ""
        raise TypeError(
            f"{name} must be a pair (x, y) of tensors{hint}, got "
            f"{type(data).__name__}{f' of length {len(data)}' if hasattr(data, '__len__') else ''}"
        )
    x, y = data
    for part, v in (("x", x), ("y", y)):
        if not isinstance(v, torch.Tensor) or v.dim() == 0:
            raise TypeError(
                f"{name}: {part} must be a tensor with a batch dimension, got "
                f"{type(v).__name__}{'' if not isinstance(v, torch.Tensor) else ' of shape ()'}"
            )
    if len(x) != len(y):
        raise ValueError(f"{name}: x has {len(x)} rows but y has {len(y)}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty (0 rows)")
    return x, y


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data folder: ``root``, else ``$HYPERGRAD_DATA``, else ``$XDG_CACHE_HOME/hypergrad``."""
    _check_root(root)
    if root is None:
        root = os.environ.get(ENV_VAR) or Path(
            os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "hypergrad"
        )
    return Path(root).expanduser()


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 of a file (used as an integrity check, not for security)."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_md5(path: Path, md5: str | None) -> None:
    if md5 is not None and (actual := md5sum(path)) != md5:
        raise DataError(
            f"{path} is corrupt: md5 {actual}, expected {md5}. "
            f"Delete it to download it again (or replace it with a good copy)."
        )


#: Environment variables of the download limits, and their defaults (seconds).
TIMEOUT_VAR, DEADLINE_VAR = "HYPERGRAD_DOWNLOAD_TIMEOUT", "HYPERGRAD_DOWNLOAD_DEADLINE"
DEFAULT_TIMEOUT, DEFAULT_DEADLINE = 10.0, 1800.0


def _seconds(name: str, value, var: str, default: float) -> float:
    """A positive, finite number of seconds: ``value``, else ``$var``, else ``default``."""
    if value is None:
        raw = os.environ.get(var, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"${var} must be a number of seconds, got {raw!r}") from None
        name = f"${var}"
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _timed_out(e: BaseException) -> bool:
    return isinstance(e, TimeoutError) or (
        isinstance(e, urllib.error.URLError) and isinstance(e.reason, TimeoutError)
    )


def _temp_beside(dest: Path, suffix: str) -> tuple[int, str]:
    """A new temporary file in ``dest``'s folder (created if needed), or a clear error."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=suffix)
    except OSError as e:
        raise type(e)(
            f"cannot write {dest.name} into {dest.parent} ({e.strerror or e}): point "
            f"{ENV_VAR} (or root=) at a writable folder, or put the file there yourself"
        ) from e


def fetch(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    md5: str | None,
    *,
    timeout: float | None = None,
    deadline: float | None = None,
) -> Path:
    """Make sure ``dest`` exists with checksum ``md5``, downloading it from ``urls`` if missing.

    The urls are tried in order. Each download streams into a temporary file in ``dest``'s folder,
    is checked against ``md5`` (``None`` skips the check) and against the announced length, and
    is moved into place with :func:`os.replace`; on any failure the temporary file is removed, so
    no partial file is ever left. An existing ``dest`` is never overwritten: a wrong checksum
    raises :class:`DataError`.

    ``timeout`` (default ``$HYPERGRAD_DOWNLOAD_TIMEOUT`` or 10 s) bounds the connection and each
    wait for data: a mirror silent that long is given up for the next. ``deadline`` (default
    ``$HYPERGRAD_DOWNLOAD_DEADLINE`` or 1800 s) bounds the whole call, all mirrors together (it
    may be overrun by at most one ``timeout``; name resolution is not covered). When every mirror
    fails, the :class:`DataError` lists each one and why.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"urls must be a url or a non-empty list of urls, got {urls!r}")
    _check_md5_arg("md5", md5)
    timeout = _seconds("timeout", timeout, TIMEOUT_VAR, DEFAULT_TIMEOUT)
    deadline = _seconds("deadline", deadline, DEADLINE_VAR, DEFAULT_DEADLINE)
    dest = Path(dest)
    if dest.exists():
        _check_md5(dest, md5)
        return dest
    start, errors = time.monotonic(), []
    for url in urls:
        left = deadline - (time.monotonic() - start)
        if left <= 0:
            errors.append(f"  {url}: not tried, the {deadline:g} s deadline had passed")
            continue
        wait = min(timeout, left)
        fd, tmp = _temp_beside(dest, ".part")
        try:
            h, size = hashlib.md5(usedforsecurity=False), 0
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=wait) as src:
                # read1: one system call per block, so that the deadline is checked while a
                # slow server trickles data (read() would wait for a full block).
                read = src.read1 if isinstance(src, http.client.HTTPResponse) else src.read
                length = getattr(src, "headers", None) and src.headers.get("Content-Length")
                while block := read(1 << 16):
                    h.update(block)
                    out.write(block)
                    size += len(block)
                    if time.monotonic() - start > deadline:
                        raise DataError(
                            f"unfinished after the {deadline:g} s deadline "
                            f"({size} bytes received; ${DEADLINE_VAR})"
                        )
            if length and length.isdigit() and size != int(length):
                raise DataError(f"truncated: {size} of {length} bytes received")
            if md5 is not None and h.hexdigest() != md5:
                raise DataError(f"md5 {h.hexdigest()}, expected {md5}")
            os.replace(tmp, dest)
            return dest
        except Exception as e:  # try the next mirror
            if _timed_out(e):
                why = f"no answer within {wait:g} s (connect or read timeout; ${TIMEOUT_VAR})"
            else:
                why = f"{type(e).__name__}: {e}"
            errors.append(f"  {url}: {why}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DataError(f"could not download {dest.name} into {dest.parent}:\n" + "\n".join(errors))


def _ensure(dest: Path, urls: Sequence[str], md5: str | None, download: bool) -> Path:
    if not dest.exists() and not download:
        raise FileNotFoundError(
            f"{dest} not found (download=False). Put the file there, point {ENV_VAR} at a "
            f"folder that holds it, or pass download=True."
        )
    return fetch(urls, dest, md5)


