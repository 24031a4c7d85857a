"""The model API users import: build, wrap, load and save RetinaNets, and the presets.

``from keras_retinanet import models`` then ``models.retinanet_model``, ``models.retinanet_box``,
``models.load_model``, ``models.from_preset``... The code lives in :mod:`keras_retinanet.model`;
this module only names it.
"""

from keras_retinanet.model.pyramid import (  # noqa: F401
    classification_subnet,
    feature_pyramid,
    regression_subnet,
)
from keras_retinanet.model.retinanet import (  # noqa: F401
    is_inference_model,
    load_model,
    retinanet_box,
    retinanet_model,
)
from keras_retinanet.model.saving import (  # noqa: F401
    METADATA_KEY,
    read_metadata,
    save_model,
    write_metadata,
)
from keras_retinanet.model.settings import DetectionSettings  # noqa: F401
from keras_retinanet.model.variants import ModelVariant, get_variant  # noqa: F401
