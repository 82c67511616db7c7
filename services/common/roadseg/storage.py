"""Object storage with two real backends: the local filesystem and Google Cloud Storage.

Keys are POSIX-style relative paths (``scenes/<id>/tiles/r0000_c0001.tif``). Every write is
atomic: the local backend writes a temporary file in the same folder and renames it, GCS
uploads a whole object in one request, so readers never see a half-written file.

``open_raster`` gives rasterio range reads on both backends (GCS through a seekable blob
reader), so large scenes are read window by window without downloading them first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlparse

from roadseg.errors import MissingFile, NotFound, StorageFull, TooLarge, UnsafeName

if TYPE_CHECKING:
    from rasterio.io import DatasetReader

_CHUNK = 1024 * 1024
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_key(*parts: str) -> str:
    """Join key parts, refusing anything that could leave the storage root.

    Rejects absolute paths, ``..`` segments, backslashes and control characters rather than
    silently rewriting them, so a path trick in a request is reported, not obeyed.
    """
    joined = "/".join(p.rstrip("/") for p in parts if p not in ("", None))
    if not joined or joined.startswith("/") or "\\" in joined or any(ord(c) < 32 for c in joined):
        raise UnsafeName(f"unsafe storage key: {joined!r}")
    path = PurePosixPath(joined)
    if path.is_absolute() or any(seg in ("..", ".", "") for seg in joined.split("/")):
        raise UnsafeName(f"unsafe storage key: {joined!r}")
    return joined


def safe_filename(name: str, default: str = "upload") -> str:
    """A client-supplied file name reduced to its last component and a safe alphabet.

    ``../../etc/passwd`` becomes ``passwd``; names that reduce to nothing become ``default``.
    """
    base = name.replace("\\", "/").split("/")[-1]
    base = _SAFE_NAME.sub("_", base).strip("._")
    return base[:120] or default


class Storage(ABC):
    """Common interface of the storage backends."""

    url: str

    @abstractmethod
    def write_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int:
        """Store everything read from ``stream`` under ``key`` atomically; return the byte count.

        Raises :class:`TooLarge` (and stores nothing) when more than ``max_bytes`` arrive.
        """

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A seekable binary reader; raises :class:`NotFound`."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes, without reading it; raises :class:`NotFound`."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """All keys under ``prefix`` (recursive), sorted."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete one key; missing keys are ignored (idempotent)."""

    @abstractmethod
    def url_for(self, key: str) -> str:
        """The full URL of a key (``file:///...`` or ``gs://...``)."""

    # ---- conveniences built on the primitives above
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""
        import io

        self.write_stream(key, io.BytesIO(data))

    def write_text(self, key: str, text: str) -> None:
        """Store ``text`` as UTF-8 under ``key`` atomically."""
        self.write_bytes(key, text.encode("utf-8"))

    def write_file(self, key: str, path: str | os.PathLike[str]) -> None:
        """Copy a local file into storage under ``key``, streamed and atomic."""
        with open(path, "rb") as fh:
            self.write_stream(key, fh)

    @contextlib.contextmanager
    def batch(self, size: int = 16) -> Iterator[Callable[[str, bytes], None]]:
        """A writer for many objects in a row (a scene's tiles): ``write(key, data)``, each atomic.

        Here each is stored as :meth:`write_bytes` does; local disk overrides it to make a group of
        files durable together (one wait for the disk per group instead of one per file).
        """
        yield self.write_bytes

    def read_bytes(self, key: str) -> bytes:
        """The whole object in memory; meant for small objects (records, manifests), not rasters."""
        with self.open(key) as fh:
            return fh.read()

    def read_text(self, key: str) -> str:
        """The object decoded as UTF-8 (status records, manifests)."""
        return self.read_bytes(key).decode("utf-8")

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (a job's whole folder); returns how many were deleted."""
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def download(self, key: str, dest: str | os.PathLike[str]) -> Path:
        """Stream the object into the local file ``dest`` (parents created); returns its path."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        with self.open(key) as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
        return dest

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """A local file holding the object, for libraries that need a path (downloaded for GCS)."""
        suffix = PurePosixPath(key).suffix
        with tempfile.TemporaryDirectory(prefix="roadseg-") as tmp:
            yield self.download(key, Path(tmp) / f"object{suffix}")

    @contextlib.contextmanager
    def open_raster(self, key: str) -> Iterator[DatasetReader]:
        """Open a stored raster with rasterio, reading only the byte ranges it needs."""
        import rasterio

        with rasterio.open(key, opener=lambda path, mode="rb": self.open(path)) as ds:
            yield ds


class LocalStorage(Storage):
    """Files under a root folder; the embedded default (``var/storage``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Use the folder ``root`` (created if missing); keys resolve inside it."""
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def path(self, key: str) -> Path:
        """The local file of ``key``, checked by :func:`safe_key` so it cannot point outside the root."""
        return self.root / safe_key(key)

    def _part(self, key: str) -> tuple[Path, Path]:
        """(hidden ``.part`` file beside the target, the target) for a write of ``key``; folders created."""
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest.parent / f".{dest.name}.{uuid.uuid4().hex}.part", dest

    @contextlib.contextmanager
    def _full_disk_is_storage_full(self, key: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                # The message names the key, never the folder: callers see it.
                raise StorageFull(f"no space left in storage to write {key} ({exc.strerror})") from exc
            raise

    def write_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int:
        """Write a hidden ``.part`` file beside the target, fsync it, then rename it into place."""
        tmp, dest = self._part(key)
        total = 0
        try:
            with self._full_disk_is_storage_full(key):
                with open(tmp, "wb") as out:
                    while chunk := stream.read(_CHUNK):
                        total += len(chunk)
                        if max_bytes is not None and total > max_bytes:
                            raise TooLarge(f"upload exceeds the limit of {max_bytes} bytes")
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)  # a failed write leaves no part behind (and gives its space back)
        return total

    @contextlib.contextmanager
    def batch(self, size: int = 16) -> Iterator[Callable[[str, bytes], None]]:
        """Files written whole to ``.part`` files, made durable and renamed into place ``size`` at a time.

        Why: one fsync per 512 px tile was about a third of the time of tiling a scene. Each file
        still appears only once it is complete and on disk (an empty file under a final name after
        a power loss would be skipped by every re-run), so a crash costs at most ``size`` files to
        redo. Parts not yet renamed when the block fails are removed.
        """
        pending: list[tuple[Path, Path, str]] = []

        def flush() -> None:
            for tmp, _, key in pending:
                with self._full_disk_is_storage_full(key):
                    fd = os.open(tmp, os.O_RDONLY)
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
            for tmp, dest, _ in pending:
                os.replace(tmp, dest)
            pending.clear()

        def write(key: str, data: bytes) -> None:
            tmp, dest = self._part(key)
            pending.append((tmp, dest, key))
            with self._full_disk_is_storage_full(key):
                tmp.write_bytes(data)
            if len(pending) >= size:
                flush()

        try:
            yield write
            flush()
        finally:
            for tmp, _, _ in pending:
                tmp.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        """Open the file for reading; raises :class:`NotFound` when it is missing."""
        path = self.path(key)
        if not path.is_file():
            raise NotFound(f"no such object: {key}")
        return open(path, "rb")

    def exists(self, key: str) -> bool:
        """Whether the file exists (a folder is not an object)."""
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        """The file's size in bytes; raises :class:`NotFound` when it is missing."""
        path = self.path(key)
        if not path.is_file():
            raise NotFound(f"no such object: {key}")
        return path.stat().st_size

    def list(self, prefix: str = "") -> list[str]:
        """Keys of the files under ``prefix``, sorted, leaving out the ``.part`` files of unfinished writes."""
        base = self.path(prefix) if prefix else self.root
        if base.is_file():
            return [safe_key(prefix)]
        if not base.is_dir():
            return []
        keys = [
            p.relative_to(self.root).as_posix()
            for p in base.rglob("*")
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".part"))
        ]
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Delete the file and the folders it leaves empty, so a refused upload leaves no trace."""
        path = self.path(key)
        path.unlink(missing_ok=True)
        for parent in path.parents:
            if parent == self.root or not parent.is_relative_to(self.root):
                break
            try:
                parent.rmdir()
            except OSError:  # not empty (or already gone): stop climbing
                break

    def url_for(self, key: str) -> str:
        """The ``file://`` URI of the key's file."""
        return self.path(key).as_uri()

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[Path]:
        """The stored file itself: on local disk no copy is needed."""
        path = self.path(key)
        if not path.is_file():
            raise NotFound(f"no such object: {key}")
        yield path

    @contextlib.contextmanager
    def open_raster(self, key: str) -> Iterator[DatasetReader]:
        """Open the file directly: GDAL reads local files without the byte-range opener."""
        import rasterio

        with rasterio.open(self.path(key)) as ds:
            yield ds


