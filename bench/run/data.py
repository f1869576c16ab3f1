"""MNIST: find or download the four IDX files, validate them, and build the cached derived forms.

Raw files are looked up in ``--data-dir`` / ``BENCH_DATA_DIR``, then in the default data folder; when none
holds them they are downloaded from the public mirrors into the first writable of those folders.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import shutil
import struct
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

# Uncompressed SHA-256 of the official files: mirrors re-compress them, so only the content is comparable.
FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
# The mirrors torchvision uses, in its order. BENCH_MNIST_MIRRORS (comma-separated URLs) replaces them.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
SPLITS = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
# The seed's normalisation constants (Mastering PyTorch, ch. 14), kept as the seed has them.
MEAN, STD = 0.1302, 0.3069
DOWNLOAD_TIMEOUT_S = 60


class DataError(ValueError):
    """Missing, corrupt or undownloadable MNIST; the message names the file and the fix."""


def cache_dir() -> Path:
    """Where derived data lives: ``BENCH_CACHE_DIR``, else ``~/.cache/bench``."""
    return Path(os.environ.get("BENCH_CACHE_DIR") or Path.home() / ".cache" / "bench")


def default_data_dir() -> Path:
    return cache_dir() / "mnist" / "raw"


def _candidates(data_dir: str | os.PathLike | None) -> list[Path]:
    chosen = data_dir or os.environ.get("BENCH_DATA_DIR")
    dirs = [Path(chosen)] if chosen else []
    return [*dirs, default_data_dir()]


MAX_INFLATED = 64 << 20  # the largest of the four, train-images, is 47,040,016 bytes inflated


def _inflate(path: Path) -> bytes:
    """One gzip file's content, decompressed as a stream and stopped at ``MAX_INFLATED`` (a gzip bomb of 300 kB would
    otherwise take 655 MB); anything unreadable is one DataError naming the fix."""
    out, size = [], 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                size += len(chunk)
                if size > MAX_INFLATED:
                    raise DataError(f"{path}: inflates to more than {MAX_INFLATED >> 20} MiB, which no MNIST file "
                                    "does; delete it and run `bench data` again")  # fmt: skip
                out.append(chunk)
    except (OSError, EOFError, zlib.error) as e:  # zlib.error: corrupt inside (a flipped bit), not truncated
        raise DataError(f"{path}: not a readable gzip file ({e}); delete it and run `bench data` again") from e
    return b"".join(out)


def _content_sha256(path: Path) -> str:
    return hashlib.sha256(_inflate(path)).hexdigest()


def read_idx(path: Path) -> np.ndarray:
    """Read one gzip IDX file, checking magic number, dimensions and length."""
    raw = _inflate(path)
    if len(raw) < 8:
        raise DataError(f"{path}: truncated (only {len(raw)} bytes); delete it and run `bench data` again")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: bad IDX magic number {raw[:4].hex()} (expected 00000801 or 00000803)")
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DataError(f"{path}: {len(raw)} bytes but header {dims} needs {expected}: truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def validate(folder: Path) -> None:
    """Check all four files: content checksum, then shapes, counts and label range."""
    for name, sha in FILES.items():
        path = folder / name
        try:
            digest = _content_sha256(path)
        except (OSError, EOFError) as e:
            raise DataError(f"{path}: unreadable ({e}); delete it and run `bench data` again") from e
        if digest != sha:
            # Fall through to the structural checks for a more specific message, then report the checksum.
            read_idx(path)
            raise DataError(f"{path}: content SHA-256 {digest} is not MNIST's {sha}; replace the file")
    for split, (images, labels, count) in SPLITS.items():
        x, y = read_idx(folder / images), read_idx(folder / labels)
        if x.shape != (count, 28, 28) or y.shape != (count,) or y.max() > 9:
            raise DataError(f"{folder}: {split} split has shapes {x.shape}/{y.shape}, expected ({count}, 28, 28)")


def _download_one(name: str, dest: Path, mirrors: list[str]) -> None:
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        # Temp file in the destination folder so the final rename is atomic.
        fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                shutil.copyfileobj(resp, out)
            digest = _content_sha256(Path(tmp))
            if digest != FILES[name]:
                raise DataError(f"content SHA-256 {digest[:12]}… does not match")
            os.replace(tmp, dest / name)
            return
        except Exception as e:  # any failure of one mirror: try the next
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise DataError(
        f"could not download {name}:\n  " + "\n  ".join(errors) + "\nOffline? Put the four MNIST .gz files in a "
        "folder and set BENCH_DATA_DIR to it (or pass --data-dir)."
    )


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def locate(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return a folder holding the four validated MNIST files, downloading them if needed."""
    candidates = _candidates(data_dir)
    for folder in candidates:
        if all((folder / name).is_file() for name in FILES):
            validate(folder)
            return folder
    target = next((d for d in candidates if _writable(d)), None)
    if not download or target is None:
        raise DataError(
            f"MNIST not found in {', '.join(map(str, candidates))}. Set BENCH_DATA_DIR (or --data-dir) to a "
            "folder holding the four MNIST .gz files."
        )
    env = os.environ.get("BENCH_MNIST_MIRRORS")
    mirrors = [m for m in env.split(",") if m] if env else list(MIRRORS)
    for name in FILES:
        if not (target / name).is_file():
            _download_one(name, target, mirrors)
    validate(target)
    return target


