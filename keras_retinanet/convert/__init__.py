"""Importers of other projects' pretrained RetinaNets, one module each.

- :func:`convert_fizyr`: fizyr keras-retinanet ResNet snapshots (``.h5``), variant ``fizyr``.
- :func:`convert_torchvision`: torchvision ``retinanet_resnet50_fpn`` / ``_v2`` state_dicts
  (``.pth``, read without PyTorch), variants ``torchvision_v1`` / ``torchvision_v2``.

Each writes an ordinary training snapshot of this package whose metadata records the variant,
so ``models.load_model``, ``retinanet-predict``, ``-evaluate``, ``-export`` and
``retinanet-train --weights`` take it like any other.
"""

from keras_retinanet.convert.common import (
    COCO_CLASSES,
    ConversionError,
    coco_classes_by_id,
)
from keras_retinanet.convert.fizyr import convert_fizyr
from keras_retinanet.convert.pretrained import PRETRAINED, download_pretrained
from keras_retinanet.convert.pth import PthError, read_state_dict
from keras_retinanet.convert.torchvision import convert_torchvision

__all__ = [
    "COCO_CLASSES",
    "PRETRAINED",
    "ConversionError",
    "PthError",
    "coco_classes_by_id",
    "convert_fizyr",
    "convert_torchvision",
    "download_pretrained",
    "read_state_dict",
]
