"""Old module paths, kept for code written before the model tier existed.

``keras_retinanet.anchors``, ``keras_retinanet.layers`` and the other model modules moved into
:mod:`keras_retinanet.model`. Importing an old path gives the moved module itself (the same
object, so ``isinstance`` checks and monkeypatching still work): a finder on ``sys.meta_path``
answers for exactly the names in :data:`MOVED`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    f"keras_retinanet.{name}": f"keras_retinanet.model.{name}"
    for name in (
        "anchors",
        "anchor_config",
        "backbones",
        "boxes",
        "filter_detections",
        "fold",
        "layers",
        "losses",
        "nms",
        "pyramid",
        "resnet",
        "saving",
        "variants",
    )
}
MOVED["keras_retinanet.export.convert"] = "keras_retinanet.export.inference_model"


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the moved module ran when it was imported


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModules())
