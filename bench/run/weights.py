"""Pretrained weights: taken from torch hub's cache (``$TORCH_HOME``), downloaded when online, never skipped silently.

Every record says which weights a cell started from (``weights``), with the checksum of the file used.
``BENCH_WEIGHTS_URL`` replaces torchvision's download address (a local mirror; the tests' loopback server).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


class WeightsError(ValueError):
    """Pretrained weights that are neither cached nor downloadable; the message names both fixes."""


def _resnet18():
    from torchvision.models import ResNet18_Weights

    return ResNet18_Weights.DEFAULT


def resnet18_path() -> Path:
    """Where torchvision looks for the resnet18 ImageNet weights: ``<torch hub dir>/checkpoints/<file>``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(_resnet18().url).name


def ensure_resnet18() -> Path:
    """The cached weights file, downloaded (checksum verified) when it is missing; WeightsError when offline."""
    import torch

    path = resnet18_path()
    if path.is_file():
        return path
    url = os.environ.get("BENCH_WEIGHTS_URL") or _resnet18().url
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = torch.hub.HASH_REGEX.search(path.name).group(1)
    try:
        torch.hub.download_url_to_file(url, str(path), hash_prefix=prefix, progress=False)
    except (OSError, RuntimeError) as e:  # URLError is an OSError; a checksum mismatch is a RuntimeError
        raise WeightsError(
            f"pretrained resnet18 weights are not in the torch hub cache ({path}) and could not be downloaded "
            f"from {url} ({type(e).__name__}: {e}). Fix: put {path.name} into {path.parent} (or set TORCH_HOME "
            "to a cache that has hub/checkpoints/" + path.name + "), or train from random initialisation with "
            "`pretrained = false` in the suite / `--no-pretrained` on the command line"
        ) from e
    return path


def describe(pretrained: bool | None) -> dict:
    """What a record says about its starting weights."""
    if not pretrained:
        return {"source": "random initialisation", "pretrained": False}
    path = resnet18_path()
    sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    expected = path.name.rsplit("-", 1)[-1].split(".")[0]  # torchvision names files <arch>-<sha256 prefix>.pth
    return {
        "source": f"torchvision {_resnet18()}",
        "pretrained": True,
        "file": str(path),
        "sha256": sha,
        "checksum_ok": bool(sha and sha.startswith(expected)),
    }
