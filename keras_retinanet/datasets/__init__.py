"""Datasets that ship with the package (written on demand, no download)."""

from keras_retinanet.datasets.shapes import SHAPE_CLASSES, write_shapes_dataset

__all__ = ["SHAPE_CLASSES", "write_shapes_dataset"]
