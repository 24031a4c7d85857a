"""A training snapshot -> an inference ``.keras``/``.h5`` model file (``retinanet-convert``)."""

from __future__ import annotations

from keras_retinanet import models


def convert_model(
    model_in: str,
    model_out: str,
    nms: bool = True,
    class_specific_filter: bool = True,
    nms_threshold: float = 0.5,
    score_threshold: float = 0.05,
    max_detections: int = 300,
) -> str:
    """Turn a training snapshot into an inference model file.

    The output is :func:`keras_retinanet.models.retinanet_box` of the snapshot, with the
    anchors recorded in its metadata, saved with the input's metadata plus
    ``"model": "inference"`` and ``"filter_detections"`` (the settings below).

    Args:
        model_in: training snapshot (``.keras`` or ``.h5``).
        model_out: output path (``.keras`` or ``.h5``); may equal ``model_in``.
        nms, class_specific_filter, nms_threshold, score_threshold, max_detections: see
            :class:`keras_retinanet.layers.FilterDetections`.

    Returns:
        ``model_out``.

    Raises:
        FileNotFoundError: ``model_in`` does not exist.
        ValueError: a path does not end in ``.keras``/``.h5``, or ``model_in`` is already an
            inference model with other filter settings.
    """
    settings = {
        "nms": bool(nms),
        "class_specific_filter": bool(class_specific_filter),
        "nms_threshold": float(nms_threshold),
        "score_threshold": float(score_threshold),
        "max_detections": int(max_detections),
    }
    if not str(model_out).endswith((".keras", ".h5")):
        raise ValueError(f"output path must end in .keras or .h5, got {model_out}")
    metadata = models.read_metadata(model_in)  # also checks that model_in exists
    model = models.load_model(model_in, convert=True, **settings)
    recorded = model.get_layer("filtered_detections").get_config()
    different = {k: recorded[k] for k, v in settings.items() if recorded[k] != v}
    if different:
        raise ValueError(
            f"{model_in} is already an inference model, with filter settings {different}; "
            "convert the training snapshot it came from to get other settings"
        )
    metadata = dict(metadata)
    metadata["model"] = "inference"
    metadata["filter_detections"] = settings
    return models.save_model(model, model_out, metadata=metadata)