class GCSStorage(Storage):
    """Objects in a Google Cloud Storage bucket under an optional prefix.

    Credentials come from the environment (Workload Identity on GKE, ADC locally). When
    ``STORAGE_EMULATOR_HOST`` is set (fake-gcs-server in tests and compose), anonymous
    credentials are used and the bucket is created if missing.
    """

    def __init__(self, bucket: str, prefix: str = "", project: str | None = None) -> None:
        """Use ``bucket``; with ``STORAGE_EMULATOR_HOST`` set, anonymously, creating the bucket if missing."""
        from google.cloud import storage as gcs

        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            from google.auth.credentials import AnonymousCredentials

            self.client = gcs.Client(project=project or "roadseg-local", credentials=AnonymousCredentials())
        else:
            self.client = gcs.Client(project=project)
        self.bucket = self.client.bucket(bucket)
        if emulator and not self.bucket.exists():
            from google.api_core.exceptions import Conflict

            # Services starting together race to create it; the loser's 409 means it exists now.
            with contextlib.suppress(Conflict):
                self.client.create_bucket(bucket)
        self.prefix = prefix.strip("/")
        self.url = f"gs://{bucket}/{self.prefix}".rstrip("/")

    def _name(self, key: str) -> str:
        key = safe_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def write_stream(self, key: str, stream: BinaryIO, max_bytes: int | None = None) -> int:
        """Spool to a temporary file while enforcing ``max_bytes``, then upload once (the object appears whole)."""
        # Spool to a local temp file first so the size limit is enforced before anything is
        # uploaded; the single upload call then makes the object appear atomically.
        with tempfile.TemporaryFile() as spool:
            total = 0
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if max_bytes is not None and total > max_bytes:
                    raise TooLarge(f"upload exceeds the limit of {max_bytes} bytes")
                spool.write(chunk)
            spool.seek(0)
            self.bucket.blob(self._name(key)).upload_from_file(spool, size=total, rewind=False)
        return total

    def open(self, key: str) -> BinaryIO:
        """A seekable blob reader fetching 1 MiB ranges; raises :class:`NotFound` when the object is missing."""
        from google.api_core.exceptions import NotFound as GcsNotFound

        blob = self.bucket.blob(self._name(key))
        try:
            blob.reload()
        except GcsNotFound as exc:
            # Also a FileNotFoundError: rasterio's opener takes that to mean "no such sidecar" when GDAL
            # looks for a GeoTIFF's .msk/.aux.xml, and fails the whole open on any other error.
            raise MissingFile(f"no such object: {key}") from exc
        return blob.open("rb", chunk_size=_CHUNK)

    def exists(self, key: str) -> bool:
        """Whether the object exists (one metadata request)."""
        return self.bucket.blob(self._name(key)).exists()

    def size(self, key: str) -> int:
        """The object's size from its metadata; raises :class:`NotFound` when it is missing."""
        blob = self.bucket.get_blob(self._name(key))
        if blob is None:
            raise NotFound(f"no such object: {key}")
        return int(blob.size)

    def list(self, prefix: str = "") -> list[str]:
        """Keys under ``prefix``, sorted; a prefix names a folder (or one object), never a partial file name."""
        full = self._name(prefix) if prefix else self.prefix
        if full and not full.endswith("/") and prefix:
            # A prefix names a folder, never a partial file name.
            if self.bucket.blob(full).exists():
                return [safe_key(prefix)]
            full += "/"
        elif full and not full.endswith("/"):
            full += "/"
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(b.name[strip:] for b in self.client.list_blobs(self.bucket, prefix=full or None))

    def delete(self, key: str) -> None:
        """Delete the object; a missing one is ignored."""
        from google.api_core.exceptions import NotFound as GcsNotFound

        with contextlib.suppress(GcsNotFound):
            self.bucket.blob(self._name(key)).delete()

    def url_for(self, key: str) -> str:
        """The ``gs://bucket/name`` URL of the key."""
        return f"gs://{self.bucket.name}/{self._name(key)}"


