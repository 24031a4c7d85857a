"""The VOC download: real URLs are well formed; the download -> MD5 -> unpack path works with a
tar archive built here from ../shared/data/voc2007_sample and served from a file:// URL."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from shared_data import DATA, missing_reason

from keras_retinanet.datasets import voc as voc_download
from keras_retinanet.preprocessing.voc import PascalVocGenerator


def test_official_urls_and_checksums_are_well_formed():
    archives = voc_download.ARCHIVES["voc2007"]
    assert [a.filename for a in archives] == [
        "VOCtrainval_06-Nov-2007.tar",
        "VOCtest_06-Nov-2007.tar",
    ]
    urls = voc_download.archive_urls(archives[0])
    assert urls[0] == "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar"
    assert urls[1].startswith("https://") and urls[1].endswith("/VOCtrainval_06-Nov-2007.tar")
    for archive in archives + voc_download.ARCHIVES["voc2012"]:
        assert len(archive.md5) == 32 and int(archive.md5, 16) >= 0


def _voc_tar(tmp_path: Path) -> Path:
    if not (DATA / "voc2007_sample").is_dir():
        pytest.skip(missing_reason())
    path = tmp_path / "served" / "VOCtrainval_06-Nov-2007.tar"
    path.parent.mkdir()
    with tarfile.open(path, "w") as tar:
        for sub in ("Annotations", "JPEGImages", "ImageSets"):
            tar.add(DATA / "voc2007_sample" / sub, arcname=f"VOCdevkit/VOC2007/{sub}")
    return path


def test_download_checks_md5_unpacks_and_loads(tmp_path):
    served = _voc_tar(tmp_path)
    archive = voc_download.Archive(
        served.name, "voc2007/" + served.name, voc_download.md5sum(served)
    )
    urls = {served.name: ["file:///nonexistent/first-url-fails.tar", served.as_uri()]}
    data_dir = voc_download.download_voc(
        "voc2007", tmp_path / "root", archives=(archive,), urls=urls
    )
    assert data_dir == tmp_path / "root" / "VOCdevkit" / "VOC2007"
    generator = PascalVocGenerator(str(data_dir), "trainval", shuffle=False)
    assert generator.size() == 5
    # A second call finds the cached archive with the right MD5 and downloads nothing.
    served.unlink()
    assert voc_download.download_voc("voc2007", tmp_path / "root", archives=(archive,), urls=urls)


def test_wrong_md5_is_an_error_naming_the_file(tmp_path):
    served = _voc_tar(tmp_path)
    archive = voc_download.Archive(served.name, "x/" + served.name, "0" * 32)
    with pytest.raises(RuntimeError, match="MD5") as excinfo:
        voc_download.download_voc(
            "voc2007", tmp_path / "root", archives=(archive,), urls={served.name: [served.as_uri()]}
        )
    assert "place it at" in str(excinfo.value)
    assert not (tmp_path / "root" / served.name).exists()  # the corrupt download was removed


def test_archive_escaping_the_root_is_refused(tmp_path):
    evil = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w") as tar:
        tar.add(payload, arcname="../outside.txt")
    archive = voc_download.Archive(evil.name, "x/" + evil.name, voc_download.md5sum(evil))
    with pytest.raises(RuntimeError, match="outside"):
        voc_download.download_voc(
            "voc2007", tmp_path / "root", archives=(archive,), urls={evil.name: [evil.as_uri()]}
        )
    assert not (tmp_path / "outside.txt").exists()
