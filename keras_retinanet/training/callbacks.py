"""Callbacks of every training run: stop on a non-finite loss, stop at a time limit, the
learning-rate schedule (whose state a snapshot keeps), and the JSON-lines and CSV logs of each
epoch. Each survives being started twice in one training (a run resumed mid-epoch fits the rest
of that epoch, then the following epochs: see :mod:`keras_retinanet.training.interrupt`)."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from typing import Any

import keras


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


class StopOnNaN(keras.callbacks.Callback):
    """Stop at the first non-finite batch loss and remember where, so that no snapshot of the
    broken weights is written and :func:`train` can raise a clear error."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_at: tuple[int, int] | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss) and self.failed_at is None:
            self.failed_at = (self._epoch + 1, batch + 1)
            self.model.stop_training = True


class TimeLimit(keras.callbacks.Callback):
    """Stop training once ``minutes`` of wall-clock time have passed (checked every batch; the
    current epoch ends early, so its evaluation and snapshot still happen)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.minutes = float(minutes)
        self._start = 0.0
        self.stopped = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._start:  # the first start of this training counts
            self._start = time.monotonic()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.monotonic() - self._start > self.minutes * 60:
            self.stopped = True
            self.model.stop_training = True


class Plateau(keras.callbacks.ReduceLROnPlateau):
    """Keras' ``ReduceLROnPlateau`` whose counters a snapshot can keep.

    The learning rate itself lives in the optimizer, which a snapshot saves; the schedule's
    own state (the best value seen, the epochs waited since, the cooldown left) is
    :meth:`state`, written into the snapshot's metadata and given back to the resumed run's
    schedule (``restore``), so a resumed training cuts the rate when the uninterrupted one
    would have.
    """

    def __init__(self, restore: dict | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._restore = dict(restore) if restore else None

    def state(self) -> dict:
        """``{"best", "wait", "cooldown_counter"}`` now, JSON-serialisable."""
        return {
            "best": float(self.best) if _finite(self.best) else None,  # None: nothing seen
            "wait": int(self.wait),
            "cooldown_counter": int(self.cooldown_counter),
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)  # resets the counters
        if self._restore is not None:
            if self._restore.get("best") is not None:
                self.best = float(self._restore["best"])
            self.wait = int(self._restore["wait"])
            self.cooldown_counter = int(self._restore["cooldown_counter"])
        self._restore = None

    def on_train_end(self, logs: dict | None = None) -> None:
        # The next start (the epochs after a resumed partial epoch) continues these counters.
        self._restore = self.state()


class JSONLogger(keras.callbacks.Callback):
    """Append every epoch's logs (losses, learning rate, mAP, and the seconds since training
    started) as one JSON line."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self._start = 0.0

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._start:
            self._start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        record = {"epoch": epoch + 1, "seconds": round(time.monotonic() - self._start, 1)}
        record.update({k: float(v) for k, v in (logs or {}).items() if _finite(v)})
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


class CSVLog(keras.callbacks.Callback):
    """Every epoch's logs as one row of a CSV file, in the format of Keras' ``CSVLogger``
    (``epoch`` from 0, then the keys in sorted order), safe to resume with other settings.

    Keras' ``CSVLogger``, appending, writes the new rows in the new run's column order under
    the old header, so a training resumed with evaluation turned on or off had its mAP and
    loss columns shifted. Here a key that is new to the file is added as a column (left blank
    in the earlier rows), a key that is missing leaves its cell blank, and the file is
    rewritten through a temporary file and a rename, so a kill mid-write keeps the old one.

    Args:
        path: the CSV file.
        append: keep the rows already in ``path`` (resuming) instead of starting afresh.
    """

    def __init__(self, path: str, append: bool = False) -> None:
        super().__init__()
        self.path = path
        self.append = append

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.append and os.path.exists(self.path):
            os.remove(self.path)
        self.append = True  # a second start of the same training keeps this run's rows

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        header, rows = ["epoch"], []
        if os.path.isfile(self.path):
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or header)
                rows = list(reader)
        row = {"epoch": str(epoch)}
        for key, value in sorted((logs or {}).items()):
            try:
                row[key] = str(float(value))  # "nan" for a NaN loss, as CSVLogger writes
            except (TypeError, ValueError):
                continue
            if key not in header:
                header.append(key)
        rows.append(row)
        temporary = f"{self.path}.tmp-{os.getpid()}"
        try:
            with open(temporary, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=header, restval="", extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
            os.replace(temporary, self.path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
