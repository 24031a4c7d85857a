"""Starting TensorFlow quietly on a machine without an NVIDIA GPU.

The ``tensorflow`` wheel is built with CUDA. Imported on a CPU-only machine it prints lines
such as ``cudart_stub.cc: Could not find cuda drivers`` and, at the first operation,
``E0000 ... failed call to cuInit: UNKNOWN ERROR (303)``: an "error" a user sees before
anything has happened, though nothing is wrong. :func:`quiet_tensorflow_start` runs before
Keras imports TensorFlow (``import keras_retinanet`` calls it): where no NVIDIA device exists
it sets ``TF_CPP_MIN_LOG_LEVEL=3`` (unless the user set it) and imports TensorFlow, and makes
its first device query (the cuInit call, whose failure TensorFlow logs as an error even at
level 2), with the C++ stderr muted. Where a GPU exists nothing changes, so TensorFlow still
finds and uses it and says so. Python errors are not affected: an import that fails still raises.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import sys


def has_nvidia_device() -> bool:
    """True when the machine shows an NVIDIA GPU to Linux (or a WSL2 GPU), or when this is
    not Linux (where the check cannot tell, so nothing is muted)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(glob.glob("/dev/nvidia[0-9]*")) or os.path.exists("/dev/dxg")


def quiet_tensorflow_start() -> bool:
    """Import TensorFlow without its CUDA probing messages where there is no GPU.

    Does nothing when TensorFlow is already imported, when Keras runs on another backend,
    when TensorFlow is not installed, or on a machine with an NVIDIA GPU.

    Returns:
        True when TensorFlow was imported quietly here.
    """
    if "tensorflow" in sys.modules or has_nvidia_device():
        return False
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return False

    if importlib.util.find_spec("tensorflow") is None:
        return False
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)  # the C++ library writes to file descriptor 2 directly
        import tensorflow  # here: muted, and only where TensorFlow is the backend

        # The first device query calls cuInit, which logs its failure as an ERROR: shown at
        # TF_CPP_MIN_LOG_LEVEL 2, which scripts and users often set. Made here, muted.
        tensorflow.config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return True
