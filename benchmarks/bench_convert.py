"""Conversion time and agreement with the sources, per converter (a table).

Builds each source model with random weights (tests/sources/*_reference.py, the real
torchvision and fizyr code), converts it, and prints the largest differences of the raw head
outputs and of the final detections on a real photo at the given size.

    python benchmarks/bench_convert.py [--height 800 --width 1216]

Needs the environments scripts/run_tests.sh installs (.venv-torch, .sources/fizyr, tf_keras).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)
from sources.common import (  # noqa: E402
    SOURCES,
    assert_same_detections,
    fizyr_path,
    raccoon_image,
    run,
    torch_python,
)

from keras_retinanet import models  # noqa: E402
from keras_retinanet.convert import convert_fizyr, convert_torchvision  # noqa: E402


def measure(name: str, tmp: Path, height: int, width: int) -> dict:
    image_npy, batch = raccoon_image(tmp, height, width)
    out = tmp / name
    if name == "fizyr":
        script = os.path.join(SOURCES, "fizyr_reference.py")
        run([sys.executable, script, image_npy, str(out)], env={"PYTHONPATH": fizyr_path()})
        metadata = convert_fizyr(out / "model.h5", str(out / "ours.keras"))
    else:
        arch = name[-2:]
        script = os.path.join(SOURCES, "torchvision_reference.py")
        extra = ["--bn-eps", "0"] if arch == "v1" else []
        run([torch_python(), script, image_npy, str(out), "--arch", arch, *extra])
        eps = 0.0 if arch == "v1" else 1e-5
        metadata = convert_torchvision(
            out / "model.pth", str(out / "ours.keras"), arch, bn_epsilon=eps
        )
    ref = dict(np.load(out / "reference.npz"))
    regression, classification = models.load_model(str(out / "ours.keras")).predict_on_batch(batch)
    inference = models.load_model(str(out / "ours.keras"), convert=True)
    boxes, scores, labels = inference.predict_on_batch(batch)
    worst = assert_same_detections(boxes[0], scores[0], labels[0], ref)
    return {
        "seconds": metadata["seconds"],
        "regression": float(np.abs(regression[0] - ref["regression"]).max()),
        "classification": float(np.abs(classification[0] - ref["classification"]).max()),
        "detections": int((ref["scores"] > 0).sum()),
        "box_px": worst["box"],
        "score": worst["score"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument(
        "--sources", nargs="+", default=["fizyr", "torchvision_v1", "torchvision_v2"]
    )
    args = parser.parse_args()
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sources:
            rows.append((name, measure(name, Path(tmp), args.height, args.width)))
    print(f"\nimage {args.height}x{args.width}; max |ours - source|")
    print("| source | convert (s) | regression | classification | detections | box (px) | score |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows:
        print(
            f"| {name} | {r['seconds']:.1f} | {r['regression']:.1e} | {r['classification']:.1e} "
            f"| {r['detections']} | {r['box_px']:.1e} | {r['score']:.1e} |"
        )


if __name__ == "__main__":
    main()
