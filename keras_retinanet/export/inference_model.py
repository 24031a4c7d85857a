"""A training snapshot -> an inference ``.keras``/``.h5`` model file (``retinanet-convert``)."""

from __future__ import annotations

from typing import Any

from keras_retinanet.model import retinanet as models
from keras_retinanet.model.settings import DetectionSettings


def convert_model(
    model_in: str,
    model_out: str,
    settings: DetectionSettings | None = None,
    **setting_overrides: Any,
) -> str:
    """Turn a training snapshot into an inference model file.

    The output is :func:`keras_retinanet.model.retinanet.retinanet_box` of the snapshot, with
    the anchors recorded in its metadata, saved with the input's metadata plus
    ``"model": "inference"`` and ``"detection_settings"`` (the settings its graph applies).

    Args:
        model_in: training snapshot (``.keras`` or ``.h5``).
        model_out: output path (``.keras`` or ``.h5``); may equal ``model_in``.
        settings: the detection settings; None: those recorded in ``model_in``, else the
            defaults.
        **setting_overrides: fields of the settings to change (``score_threshold=0.3``...).

    Returns:
        ``model_out``.

    Raises:
        FileNotFoundError: ``model_in`` does not exist.
        ValueError: a path does not end in ``.keras``/``.h5``, or ``model_in`` is already an
            inference model whose graph cannot give these settings (ThresholdError for a
            lower score threshold).
    """
    if not str(model_out).endswith((".keras", ".h5")):
        raise ValueError(f"output path must end in .keras or .h5, got {model_out}")
    metadata = models.read_metadata(model_in)  # also checks that model_in exists
    if settings is None and metadata.get("detection_settings") is None:
        # No record (a training snapshot, or an inference file written before settings were
        # recorded): load_model starts from the defaults, or from the inference graph itself.
        model = models.load_model(model_in, convert=True, **setting_overrides)
    else:
        recorded = DetectionSettings.from_dict(metadata.get("detection_settings"))
        wanted = (settings or recorded).replace(**setting_overrides)
        model = models.load_model(model_in, convert=True, settings=wanted)
    metadata = dict(metadata)
    metadata["model"] = "inference"
    metadata["detection_settings"] = model.detection_settings.to_dict()
    return models.save_model(model, model_out, metadata=metadata)
