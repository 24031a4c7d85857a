"""Download and unpack Pascal VOC 2007 / 2012 into the layout ``retinanet-train voc`` reads.

    retinanet-download voc2007 ~/data          # -> ~/data/VOCdevkit/VOC2007 (trainval + test)
    retinanet-train voc ~/data/VOCdevkit/VOC2007

The archives come from the VOC organisers' server; its mirror is tried when it is down. Each
archive is checked against its published MD5 before it is unpacked.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from keras_retinanet.errors import DEBUG_HELP, debugging, run_command

OFFICIAL_BASE = "http://host.robots.ox.ac.uk/pascal/VOC"
MIRROR_BASE = "https://pjreddie.com/media/files"


@dataclass(frozen=True)
class Archive:
    """One VOC tar archive: its file name, the official sub-path, and its MD5."""

    filename: str
    official_path: str
    md5: str


ARCHIVES: dict[str, tuple[Archive, ...]] = {
    "voc2007": (
        Archive(
            "VOCtrainval_06-Nov-2007.tar",
            "voc2007/VOCtrainval_06-Nov-2007.tar",
            "c52e279531787c972589f7e41ab4ae64",
        ),
        Archive(
            "VOCtest_06-Nov-2007.tar",
            "voc2007/VOCtest_06-Nov-2007.tar",
            "b6e924de25625d8de591ea690078ad9f",
        ),
    ),
    "voc2012": (
        Archive(
            "VOCtrainval_11-May-2012.tar",
            "voc2012/VOCtrainval_11-May-2012.tar",
            "6cd6e144f989b92b3379bac3b3de84fd",
        ),
    ),
}


def archive_urls(archive: Archive) -> list[str]:
    """Where an archive can be fetched, in the order tried: the official server, the mirror."""
    return [f"{OFFICIAL_BASE}/{archive.official_path}", f"{MIRROR_BASE}/{archive.filename}"]


def md5sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, destination: Path) -> None:
    """Download ``url`` to ``destination`` through a temporary file, with a progress bar."""
    temporary = destination.with_name(destination.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(temporary, "wb") as f:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                f.write(block)
                bar.update(len(block))
    os.replace(temporary, destination)


def download_archive(
    archive: Archive, cache_dir: str | os.PathLike, urls: list[str] | None = None
) -> Path:
    """The archive in ``cache_dir``, downloaded if it is not there with the right MD5.

    Raises:
        RuntimeError: every URL failed, or the downloaded file's MD5 is wrong; the message
            lists the URLs and says where to put a manually downloaded file.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / archive.filename
    if path.is_file() and md5sum(path) == archive.md5:
        return path
    errors = []
    for url in urls or archive_urls(archive):
        try:
            _fetch(url, path)
        except (urllib.error.URLError, OSError, ValueError) as e:
            errors.append(f"{url}: {e}")
            continue
        if md5sum(path) == archive.md5:
            return path
        errors.append(f"{url}: MD5 {md5sum(path)} != {archive.md5} (corrupt download)")
        path.unlink()
    raise RuntimeError(
        f"could not download {archive.filename}:\n  "
        + "\n  ".join(errors)
        + f"\nDownload it by hand and place it at {path} (MD5 {archive.md5}), then run again."
    )


def _safe_extract(tar: tarfile.TarFile, root: Path) -> None:
    """Extract refusing members that would land outside ``root`` (absolute paths, ``..``)."""
    root = root.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if root != target and root not in target.parents:
            raise RuntimeError(f"refusing to extract {member.name!r} outside {root}")
        if member.issym() or member.islnk():
            raise RuntimeError(f"refusing to extract link {member.name!r}")
    tar.extractall(root)


def download_voc(
    name: str,
    root: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    archives: tuple[Archive, ...] | None = None,
    urls: dict[str, list[str]] | None = None,
) -> Path:
    """Download and unpack a VOC release; returns ``root/VOCdevkit/VOC<year>``.

    Args:
        name: ``"voc2007"`` (trainval and test) or ``"voc2012"`` (trainval).
        root: where ``VOCdevkit/`` is created.
        cache_dir: where the tar files are kept (default: ``root``).
        archives: override the archive list (for tests and private mirrors).
        urls: override the URLs per archive file name (for tests and private mirrors).

    Raises:
        ValueError: unknown ``name``.
        RuntimeError: a download failed (see :func:`download_archive`).
    """
    if name not in ARCHIVES:
        raise ValueError(f"unknown VOC release {name!r}; choose one of {sorted(ARCHIVES)}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for archive in archives or ARCHIVES[name]:
        path = download_archive(archive, cache_dir or root, (urls or {}).get(archive.filename))
        with tarfile.open(path) as tar:
            _safe_extract(tar, root)
    data_dir = root / "VOCdevkit" / f"VOC{name[3:]}"
    if not (data_dir / "Annotations").is_dir():
        raise RuntimeError(f"{data_dir} has no Annotations/ after unpacking; is the archive right?")
    return data_dir


def main(argv: list[str] | None = None) -> None:
    """``retinanet-download voc2007|voc2012 ROOT``, errors as one line
    (:func:`keras_retinanet.errors.run_command`)."""
    return run_command("retinanet-download", _main, argv)


def _main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(
        prog="retinanet-download", description="Download and unpack Pascal VOC."
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("name", choices=sorted(ARCHIVES))
    parser.add_argument("root", help="folder in which VOCdevkit/ is created")
    parser.add_argument("--cache-dir", help="where the .tar files are kept (default: ROOT)")
    args = parser.parse_args(argv)
    try:
        data_dir = download_voc(args.name, args.root, args.cache_dir)
    except RuntimeError as e:
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-download: error: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    print(f"{args.name} is in {data_dir}; train with: retinanet-train voc {data_dir}")


if __name__ == "__main__":
    main()
