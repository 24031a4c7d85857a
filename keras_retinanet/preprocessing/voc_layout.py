"""Where the images and XML files of a Pascal VOC style folder are, whatever tool wrote it.

Three layouts are read:

* ``voc``: ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/<set>.txt`` (the VOC
  releases);
* ``no_sets``: ``Annotations/`` and ``JPEGImages/`` without ``ImageSets/Main/``;
* ``flat``: one XML beside each image, in the folder or its subfolders (LabelImg's default).

Without split files, the images are split once, seeded: a ``val_fraction`` of them (0.1 by
default) is the validation part (set names ``val`` and ``test``), the rest the training part
(``train`` and ``trainval``); ``all`` is every image. The split depends only on the image ids,
the fraction and the seed, so training and a later evaluation see the same parts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from lxml import etree

from keras_retinanet.model.files import DataFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
TRAIN_SETS = ("train", "trainval")  # the training part of a folder without split files
VAL_SETS = ("val", "test")  # its validation part
DEFAULT_VAL_FRACTION = 0.1  # a tenth held out: enough to see mAP move on a few hundred images
DEFAULT_SPLIT_SEED = 0


@dataclass(frozen=True)
class VocLayout:
    """The annotation files of a folder.

    Attributes:
        data_dir: the folder.
        kind: ``"voc"``, ``"no_sets"`` or ``"flat"`` (see the module docstring).
        annotations: image id -> XML path; ids are file stems (``flat``: relative to
            ``data_dir``, without extension).
    """

    data_dir: str
    kind: str
    annotations: dict[str, str]

    @property
    def has_sets(self) -> bool:
        return self.kind == "voc"


def find_layout(data_dir: str | os.PathLike) -> VocLayout:
    """Read which layout a folder has and index its XML files.

    Raises:
        FileNotFoundError: the folder does not exist, or holds no XML file (the message says
            which layouts are read).
    """
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(
            f"VOC data directory not found: {data_dir}. Pass the folder that holds "
            "Annotations/ and JPEGImages/ (e.g. VOCdevkit/VOC2007), or images with one XML "
            "beside each (LabelImg)."
        )
    annotations_dir = os.path.join(data_dir, "Annotations")
    if os.path.isdir(annotations_dir) and os.path.isdir(os.path.join(data_dir, "JPEGImages")):
        sets = os.path.isdir(os.path.join(data_dir, "ImageSets", "Main"))
        annotations = {
            name[:-4]: os.path.join(annotations_dir, name)
            for name in sorted(os.listdir(annotations_dir))
            if name.lower().endswith(".xml")
        }
        return VocLayout(data_dir, "voc" if sets else "no_sets", annotations)
    annotations = {}
    for root, folders, files in os.walk(data_dir):
        folders.sort()
        for name in sorted(files):
            if name.lower().endswith(".xml"):
                path = os.path.join(root, name)
                annotations[os.path.relpath(path, data_dir)[:-4]] = path
    if not annotations:
        raise FileNotFoundError(
            f"no annotation found in {data_dir}: expected Pascal VOC layout (Annotations/, "
            "JPEGImages/, optionally ImageSets/Main/<set>.txt) or images with one .xml beside "
            "each, as LabelImg writes them."
        )
    return VocLayout(data_dir, "flat", annotations)


def split_ids(
    ids: list[str],
    set_name: str,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SPLIT_SEED,
) -> list[str]:
    """The ids of one part of a folder without split files.

    Args:
        ids: every image id.
        set_name: ``train``/``trainval`` (training part), ``val``/``test`` (validation part)
            or ``all``.
        val_fraction: share of the images in the validation part, rounded, at least one image
            when the fraction is above 0 and there are two images or more.
        seed: the split's seed.

    Raises:
        ValueError: an unknown set name or a fraction outside [0, 1).
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(ids)
    if set_name == "all":
        return ids
    count = round(val_fraction * len(ids))
    if val_fraction > 0 and len(ids) > 1:
        count = min(max(count, 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    val = {ids[i] for i in order[:count]}
    if set_name in TRAIN_SETS:
        return [i for i in ids if i not in val]
    if set_name in VAL_SETS:
        return [i for i in ids if i in val]
    raise ValueError(
        f"set {set_name!r} is not available: the folder has no ImageSets/Main/, so its parts "
        f"are {TRAIN_SETS} (training), {VAL_SETS} (a {val_fraction:g} validation split) and "
        "'all'"
    )


def find_image(layout: VocLayout, image_id: str, filename: str | None, extension: str) -> str:
    """The image of an annotation: ``JPEGImages/<id><extension>`` (or beside the XML in a
    flat folder), else the same stem with another image extension, else the XML's
    ``<filename>``. Returns the first candidate when none exists: the loader then names it."""
    if layout.kind == "flat":
        folder = os.path.dirname(layout.annotations[image_id])
        stem = os.path.basename(image_id)
    else:
        folder, stem = os.path.join(layout.data_dir, "JPEGImages"), image_id
    candidates = [os.path.join(folder, stem + extension)]
    candidates += [os.path.join(folder, stem + e) for e in IMAGE_EXTENSIONS if e != extension]
    candidates += [os.path.join(folder, stem + e.upper()) for e in IMAGE_EXTENSIONS]
    if filename:
        candidates.append(os.path.join(folder, os.path.basename(filename)))
    return next((path for path in candidates if os.path.exists(path)), candidates[0])


def class_names_in(paths: list[str]) -> list[str]:
    """The sorted object names of some VOC XML files.

    Raises:
        ValueError: a malformed file (the message names it).
    """
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    names = set()
    for path in paths:
        try:
            root = etree.parse(path, parser).getroot()
        except etree.XMLSyntaxError as e:
            raise DataFileError(f"malformed XML in {path}: {e}") from e
        names.update((obj.findtext("name") or "").strip() for obj in root.findall("object"))
    names.discard("")
    return sorted(names)
