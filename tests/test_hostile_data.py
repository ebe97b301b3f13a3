"""Hostile and unusual inputs at the edges of :mod:`hypergrad.data` (issue 12).

Every bad argument must fail *before* anything is read or downloaded, with an error naming the
argument and the value; every bad server or file must end in a :class:`DataError` (or a clear
``OSError``) and leave no partial file behind; and no download may hang. The servers below
listen on 127.0.0.1 only, stop by themselves and never touch the network.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import socket
import tarfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypergrad import data
from hypergrad.data import (
    CIFAR_ARCHIVES,
    MNIST_FILES,
    DataError,
    batch_stream,
    cifar_split,
    fetch,
    load_cifar,
    load_mnist,
    mnist_split,
    read_idx,
    sample_batches,
)

T10K_IMAGES, T10K_LABELS = (name for name, _ in MNIST_FILES["test"])


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def no_download(monkeypatch):
    """Any attempt to touch the network or the data folder fails the test."""

    def refuse(*a, **k):
        raise AssertionError("the arguments should have been refused before any download")

    monkeypatch.setattr(data, "load_mnist", refuse)
    monkeypatch.setattr(data, "load_cifar", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ------------------------------------------------------------------- arguments of the splits
BAD_SPLIT_ARGS = [
    # (keyword arguments, exception, words the message must hold)
    (dict(n_train=-5), ValueError, ["n_train", "-5"]),
    (dict(n_train=0), ValueError, ["n_train", "0"]),
    (dict(n_val=0), ValueError, ["n_val", "0"]),
    (dict(n_val=-1), ValueError, ["n_val", "-1"]),
    (dict(n_train=10001), ValueError, ["n_train", "10001", "10000"]),
    (dict(n_train=9000, n_val=2000), ValueError, ["n_val", "2000", "10000"]),
    (dict(n_train=10000, n_val=1), ValueError, ["n_train", "10000"]),
    (dict(n_train=7000.0), TypeError, ["n_train", "7000.0", "float"]),
    (dict(n_train="7000"), TypeError, ["n_train", "'7000'"]),
    (dict(n_train=True), TypeError, ["n_train", "True", "bool"]),
    (dict(n_train=None), TypeError, ["n_train", "None"]),
    (dict(n_val=float("nan")), TypeError, ["n_val", "nan"]),
    (dict(seed=0.5), TypeError, ["seed", "0.5"]),
    (dict(seed="0"), TypeError, ["seed", "'0'"]),
    (dict(seed=2**64), ValueError, ["seed", str(2**64)]),
    (dict(seed=-(2**63) - 1), ValueError, ["seed"]),
    (dict(dtype=torch.int64), TypeError, ["dtype", "torch.int64"]),
    (dict(dtype=torch.complex64), TypeError, ["dtype", "complex64"]),
    (dict(dtype="float32"), TypeError, ["dtype", "'float32'"]),
    (dict(dtype=np.float32), TypeError, ["dtype"]),
    (dict(device="gpu0"), ValueError, ["device", "'gpu0'"]),
    (dict(device="meta"), ValueError, ["device", "'meta'"]),
    (dict(device=3.5), ValueError, ["device", "3.5"]),
    (dict(normalize="no"), TypeError, ["normalize", "'no'"]),
    (dict(download="yes"), TypeError, ["download", "'yes'"]),
    (dict(root=5), TypeError, ["root", "5"]),
    (dict(root=""), TypeError, ["root", "''"]),
]


@pytest.mark.parametrize(("kw", "exc", "words"), BAD_SPLIT_ARGS, ids=lambda v: repr(v)[:40])
def test_mnist_split_refuses_bad_arguments_before_loading(kw, exc, words, no_download):
    with pytest.raises(exc) as info:
        mnist_split(**kw)
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.skipif(torch.cuda.is_available(), reason="cuda is available here")
def test_unavailable_cuda_is_named(no_download):
    with pytest.raises(ValueError, match=r"device='cuda'.*not available"):
        mnist_split(device="cuda")
    with pytest.raises(ValueError, match=r"device='cuda:1'"):
        cifar_split(device="cuda:1")


@pytest.mark.parametrize(
    ("kw", "exc", "words"),
    [
        (dict(n_val=0), ValueError, ["n_val", "0"]),
        (dict(n_val=-3), ValueError, ["n_val", "-3"]),
        (dict(n_val=2.5), TypeError, ["n_val", "2.5"]),
        (dict(seed=None), TypeError, ["seed", "None"]),
        (dict(dtype=torch.bool), TypeError, ["dtype", "torch.bool"]),
        (dict(device="tpu"), ValueError, ["device", "'tpu'"]),
        (dict(normalize=1), TypeError, ["normalize", "1"]),
    ],
)
def test_cifar_split_refuses_bad_arguments_before_loading(kw, exc, words, no_download):
    with pytest.raises(exc) as info:
        cifar_split(**kw)
    for w in words:
        assert w in str(info.value)


def test_load_functions_refuse_bad_flags(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_mnist(["test"], root=tmp_path)
    with pytest.raises(TypeError, match="download"):
        load_mnist("test", root=tmp_path, download="no")
    # a string where the flag `train` goes would be truthy: the test set silently became train
    with pytest.raises(TypeError, match=r"train must be True or False, got 'test'"):
        load_cifar("cifar10", "test", root=tmp_path)
    with pytest.raises(ValueError, match=r"verify must be 32 .* got 'abc'"):
        load_cifar("cifar10", root=tmp_path, verify="abc")
    with pytest.raises(TypeError, match="verify"):
        load_cifar("cifar10", root=tmp_path, verify=None)
    with pytest.raises(ValueError, match="name"):
        load_cifar(10, root=tmp_path)
    assert _files(tmp_path) == []  # nothing was created or downloaded


@given(n_train=st.integers(-(10**6), 10**6), n_val=st.integers(-(10**6), 10**6))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_mnist_split_sizes_property(n_train, n_val, monkeypatch):
    """Any pair of integers: a valid split of exactly the asked sizes, or a ValueError naming
    the offending size, never a silently different split."""
    n = data.MNIST_TEST_SIZE
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)  # row i holds i: rows are traceable
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: (x, torch.arange(n)))
    valid = 1 <= n_train and 1 <= n_val and n_train + n_val <= n
    if not valid:
        with pytest.raises(ValueError, match="n_train" if not 1 <= n_train < n else "n_val"):
            mnist_split(n_train, n_val, normalize=False)
        return
    s = mnist_split(n_train, n_val, normalize=False)
    assert [len(s[k][1]) for k in ("train", "val", "test")] == [n_train, n_val, n - n_train - n_val]
    ids = torch.cat([s[k][1] for k in ("train", "val", "test")])
    assert torch.equal(ids.sort().values, torch.arange(n))  # a partition of the file
    assert all(torch.equal(s[k][0][:, 0].long(), s[k][1]) for k in s)  # rows keep their labels


# ------------------------------------------------------------------------------ minibatches
def _xy(n=6):
    return torch.arange(n, dtype=torch.float32).unsqueeze(1), torch.arange(n)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: batch_stream(*_xy(), 0), ValueError, r"batch_size must be in 1\.\.6.*got 0"),
        (lambda: batch_stream(*_xy(), -2), ValueError, "batch_size.*-2"),
        (lambda: batch_stream(*_xy(), 7), ValueError, r"batch_size.*6 rows.*got 7"),
        (lambda: batch_stream(*_xy(), 2.5), TypeError, "batch_size.*2.5"),
        (lambda: batch_stream(*_xy(), 2, seed=1.5), TypeError, "seed.*1.5"),
        (lambda: batch_stream(*_xy(), 2, generator=7), TypeError, "generator.*7"),
        (lambda: batch_stream(torch.zeros(6, 1), torch.zeros(5), 2), ValueError, "6 rows.*5"),
        (lambda: batch_stream(np.zeros((6, 1)), torch.zeros(6), 2), TypeError, "x must be a tensor"),
        (lambda: batch_stream(torch.tensor(1.0), torch.tensor(1), 1), TypeError, "shape"),
        (lambda: batch_stream(torch.zeros(0, 1), torch.zeros(0), 1), ValueError, "empty"),
        (lambda: sample_batches(_xy(), 2, 0), ValueError, "num_batches.*0"),
        (lambda: sample_batches(_xy(), 2, -1), ValueError, "num_batches.*-1"),
        (lambda: sample_batches(_xy(), 2, 3.0), TypeError, "num_batches.*3.0"),
        (lambda: sample_batches({"train": _xy()}, 2, 1), TypeError, r"split\['train'\]"),
        (lambda: sample_batches(_xy()[0], 2, 1), TypeError, "pair"),
        (lambda: sample_batches((*_xy(), 1), 2, 1), TypeError, "pair.*length 3"),
    ],
)
def test_minibatch_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_batch_stream_checks_at_the_call_not_at_first_next():
    with pytest.raises(ValueError):
        batch_stream(*_xy(), 99)  # no next(): the old generator only failed when iterated


@given(n=st.integers(1, 40), b=st.integers(-5, 50), k=st.integers(1, 12), seed=st.integers(0, 2**64 - 1))
@settings(max_examples=200, deadline=None)
def test_sample_batches_property(n, b, k, seed):
    """Any sizes: ``k`` batches of exactly ``b`` distinct rows with their own labels, each epoch
    without repeats, or a ValueError naming batch_size."""
    x, y = torch.arange(n).unsqueeze(1) * 10, torch.arange(n)
    if not 1 <= b <= n:
        with pytest.raises(ValueError, match="batch_size"):
            sample_batches((x, y), b, k, seed=seed)
        return
    batches = sample_batches((x, y), b, k, seed=seed)
    assert len(batches) == k
    per_epoch = n // b
    for e in range(0, k, per_epoch):
        seen = torch.cat([yb for _, yb in batches[e : e + per_epoch]])
        assert len(set(seen.tolist())) == len(seen)  # no repeat within an epoch
    for xb, yb in batches:
        assert xb.shape == (b, 1) and torch.equal(xb[:, 0], yb * 10)
    assert all(torch.equal(a[1], c[1]) for a, c in zip(batches, sample_batches((x, y), b, k, seed=seed), strict=True))


# -------------------------------------------------------------------------------- IDX files
def _idx(code: int, shape: tuple, payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + np.array(shape, ">u4").tobytes() + payload


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "magic"),
        (b"\0\0", "magic"),
        (b"\0\1\x08\x01", "magic"),                        # second byte not zero
        (b"\0\0\x07\x01" + b"\0" * 8, "magic"),            # unknown dtype code
        (b"\0\0\x08\x03\0\0\0\x02", "truncated IDX header"),  # 3 dims announced, 1 given
        (_idx(0x08, (2, 3), b"\0" * 5), r"expected 18"),    # payload one byte short
        (_idx(0x08, (2, 3), b"\0" * 7), r"expected 18"),    # one byte too many
        (_idx(0x0C, (2,), b"\0" * 7), r"expected 16"),      # int32 payload not whole
        # dims whose product overflows int64: the size check must stay exact
        (_idx(0x08, (2**32 - 1,) * 4, b""), "expected"),
        (_idx(0x08, (2**16, 2**16, 2**16, 2**16), b"\0" * 12), "expected"),
    ],
)
def test_read_idx_refuses_malformed_files(tmp_path, raw, match):
    for path, content in ((tmp_path / "raw", raw), (tmp_path / "zipped.gz", gzip.compress(raw))):
        path.write_bytes(content)
        with pytest.raises(DataError, match=match):
            read_idx(path)


def test_read_idx_gzip_with_garbage_tail(tmp_path):
    path = tmp_path / "tail.gz"
    path.write_bytes(gzip.compress(_idx(0x08, (2,), b"ab")) + b"garbage")
    with pytest.raises(DataError, match="gzip"):
        read_idx(path)


@given(
    code=st.sampled_from(sorted(data._IDX_DTYPES)),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=3),
    cut=st.integers(-6, 6),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_read_idx_roundtrip_or_dataerror(tmp_path, code, shape, cut):
    """A well-formed IDX file reads back exactly; the same file a few bytes short or long is a
    DataError, never a reshaped or padded array."""
    dtype = np.dtype(data._IDX_DTYPES[code])
    a = (np.arange(int(np.prod(shape))) % 100).astype(dtype).reshape(shape)
    raw = _idx(code, tuple(shape), a.tobytes())
    raw = raw[: len(raw) + cut] if cut < 0 else raw + b"\x01" * cut
    path = tmp_path / f"f{code}-{'x'.join(map(str, shape))}-{cut}"
    path.write_bytes(raw)
    if cut == 0:
        np.testing.assert_array_equal(read_idx(path), a)
    else:
        with pytest.raises(DataError):
            read_idx(path)


# ---------------------------------------------------------------------------- CIFAR batches
def _cifar_folder(root: Path, batch) -> Path:
    spec = CIFAR_ARCHIVES["cifar10"]
    folder = root / spec["folder"]
    folder.mkdir(parents=True)
    for f in spec["train"] + spec["test"]:
        (folder / f).write_bytes(batch if isinstance(batch, bytes) else pickle.dumps(batch))
    return folder


GOOD = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 9]}


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (b"not a pickle", "not a CIFAR batch"),
        (pickle.dumps(GOOD)[:-20], "not a CIFAR batch"),            # truncated pickle
        ([1, 2, 3], "not a CIFAR batch"),                          # foreign pickle
        ({b"data": GOOD[b"data"]}, "labels"),                       # no labels
        ({**GOOD, b"data": np.zeros((2, 3000), np.uint8)}, "3072"),  # wrong image size
        ({**GOOD, b"labels": [0]}, "labels of shape"),             # one label short
        ({**GOOD, b"labels": [0, 10]}, r"labels outside 0\.\.9"),  # CIFAR-10 has 10 classes
        ({**GOOD, b"labels": [-1, 0]}, "labels outside"),
        ({**GOOD, b"labels": ["a", "b"]}, "unreadable"),
    ],
)
def test_corrupt_extracted_cifar_batches(tmp_path, batch, match):
    _cifar_folder(tmp_path, batch)
    with pytest.raises(DataError, match=match) as info:
        load_cifar("cifar10", root=tmp_path, download=False)
    assert "data_batch_1" in str(info.value)  # names the file


def test_cifar_split_n_val_must_leave_training_images(tmp_path):
    _cifar_folder(tmp_path, GOOD)  # 5 batches of 2 images: 10 training images
    with pytest.raises(ValueError, match=r"n_val must be < 10.*got 10"):
        cifar_split(n_val=10, root=tmp_path, download=False)
    s = cifar_split(n_val=9, root=tmp_path, download=False)
    assert len(s["train"][0]) == 1 and len(s["val"][0]) == 9


@pytest.mark.parametrize(
    "member",
    [
        "/etc/evil.txt",                       # absolute path
        "cifar-10-batches-py/../../evil.txt",  # escapes through a subfolder
        "..",                                  # the parent itself
    ],
)
def test_cifar_archive_path_traversal(tmp_path, member):
    root = tmp_path / "root"
    root.mkdir()
    archive = root / CIFAR_ARCHIVES["cifar10"]["file"]
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo(member)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataError, match="escapes"):
        load_cifar("cifar10", root=root, verify=False)
    assert _files(root) == [archive.name] and not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE])
def test_cifar_archive_special_members(tmp_path, kind):
    archive = tmp_path / CIFAR_ARCHIVES["cifar10"]["file"]
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        info.type, info.linkname = kind, "/etc/passwd"
        tf.addfile(info)
    with pytest.raises(DataError, match="special member"):
        load_cifar("cifar10", root=tmp_path, verify=False)
    assert _files(tmp_path) == [archive.name]


def test_cifar_archive_truncated(tmp_path):
    archive = tmp_path / CIFAR_ARCHIVES["cifar10"]["file"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
        payload = os.urandom(50_000)
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    archive.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(DataError, match="corrupt or truncated") as info:
        load_cifar("cifar10", root=tmp_path, verify=False)
    assert str(archive) in str(info.value)
    assert _files(tmp_path) == [archive.name]  # no half-extracted folder


# ------------------------------------------------------------------ downloads: local servers
class Server:
    """A one-behaviour HTTP server on 127.0.0.1 that stops by itself after ``life`` seconds."""

    def __init__(self, behaviour, life: float = 20.0):
        self.behaviour, self.stop = behaviour, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/file.bin"
        self.deadline = time.monotonic() + life
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _alive(self):
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def _serve(self):
        conns = []
        try:
            while self._alive():
                try:
                    conn, _ = self.sock.accept()
                except TimeoutError:
                    continue
                conns.append(conn)
                conn.settimeout(1.0)
                try:
                    conn.recv(65536)  # the request
                    self.behaviour(self, conn)
                except OSError:
                    pass
        finally:
            for c in conns:
                c.close()
            self.sock.close()

    def close(self):
        self.stop.set()
        self.thread.join(5)


@pytest.fixture
def server():
    made = []

    def make(behaviour, life=20.0):
        made.append(Server(behaviour, life))
        return made[-1]

    yield make
    for s in made:
        s.close()


def silent(srv, conn):
    """Accepts the connection, reads the request and never answers."""
    while srv._alive():
        time.sleep(0.05)


def answer(body: bytes, announced: int | None = None, pause: float = 0.0):
    def behaviour(srv, conn):
        n = len(body) if announced is None else announced
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % n)
        for i in range(0, len(body), 1 if pause else len(body) or 1):
            if not srv._alive():
                return
            conn.sendall(body[i : i + (1 if pause else len(body))])
            time.sleep(pause)
        conn.shutdown(socket.SHUT_WR)

    return behaviour


def test_silent_server_fails_fast_names_each_mirror_and_leaves_nothing(tmp_path, server):
    a, b = server(silent), server(silent)
    dest = tmp_path / "dl" / "file.bin"
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        fetch([a.url, b.url], dest, None, timeout=0.5)
    elapsed = time.monotonic() - start
    assert elapsed < 4, elapsed  # was 2 × 60 s
    msg = str(info.value)
    assert a.url in msg and b.url in msg and msg.count("no answer within 0.5 s") == 2
    assert "HYPERGRAD_DOWNLOAD_TIMEOUT" in msg
    assert _files(dest.parent) == []


def test_silent_mirror_then_good_mirror(tmp_path, server):
    body = os.urandom(5000)
    a, b = server(silent), server(answer(body))
    dest = tmp_path / "file.bin"
    fetch([a.url, b.url], dest, hashlib.md5(body).hexdigest(), timeout=0.5)
    assert dest.read_bytes() == body and _files(tmp_path) == ["file.bin"]


def test_load_mnist_with_silent_mirrors_via_environment(tmp_path, server, monkeypatch):
    a, b = server(silent), server(silent)
    monkeypatch.setattr(data, "MNIST_MIRRORS", (a.url[: -len("file.bin")], b.url[: -len("file.bin")]))
    monkeypatch.setenv("HYPERGRAD_DOWNLOAD_TIMEOUT", "0.3")
    start = time.monotonic()
    with pytest.raises(DataError, match=T10K_IMAGES) as info:
        load_mnist("test", root=tmp_path)
    assert time.monotonic() - start < 4
    assert str(info.value).count("no answer within 0.3 s") == 2
    assert _files(tmp_path / "mnist") == []


def test_trickling_server_hits_the_overall_deadline(tmp_path, server):
    """A server that keeps sending one byte at a time never trips the per-read timeout: the
    overall deadline stops it."""
    slow = server(answer(b"z" * 10_000, pause=0.02))
    dest = tmp_path / "file.bin"
    start = time.monotonic()
    with pytest.raises(DataError, match=r"deadline") as info:
        fetch(slow.url, dest, None, timeout=2, deadline=0.5)
    assert time.monotonic() - start < 3
    assert slow.url in str(info.value)
    assert _files(tmp_path) == []


def test_deadline_passed_before_second_mirror(tmp_path, server):
    a, b = server(silent), server(silent)
    with pytest.raises(DataError) as info:
        fetch([a.url, b.url], tmp_path / "f", None, timeout=5, deadline=0.4)
    assert "not tried, the 0.4 s deadline had passed" in str(info.value)


@pytest.mark.parametrize("md5", [None, "0" * 32])
def test_truncated_body_is_refused_with_or_without_checksum(tmp_path, server, md5):
    srv = server(answer(b"q" * 500, announced=1000))
    with pytest.raises(DataError, match="truncated: 500 of 1000 bytes|IncompleteRead") as info:
        fetch(srv.url, tmp_path / "f.bin", md5, timeout=2)
    assert srv.url in str(info.value)
    assert _files(tmp_path) == []


def test_wrong_checksum_from_server(tmp_path, server):
    srv = server(answer(b"w" * 1000))
    with pytest.raises(DataError, match="expected " + "1" * 32):
        fetch(srv.url, tmp_path / "f.bin", "1" * 32, timeout=2)
    assert _files(tmp_path) == []


def test_http_error_status_names_the_mirror(tmp_path, server):
    def not_found(srv, conn):
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    srv = server(not_found)
    with pytest.raises(DataError, match="404") as info:
        fetch(srv.url, tmp_path / "f.bin", None, timeout=2)
    assert srv.url in str(info.value) and _files(tmp_path) == []


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(timeout=0), "timeout must be a positive"),
        (dict(timeout=-1), "timeout.*-1"),
        (dict(timeout=float("inf")), "timeout.*inf"),
        (dict(timeout="5"), "timeout.*'5'"),
        (dict(deadline=float("nan")), "deadline.*nan"),
        (dict(deadline=True), "deadline.*True"),
    ],
)
def test_fetch_limits_are_checked(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        fetch("http://127.0.0.1:9/x", tmp_path / "f", None, **kw)


@pytest.mark.parametrize("var", ["HYPERGRAD_DOWNLOAD_TIMEOUT", "HYPERGRAD_DOWNLOAD_DEADLINE"])
@pytest.mark.parametrize("value", ["soon", "0", "-3", "inf"])
def test_fetch_limits_from_environment_are_checked(tmp_path, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=rf"\${var}.*{value}"):
        fetch("http://127.0.0.1:9/x", tmp_path / "f", None)


@pytest.mark.parametrize(
    ("urls", "md5", "match"),
    [
        ([], None, "urls"),
        ([""], None, "urls"),
        ([None], None, "urls"),
        ("http://127.0.0.1:9/x", "F" * 32, "md5"),  # upper case: not what md5sum writes
        ("http://127.0.0.1:9/x", "abc", "md5"),
    ],
)
def test_fetch_arguments(tmp_path, urls, md5, match):
    with pytest.raises(ValueError, match=match):
        fetch(urls, tmp_path / "f", md5)


def test_unwritable_destination_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    with pytest.raises(OSError, match=r"cannot write f into .*HYPERGRAD_DATA"):
        fetch("http://127.0.0.1:9/x", blocker / "f", None)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_data_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="writable folder"):
            fetch("http://127.0.0.1:9/x", ro / "f", None)
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize(
    ("xb", "gen", "exc", "match"),
    [
        (torch.zeros(3, 32, 32), None, ValueError, r"\(N, C, H, W\), got \(3, 32, 32\)"),
        (np.zeros((1, 3, 32, 32)), None, ValueError, "ndarray"),
        (torch.zeros(1, 3, 32, 32), 0, TypeError, "generator"),
    ],
)
def test_augment_cifar_arguments(xb, gen, exc, match):
    with pytest.raises(exc, match=match):
        data.augment_cifar(xb, gen)


def test_numpy_integers_are_integers(monkeypatch):
    """Sizes and seeds computed with numpy are accepted (numbers.Integral), not refused."""
    n = data.MNIST_TEST_SIZE
    monkeypatch.setattr(data, "load_mnist", lambda *a, **k: (torch.zeros(n, 1), torch.arange(n)))
    s = mnist_split(np.int64(20), np.int32(5), seed=np.uint64(2**63), normalize=False)
    assert [len(s[k][0]) for k in ("train", "val", "test")] == [20, 5, n - 25]
    assert len(sample_batches(s["train"], np.int16(4), np.int8(3), seed=np.int64(-1))) == 3


def test_interrupt_during_download_leaves_nothing(tmp_path, monkeypatch):
    class Interrupted(io.BytesIO):
        def read(self, n=-1):
            raise KeyboardInterrupt

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Interrupted())
    with pytest.raises(KeyboardInterrupt):  # not swallowed as a failed mirror
        fetch(["https://a.invalid/f", "https://b.invalid/f"], tmp_path / "dl" / "f", None)
    assert _files(tmp_path / "dl") == []


@pytest.mark.parametrize("url", ["ftpx://host/f", "file:///", "not a url"])
def test_unusable_urls_are_named(tmp_path, url):
    with pytest.raises(DataError) as info:
        fetch(url, tmp_path / "f", None, timeout=1)
    assert url in str(info.value) and _files(tmp_path) == []


def test_data_root_that_is_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("HYPERGRAD_DATA", str(blocker))
    with pytest.raises(FileNotFoundError, match="HYPERGRAD_DATA"):
        load_mnist("test", download=False)
    with pytest.raises(NotADirectoryError, match="writable folder"):
        load_mnist("test", download=True)