def split_suffix(spec: str) -> tuple[str, str | None]:
    """``"PATH:SUFFIX"`` -> (PATH, SUFFIX); (spec, None) without one. The ``://`` of a URL is no separator.

    Data specs on the command line (``PATH:WEIGHT``, ``PATH:SPLITS``) name local folders and storage
    URLs alike, so ``gs://bucket/ds`` must not split into ``gs`` and ``//bucket/ds``.
    """
    path, sep, suffix = spec.rpartition(":")
    if sep and path and "/" not in suffix:
        return path, suffix
    return spec, None


def storage_from_url(url: str) -> Storage:
    """Build the backend named by a URL: ``file:///path``, a plain path, or ``gs://bucket/prefix``."""
    parsed = urlparse(url)
    if parsed.scheme == "gs":
        return GCSStorage(parsed.netloc, parsed.path)
    if parsed.scheme == "file":
        return LocalStorage(unquote(parsed.path))
    if parsed.scheme == "":
        return LocalStorage(url)
    raise ValueError(f"unsupported storage URL {url!r}: use file:///path or gs://bucket/prefix")


def get_storage() -> Storage:
    """The storage configured by ``ROADSEG_STORAGE_URL``."""
    from roadseg.config import get_settings

    return storage_from_url(get_settings().storage_url)


def split_url(url: str) -> tuple[Storage, str]:
    """Split ``gs://bucket/a/b.tif`` or ``file:///x/a/b.tif`` into (storage of its folder, file name)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("gs", "file", ""):
        raise ValueError(f"unsupported URL {url!r}: use file:///path or gs://bucket/path")
    path = PurePosixPath(unquote(parsed.path))
    if parsed.scheme == "gs":
        return GCSStorage(parsed.netloc, str(path.parent).lstrip("/")), path.name
    return LocalStorage(path.parent), path.name
