"""The registry of published RetinaNets, and their download + conversion (from file:// URLs to
files made here: nothing can be downloaded from the publishers on the test machines)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from sources.common import run, torch_python

from keras_retinanet import models
from keras_retinanet.cli import convert as convert_cli
from keras_retinanet.convert import PRETRAINED, download_pretrained
from keras_retinanet.model.download import DownloadError

TORCHVISION_WEIGHTS = """
import json
from torchvision.models.detection import (RetinaNet_ResNet50_FPN_Weights as V1,
                                          RetinaNet_ResNet50_FPN_V2_Weights as V2)
print(json.dumps({k: [w.url, w.meta["_metrics"]["COCO-val2017"]["box_map"]]
                  for k, w in (("v1", V1.COCO_V1), ("v2", V2.COCO_V1))}))
"""

COCO_STATE = """
import sys, torch
from torchvision.models.detection import retinanet_resnet50_fpn
torch.manual_seed(0)
model = retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
torch.save(model.state_dict(), sys.argv[1])
"""


def test_registry_urls_and_ap_are_torchvisions_own():
    output = subprocess.run(
        [torch_python(), "-c", TORCHVISION_WEIGHTS], capture_output=True, text=True, check=True
    ).stdout
    published = json.loads(output.strip().splitlines()[-1])
    for arch in ("v1", "v2"):
        entry = PRETRAINED[f"torchvision_{arch}_coco"]
        assert [entry.weights.url, entry.coco_ap] == published[arch]
        assert entry.weights.file_hash in entry.weights.url  # torchvision names files by hash
    assert PRETRAINED["fizyr_resnet50_coco"].weights.url.endswith("resnet50_coco_best_v2.1.0.h5")


@pytest.fixture(scope="module")
def coco_pth(tmp_path_factory):
    path = tmp_path_factory.mktemp("publisher") / "retinanet_resnet50_fpn_coco.pth"
    run([torch_python(), "-c", COCO_STATE, str(path)])
    return path


def test_download_checks_the_hash_and_converts_once(tmp_path, coco_pth):
    url = coco_pth.as_uri()
    cache = str(tmp_path / "cache")
    with pytest.raises(DownloadError, match="SHA-256 does not start with eeacb38b"):
        download_pretrained("torchvision_v1_coco", cache_dir=cache, url=url)
    downloaded = os.path.join(cache, "keras_retinanet", "retinanet_resnet50_fpn_coco-eeacb38b.pth")
    assert not os.path.exists(downloaded)  # a file with the wrong hash is not kept
    path = download_pretrained("torchvision_v1_coco", cache_dir=cache, url=url, sha256_prefix=None)
    assert os.path.isfile(downloaded) and path.endswith("torchvision_v1_coco.keras")
    metadata = models.read_metadata(path)
    assert metadata["variant"]["name"] == "torchvision_v1" and metadata["num_classes"] == 91
    assert metadata["classes"][1] == "person"
    stamp = os.path.getmtime(path)
    assert (
        download_pretrained("torchvision_v1_coco", cache_dir=cache, url=url, sha256_prefix=None)
        == path
    )
    assert os.path.getmtime(path) == stamp  # converted once
    with pytest.raises(ValueError, match="torchvision_v2_coco"):
        download_pretrained("yolo", cache_dir=cache)

    # The registry's Python entry point: the same cached snapshot, as an inference model.
    detector = models.from_preset(
        "torchvision_v1_coco", cache_dir=cache, url=url, sha256_prefix=None
    )
    assert models.is_inference_model(detector) and detector.variant.name == "torchvision_v1"
    assert os.path.getmtime(path) == stamp


def test_cli_pretrained_reports_a_bad_download(tmp_path, coco_pth, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    out = str(tmp_path / "coco.keras")
    code = convert_cli.main(
        ["--pretrained", "torchvision_v1_coco", out, "--url", coco_pth.as_uri()]
    )
    assert code == 2 and "SHA-256" in capsys.readouterr().err
    assert not os.path.exists(out)
    with pytest.raises(SystemExit):
        convert_cli.main(["--pretrained", "torchvision_v1_coco", out, "extra.keras"])
