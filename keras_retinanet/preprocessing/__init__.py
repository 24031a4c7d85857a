"""Datasets, batching and augmentation for training and evaluation.

Names are imported lazily: the generators pull in Keras (and its backend), which tools that
only read images or annotations should not pay for.
"""

import importlib

_PUBLIC = {
    "Generator": "generator",
    "PascalVocGenerator": "voc",
    "VOC_CLASSES": "voc",
    "read_class_names": "voc",
    "CSVGenerator": "csv",
    "CocoGenerator": "coco",
    "RandomTransform": "transform",
    "random_transform": "transform",
    "ImageReadError": "image",
    "read_image_bgr": "image",
    "preprocess_image": "image",
    "resize_image": "image",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        module = importlib.import_module(f"{__name__}.{_PUBLIC[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
