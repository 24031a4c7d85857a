"""Shared test set-up: the report of tests that skipped for want of ../shared/data.

Shared helpers live in modules beside this file: ``shared_data`` (the datasets and a photo),
``heads`` (untrained models with real detections), ``sources/common`` (the reference projects).
"""

from __future__ import annotations

import pytest
from shared_data import DATA, MISSING


@pytest.fixture(scope="module")
def untrained_voc_model():
    """An untrained 20-class (Pascal VOC) training model: scores sit near the 0.01 prior,
    enough for plumbing. One per test module that asks for it."""
    from keras_retinanet import models

    return models.retinanet_model(num_classes=20, weights=None)


@pytest.fixture(autouse=True)
def _release_slow_models(request):
    """After a test marked slow, drop Keras' global state and collect: ``-m slow`` builds
    dozens of large models in one process (every backbone preset), and without this their
    graphs accumulate until the process runs out of memory (24 GiB after 13 TensorFlow
    presets)."""
    yield
    if request.node.get_closest_marker("slow") is not None:
        import gc

        import keras

        keras.backend.clear_session()
        gc.collect()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if MISSING in str(getattr(r, "longrepr", ""))]
    if missing:
        terminalreporter.write_line(
            f"{len(missing)} test{'s' if len(missing) != 1 else ''} skipped because "
            f"{'they read' if len(missing) != 1 else 'it reads'} the small real datasets in "
            f"{DATA}, which this checkout does not have beside it. They come with the "
            "project's shared folder; each set's SOURCE.md there names its public origin "
            "(PASCAL VOC samples, BCCD and raccoon from their GitHub repositories)."
        )
