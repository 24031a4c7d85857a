"""Training that survives being stopped: a resumable snapshot mid-epoch, on a signal or on a
clock.

Spot and preemptible machines send SIGTERM and give a job seconds to minutes; a user presses
Ctrl-C (SIGINT). During a training either one finishes the step under way, writes a snapshot
that resumes at the next step (weights, optimizer state, the step within the epoch, the data
order's seed and position, the learning-rate schedule's counters, the epoch's running losses),
and stops with :class:`TrainingInterrupted`, whose message names the snapshot; the command line
prints the command that resumes it and exits with status ``128 + signal``. A second signal exits
at once: snapshots are written through a temporary file and a rename, so the last complete one
is intact. ``--checkpoint-every`` writes the same kind of snapshot on a clock (or every N steps),
keeping only the newest; each epoch's snapshot replaces it.

A run resumed at step ``k`` of an epoch of ``n`` steps continues exactly: the remaining
``n - k`` steps see the batches the uninterrupted run would have seen (step ``s`` of training
reads batch ``s % len`` of data pass ``s // len``, see :func:`~keras_retinanet.training.inputs.
fit_input`), and the epoch's logged losses are the means over all ``n`` steps
(:class:`ResumedEpochLogs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras

from keras_retinanet.training.callbacks import _finite
from keras_retinanet.training.config import TrainingError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(TrainingError):
    """A signal stopped the training; ``checkpoint`` resumes it (``--snapshot``).

    Attributes:
        signal_number: the signal that stopped it.
        checkpoint: the snapshot to resume from, or None where none could be written
            (``--no-snapshots``, or no step finished).
        exit_status: ``128 + signal_number``, as a shell reports a process a signal ended.
    """

    def __init__(self, message: str, signal_number: int, checkpoint: str | None) -> None:
        super().__init__(message)
        self.signal_number = int(signal_number)
        self.checkpoint = checkpoint
        self.exit_status = 128 + self.signal_number


@dataclasses.dataclass
class ResumePoint:
    """Where in a training a snapshot was taken.

    Attributes:
        epoch: the epoch under way, counted from 0 (also the number of epochs finished).
        step: the steps of that epoch already taken.
        sums: each running log value (``loss``, ``regression_loss``...) summed over those steps.
    """

    epoch: int
    step: int
    sums: dict[str, float] = dataclasses.field(default_factory=dict)

    def record(self, steps_per_epoch: int) -> dict:
        """The snapshot metadata's ``"resume"`` record."""
        return {
            "step": int(self.step),
            "steps_per_epoch": int(steps_per_epoch),
            "epoch_sums": {k: float(v) for k, v in self.sums.items()},
        }


def resume_point(metadata: dict, steps_per_epoch: int, source: str) -> ResumePoint | None:
    """The mid-epoch position a snapshot records, or None for one taken at an epoch's end.

    Raises:
        TrainingError: the snapshot was taken in an epoch of another number of steps (another
            ``--steps`` or ``--batch-size``): its remaining steps would not be the same batches.
    """
    record = metadata.get("resume") or {}
    step = int(record.get("step", 0))
    if step <= 0:
        return None
    recorded = int(record.get("steps_per_epoch", 0))
    if recorded != steps_per_epoch:
        raise TrainingError(
            f"{source} was written at step {step} of an epoch of {recorded} steps, but this run "
            f"has {steps_per_epoch} steps per epoch; resume with the same --steps and "
            "--batch-size as the interrupted run"
        )
    return ResumePoint(int(metadata.get("epoch", 0)), step, dict(record.get("epoch_sums", {})))


class StopRequest:
    """What the signal handlers of :func:`stop_signals` set: the first stop signal's number."""

    def __init__(self) -> None:
        self.signal_number: int | None = None
        self.last_good: Callable[[], str | None] = lambda: None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@contextlib.contextmanager
