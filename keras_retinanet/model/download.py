"""Fetching a file once into the Keras cache, with one clear error when it cannot be had.

Every download of the package goes through :func:`fetch_file`: ImageNet backbone weights and the
published detectors. A failure raises :class:`DownloadError`, whose message names what was
fetched, from where, why it failed (no network, an HTTP status, a hash that differs, a full
disk), where the file would be cached, and how to do without the network. ``keras.utils.get_file``
removes a partial download itself, and a file whose hash differs is removed here, so nothing
incomplete stays in the cache as if it were whole.
"""

from __future__ import annotations

import errno
import os
import urllib.error

import keras


class DownloadError(OSError):
    """A file could not be downloaded; the message says what, from where, why, and the way
    around it."""


def cache_path(url: str, cache_subdir: str, cache_dir: str | None = None) -> str:
    """Where :func:`fetch_file` keeps the file of ``url`` (Keras' cache: ``$KERAS_HOME`` or
    ``~/.keras``, then ``cache_subdir``)."""
    base = os.path.expanduser(cache_dir or os.environ.get("KERAS_HOME") or "~/.keras")
    return os.path.join(base, cache_subdir, os.path.basename(url))


def _reason(error: BaseException) -> str:
    """Why a download failed, in words, from the error or the errors behind it."""
    seen = error
    while seen is not None:
        if isinstance(seen, urllib.error.HTTPError):
            return f"the server answered HTTP {seen.code} ({seen.reason})"
        if isinstance(seen, urllib.error.URLError):
            return f"no connection to the server ({seen.reason}; is this machine offline?)"
        if isinstance(seen, OSError) and seen.errno == errno.ENOSPC:
            return "no space left on the disk that holds the cache"
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    if "Incomplete or corrupted" in text or "hash" in text.lower():
        return "the downloaded file's hash differs from the expected one (incomplete or changed)"
    if "URL fetch failure" in text:
        # Keras folds the network error into its message: "... : None -- <reason>".
        return f"no connection to the server ({text.rsplit('--', 1)[-1].strip()})"
    return f"{type(error).__name__}: {text}"


def fetch_file(
    what: str,
    url: str,
    offline_route: str,
    cache_subdir: str,
    file_hash: str | None = None,
    cache_dir: str | None = None,
    origin: str | None = None,
) -> str:
    """Download ``url`` into the cache once (later calls find it there) and return its path.

    Args:
        what: what the file is, for the message (``"ResNet50 ImageNet weights"``).
        url: the publisher's address; its last part names the cached file.
        offline_route: what to do without network, for the message (the option that takes a
            local copy).
        cache_subdir: the folder under the cache (``"models"`` is keras.applications' own).
        file_hash: MD5 or SHA-256 hex digest the file must have (Keras checks it); None: none.
        cache_dir: the cache's root; None: ``$KERAS_HOME`` or ``~/.keras``.
        origin: another address of the same file (a mirror, ``file://``); default ``url``.

    Raises:
        DownloadError: the file could not be had (the message says why and what to do).
    """
    target = cache_path(url, cache_subdir, cache_dir)
    source = origin or url
    try:
        if cache_dir:  # keras falls back to /tmp/.keras for a folder that does not exist yet
            os.makedirs(cache_dir, exist_ok=True)
        return keras.utils.get_file(
            os.path.basename(url),
            origin=source,
            file_hash=file_hash,
            cache_dir=cache_dir,
            cache_subdir=cache_subdir,
        )
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001  (any failure: one message)
        if isinstance(error, KeyboardInterrupt):
            raise
        if os.path.isfile(target) and file_hash:  # a file with the wrong hash is not kept
            os.remove(target)
        raise DownloadError(
            f"could not download the {what} from {source}: {_reason(error)}. It would be "
            f"cached as {target}. Without network: download that file on another machine, "
            f"then {offline_route}"
        ) from error
