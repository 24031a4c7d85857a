"""Where the tests find ../shared/data (small real datasets beside the project), and what
they do without it: skip, with one line that says which set is missing and where it comes
from. tests/conftest.py counts those skips at the end of the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
# Every skip for absent data starts with this, so the summary can count them.
MISSING = "needs the shared datasets"


def missing_reason(name: str | None = None) -> str:
    where = DATA / name if name else DATA
    return f"{MISSING}: {where} not found (each set's SOURCE.md names its public origin)"


def shared(name: str) -> Path:
    """``../shared/data/<name>``, or skip the test saying so."""
    path = DATA / name
    if not path.is_dir():
        pytest.skip(missing_reason(name))
    return path


def needs(name: str | None = None):
    """A skipif mark for tests (or a module's ``pytestmark``) that read a shared set."""
    path = DATA / name if name else DATA
    return pytest.mark.skipif(not path.is_dir(), reason=missing_reason(name))


RACCOON_PHOTO = DATA / "raccoon" / "JPEGImages" / "raccoon-1.jpg"


CARRIED_PHOTO = ROOT / "tests" / "data" / "coffee.jpg"  # CC0, see tests/data/README.md


def photo_bgr() -> tuple[np.ndarray, str]:
    """A natural photo for equivalence checks: raccoon-1.jpg (417 x 650) where the shared
    sets are, else the CC0 photo the repository carries at the same size, so the converter
    tests run on a plain clone too.

    Returns:
        ``(image, name)``: a BGR uint8 ``(417, 650, 3)`` array and where it came from.
    """
    import cv2  # noqa: PLC0415  (the helpers above need no OpenCV)

    if RACCOON_PHOTO.is_file():
        return cv2.imread(str(RACCOON_PHOTO)), RACCOON_PHOTO.name
    return cv2.imread(str(CARRIED_PHOTO)), CARRIED_PHOTO.name
