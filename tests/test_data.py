"""MNIST lookup, validation, download (against a loopback HTTP server) and derived caches."""

from __future__ import annotations

import gzip
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from bench.run import data
from bench.run.data import DataError
from tests.conftest import Loopback, loopback


def write_idx(path: Path, array: np.ndarray, magic_dims: int | None = None) -> None:
    ndim = array.ndim if magic_dims is None else magic_dims
    header = struct.pack(">HBB", 0, 0x08, ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_real_mnist_validates(mnist_dir):
    data.validate(mnist_dir)
    labels = data.read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture
def copy_of(mnist_dir, tmp_path) -> Path:
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_dir, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    return folder


def test_truncated_file_is_named(copy_of):
    path = copy_of / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz.*truncated or corrupt"):
        data.validate(copy_of)


def test_cut_gzip_stream_is_named(copy_of):
    path = copy_of / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz"):
        data.validate(copy_of)


def test_bad_magic_number_is_named(copy_of):
    path = copy_of / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[2] = 0x0D  # float data type instead of ubyte
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: bad IDX magic number"):
        data.validate(copy_of)


def test_wrong_content_fails_checksum(copy_of):
    # A structurally valid file with the right shape but other pixels: only the checksum can tell.
    write_idx(copy_of / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz: content SHA-256 .* is not MNIST's"):
        data.validate(copy_of)


def test_offline_without_data_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_MNIST_MIRRORS", "http://127.0.0.1:9/")  # discard port: connection refused
    with pytest.raises(DataError, match="BENCH_DATA_DIR"):
        data.locate(tmp_path / "empty")


class _Mirrors(Loopback):
    """/good/ serves the real files, /wrong/ serves other bytes, /broken/ answers 500."""

    source: Path

    def do_GET(self):
        kind, _, name = self.path.strip("/").partition("/")
        if kind == "broken" or name not in data.FILES:
            self.send_error(500)
            return
        body = (self.source / name).read_bytes()
        if kind == "wrong":
            body = gzip.compress(b"not mnist" * 1000)
        self.reply(body)


@pytest.fixture
def mirrors(mnist_dir):
    with loopback(type("Handler", (_Mirrors,), {"source": mnist_dir})) as url:
        yield url


def test_download_falls_through_broken_and_wrong_mirrors(mirrors, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_MNIST_MIRRORS", f"{mirrors}/broken/,{mirrors}/wrong/,{mirrors}/good/")
    target = tmp_path / "downloaded"
    assert data.locate(target) == target
    assert sorted(p.name for p in target.iterdir()) == sorted(data.FILES)  # no temp files left behind
    data.validate(target)


def test_download_with_only_bad_mirrors_names_each(mirrors, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("BENCH_MNIST_MIRRORS", f"{mirrors}/broken/,{mirrors}/wrong/")
    with pytest.raises(DataError) as info:
        data.locate(tmp_path / "downloaded")
    message = str(info.value)
    assert "/broken/" in message and "/wrong/" in message and "does not match" in message
    assert "BENCH_DATA_DIR" in message
    assert not any((tmp_path / "downloaded").iterdir())


def test_default_folder_is_used_when_no_dir_given(mnist_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    shutil.copytree(mnist_dir, data.default_data_dir())
    assert data.locate() == data.default_data_dir()


def test_normalised_tensors_are_cached(mnist_dir, cache):
    x, y = data.tensors("test", mnist_dir)
    assert tuple(x.shape) == (10000, 1, 28, 28) and tuple(y.shape) == (10000,)
    # The test set's pixel mean under the seed's normalisation constants.
    assert abs(float(x.mean()) - (0.13251 - data.MEAN) / data.STD) < 1e-3
    cached = list(cache.rglob("test-normalised.pt"))
    assert len(cached) == 1
    mtime = os.path.getmtime(cached[0])
    data.tensors("test", mnist_dir)
    assert os.path.getmtime(cached[0]) == mtime


@pytest.mark.slow  # 70,000 PNGs: make test, not the inner loop
def test_png_folders_have_fastais_mnist_layout(mnist_dir, cache):
    from PIL import Image

    # the session's folders (cache): built here, or by the fastai test that needed them first (70,000 PNGs, 10 s)
    root = data.png_folders(mnist_dir)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["testing", "training"]
    counts = {d.name: len(list(d.iterdir())) for d in (root / "testing").iterdir()}
    assert counts == {str(k): v for k, v in enumerate([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])}
    assert sum(len(list(d.iterdir())) for d in (root / "training").iterdir()) == 60000
    labels = data.read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    images = data.read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    png = root / "testing" / str(labels[7]) / "7.png"
    assert (np.asarray(Image.open(png)) == images[7]).all()  # lossless, label = parent folder
    assert data.png_folders(mnist_dir) == root  # built once, then reused
