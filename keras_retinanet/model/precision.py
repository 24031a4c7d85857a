"""Inference in bfloat16 on CPUs that compute it natively, box decoding and NMS in float32.

:func:`with_precision` copies an inference model with every layer of the network (backbone,
FPN, heads) under Keras' ``"bfloat16"`` dtype policy, and the detection layers (anchors, box
decoding, clipping, :class:`~keras_retinanet.model.filter_detections.FilterDetections`) left
in float32: Keras casts their inputs up, so boxes and scores are decoded and filtered in float32
as in the float model. bfloat16 keeps float32's exponent and 8 bits of mantissa: scores move by
about 1e-2 at most, boxes by a pixel or so (measured in ``tests/test_precision.py``).

Whether it is faster depends on the CPU: with AVX512-BF16 or AMX the convolutions can run on
bfloat16 hardware; without, they are emulated and slower. :func:`cpu_bfloat16` tells, and
:func:`choose_precision` falls back to float32 with a message where the CPU has none.
"""

from __future__ import annotations

import warnings
from typing import Any

import keras

PRECISIONS = ("float32", "bfloat16")
# Layers that decode and filter: float32 whatever the precision (sorting, NMS and box maths
# need its mantissa; they are a small part of the time).
FLOAT32_LAYERS = ("Anchors", "RegressBoxes", "ClipBoxes", "FilterDetections", "Concatenate")
# CPU flags (Linux /proc/cpuinfo) of native bfloat16 dot products.
BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bfloat16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 dot products natively (AVX512-BF16 or AMX-BF16).

    Args:
        cpuinfo: the text of ``/proc/cpuinfo``; read when None (False where there is none).
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as handle:
                cpuinfo = handle.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            return any(flag in flags for flag in BFLOAT16_FLAGS)
    return False


def choose_precision(precision: str, cpuinfo: str | None = None) -> str:
    """``precision`` if this CPU can run it natively, else ``"float32"`` with a warning.

    Raises:
        ValueError: a precision other than those in :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bfloat16" and not cpu_bfloat16(cpuinfo):
        warnings.warn(
            "this CPU has no bfloat16 instructions (AVX512-BF16 or AMX): running in float32, "
            "which is faster here",
            stacklevel=2,
        )
        return "float32"
    return precision


def with_precision(model: keras.Model, precision: str = "bfloat16") -> keras.Model:
    """A copy of the inference ``model`` that computes its network in ``precision``.

    Args:
        model: an inference model (from ``retinanet_box`` or ``load_model(convert=True)``).
        precision: ``"float32"`` (``model`` itself is returned) or ``"bfloat16"``.

    Returns:
        The model, its weights cast, its ``variant`` and ``detection_settings`` kept.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        return model

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        # A graph operation that is not a layer (MobileNetV3's ``x + 3.0``) has no dtype: it
        # computes in its inputs' dtype.
        if isinstance(layer, keras.layers.Layer) and type(layer).__name__ not in FLOAT32_LAYERS:
            config["dtype"] = precision
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    for name in ("variant", "detection_settings"):
        if hasattr(model, name):
            setattr(copy, name, getattr(model, name))
    copy.precision = precision
    return copy
