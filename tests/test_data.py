import gzip
import io
import os
import pickle
import shutil
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from hypergrad import data
from hypergrad.data import (
    CIFAR_ARCHIVES,
    MNIST_FILES,
    DataError,
    augment_cifar,
    batch_stream,
    cifar_split,
    data_root,
    fetch,
    load_cifar,
    load_mnist,
    md5sum,
    mnist_split,
    read_idx,
    sample_batches,
)

T10K_IMAGES, T10K_LABELS = (name for name, _ in MNIST_FILES["test"])


@pytest.fixture(scope="module")
def data_dir() -> Path:
    """Folder holding ``mnist/``: $HYPERGRAD_DATA, else ``shared/data`` beside the repository."""
    env = os.environ.get("HYPERGRAD_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (path / "mnist" / T10K_IMAGES).is_file():
        pytest.skip(f"MNIST test files not found in {path} (set HYPERGRAD_DATA)")
    return path


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    return load_mnist("test", root=data_dir, download=False)


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------ data_root


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HYPERGRAD_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    monkeypatch.delenv("HYPERGRAD_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "hypergrad"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "hypergrad"


# ---------------------------------------------------------------------------------------- MNIST


def test_shared_files_match_official_checksums(data_dir):
    for name, md5 in MNIST_FILES["test"]:
        assert md5sum(data_dir / "mnist" / name) == md5


def test_read_idx_real_files(data_dir, tmp_path):
    images = read_idx(data_dir / "mnist" / T10K_IMAGES)
    labels = read_idx(data_dir / "mnist" / T10K_LABELS)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and set(np.unique(labels)) == set(range(10))
    assert labels[0] == 7
    raw = tmp_path / "labels-idx1-ubyte"  # the uncompressed format reads the same
    raw.write_bytes(gzip.decompress((data_dir / "mnist" / T10K_LABELS).read_bytes()))
    np.testing.assert_array_equal(read_idx(raw), labels)


def test_read_idx_other_dtypes(tmp_path):
    a = np.arange(6, dtype=">i4").reshape(2, 3)
    path = tmp_path / "ints.idx"
    path.write_bytes(b"\0\0\x0c\x02" + np.array([2, 3], ">u4").tobytes() + a.tobytes())
    out = read_idx(path)
    np.testing.assert_array_equal(out, a)
    assert out.dtype.isnative


def test_read_idx_corrupt_files(data_dir, tmp_path):
    gz = (data_dir / "mnist" / T10K_LABELS).read_bytes()
    cut = tmp_path / "cut.gz"  # truncated gzip stream
    cut.write_bytes(gz[: len(gz) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(cut)
    short = tmp_path / "short.gz"  # valid gzip, truncated IDX payload
    short.write_bytes(gzip.compress(gzip.decompress(gz)[:-10]))
    with pytest.raises(DataError, match="expected"):
        read_idx(short)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03\x04rubbish")
    with pytest.raises(DataError, match="magic"):
        read_idx(bad)


def test_load_mnist(mnist_test):
    x, y = mnist_test
    assert x.shape == (10000, 784) and x.dtype == torch.float32
    assert y.shape == (10000,) and y.dtype == torch.int64
    assert x.min() == 0 and x.max() == 1
    assert y[0] == 7


def test_load_mnist_bad_split(data_dir):
    with pytest.raises(ValueError, match="split"):
        load_mnist("valid", root=data_dir)


def test_mnist_split(data_dir, mnist_test):
    s = mnist_split(seed=0, root=data_dir, normalize=False)
    assert [len(s[k][0]) for k in ("train", "val", "test")] == [7000, 700, 2300]
    assert all(len(s[k][0]) == len(s[k][1]) for k in s)
    # the three sets partition the file: compare sorted random projections of all rows
    proj = torch.randn(784, dtype=torch.float64)
    full = torch.sort(mnist_test[0].double() @ proj).values
    parts = torch.cat([s[k][0] for k in ("train", "val", "test")]).double() @ proj
    torch.testing.assert_close(torch.sort(parts).values, full)

    again = mnist_split(seed=0, root=data_dir, normalize=False)
    other = mnist_split(seed=1, root=data_dir, normalize=False)
    assert all(torch.equal(s[k][0], again[k][0]) and torch.equal(s[k][1], again[k][1]) for k in s)
    assert not torch.equal(s["train"][1], other["train"][1])

    norm = mnist_split(n_train=50, n_val=5, seed=0, root=data_dir, dtype=torch.float64)
    assert norm["train"][0].dtype == torch.float64 and len(norm["test"][0]) == 10000 - 55
    torch.testing.assert_close(norm["val"][0], ((s["train"][0][50:55].double() - 0.1307) / 0.3081))
    with pytest.raises(ValueError):
        mnist_split(n_train=9000, n_val=2000, root=data_dir)


def test_checksum_mismatch_names_file_and_md5s(data_dir, tmp_path):
    (tmp_path / "mnist").mkdir()
    for name, _ in MNIST_FILES["test"]:
        shutil.copy(data_dir / "mnist" / name, tmp_path / "mnist" / name)
    bad = tmp_path / "mnist" / T10K_IMAGES
    bad.write_bytes(bad.read_bytes()[:-100])
    actual, expected = md5sum(bad), MNIST_FILES["test"][0][1]
    with pytest.raises(DataError) as info:
        load_mnist("test", root=tmp_path)
    msg = str(info.value)
    assert str(bad) in msg and actual in msg and expected in msg and "elete" in msg
    assert md5sum(bad) == actual  # the user's file was not overwritten


def test_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="HYPERGRAD_DATA") as info:
        load_mnist("train", root=tmp_path, download=False)
    assert str(tmp_path / "mnist") in str(info.value)
    assert not (tmp_path / "mnist").exists() or not any((tmp_path / "mnist").iterdir())


# ---------------------------------------------------------------------------------- downloading


def test_fetch_from_file_url(tmp_path):
    src = tmp_path / "src" / "blob.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(3000))
    dest = tmp_path / "dl" / "blob.bin"
    dead = (tmp_path / "nowhere" / "blob.bin").as_uri()  # first mirror fails, second works
    assert fetch([dead, src.as_uri()], dest, md5sum(src)) == dest
    assert dest.read_bytes() == src.read_bytes() and _leftovers(dest.parent) == ["blob.bin"]
    assert fetch("unused://", dest, md5sum(src)) == dest  # present and valid: no download


def test_fetch_wrong_checksum_leaves_nothing(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"x" * 100)
    dest = tmp_path / "dl" / "blob.bin"
    with pytest.raises(DataError, match="0" * 32) as info:
        fetch(src.as_uri(), dest, "0" * 32)
    assert md5sum(src) in str(info.value)
    assert _leftovers(dest.parent) == []


def test_fetch_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell():
                raise ConnectionResetError("connection lost")
            return super().read(10)

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken(b"y" * 100))
    dest = tmp_path / "dl" / "blob.bin"
    with pytest.raises(DataError, match="connection lost"):
        fetch(["https://a.invalid/blob.bin", "https://b.invalid/blob.bin"], dest, None)
    assert _leftovers(dest.parent) == []


def test_load_mnist_downloads(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MNIST_MIRRORS", ((data_dir / "mnist").as_uri() + "/",))
    x, y = load_mnist("test", root=tmp_path)
    assert x.shape == (10000, 784) and y[0] == 7
    assert _leftovers(tmp_path / "mnist") == sorted([T10K_IMAGES, T10K_LABELS])


# ---------------------------------------------------------------------------------------- CIFAR


def _fake_cifar(root: Path, name: str, n: int = 4) -> tuple[Path, dict]:
    """Write a tiny archive shaped like the official one; return it and its batches."""
    spec = CIFAR_ARCHIVES[name]
    build = root / "build"
    (build / spec["folder"]).mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for f in spec["train"] + spec["test"]:
        images = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 100 if name == "cifar100" else 10, n).tolist()
        batch = {b"data": images, spec["label_key"]: labels, b"batch_label": f.encode()}
        if name == "cifar100":
            batch[b"coarse_labels"] = [0] * n
        with open(build / spec["folder"] / f, "wb") as fh:
            pickle.dump(batch, fh)
        batches[f] = (images, labels)
    archive = root / spec["file"]
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(build / spec["folder"], arcname=spec["folder"])
    shutil.rmtree(build)
    return archive, batches


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_load_fake_cifar(tmp_path, name):
    archive, batches = _fake_cifar(tmp_path, name)
    spec = CIFAR_ARCHIVES[name]
    with pytest.raises(DataError) as info:  # default: the official checksum
        load_cifar(name, root=tmp_path)
    assert spec["md5"] in str(info.value) and md5sum(archive) in str(info.value)
    assert not (tmp_path / spec["folder"]).exists()

    x, y = load_cifar(name, train=True, root=tmp_path, verify=md5sum(archive))
    n_train = 4 * len(spec["train"])
    assert x.shape == (n_train, 3, 32, 32) and x.dtype == torch.float32
    assert y.shape == (n_train,) and y.dtype == torch.int64
    images, labels = batches[spec["train"][0]]
    torch.testing.assert_close(x[:4], torch.from_numpy(images).reshape(4, 3, 32, 32) / 255.0)
    assert y[:4].tolist() == labels
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([spec["file"], spec["folder"]])

    archive.unlink()  # from now on the extracted folder is used
    xt, yt = load_cifar(name, train=False, root=tmp_path, download=False)
    assert xt.shape == (4, 3, 32, 32) and yt.tolist() == batches[spec["test"][0]][1]


def test_cifar_without_verification_and_missing(tmp_path):
    _fake_cifar(tmp_path, "cifar10")
    assert len(load_cifar("cifar10", train=False, root=tmp_path, verify=False)[0]) == 4
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        load_cifar("cifar100", root=tmp_path, download=False)
    with pytest.raises(ValueError):
        load_cifar("cifar1000", root=tmp_path)


def test_cifar_refuses_escaping_archive(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    archive = root / CIFAR_ARCHIVES["cifar10"]["file"]
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="escapes"):
        load_cifar("cifar10", root=root, verify=False)
    assert not (tmp_path / "evil.txt").exists()
    assert _leftovers(root) == [archive.name]


def test_cifar_split(tmp_path):
    _fake_cifar(tmp_path, "cifar10")
    kw = dict(root=tmp_path, verify=False)
    s = cifar_split("cifar10", n_val=5, seed=0, normalize=False, **kw)
    assert [len(s[k][0]) for k in ("train", "val", "test")] == [15, 5, 4]
    x, _ = load_cifar("cifar10", root=tmp_path)
    proj = torch.randn(3 * 32 * 32, dtype=torch.float64)
    parts = torch.cat([s["train"][0], s["val"][0]]).flatten(1).double() @ proj
    torch.testing.assert_close(parts.sort().values, (x.flatten(1).double() @ proj).sort().values)
    again = cifar_split("cifar10", n_val=5, seed=0, normalize=False, **kw)
    assert torch.equal(s["val"][0], again["val"][0])
    assert not torch.equal(s["val"][1], cifar_split("cifar10", 5, seed=3, **kw)["val"][1])
    norm = cifar_split("cifar10", n_val=5, seed=0, **kw)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in data.CIFAR_STATS["cifar10"])
    torch.testing.assert_close(norm["test"][0], (s["test"][0] - mean) / std)


def test_augment_cifar():
    x = torch.rand(6, 3, 32, 32)
    g = torch.Generator().manual_seed(0)
    out = augment_cifar(x, g)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, augment_cifar(x, torch.Generator().manual_seed(0)))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):  # each output is a flipped or plain crop of the padded image
        crops = [
            c
            for dy in range(9)
            for dx in range(9)
            for c in (padded[i, :, dy : dy + 32, dx : dx + 32],)
            for c in (c, c.flip(-1))
        ]
        assert any(torch.equal(out[i], c) for c in crops)


# ----------------------------------------------------------------------------------- minibatches


def test_batch_stream_epochs():
    x = torch.arange(10).float().unsqueeze(1)
    y = torch.arange(10)
    stream = batch_stream(x, y, 3, seed=0)
    epochs = [[next(stream) for _ in range(3)] for _ in range(2)]
    for epoch in epochs:
        seen = torch.cat([yb for _, yb in epoch])
        assert len(seen) == 9 and len(set(seen.tolist())) == 9  # one drop-last epoch
        assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in epoch)
    assert not torch.equal(
        torch.cat([b[1] for b in epochs[0]]), torch.cat([b[1] for b in epochs[1]])
    )
    batches = sample_batches((x, y), 3, 6, seed=0)
    assert len(batches) == 6
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, sum(epochs, []), strict=True))
    other = sample_batches((x, y), 3, 6, generator=torch.Generator().manual_seed(1))
    assert not all(torch.equal(a[1], b[1]) for a, b in zip(batches, other, strict=True))
    with pytest.raises(ValueError):
        next(batch_stream(x, y, 11))
