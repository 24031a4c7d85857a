"""fizyr keras-retinanet snapshots wherever the commands take a snapshot.

fizyr's users ran their ``.h5`` files (training or inference) with its tools; ours take them
too: :func:`snapshot_or_converted` converts such a file as ``retinanet-convert --from fizyr``
does (into a temporary folder removed at exit) and says so in one line. Any other file is
left to the loaders, whose errors name the file and what it looks like.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

from keras_retinanet.convert import ConversionError, convert_fizyr
from keras_retinanet.model.files import is_fizyr_model

_converted: dict[str, str] = {}


def snapshot_or_converted(path: str | None, command: str) -> str | None:
    """``path``, or for a fizyr keras-retinanet ``.h5`` the snapshot of this package converted
    from it (once per process).

    Args:
        path: the file a command was given (None passes through).
        command: the command's name, for the line it prints.
    """
    if path is None or not is_fizyr_model(str(path)):
        return path
    path = os.path.abspath(os.fspath(path))
    if path not in _converted:
        folder = tempfile.mkdtemp(prefix="retinanet-fizyr-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        output = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".keras")
        try:
            metadata = convert_fizyr(path, output)
        except ConversionError as error:
            raise ConversionError(
                f"{path} looks like a fizyr keras-retinanet snapshot (keras-resnet layers), but "
                f"`retinanet-convert --from fizyr` cannot convert it: {error}"
            ) from error
        print(
            f"{command}: {path} is a fizyr keras-retinanet snapshot ({metadata['backbone']}, "
            f"{metadata['num_classes']} classes): converted as `retinanet-convert --from fizyr "
            f"{path} OUT.keras` does (run that once to skip this step)",
            file=sys.stderr,
        )
        _converted[path] = output
    return _converted[path]
