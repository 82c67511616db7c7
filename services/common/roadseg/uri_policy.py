"""The one policy for every URI a user gives a service: scenes, mosaic tiles, road vectors.

A service reads what a request names with its own rights (the pod's files, its bucket credentials,
its network), so a URI is only followed when it is

* ``gs://`` in the storage bucket or one of ``ROADSEG_INGEST_GS_BUCKETS``, or
* ``file://`` under one of ``ROADSEG_INGEST_FILE_ROOTS`` (symbolic links resolved first).

Every other scheme (``http``, ``https``, ``ftp``, GDAL's ``/vsi*`` paths, bare paths) is refused
before anything is opened or connected to. A refusal says which rule applies, never which folders
are allowed or whether the named thing exists, so it cannot be used to map the server's disk.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from roadseg.config import Settings
from roadseg.errors import InvalidInput, NotFound
from roadseg.storage import Storage, split_url


def allowed_buckets(settings: Settings) -> set[str]:
    """``ROADSEG_INGEST_GS_BUCKETS`` plus the bucket of ``ROADSEG_STORAGE_URL`` (when it is one)."""
    buckets = set(settings.ingest_gs_buckets)
    if settings.storage_url.startswith("gs://"):
        buckets.add(urlparse(settings.storage_url).netloc)
    return buckets


def check_uri(uri: str, settings: Settings, what: str = "URI") -> None:
    """Refuse (:class:`InvalidInput`) a ``uri`` outside the allow-lists; looks at nothing but the text and settings.

    ``what`` names the field in the message ("scene URI", "vectors_uri").
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        path = Path(unquote(parsed.path))
        roots = [Path(root).resolve() for root in settings.ingest_file_roots]
        if not path.is_absolute() or not any(path.resolve().is_relative_to(root) for root in roots):
            raise InvalidInput(f"{what} {uri!r} is not under a folder this service may read (ingest_file_roots)")
    elif parsed.scheme == "gs" and parsed.netloc:
        if parsed.netloc not in allowed_buckets(settings):
            raise InvalidInput(f"{what} {uri!r}: gs://{parsed.netloc} is not an allowed bucket (ingest_gs_buckets)")
    else:
        raise InvalidInput(f"unsupported {what} {uri!r}: use gs://bucket/key or file:///path")


def open_uri(uri: str, settings: Settings, what: str = "URI") -> tuple[Storage, str]:
    """(storage of its folder, name) of an allowed ``uri`` (:func:`check_uri` first)."""
    check_uri(uri, settings, what)
    return split_url(uri)


def size_of(uri: str, settings: Settings, what: str = "URI") -> tuple[Storage, str, int]:
    """(storage, name, size) of an allowed ``uri``; :class:`InvalidInput` naming the URI when nothing is there."""
    source, name = open_uri(uri, settings, what)
    try:
        return source, name, source.size(name)
    except NotFound as exc:
        raise InvalidInput(f"no file at {what} {uri!r}") from exc
