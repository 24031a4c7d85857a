"""The demo notebook runs top to bottom (small settings) and shows its pictures."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "retinanet_demo.ipynb"
SECTIONS = [
    "## 1. Hyperparameters",
    "## 2. The ResNet50 backbone",
    "## 3. The RetinaNet model",
    "## 4. `retinanet_box`",
    "## 5. The losses",
    "## 6. The dataset",
    "## 7. Training",
    "## 8. Detection demo",
    "## 9. A pretrained COCO detector",
]


def _read() -> "nbformat.NotebookNode":
    return nbformat.read(str(NOTEBOOK), as_version=4)


def _images(cell) -> int:
    return sum("image/png" in output.get("data", {}) for output in cell.get("outputs", []))


def test_notebook_is_generated_from_its_script():
    # The notebook is written by scripts/make_notebook.py; edits go there.
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "make_notebook.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_notebook_sections_in_the_order_of_the_design():
    notebook = _read()
    markdown = "\n".join(c.source for c in notebook.cells if c.cell_type == "markdown")
    positions = [markdown.find(title) for title in SECTIONS]
    assert -1 not in positions, [t for t, p in zip(SECTIONS, positions) if p == -1]
    assert positions == sorted(positions)
    # Colab: a badge, and a first code cell that installs the package only there.
    assert "colab.research.google.com" in notebook.cells[0].source
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert 'if "google.colab" in sys.modules' in first_code.source
    assert "pip" in first_code.source
    # No stored outputs: the file stays small and diffs stay readable.
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")


def test_notebook_runs_every_cell(tmp_path, monkeypatch):
    notebook = _read()
    monkeypatch.setenv("RETINANET_NOTEBOOK_SMALL", "1")
    # The kernel spec runs "python": make it this interpreter (the venv's), with the package.
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,  # per cell; training is the slowest, well under a minute when SMALL
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell if any cell fails

    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    for cell in code_cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert not errors, cell.source[:200]
        assert cell.execution_count is not None

    def cell_with(text: str):
        return next(c for c in code_cells if text in c.source)

    assert _images(cell_with("generate_anchors")) == 1  # anchors on an image
    assert _images(cell_with("plot_focal_loss")) == 1  # focal loss vs cross-entropy
    assert _images(cell_with("draw_coverage")) == 1  # positive anchors on a training image
    assert _images(cell_with("model.fit")) == 1  # training loss curve
    assert _images(cell_with("prediction_model.predict_on_batch(np.expand_dims")) == 1
    assert _images(cell_with("draw_detections")) == 1  # detections on the test images

    printed = "".join(
        o.get("text", "") for c in code_cells for o in c.outputs if o.output_type == "stream"
    )
    assert "same anchors in the graph and the loader: True" in printed
    assert "boxes with no positive anchor" in printed
    assert "offline: skipped downloading torchvision_v2_coco" in printed
    assert (tmp_path / "retinanet_demo" / "snapshots" / "resnet50_demo.keras").is_file()
