"""The input conventions of the networks: the pixel statistics each variant normalises with.

Images reach every model as caffe-style BGR minus :data:`CAFFE_MEAN_BGR` (the convention of the
ImageNet ResNet weights of ``keras.applications``); a variant with torchvision's input turns that
into its own inside the graph (:class:`~keras_retinanet.model.layers.NormalizeInput`).
"""

from __future__ import annotations

import numpy as np

# ImageNet channel means in BGR order, as used by Caffe's ResNet and keras.applications'
# "caffe" preprocessing mode.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision's input: RGB in [0, 1], normalised by ImageNet's mean and std.
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def padding_value(normalisation: str = "caffe") -> np.ndarray:
    """The caffe-style BGR value of a padding pixel for a model variant's input normalisation:
    0 (the mean colour) for ``"caffe"``; for ``"torch"`` the value whose normalised form is 0
    (``255 * mean_torch - mean_caffe``, about -0.4, -0.5, 0.1), PyTorch's zero padding."""
    if normalisation == "torch":
        torch_bgr = np.asarray(TORCH_MEAN_RGB[::-1], dtype=np.float64) * 255.0
        return (torch_bgr - np.asarray(CAFFE_MEAN_BGR)).astype(np.float32)
    return np.zeros(3, dtype=np.float32)
