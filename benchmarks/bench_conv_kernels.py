"""Where float32 CPU inference time goes: one head convolution computed several ways.

The largest convolutions of a RetinaNet at 512x512 are the heads' 3x3, 256 -> 256 on P3
(64x64): 8 of them, 4.8 GFLOP each. This script times that one convolution, in one process,
interleaved, as TensorFlow runs it (Eigen), with its bias and ReLU, and as a Winograd
F(2x2, 3x3) convolution written in TensorFlow ops (2.25x fewer multiplies: 16 matmuls of
tiles x 256 x 256) with and without XLA, plus the Winograd matmuls alone. Two square matmuls
give the peaks it is measured against: TensorFlow's and NumPy's BLAS (the CPU's float32
peak as a tuned GEMM reaches it). A second process repeats the convolution with TensorFlow's
oneDNN kernels (``TF_ENABLE_ONEDNN_OPTS=1``, which TensorFlow turns on by default only on
CPUs with AVX512-VNNI, AVX-VNNI or AMX).

    .venv/bin/python benchmarks/bench_conv_kernels.py               # P3 of 512x512
    .venv/bin/python benchmarks/bench_conv_kernels.py --size 100 168 --runs 10   # P3 of 800x1344
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_cpu_speed import blas_peak_gflops, timed  # noqa: E402
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

# Winograd F(2x2, 3x3) (Lavin & Gray 2016): output tile = A^T [(G g G^T) * (B^T d B)] A.
B_T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
G = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]


def winograd_kernel(kernel: Any) -> Any:
    """(3, 3, C, F) float32 kernel -> (16, C, F): G g G^T for each input/output channel."""
    import numpy as np

    g = np.asarray(G, np.float32)
    u = np.einsum("ai,ijcf,bj->abcf", g, kernel, g)
    return u.reshape(16, kernel.shape[2], kernel.shape[3])


def winograd_conv(x: Any, u: Any, bias: Any) -> Any:
    """ReLU(conv3x3(x) + bias), 'same' padding, stride 1, by Winograd F(2x2, 3x3).

    Args:
        x: (1, H, W, C) float32 tensor, H and W even.
        u: (16, C, F) transformed kernel from ``winograd_kernel``.
        bias: (F,) float32.
    """
    import tensorflow as tf

    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    tiles_h, tiles_w = height // 2, width // 2
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])

    def transform(rows: list) -> list:  # B^T applied along one axis: 4 tile rows -> 4
        return [rows[0] - rows[2], rows[1] + rows[2], rows[2] - rows[1], rows[1] - rows[3]]

    by_row = transform([padded[:, k : k + 2 * tiles_h : 2] for k in range(4)])
    tiles = []
    for row in by_row:
        tiles += transform([row[:, :, k : k + 2 * tiles_w : 2] for k in range(4)])
    v = tf.reshape(tf.stack(tiles), [16, tiles_h * tiles_w, channels])
    m = tf.reshape(tf.linalg.matmul(v, u), [4, 4, tiles_h, tiles_w, -1])

    def inverse(r: Any) -> tuple:  # A^T along one axis: 4 -> 2
        return r[0] + r[1] + r[2], r[1] - r[2] - r[3]

    top, bottom = inverse(m)
    (y00, y01), (y10, y11) = inverse(top), inverse(bottom)
    y = tf.stack([tf.stack([y00, y01], axis=2), tf.stack([y10, y11], axis=2)], axis=1)
    y = tf.reshape(y, [1, 2 * tiles_h, 2 * tiles_w, -1])  # (th, 2, tw, 2) -> pixels
    return tf.nn.relu(y + bias)


def onednn_child(height: int, width: int, runs: int) -> None:
    """Runs in a process started with TF_ENABLE_ONEDNN_OPTS=1; prints one JSON line."""
    import tensorflow as tf

    x = tf.random.uniform((1, height, width, 256))
    kernel = tf.random.uniform((3, 3, 256, 256)) * 0.02
    bias = tf.random.uniform((256,))
    conv = tf.function(
        lambda t: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(t, kernel, 1, "SAME"), bias))
    )
    for _ in range(3):
        conv(x).numpy()
    times = [timed(lambda: conv(x).numpy()) for _ in range(runs)]
    print(json.dumps({"best": min(times), "median": statistics.median(times)}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[64, 64], help="H W of the map")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--onednn-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    height, width = args.size
    if height % 2 or width % 2:
        parser.error("--size takes even H and W (Winograd tiles are 2x2)")
    if args.onednn_child:
        onednn_child(height, width, args.runs)
        return

    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((1, height, width, 256), dtype=np.float32))
    kernel_np = rng.standard_normal((3, 3, 256, 256), dtype=np.float32) * 0.02
    kernel, bias = tf.constant(kernel_np), tf.constant(rng.standard_normal(256, dtype=np.float32))
    u = tf.constant(winograd_kernel(kernel_np))
    tiles = (height // 2) * (width // 2)
    v = tf.constant(rng.standard_normal((16, tiles, 256), dtype=np.float32))
    square = tf.random.uniform((2048, 2048))

    direct_flops = 2 * height * width * 9 * 256 * 256
    candidates: dict[str, tuple[Callable[[], Any], float]] = {
        "Conv2D (Eigen)": (
            tf.function(lambda: tf.nn.conv2d(x, kernel, 1, "SAME")),
            direct_flops,
        ),
        "Conv2D + BiasAdd + Relu": (
            tf.function(
                lambda: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "SAME"), bias))
            ),
            direct_flops,
        ),
        "Winograd F(2x2,3x3), TF ops": (
            tf.function(lambda: winograd_conv(x, u, bias)),
            direct_flops,
        ),
        "Winograd F(2x2,3x3), XLA": (
            tf.function(lambda: winograd_conv(x, u, bias), jit_compile=True),
            direct_flops,
        ),
        "  its 16 matmuls alone": (
            tf.function(lambda: tf.linalg.matmul(v, u)),
            2 * 16 * tiles * 256 * 256,
        ),
        "TF matmul 2048^3": (tf.function(lambda: tf.linalg.matmul(square, square)), 2 * 2048**3),
    }
    reference = candidates["Conv2D + BiasAdd + Relu"][0]().numpy()
    error = float(np.abs(candidates["Winograd F(2x2,3x3), TF ops"][0]().numpy() - reference).max())
    for function, _ in candidates.values():
        for _ in range(3):
            function().numpy()
    times: dict[str, list[float]] = {label: [] for label in candidates}
    labels = list(candidates)
    for run in range(args.runs):  # interleaved, rotating order
        for label in labels[run % len(labels) :] + labels[: run % len(labels)]:
            times[label].append(timed(lambda f=candidates[label][0]: f().numpy()))
    blas = blas_peak_gflops(repeats=10)

    child = subprocess.run(
        [
            sys.executable,
            __file__,
            "--onednn-child",
            "--size",
            str(height),
            str(width),
            "--runs",
            str(args.runs),
        ],
        env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        check=True,
    )
    onednn = json.loads(child.stdout.strip().splitlines()[-1])

    print(
        f"3x3 conv, 256 -> 256 channels, on a {height}x{width} map: "
        f"{direct_flops / 1e9:.2f} GFLOP direct; TensorFlow {tf.__version__}; "
        f"NumPy BLAS 2048^3 matmul peak {blas:.1f} GFLOP/s; Winograd max |error| {error:.1e} "
        f"(outputs up to {np.abs(reference).max():.1f})\n"
    )
    # The convolution rows count the direct convolution's FLOPs (Winograd's as if it did
    # them: its effective rate), the matmul rows their own.
    print("| computation | median ms | best ms | GFLOP/s | of BLAS peak |")
    print("|---|---:|---:|---:|---:|")
    rows = [
        (label, statistics.median(t), min(t), candidates[label][1]) for label, t in times.items()
    ]
    rows.insert(
        2,
        (
            "Conv2D + BiasAdd + Relu, oneDNN (2nd process)",
            onednn["median"],
            onednn["best"],
            direct_flops,
        ),
    )
    for label, median, best, flops in rows:
        rate = flops / median / 1e9
        print(
            f"| {label} | {median * 1e3:.1f} | {best * 1e3:.1f} | {rate:.1f} | {rate / blas:.0%} |"
        )


if __name__ == "__main__":
    main()