def stop_signals(request: StopRequest) -> Iterator[StopRequest]:
    """Within the block, SIGTERM and SIGINT set ``request.signal_number`` (the training loop
    stops after the step under way); a second one exits the process at once with status
    ``128 + signal``. The previous handlers come back at the end. Off the main thread, where
    Python cannot handle signals, nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(number: int, frame: Any) -> None:
        name = _signal_name(number)
        if request.signal_number is None:
            request.signal_number = number
            print(
                f"\n{name}: finishing this step, then writing a snapshot to resume from "
                f"({name} again exits at once)",
                file=sys.stderr,
                flush=True,
            )
            return
        last = request.last_good()
        print(
            f"\n{name} again: exiting now. The last complete snapshot is "
            f"{last or 'none (no snapshot was written)'}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(128 + number)  # at once: no cleanup can corrupt a finished snapshot

    previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}
    for number in STOP_SIGNALS:
        signal.signal(number, handle)
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


class ResumedEpochLogs(keras.callbacks.Callback):
    """The epoch a run resumed in the middle of logs the means over all its steps, not over
    the steps after the resume. Put it first, so every later callback (the schedule, the logs,
    the snapshot's ``best``) sees the corrected values."""

    def __init__(self, point: ResumePoint | None, steps_per_epoch: int) -> None:
        super().__init__()
        self.point = point
        self.steps_per_epoch = int(steps_per_epoch)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        point = self.point
        if logs is None or point is None or epoch != point.epoch or not point.step:
            return
        remaining = self.steps_per_epoch - point.step
        for key, total in point.sums.items():
            if key in logs and _finite(logs[key]):
                logs[key] = (total + float(logs[key]) * remaining) / self.steps_per_epoch


class Checkpointer(keras.callbacks.Callback):
    """Acts on a stop request after each step and writes the periodic snapshots. Put it last,
    after the snapshot callback.

    Args:
        request: the :class:`StopRequest` the signal handlers set.
        write: ``ResumePoint -> path``: writes a resumable snapshot at that point.
        steps_per_epoch: the steps of a whole epoch.
        resume: where this run resumed (its first epoch starts at ``resume.step``), or None.
        every_minutes: write a snapshot when this much time passed since the last one; None: no.
        every_steps: write a snapshot every this many steps of training; None: no.
        epoch_snapshot: ``() -> path``: the snapshot the last epoch end wrote, if any.
        under_cluster: the multi-worker loop calls :meth:`after_step` and
            :meth:`after_epoch` itself, with the flags all workers agreed on.
    """

    def __init__(
        self,
        request: StopRequest,
        write: Callable[[ResumePoint], str | None],
        steps_per_epoch: int,
        resume: ResumePoint | None = None,
        every_minutes: float | None = None,
        every_steps: int | None = None,
        epoch_snapshot: Callable[[], str | None] = lambda: None,
        under_cluster: bool = False,
    ) -> None:
        super().__init__()
        self.request = request
        self.write = write
        self.steps_per_epoch = int(steps_per_epoch)
        self.resume = resume
        self.every_minutes = every_minutes
        self.every_steps = every_steps
        self.epoch_snapshot = epoch_snapshot
        self.under_cluster = under_cluster
        self.written: list[str] = []  # the periodic snapshots, in order
        self._epoch = 0
        self._last_write = 0.0
        self._stopping = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self._last_write:
            self._last_write = time.monotonic()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch = epoch

    def _point(self, batch: int, logs: dict | None) -> ResumePoint:
        """The position after step ``batch`` of this ``fit`` epoch, with the running logs."""
        before = self.resume if self.resume and self.resume.epoch == self._epoch else None
        taken = batch + 1
        sums = {
            key: (before.sums.get(key, 0.0) if before else 0.0) + float(value) * taken
            for key, value in (logs or {}).items()
            if _finite(value)
        }
        return ResumePoint(self._epoch, (before.step if before else 0) + taken, sums)

    def stopping(self) -> bool:
        """A stop was asked for (here), or agreed on (under a cluster)."""
        return self._stopping or self.request.signal_number is not None

    def flags(self, batch: int) -> list[bool]:
        """(a stop was asked for here, a periodic snapshot is due), for this process alone."""
        point_step = self._point(batch, {}).step
        due = False
        if point_step < self.steps_per_epoch:  # an epoch's end writes its own snapshot
            overall = self._epoch * self.steps_per_epoch + point_step
            if self.every_steps and overall % self.every_steps == 0:
                due = True
            waited = time.monotonic() - self._last_write
            if self.every_minutes and waited >= 60 * self.every_minutes:
                due = True
        return [self.request.signal_number is not None, due]

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if not self.under_cluster:
            self.after_step(batch, logs, *self.flags(batch))

    def after_step(self, batch: int, logs: dict | None, stop: bool, due: bool) -> None:
        """Stop (write and raise) or write a periodic snapshot, as the flags say."""
        point = self._point(batch, logs)
        if stop:
            self._stopping = True
            if point.step >= self.steps_per_epoch:
                # The last step: the epoch ends as usual and its snapshot is the resume point.
                self.model.stop_training = True
                return
            self._interrupt(self.write(point), point)
        if due:
            path = self.write(point)
            self._last_write = time.monotonic()
            if path:
                self.written.append(path)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.under_cluster:
            self.after_epoch(self.stopping())

    def after_epoch(self, stop: bool) -> None:
        """After the epoch's evaluation and snapshot: stop there if asked to (the last epoch
        simply ends: there is nothing left to resume)."""
        last_epoch = self._epoch + 1 >= int((self.params or {}).get("epochs", 0) or 0)
        if stop and not last_epoch:
            self._interrupt(self.epoch_snapshot(), ResumePoint(self._epoch + 1, 0))

    def _interrupt(self, path: str | None, point: ResumePoint) -> None:
        number = self.request.signal_number or signal.SIGTERM  # another worker's signal
        where = (
            f"epoch {point.epoch + 1}, step {point.step} of {self.steps_per_epoch}"
            if point.step
            else f"the end of epoch {point.epoch}"
        )
        if path:
            said = f"the snapshot {path} resumes it (--snapshot {path})"
        else:
            said = "no snapshot was written (snapshots are off)"
        raise TrainingInterrupted(
            f"interrupted by {_signal_name(number)} at {where}: {said}", number, path
        )
