"""The network and its maths, and nothing else: anchors, boxes, backbones, pyramid and heads,
layers, detection filtering and NMS, losses, variants, detection settings, presets, saving and
BatchNormalization folding. Nothing here imports from the rest of the package.

The user-facing names are in :mod:`keras_retinanet.models`.
"""
