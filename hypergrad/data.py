"""Datasets of the experiments of Donini et al. (2020), Sec. 5: MNIST, CIFAR-10, CIFAR-100.

Where the data comes from
-------------------------
Every loader looks in one data folder, :func:`data_root`: the ``root`` argument, else the
environment variable ``HYPERGRAD_DATA``, else the per-user cache
``$XDG_CACHE_HOME/hypergrad`` (default ``~/.cache/hypergrad``). Inside it:

* ``mnist/`` holds the four official IDX gzip files of MNIST (names and MD5s in
  ``MNIST_FILES``), downloaded from the mirrors in ``MNIST_MIRRORS``;
* ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` are the official python-pickle
  archives of CIFAR (``CIFAR_ARCHIVES``), extracted next to themselves into
  ``cifar-10-batches-py/`` / ``cifar-100-python/``. An already extracted folder is used as is.

Files are downloaded only when missing and ``download=True``; a download goes to a temporary
file in the destination folder, is checked against its MD5 and only then renamed into place, so
an interrupted or corrupt download never leaves a file behind. A mirror that does not connect,
or stops sending, for ``$HYPERGRAD_DOWNLOAD_TIMEOUT`` seconds (default 10) is given up for the
next one, and a file not downloaded within ``$HYPERGRAD_DOWNLOAD_DEADLINE`` seconds (default
1800, all mirrors together) is given up; the error names each mirror and why it failed. A file already present is never
overwritten: if its checksum is wrong the loader raises :class:`DataError` telling you to delete
it. MNIST checksums are verified on every load (a few milliseconds).

Every argument is checked before anything is read or downloaded: a size, seed, dtype, device or
flag that cannot work raises a ``TypeError``/``ValueError`` naming the argument and its value.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import torch

from hypergrad.download import (  # noqa: F401  (the data functions' checks and files)
    ENV_VAR,
    MNIST_TEST_SIZE,
    DataError,
    _check_bool,
    _check_device,
    _check_dtype,
    _check_int,
    _check_md5,
    _check_md5_arg,
    _check_root,
    _check_seed,
    _check_xy,
    _ensure,
    _seconds,
    _temp_beside,
    _timed_out,
    data_root,
    fetch,
    md5sum,
)

__all__ = [
    "CIFAR_ARCHIVES",
    "CIFAR_STATS",
    "DataError",
    "MNIST_FILES",
    "MNIST_MEAN",
    "MNIST_MIRRORS",
    "MNIST_STD",
    "augment_cifar",
    "batch_stream",
    "cifar_split",
    "data_root",
    "fetch",
    "load_cifar",
    "load_mnist",
    "md5sum",
    "mnist_split",
    "read_idx",
    "sample_batches",
]


MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
#: split -> ((images file, md5), (labels file, md5)); official MNIST files.
MNIST_FILES = {
    "train": (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    ),
    "test": (
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}
#: Usual MNIST normalisation constants (pixel mean and std over the training set).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081

#: name -> archive file, md5, url, extracted folder, train files, test files, label key.
CIFAR_ARCHIVES = {
    "cifar10": {
        "file": "cifar-10-python.tar.gz",
        "md5": "c58f30108f718f92721af3b95e74349a",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": b"labels",
    },
    "cifar100": {
        "file": "cifar-100-python.tar.gz",
        "md5": "eb9058c3a382ffc7106e4002c42a8d85",
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": b"fine_labels",
    },
}
#: Per-channel (RGB) mean and std of the pixels of each CIFAR training set, in [0, 1] units.
CIFAR_STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}



# --------------------------------------------------------------------------------------- MNIST

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or raw, into a native-endian numpy array.

    Header: two zero bytes, a dtype code, the number of dimensions, then each dimension as a
    big-endian uint32. Raises :class:`DataError` (a ``ValueError``) on a corrupt or truncated file.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim, dtype = raw[3], np.dtype(_IDX_DTYPES[raw[2]])
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = 4 + 4 * ndim + math.prod(shape) * dtype.itemsize  # exact: no int64 overflow
    if len(raw) != expected:
        raise DataError(f"{path}: IDX size {len(raw)} bytes, expected {expected} for shape {shape}")
    data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def load_mnist(split: str = "test", root=None, download: bool = True):
    """MNIST ``split`` ("train" or "test") as ``(x, y)``: float32 ``(N, 784)`` in [0, 1], int64 ``(N,)``.

    Files live in ``data_root(root) / "mnist"``; their MD5s are checked on every load.
    """
    if not isinstance(split, str) or split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    download = _check_bool("download", download)
    folder = data_root(root) / "mnist"
    arrays = []
    for name, md5 in MNIST_FILES[split]:
        path = _ensure(folder / name, [m + name for m in MNIST_MIRRORS], md5, download)
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise DataError(f"unexpected MNIST shapes {images.shape} / {labels.shape} in {folder}")
    x = torch.from_numpy(images.reshape(len(images), 784)).float().div_(255)
    return x, torch.from_numpy(labels.astype(np.int64))


def _split(x, y, sizes, seed, device, dtype):
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    out, start = {}, 0
    for key, n in sizes.items():
        idx = perm[start : start + n] if n is not None else perm[start:]
        out[key] = (x[idx].to(device=device, dtype=dtype), y[idx].to(device))
        start += len(idx)
    return out


def mnist_split(
    n_train: int = 7000,
    n_val: int = 700,
    seed: int = 0,
    root=None,
    device=None,
    dtype=torch.float32,
    normalize: bool = True,
    download: bool = True,
) -> dict:
    """The MNIST split of Donini et al. (2020), Sec. 5: 7000 train / 700 validation examples.

    All three sets are drawn, by a permutation seeded with ``seed``, from the 10 000 images of the
    official MNIST *test* file (``t10k-*``, the only MNIST file our CI holds); the remaining
    ``10000 - n_train - n_val`` images (2300 by default; none when ``n_train + n_val = 10000``)
    form the test set. Returns ``{"train": (x, y), "val": (x, y), "test": (x, y)}`` with ``x`` of
    shape ``(n, 784)``; with ``normalize`` the pixels (in [0, 1]) are standardised as
    ``(x - 0.1307) / 0.3081``. ``n_train`` and ``n_val`` are at least 1.
    """
    n_train = _check_int(
        "n_train",
        n_train,
        1,
        MNIST_TEST_SIZE - 1,
        f" (the MNIST test file has {MNIST_TEST_SIZE} images and n_val >= 1)",
    )
    n_val = _check_int(
        "n_val",
        n_val,
        1,
        MNIST_TEST_SIZE - n_train,
        f" (n_train + n_val may not exceed the {MNIST_TEST_SIZE} images; n_train = {n_train})",
    )
    seed, dtype, device = _check_seed("seed", seed), _check_dtype(dtype), _check_device(device)
    normalize, download = _check_bool("normalize", normalize), _check_bool("download", download)
    _check_root(root)
    x, y = load_mnist("test", root=root, download=download)
    if normalize:
        x = (x - MNIST_MEAN) / MNIST_STD
    return _split(x, y, {"train": n_train, "val": n_val, "test": None}, seed, device, dtype)


# --------------------------------------------------------------------------------------- CIFAR


@contextlib.contextmanager
def _archive_errors(archive: Path):
    """A corrupt or truncated archive as a :class:`DataError` naming it."""
    try:
        yield
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DataError(
            f"{archive} is corrupt or truncated ({type(e).__name__}: {e}); delete it "
            f"to download it again"
        ) from e


def _safe_extract(archive: Path, dest: Path, folder: str) -> None:
    """Extract ``archive`` into a temp folder, refusing links and paths escaping it, then move
    ``folder`` into ``dest`` atomically."""
    try:
        tmp = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    except OSError as e:
        raise type(e)(
            f"cannot extract {archive.name} into {dest} ({e.strerror or e}): point "
            f"{ENV_VAR} (or root=) at a writable folder"
        ) from e
    try:
        base = tmp.resolve()
        with _archive_errors(archive), tarfile.open(archive, "r:*") as tf:
            for m in tf:
                target = (tmp / m.name).resolve()
                if target != base and base not in target.parents:
                    raise DataError(f"{archive}: member {m.name!r} escapes the extraction folder")
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif m.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tf.extractfile(m) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                else:
                    raise DataError(f"{archive}: refusing to extract special member {m.name!r}")
        if not (tmp / folder).is_dir():
            raise DataError(f"{archive} does not contain the folder {folder}/")
        os.replace(tmp / folder, dest / folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_cifar_batch(path: Path, label_key: bytes, classes: int):
    """One pickled CIFAR batch as ``(uint8 (n, 3, 32, 32), int64 (n,))``, or a DataError."""
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as e:
        raise DataError(f"{path}: not a CIFAR batch ({type(e).__name__}: {e})") from e
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: not a CIFAR batch (needs b'data' and {label_key!r}; has {keys})")
    try:
        x = np.asarray(batch[b"data"], dtype=np.uint8)
        y = np.asarray(batch[label_key], dtype=np.int64)
    except (ValueError, TypeError, OverflowError) as e:
        raise DataError(f"{path}: unreadable CIFAR arrays ({e})") from e
    if x.ndim != 2 or x.shape[1] != 3072 or y.shape != (len(x),):
        raise DataError(
            f"{path}: CIFAR data of shape {x.shape} with labels of shape {y.shape}, "
            f"expected (n, 3072) and (n,)"
        )
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise DataError(f"{path}: labels outside 0..{classes - 1} ({y.min()}..{y.max()})")
    return x.reshape(-1, 3, 32, 32), y


def load_cifar(
    name: str = "cifar10", train: bool = True, root=None, download: bool = True, verify=True
):
    """CIFAR-10/100 as ``(x, y)``: float32 ``(N, 3, 32, 32)`` in [0, 1] and int64 labels.

    Uses ``data_root(root) / "cifar-10-batches-py"`` (or ``cifar-100-python``) if present;
    otherwise fetches the official archive into ``data_root(root)`` and extracts it there.
    ``verify`` checks the archive before extraction: ``True`` against the official MD5, a hex
    string against that MD5 (e.g. a re-packed archive), ``False`` not at all. CIFAR-100 uses
    the 100 fine labels. The batches are pickles: only load archives you trust.
    """
    if not isinstance(name, str) or name not in CIFAR_ARCHIVES:
        raise ValueError(f"name must be one of {sorted(CIFAR_ARCHIVES)}, got {name!r}")
    train, download = _check_bool("train", train), _check_bool("download", download)
    if isinstance(verify, str):
        verify = _check_md5_arg("verify", verify.lower(), allow_none=False)
    elif not isinstance(verify, bool):
        raise TypeError(f"verify must be True, False or an MD5 hex string, got {verify!r}")
    spec, root = CIFAR_ARCHIVES[name], data_root(root)
    folder = root / spec["folder"]
    files = spec["train" if train else "test"]
    if folder.exists() and not all((folder / f).is_file() for f in files):
        raise DataError(f"{folder} lacks some of {files}: delete it to extract the archive again")
    if not folder.exists():
        md5 = spec["md5"] if verify is True else (verify or None)
        archive = _ensure(root / spec["file"], [spec["url"]], md5, download)
        _safe_extract(archive, root, spec["folder"])
    xs, ys = [], []
    for f in files:
        x, y = _read_cifar_batch(folder / f, spec["label_key"], 100 if name == "cifar100" else 10)
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)).float().div_(255)
    return x, torch.from_numpy(np.concatenate(ys))


def cifar_split(
    name: str = "cifar10",
    n_val: int = 5000,
    seed: int = 0,
    root=None,
    device=None,
    dtype=torch.float32,
    normalize: bool = True,
    download: bool = True,
    verify=True,
) -> dict:
    """CIFAR train/validation/test split for Donini et al. (2020), Sec. 6.

    ``val`` is ``n_val`` images (at least 1, fewer than all) drawn from the official training set
    by a permutation seeded with ``seed``, ``train`` is the rest of it and ``test`` the official test set. With ``normalize``
    each channel is standardised with the training-set statistics in ``CIFAR_STATS``
    (CIFAR-10 mean 0.4914, 0.4822, 0.4465 / std 0.2470, 0.2435, 0.2616; CIFAR-100 mean
    0.5071, 0.4865, 0.4409 / std 0.2673, 0.2564, 0.2762). Returns ``{"train", "val", "test"}``
    of ``(x, y)`` with ``x`` of shape ``(n, 3, 32, 32)``.
    """
    n_val = _check_int("n_val", n_val, 1)
    seed, dtype, device = _check_seed("seed", seed), _check_dtype(dtype), _check_device(device)
    normalize, download = _check_bool("normalize", normalize), _check_bool("download", download)
    _check_root(root)
    x, y = load_cifar(name, True, root, download, verify)
    xt, yt = load_cifar(name, False, root, download, verify)
    if n_val >= len(x):
        raise ValueError(
            f"n_val must be < {len(x)}, the training images (the rest is the "
            f"training set), got {n_val}"
        )
    if normalize:
        mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in CIFAR_STATS[name])
        x, xt = (x - mean) / std, (xt - mean) / std
    out = _split(x, y, {"val": n_val, "train": None}, seed, device, dtype)
    out["test"] = (xt.to(device=device, dtype=dtype), yt.to(device))
    return {k: out[k] for k in ("train", "val", "test")}


def augment_cifar(xb: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard CIFAR augmentation of a batch ``(N, C, H, W)``: random crop after 4-pixel zero
    padding, then a horizontal flip with probability 1/2, drawn per image from ``generator``.

    Zero padding is black on raw [0, 1] images and the mean colour on normalised ones.
    """
    if not isinstance(xb, torch.Tensor) or xb.dim() != 4:
        shape = tuple(xb.shape) if isinstance(xb, torch.Tensor) else type(xb).__name__
        raise ValueError(f"xb must be a batch of images (N, C, H, W), got {shape}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    n, _, h, w = xb.shape
    dev = generator.device if generator is not None else torch.device("cpu")
    oy, ox = torch.randint(0, 9, (2, n, 1), generator=generator, device=dev).to(xb.device)
    flip = torch.rand(n, 1, generator=generator, device=dev).to(xb.device) < 0.5
    rows = oy + torch.arange(h, device=xb.device)
    cols = torch.arange(w, device=xb.device)
    cols = ox + torch.where(flip, cols.flip(0), cols)
    padded = torch.nn.functional.pad(xb, (4, 4, 4, 4))
    out = padded[
        torch.arange(n, device=xb.device)[:, None, None], :, rows[:, :, None], cols[:, None]
    ]
    return out.permute(0, 3, 1, 2).contiguous()


# --------------------------------------------------------------------------------- minibatches


def batch_stream(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int = 0, generator=None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless minibatches ``(xb, yb)`` by epochs: each epoch is a fresh random permutation of
    the data cut into ``len(x) // batch_size`` batches (the last incomplete one is dropped).

    The permutations come from ``generator`` if given, else from a CPU generator seeded with
    ``seed``; the same seed gives the same stream. The arguments are checked at the call, not
    at the first ``next``.
    """
    x, y = _check_xy("(x, y)", (x, y))
    batch_size = _check_int("batch_size", batch_size, 1, len(x), f" (the data has {len(x)} rows)")
    seed = _check_seed("seed", seed)
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    elif not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
    return _batches(x, y, batch_size, generator)


def _batches(x, y, batch_size, generator):
    while True:
        perm = torch.randperm(len(x), generator=generator, device=generator.device).to(x.device)
        for i in range(len(x) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            yield x[idx], y[idx]


def sample_batches(
    data: tuple[torch.Tensor, torch.Tensor],
    batch_size: int,
    num_batches: int,
    generator=None,
    seed: int = 0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``num_batches`` minibatches of :func:`batch_stream` over ``data = (x, y)``.

    Fixing the batches in advance lets a training trajectory be replayed exactly, as the
    hypergradient computations (forward and reverse mode) need.
    """
    x, y = _check_xy("data", data)
    num_batches = _check_int("num_batches", num_batches, 1)
    return list(islice(batch_stream(x, y, batch_size, seed, generator), num_batches))
