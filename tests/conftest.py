"""Shared test set-up: the report of tests that skipped for want of ../shared/data.

Shared helpers live in modules beside this file: ``shared_data`` (the datasets and a photo),
``heads`` (untrained models with real detections), ``sources/common`` (the reference projects).
"""

from __future__ import annotations

import os

import pytest
from shared_data import DATA, MISSING


@pytest.fixture(scope="module")
def untrained_voc_model():
    """An untrained 20-class (Pascal VOC) training model: scores sit near the 0.01 prior,
    enough for plumbing. One per test module that asks for it."""
    from keras_retinanet import models

    return models.retinanet_model(num_classes=20, weights=None)


def _release_keras_state() -> None:
    """Drop Keras' global state, collect, and hand freed heap back to the system (glibc's
    ``malloc_trim``; TensorFlow's freed buffers otherwise stay in the process's arenas)."""
    import ctypes
    import gc

    import keras

    keras.backend.clear_session()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@pytest.fixture(autouse=True, scope="module")
def _release_after_each_module(request):
    """After each test module, release what its models left behind that can be released
    (1.3 GiB after test_export.py; little after test_train.py, whose training runs leave
    memory TensorFlow keeps: scripts/run_tests.sh splits the suite for that).
    ``KERAS_RETINANET_TEST_MEMORY_LOG=FILE`` appends each module's resident memory before and
    after the release to FILE."""
    yield
    before = _rss_mb()
    _release_keras_state()
    log = os.environ.get("KERAS_RETINANET_TEST_MEMORY_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"{os.getpid()} {request.module.__name__} {before:.0f} {_rss_mb():.0f}\n")


@pytest.fixture(autouse=True)
def _release_slow_models(request):
    """After a test marked slow, release Keras' state at once: ``-m slow`` builds dozens of
    large models in one module (every backbone preset), and without this their graphs
    accumulate until the process runs out of memory (24 GiB after 13 TensorFlow presets)."""
    yield
    if request.node.get_closest_marker("slow") is not None:
        _release_keras_state()


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
