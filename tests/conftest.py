"""Shared test set-up: the report of tests that skipped for want of ../shared/data.

Shared helpers live in modules beside this file: ``shared_data`` (the datasets and a photo),
``heads`` (untrained models with real detections), ``sources/common`` (the reference projects).
"""

from __future__ import annotations

from shared_data import DATA, MISSING


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    skipped = terminalreporter.stats.get("skipped", [])
    missing = [r for r in skipped if MISSING in str(getattr(r, "longrepr", ""))]
    if missing:
        terminalreporter.write_line(
            f"{len(missing)} tests skipped because they read the small real datasets in "
            f"{DATA}, which this checkout does not have beside it. They come with the "
            "project's shared folder; each set's SOURCE.md there names its public origin "
            "(PASCAL VOC samples, BCCD and raccoon from their GitHub repositories)."
        )
