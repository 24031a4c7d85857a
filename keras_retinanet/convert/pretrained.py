"""The published pretrained RetinaNets we convert, and their download.

We ship converters, not weight files (none of the publishers' files is ours to redistribute):
:func:`download_pretrained` fetches a file from its publisher, checks it, and converts it once
into a snapshot of this package, cached beside the download.
"""

from __future__ import annotations

import hashlib
import os

from keras_retinanet.convert.fizyr import convert_fizyr
from keras_retinanet.convert.torchvision import convert_torchvision
from keras_retinanet.model.download import DownloadError, fetch_file
from keras_retinanet.model.presets import Preset, presets_of

# The published detectors we convert: the "detector" entries of the one preset registry.
PRETRAINED: dict[str, Preset] = presets_of("detector")


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_pretrained(
    name: str,
    output: str | None = None,
    cache_dir: str | None = None,
    url: str | None = None,
    sha256_prefix: str | None = "registered",
) -> str:
    """Download a published RetinaNet (once) and convert it (once) to a snapshot.

    Args:
        name: a key of :data:`PRETRAINED`.
        output: the snapshot to write; default ``<cache>/keras_retinanet/<name>.keras``.
        cache_dir: where downloads go (``keras.utils.get_file``'s, default ``~/.keras``).
        url: another location of the same file (a mirror, or ``file://`` for a local copy).
        sha256_prefix: the expected hash prefix: ``"registered"`` (the default) takes the
            registry's, None checks nothing.

    Returns:
        the snapshot's path; ``models.load_model(path, convert=True)`` gives the detector.

    Raises:
        ValueError: an unknown name (the message lists them).
        DownloadError: the file could not be downloaded, or its hash differs (the file is
            deleted); the message says why and how to convert a copy fetched elsewhere.
    """

    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {sorted(PRETRAINED)}")
    weights = PRETRAINED[name].weights
    origin = url or weights.url
    expected = weights.file_hash if sha256_prefix == "registered" else sha256_prefix
    offline = (
        f"convert it with retinanet-convert --from {weights.source} FILE OUT.keras"
        + (f" --arch {weights.arch}" if weights.arch else "")
        + f" (or pass --url file:///path/to/{os.path.basename(weights.url)})"
    )
    path = fetch_file(
        f"pretrained detector {name}",
        weights.url,
        offline,
        cache_subdir="keras_retinanet",
        cache_dir=cache_dir,
        origin=origin,
    )
    if expected and not _sha256(path).startswith(expected):
        os.remove(path)
        raise DownloadError(
            f"could not download the pretrained detector {name} from {origin}: the file's "
            f"SHA-256 does not start with {expected} (an incomplete or different file; it was "
            f"removed from {path}). Run again to download it again, or: {offline}"
        )
    output = output or os.path.join(os.path.dirname(path), f"{name}.keras")
    if not (os.path.isfile(output) and os.path.getmtime(output) >= os.path.getmtime(path)):
        if weights.source == "fizyr":
            convert_fizyr(path, output)
        else:
            convert_torchvision(path, output, arch=weights.arch)
    return output