def _derived_dir() -> Path:
    # Keyed by the raw content checksums, so a different data set can never reuse a stale cache.
    key = hashlib.sha256("".join(FILES.values()).encode()).hexdigest()[:12]
    return cache_dir() / "mnist" / f"derived-{key}"


def _atomic_save(obj: object, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def tensors(split: str, data_dir: str | os.PathLike | None = None, limit: int | None = None):
    """Normalised float32 images (N, 1, 28, 28) and int64 labels for ``train`` or ``test``, cached on disk;
    with ``limit``, the first ``limit`` of them (a suite's ``limit_train`` / ``limit_test``)."""
    import torch

    path = _derived_dir() / f"{split}-normalised.pt"
    if not path.is_file():
        folder = locate(data_dir)
        images, labels, _ = SPLITS[split]
        x = torch.from_numpy(read_idx(folder / images).copy()).float().div_(255).sub_(MEAN).div_(STD)
        y = torch.from_numpy(read_idx(folder / labels).astype(np.int64))
        _atomic_save({"x": x.unsqueeze(1).contiguous(), "y": y}, path)
    data = torch.load(path, mmap=True, weights_only=True)
    return data["x"][: limit or None], data["y"][: limit or None]


def png_folders(data_dir: str | os.PathLike | None = None) -> Path:
    """The ``mnist_png`` layout fastai's ``URLs.MNIST`` has: ``{training,testing}/<digit>/<index>.png``."""
    root = _derived_dir() / "mnist_png"
    if (root / ".complete").is_file():
        return root
    folder = locate(data_dir)
    _derived_dir().mkdir(parents=True, exist_ok=True)
    # one builder at a time (processes sharing a cache): the others wait, then find the tree complete
    with open(_derived_dir() / ".mnist_png.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / ".complete").is_file():
            _build_png(folder, root)
    return root


def _build_png(folder: Path, root: Path) -> None:
    from PIL import Image

    tmp = Path(tempfile.mkdtemp(dir=_derived_dir(), prefix=".mnist_png."))
    try:
        for split, sub in (("train", "training"), ("test", "testing")):
            images, labels, _ = SPLITS[split]
            x, y = read_idx(folder / images), read_idx(folder / labels)
            for digit in range(10):
                (tmp / sub / str(digit)).mkdir(parents=True)
            for i, (img, label) in enumerate(zip(x, y)):
                Image.fromarray(img).save(tmp / sub / str(label) / f"{i}.png")
        (tmp / ".complete").touch()
        if root.exists():  # a half-built tree from a killed run
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
