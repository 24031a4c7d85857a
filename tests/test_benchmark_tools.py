"""Helpers the CPU-speed benchmarks report numbers with: the Winograd convolution of
``bench_conv_kernels.py`` and the onnxruntime profile of ``bench_export.py --profile``."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
tf = pytest.importorskip("tensorflow")
bench_conv_kernels = pytest.importorskip("bench_conv_kernels")
bench_export = pytest.importorskip("bench_export")


@pytest.mark.parametrize("height, width", [(8, 8), (6, 10)])
def test_winograd_convolution_equals_tensorflows(height, width):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, height, width, 5), dtype=np.float32)
    kernel = rng.standard_normal((3, 3, 5, 7), dtype=np.float32)
    bias = rng.standard_normal(7, dtype=np.float32)
    expected = tf.nn.relu(tf.nn.conv2d(x, kernel, 1, "SAME") + bias).numpy()
    u = tf.constant(bench_conv_kernels.winograd_kernel(kernel))
    assert u.shape == (16, 5, 7)
    actual = bench_conv_kernels.winograd_conv(tf.constant(x), u, tf.constant(bias)).numpy()
    assert actual.shape == expected.shape == (1, height, width, 7)
    assert (expected > 0).mean() > 0.3  # the ReLU leaves enough to compare
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)
    # A different kernel gives a different result: the comparison can fail.
    other = bench_conv_kernels.winograd_kernel(kernel[::-1])
    assert (
        np.abs(bench_conv_kernels.winograd_conv(tf.constant(x), other, bias) - expected).max() > 0.1
    )


def test_onnx_profile_times_each_op_type_of_the_calls(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    # images (uint8, NHWC) -> float NCHW -> 3x3 conv -> ReLU: three op types to find.
    weights = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((16, 3, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["out"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 64, 64, 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 64, 64])],
        [weights],
    )
    path = tmp_path / "tiny.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    images = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)

    times = bench_export.onnx_op_times(str(path), images, threads=1, runs=2)
    assert {"Conv", "call"} <= set(times) and times["Conv"] > 0
    # Per call, not summed over calls: the ops fit inside the call they ran in.
    assert sum(t for op, t in times.items() if op != "call") <= times["call"]
    bench_export.print_onnx_profile({"tiny": str(path)}, images, threads=1)
    table = capsys.readouterr().out
    assert "| Conv |" in table and "| whole call |" in table and "(100%)" in table


def test_the_cpu_line_names_the_flags_that_decide_the_figures():
    from machine import describe_cpu

    cpuinfo = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
        "model name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_vnni avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: something else\n"
    )
    line = describe_cpu(cpuinfo, cores=2)
    assert line == (
        "CPU: AMD EPYC 9R14 (family 25, model 17), 2 cores; AVX2 yes, AVX-512 yes, VNNI yes, "
        "BF16 yes, AMX no"
    )
    assert "AVX-512 no, VNNI no" in describe_cpu("model name : Old\nflags : avx2\n", cores=1)
