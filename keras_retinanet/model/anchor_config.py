"""Anchor parameters from a small JSON or INI file (``--config`` of the CLIs)."""

from __future__ import annotations

import configparser
import json
import os

from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.files import DataFileError


def read_anchor_parameters(path: str) -> AnchorParameters:
    """Read anchor parameters from a small JSON or INI file.

    JSON: ``{"sizes": [32, 64, 128, 256, 512], "strides": [8, 16, 32, 64, 128],
    "ratios": [0.5, 1, 2], "scales": [1, 1.26, 1.587]}`` (any subset; missing keys default).
    INI (fizyr's format): a section ``[anchor_parameters]`` with space-separated values,
    e.g. ``sizes = 32 64 128 256 512``.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be parsed; the message names the file and the field.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"anchor configuration file not found: {path}")
    try:
        if path.lower().endswith(".json"):
            with open(path) as f:
                config = json.load(f)
            if isinstance(config, dict) and "anchor_parameters" in config:
                config = config["anchor_parameters"]
            if not isinstance(config, dict):
                raise ValueError(
                    'expected a JSON object such as {"sizes": [32, 64, 128, 256, 512]}, got '
                    f"{type(config).__name__}"
                )
        else:
            parser = configparser.ConfigParser()
            parser.read(path)
            if "anchor_parameters" not in parser:
                raise ValueError("missing section [anchor_parameters]")
            config = {
                key: [float(v) for v in value.replace(",", " ").split()]
                for key, value in parser["anchor_parameters"].items()
            }
        return AnchorParameters.from_dict(config)
    except (ValueError, TypeError, configparser.Error, UnicodeDecodeError) as e:
        raise DataFileError(f"invalid anchor configuration in {path}: {e}") from e
