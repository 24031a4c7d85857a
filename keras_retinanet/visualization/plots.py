"""Plots: the loss and mAP curves of a training log, and the focal loss curve of Lin et al.

matplotlib is imported inside the plotting functions, so that drawing code (used by the data
loader's debug tool and by ``predict``) does not pay for it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# Columns plotted by plot_training_log, in legend order; the rest of the log is ignored.
_LOSS_COLUMNS = ("loss", "regression_loss", "classification_loss", "val_loss")
_MAP_COLUMN = "mAP"


def _read_training_log(log_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a training log (``retinanet-train``'s or Keras' ``CSVLogger``'s) into float
    columns; blank or ``NA`` cells become NaN."""
    if not os.path.isfile(log_path):
        raise ValueError(
            f"Training log {os.fspath(log_path)!r} does not exist; pass the CSV written by "
            "training (snapshots/training_log.csv, or keras.callbacks.CSVLogger's)."
        )
    with open(log_path, newline="") as handle:
        rows = list(csv.reader(handle))
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise ValueError(
            f"Training log {os.fspath(log_path)!r} is empty or has a header but no epochs; "
            "train for at least one epoch before plotting."
        )
    header = [name.strip() for name in rows[0]]
    if "epoch" not in header:
        raise ValueError(
            f"Training log {os.fspath(log_path)!r} has no 'epoch' column (header: {header}); "
            "pass snapshots/training_log.csv or a CSV written by keras.callbacks.CSVLogger."
        )

    def to_float(cell: str) -> float:
        try:
            return float(cell)
        except ValueError:
            # CSVLogger writes "NA" (ours a blank) for metrics missing from an epoch (e.g. mAP only
            # every few epochs); those points are left out of the plot.
            return math.nan

    columns = {}
    for index, name in enumerate(header):
        columns[name] = np.array(
            [to_float(row[index]) if index < len(row) else math.nan for row in rows[1:]]
        )
    return columns


def plot_training_log(log_path: str | os.PathLike, output_path: str | os.PathLike) -> str:
    """Plots the loss curves and mAP of a training run to a PNG.

    Reads the CSV that ``retinanet-train`` writes (the format of ``keras.callbacks.CSVLogger``,
    which it also reads): a header that includes ``epoch`` and any of ``loss``,
    ``regression_loss``, ``classification_loss``, ``val_loss`` (plotted together in a first
    panel) and ``mAP`` (plotted in a second panel, added only when the column is present).
    Missing columns and missing cells (``NA``, blank) are skipped.

    Args:
        log_path: Path of the CSV training log.
        output_path: Path of the PNG to write (its folder must exist).

    Returns:
        ``output_path`` as a string.

    Raises:
        ValueError: If the log does not exist, has no epochs, has no ``epoch`` column or has
            none of the plotted columns; the message names the file.
    """
    columns = _read_training_log(log_path)
    loss_names = [
        name for name in _LOSS_COLUMNS if name in columns and np.isfinite(columns[name]).any()
    ]
    has_map = _MAP_COLUMN in columns and np.isfinite(columns[_MAP_COLUMN]).any()
    if not loss_names and not has_map:
        raise ValueError(
            f"Training log {os.fspath(log_path)!r} has none of the columns "
            f"{list(_LOSS_COLUMNS) + [_MAP_COLUMN]} with values (header: {list(columns)})."
        )

    # Build the figure without pyplot: pyplot would switch the process-wide backend (breaking a
    # caller's interactive session) and keep every figure alive until closed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # matplotlib loads only when a plot is drawn (it is slow to import)
    from matplotlib.figure import Figure

    panels = int(bool(loss_names)) + int(has_map)
    figure = Figure(figsize=(8, 3.5 * panels), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    epochs = columns["epoch"]

    def plot_column(ax, name: str) -> None:
        values = columns[name]
        finite = np.isfinite(values) & np.isfinite(epochs)
        # Markers keep isolated points (an mAP computed once) visible where lines cannot be.
        ax.plot(epochs[finite], values[finite], marker="o", markersize=3, label=name)

    panel = 0
    if loss_names:
        ax = axes[panel]
        for name in loss_names:
            plot_column(ax, name)
        ax.set_ylabel("loss")
        ax.set_title("Training losses")
        ax.grid(True, alpha=0.3)
        ax.legend()
        panel += 1
    if has_map:
        ax = axes[panel]
        plot_column(ax, _MAP_COLUMN)
        ax.set_ylabel("mAP")
        # mAP is a fraction, but some loggers write percentages; never cut those off.
        ax.set_ylim(0, max(1.0, float(np.nanmax(columns[_MAP_COLUMN])) * 1.05))
        ax.set_title("Validation mAP")
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("epoch")

    output_path = os.fspath(output_path)
    figure.savefig(output_path, dpi=100)
    return output_path


def plot_focal_loss(
    path: str | os.PathLike | None = None,
    gammas: Sequence[float] = (0, 0.5, 1, 2, 5),  # the values of Lin et al. 2017, Fig. 1
) -> Figure:
    """Plots focal loss against the probability of the ground-truth class.

    Reproduces Fig. 1 of Lin et al. 2017, "Focal Loss for Dense Object Detection": for each
    ``gamma``, ``FL(p_t) = -(1 - p_t) ** gamma * log(p_t)`` over ``p_t`` in ``(0, 1]``, where
    ``gamma = 0`` is the cross-entropy loss. The curve is computed here in NumPy rather than
    with ``keras_retinanet.model.losses`` so that plotting does not import a Keras backend.

    Args:
        path: Where to save a PNG; ``None`` saves nothing.
        gammas: Focusing parameters to plot, each ``>= 0``.

    Returns:
        The ``matplotlib.figure.Figure`` (not registered with pyplot; display it in a notebook
        by making it the cell's last expression).

    Raises:
        ValueError: If ``gammas`` is empty or holds a negative value.
    """
    gammas = [float(gamma) for gamma in gammas]
    if not gammas or min(gammas) < 0:
        raise ValueError(f"gammas must be one or more values >= 0, got {gammas}.")

    # matplotlib loads only when a plot is drawn (it is slow to import)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    # matplotlib loads only when a plot is drawn (it is slow to import)
    from matplotlib.figure import Figure

    # Start just above 0, where -log(p_t) diverges; the y-axis is cut at 5 as in the paper.
    p_t = np.linspace(1e-3, 1.0, 500)
    figure = Figure(figsize=(6, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    ax = figure.subplots()
    for gamma in gammas:
        loss = -((1.0 - p_t) ** gamma) * np.log(p_t)
        label = f"γ = {gamma:g}" + (" (cross entropy)" if gamma == 0 else "")
        ax.plot(p_t, loss, label=label)
    ax.axvspan(0.6, 1.0, color="0.9", zorder=0)
    ax.text(0.8, 3.0, "well-classified\nexamples", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.set_xlabel("probability of ground truth class")
    ax.set_ylabel("loss")
    ax.set_title("Focal loss vs. cross entropy")
    ax.legend()
    if path is not None:
        figure.savefig(os.fspath(path), dpi=100)
    return figure
