"""The published pretrained RetinaNets we convert, and their download.

We ship converters, not weight files (none of the publishers' files is ours to redistribute):
:func:`download_pretrained` fetches a file from its publisher, checks it, and converts it once
into a snapshot of this package, cached beside the download.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import keras

from keras_retinanet.convert.common import ConversionError
from keras_retinanet.convert.fizyr import convert_fizyr
from keras_retinanet.convert.torchvision import convert_torchvision


@dataclasses.dataclass(frozen=True)
class PretrainedSource:
    """One published file.

    Attributes:
        name: the key in :data:`PRETRAINED`.
        source: ``"fizyr"`` or ``"torchvision"`` (the converter).
        arch: torchvision's ``"v1"``/``"v2"``; None for fizyr.
        url: where its publisher serves it.
        sha256_prefix: the leading hex digits of its SHA-256 (torchvision puts them in the file
            name), checked after download; None when the publisher gives none.
        coco_ap: the publisher's COCO val2017 box AP (IoU 0.50:0.95), in percent.
        note: licence and provenance, in a line.
    """

    name: str
    source: str
    arch: str | None
    url: str
    sha256_prefix: str | None
    coco_ap: float
    note: str


PRETRAINED: dict[str, PretrainedSource] = {
    "fizyr_resnet50_coco": PretrainedSource(
        "fizyr_resnet50_coco",
        "fizyr",
        None,
        "https://github.com/fizyr/keras-retinanet/releases/download/0.5.1/"
        "resnet50_coco_best_v2.1.0.h5",
        None,
        35.0,
        "fizyr keras-retinanet release 0.5.1 (Apache-2.0 project); trained on COCO 2017",
    ),
    "torchvision_v1_coco": PretrainedSource(
        "torchvision_v1_coco",
        "torchvision",
        "v1",
        "https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth",
        "eeacb38b",
        36.4,
        "torchvision RetinaNet_ResNet50_FPN_Weights.COCO_V1 (BSD-3 project); trained on COCO",
    ),
    "torchvision_v2_coco": PretrainedSource(
        "torchvision_v2_coco",
        "torchvision",
        "v2",
        "https://download.pytorch.org/models/retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
        "5905b1c5",
        41.5,
        "torchvision RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1 (BSD-3 project); trained on COCO",
    ),
}


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
        ConversionError: the download's hash differs (the file is deleted; download again).
    """

    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {sorted(PRETRAINED)}")
    entry = PRETRAINED[name]
    origin = url or entry.url
    expected = entry.sha256_prefix if sha256_prefix == "registered" else sha256_prefix
    if cache_dir:  # keras falls back to /tmp/.keras for a folder that does not exist yet
        os.makedirs(cache_dir, exist_ok=True)
    path = keras.utils.get_file(
        os.path.basename(entry.url),
        origin=origin,
        cache_dir=cache_dir,
        cache_subdir="keras_retinanet",
    )
    if expected and not _sha256(path).startswith(expected):
        os.remove(path)
        raise ConversionError(
            f"{path} downloaded from {origin} does not have SHA-256 prefix {expected}: an "
            "incomplete or different file, now deleted; run again to download it again"
        )
    output = output or os.path.join(os.path.dirname(path), f"{name}.keras")
    if not (os.path.isfile(output) and os.path.getmtime(output) >= os.path.getmtime(path)):
        if entry.source == "fizyr":
            convert_fizyr(path, output)
        else:
            convert_torchvision(path, output, arch=entry.arch)
    return output
