"""Every retinanet-* command, given bad arguments or bad files, ends with its own one-line
message on stderr and a non-zero status, never a Python traceback (tests/test_cli_errors.py).

Each case runs the command in a subprocess, as a user would. "Offline" is simulated with an
empty Keras cache and a proxy on a closed loopback port, so a download is refused at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from heads import small_snapshot
from shared_data import photo_bgr

COMMANDS = {
    "train": "keras_retinanet.cli.train",
    "evaluate": "keras_retinanet.cli.evaluate",
    "predict": "keras_retinanet.cli.predict",
    "convert": "keras_retinanet.cli.convert",
    "export": "keras_retinanet.cli.export",
    "debug": "keras_retinanet.cli.debug",
    "demo": "keras_retinanet.demo",
    "download": "keras_retinanet.datasets.voc",
}
SMALL = ["--image-min-side", "96", "--image-max-side", "128"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """The bad (and a few good) files the cases use, by name."""
    root = tmp_path_factory.mktemp("bad_files")
    f = {}
    # A LabelImg-style folder: one photo with its XML beside it, one class ("cat").
    voc = root / "voc"
    voc.mkdir()
    image, _ = photo_bgr()
    cv2.imwrite(str(voc / "a.jpg"), image)
    (voc / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><size><width>650</width><height>417</height>"
        "<depth>3</depth></size><object><name>cat</name><difficult>0</difficult><bndbox>"
        "<xmin>10</xmin><ymin>10</ymin><xmax>200</xmax><ymax>200</ymax></bndbox></object>"
        "</annotation>"
    )
    f["voc"] = str(voc)
    f["photo"] = str(voc / "a.jpg")
    snapshot, _, _ = small_snapshot(root / "three_classes.keras")  # 3 classes, not 1
    f["snapshot"] = str(snapshot)
    data = Path(snapshot).read_bytes()
    (root / "truncated.keras").write_bytes(data[: len(data) // 3])
    f["truncated"] = str(root / "truncated.keras")
    (root / "empty.keras").write_bytes(b"")
    f["empty"] = str(root / "empty.keras")
    (root / "photo.keras").write_bytes(Path(f["photo"]).read_bytes())
    f["jpeg_named_keras"] = str(root / "photo.keras")
    (root / "text.h5").write_text("not an HDF5 file")
    f["not_hdf5"] = str(root / "text.h5")
    with h5py.File(root / "weights.h5", "w") as handle:
        handle.create_dataset("conv1/kernel", data=np.zeros((3, 3), np.float32))
    f["weights_only"] = str(root / "weights.h5")
    with h5py.File(root / "fizyr.h5", "w") as handle:  # what fizyr's saved config looks like
        handle.attrs["model_config"] = (
            '{"class_name": "Model", "config": {"layers": [{"class_name": '
            '"BatchNormalization", "config": {"freeze": true}}]}, "keras_resnet": 1}'
        )
    f["fizyr"] = str(root / "fizyr.h5")
    with zipfile.ZipFile(root / "other.keras", "w") as archive:
        archive.writestr("config.json", '{"class_name": "Sequential", "config": {}}')
    f["other_package"] = str(root / "other.keras")
    (root / "model.onnx").write_bytes(b"\x08\x07")
    f["onnx"] = str(root / "model.onnx")
    (root / "a_file").write_text("")
    f["file_as_folder"] = str(root / "a_file" / "out")  # a folder inside a regular file
    f["missing"] = str(root / "missing.keras")
    f["keras_home"] = str(root / "keras_home")
    return f


# (command, arguments with {names} of files, text the message must contain)
CASES = [
    # retinanet-train
    ("train", ["voc", "{missing}"], "not found"),
    ("train", ["--epochs", "1", "--steps", "1", *SMALL, "voc", "{voc}"], "could not download"),
    ("train", ["--weights", "{truncated}", "voc", "{voc}"], "truncated or damaged"),
    ("train", ["--weights", "{fizyr}", "voc", "{voc}"], "retinanet-convert --from fizyr"),
    ("train", ["--snapshot", "{missing}", "voc", "{voc}"], "not found"),
    ("train", ["--config", "{missing}", "voc", "{voc}"], "not found"),
    ("train", ["--epochs", "0", "voc", "{voc}"], "must be >= 1"),
    # retinanet-evaluate
    ("evaluate", ["voc", "{voc}", "{truncated}"], "truncated or damaged"),
    ("evaluate", ["voc", "{voc}", "{missing}"], "not found"),
    ("evaluate", ["voc", "{voc}", "{empty}"], "empty"),
    ("evaluate", ["voc", "{voc}", "{snapshot}"], "class"),
    ("evaluate", ["voc", "{voc}", "{other_package}"], "not a RetinaNet of this package"),
    ("evaluate", ["voc", "{missing}", "{snapshot}"], "not found"),
    # retinanet-predict
    ("predict", ["{not_hdf5}", "{photo}"], "not an HDF5 file"),
    ("predict", ["{weights_only}", "{photo}"], "holds weights but no model"),
    ("predict", ["{jpeg_named_keras}", "{photo}"], "looks like a JPEG image"),
    ("predict", ["{onnx}", "{photo}"], "could not be opened as a onnx artifact"),
    ("export", ["{onnx}", "{missing}", "--format", "saved_model"], "exported artifact"),
    ("evaluate", ["voc", "{voc}", "{onnx}"], "could not be opened as a onnx artifact"),
    ("predict", ["{snapshot}", "{missing}"], "not found"),
    ("predict", ["{snapshot}", "{photo}", "--output", "{file_as_folder}"], "error:"),
    # retinanet-convert
    ("convert", ["--pretrained", "torchvision_v2_coco", "{missing}"], "could not download"),
    ("convert", ["--pretrained", "yolo"], "invalid choice"),
    ("convert", ["--pretrained", "torchvision_v1_coco", "--score-threshold", "0.3"], "apply when"),
    ("convert", ["--from", "torchvision", "{photo}", "{missing}"], "error:"),
    ("convert", ["{truncated}", "{missing}"], "truncated or damaged"),
    ("convert", ["{fizyr}", "{missing}"], "retinanet-convert --from fizyr"),
    # retinanet-export
    ("export", ["{truncated}", "{missing}", "--format", "onnx"], "truncated or damaged"),
    ("export", ["{missing}", "{missing}", "--format", "saved_model"], "not found"),
    ("export", ["{snapshot}", "{missing}"], "required: --format"),
    ("export", ["{snapshot}", "{file_as_folder}", "--format", "saved_model"], "error:"),
    # retinanet-debug
    ("debug", ["voc", "{missing}"], "not found"),
    ("debug", ["voc", "{voc}", "--snapshot", "{truncated}"], "truncated or damaged"),
    ("debug", ["voc", "{voc}", "--config", "{missing}"], "not found"),
    # retinanet-demo
    ("demo", ["--output", "{file_as_folder}", "--minutes", "0.01"], "error:"),
    ("demo", ["--minutes", "soon"], "invalid"),
    # retinanet-download
    ("download", ["voc2007", "{file_as_folder}"], "error:"),
    ("download", ["voc2012", "{keras_home}"], "could not download"),
    ("download", ["voc2010", "{keras_home}"], "invalid choice"),
]


def run_command(command: str, arguments: list[str], files: dict, *extra: str):
    env = {
        **os.environ,
        "KERAS_HOME": files["keras_home"],  # an empty cache: downloads are attempted
        "HTTPS_PROXY": "http://127.0.0.1:9",  # a closed loopback port: "offline"
        "HTTP_PROXY": "http://127.0.0.1:9",
        "RETINANET_DEBUG": "",
    }
    argv = [a.format(**files) for a in arguments]
    return subprocess.run(
        [sys.executable, "-m", COMMANDS[command], *argv, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


@pytest.mark.parametrize(
    "command,arguments,expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)]
)
def test_a_bad_invocation_ends_in_one_message(command, arguments, expected, files):
    result = run_command(command, arguments, files)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"retinanet-{command}: error:" in result.stderr or "usage:" in result.stderr
    assert expected in result.stderr, result.stderr[-2000:]
    assert "likely a bug" not in result.stderr, result.stderr[-2000:]  # a known failure


def test_every_command_has_cases():
    assert {case[0] for case in CASES} == set(COMMANDS)
    counts = {name: sum(case[0] == name for case in CASES) for name in COMMANDS}
    assert min(counts.values()) >= 2, counts


def test_debug_shows_the_traceback(files):
    result = run_command("evaluate", ["voc", "{voc}", "{truncated}"], files, "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "ModelFileError" in result.stderr


def test_a_download_with_the_wrong_hash_is_removed_and_explained(tmp_path):
    from keras_retinanet.model.download import DownloadError, fetch_file

    source = tmp_path / "weights.h5"
    source.write_bytes(b"half of a file")
    with pytest.raises(DownloadError, match="hash differs") as raised:
        fetch_file(
            "test weights",
            "https://example.invalid/models/weights.h5",
            "pass --weights PATH",
            cache_subdir="models",
            file_hash="0" * 32,  # an MD5 the file does not have
            cache_dir=str(tmp_path / "cache"),
            origin=source.as_uri(),
        )
    message = str(raised.value)
    assert "test weights" in message and source.as_uri() in message
    assert str(tmp_path / "cache" / "models" / "weights.h5") in message
    assert "pass --weights PATH" in message
    assert not (tmp_path / "cache" / "models" / "weights.h5").exists()  # nothing half kept


def test_download_failures_say_why():
    import errno
    import urllib.error

    from keras_retinanet.model.download import _reason

    http = urllib.error.HTTPError("https://x/y", 404, "Not Found", {}, None)
    assert "HTTP 404" in _reason(http)
    offline = urllib.error.URLError("[Errno -2] Name or service not known")
    assert "offline" in _reason(offline)
    try:
        raise Exception("URL fetch failure on https://x: None -- timed out") from OSError(
            errno.ENOSPC, "No space left on device"
        )
    except Exception as error:  # noqa: BLE001
        assert "no space left" in _reason(error)
