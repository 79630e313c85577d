"""Artifact store over `pyarrow.fs`: the same code for a local folder and `s3://bucket/prefix`.

S3 settings come from the config or the environment (`AWS_ENDPOINT_URL`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`), so MinIO, Ceph, R2 and AWS all work.
Every write is atomic: local files are written beside the target, fsynced, renamed over it, and the folder is
fsynced (so a crash or power loss leaves the old or the new file, never a torn one); an S3 PUT (or multipart
upload, completed only at close) is atomic per object.
A stage makes its outputs visible by writing its manifest last.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import os
import posixpath
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

PARQUET_OPTS: dict[str, Any] = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}
COPY_CHUNK = 8 << 20  # bytes held in memory at once by a streaming copy


def _s3_settings(endpoint_url: str | None, region: str | None) -> tuple[str | None, str]:
    endpoint = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return endpoint, region


def s3_filesystem(endpoint_url: str | None = None, region: str | None = None) -> pafs.S3FileSystem:
    """An S3 filesystem configured from arguments, falling back to the standard AWS env vars."""
    endpoint, region = _s3_settings(endpoint_url, region)
    kwargs: dict[str, Any] = {"region": region}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc or parsed.path
        kwargs["scheme"] = parsed.scheme or "https"
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret, session_token=os.environ.get("AWS_SESSION_TOKEN"))
    return pafs.S3FileSystem(**kwargs)


@dataclass(frozen=True)
class Store:
    """A root folder on a filesystem. Paths given to methods are relative to the root, '/'-separated."""

    fs: pafs.FileSystem
    root: str
    uri: str
    s3: tuple[str | None, str | None] | None = None  # (endpoint_url, region) of an S3 store

    @classmethod
    def from_uri(cls, uri: str, endpoint_url: str | None = None, region: str | None = None) -> Store:
        parsed = urlparse(uri)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"store uri '{uri}' has no bucket (expected s3://bucket/prefix)")
            root = posixpath.join(parsed.netloc, parsed.path.lstrip("/")).rstrip("/")
            return cls(s3_filesystem(endpoint_url, region), root, uri.rstrip("/"), (endpoint_url, region))
        if parsed.scheme not in ("", "file"):
            raise ValueError(f"store uri '{uri}': unsupported scheme '{parsed.scheme}' (use a path or s3://)")
        path = Path(parsed.path if parsed.scheme == "file" else uri).expanduser().resolve()
        path.mkdir(parents=True, exist_ok=True)
        return cls(pafs.LocalFileSystem(), path.as_posix(), path.as_posix())

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def child(self, *parts: str) -> Store:
        """A store rooted at a sub-folder."""
        sub = posixpath.join(*parts)
        return Store(self.fs, self._abs(sub), f"{self.uri}/{sub}", self.s3)

    def _abs(self, rel: str) -> str:
        rel = rel.strip("/")
        if ".." in rel.split("/"):
            raise ValueError(f"store path '{rel}' may not contain '..'")
        return posixpath.join(self.root, rel) if rel else self.root

    def url(self, rel: str) -> str:
        return f"{self.uri}/{rel.strip('/')}"

    # ------------------------------------------------------------------ bytes

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self._abs(rel)).type != pafs.FileType.NotFound

    def read_bytes(self, rel: str) -> bytes:
        """The whole object as one snapshot. On S3 that takes one GET: pyarrow's input streams read large
        objects in ranged GETs, which stitch two versions together when a writer replaces it meanwhile."""
        if self.s3 is not None:
            return _s3_get(self.s3, self._abs(rel))
        with self.fs.open_input_stream(self._abs(rel)) as f:
            return f.read()

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the whole new one, never a partial file."""
        target = self._abs(rel)
        parent = posixpath.dirname(target)
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            tmp = posixpath.join(parent, f".tmp-{uuid.uuid4().hex}-{posixpath.basename(target)}")
            try:
                with open(tmp, "xb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())  # the bytes are on disk before the name points at them
                os.replace(tmp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            _fsync_dir(parent)  # the rename itself is durable
        else:
            with self.fs.open_output_stream(target) as f:
                f.write(data)

    def copy_to_local(self, rel: str, dest: str | os.PathLike[str], chunk: int = COPY_CHUNK) -> str:
        """Stream one object into the local file `dest` in `chunk`-sized pieces and return its sha256.

        Memory stays at about `chunk` whatever the object's size (a 9 GB safetensors shard included). On S3
        it is one streamed GET, so the bytes are one snapshot of the object (as `read_bytes`). The bytes go
        to a temp file beside `dest`, fsynced and renamed over it: an interrupted copy leaves no `dest`,
        and its temp file is removed (or, after a kill, skipped by `list` and overwritten by a rerun)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}-{dest.name}")
        h = hashlib.sha256()
        try:
            with open(tmp, "xb") as f:
                for block in self._read_chunks(rel, chunk):
                    h.update(block)
                    f.write(block)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return h.hexdigest()

    def sha256(self, rel: str, chunk: int = COPY_CHUNK) -> str:
        """The object's sha256, streamed (nothing written, about `chunk` bytes in memory)."""
        h = hashlib.sha256()
        for block in self._read_chunks(rel, chunk):
            h.update(block)
        return h.hexdigest()

    def copy_tree_to_local(
        self, dest: Path, include: Callable[[str], bool] | None = None, chunk: int = COPY_CHUNK
    ) -> dict[str, str]:
        """Stream every file under the root (those `include` accepts) into `dest`: {rel: sha256}.

        Resumable: each file lands atomically, so after an interruption a rerun skips the files already in
        `dest` at the store's size (hashing them from disk) and copies the rest."""
        digests: dict[str, str] = {}
        for rel, size, _ in self.stat_files():
            if include is not None and not include(rel):
                continue
            target = dest / rel
            if target.is_file() and target.stat().st_size == size:
                digests[rel] = file_sha256(target, chunk)
            else:
                digests[rel] = self.copy_to_local(rel, target, chunk)
        return digests

    def stat_files(self) -> list[tuple[str, int, int]]:
        """(relative path, size, mtime in ns) of every file under the root, sorted by path."""
        cut = len(self.root.rstrip("/")) + 1
        return [(i.path[cut:], i.size, i.mtime_ns or 0) for i in self._file_infos()]

    def _file_infos(self) -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        infos = self.fs.get_file_info(sel)
        return sorted(
            (
                i
                for i in infos
                if i.type == pafs.FileType.File and not posixpath.basename(i.path).startswith(".tmp-")
            ),
            key=lambda i: i.path,
        )

    def _read_chunks(self, rel: str, chunk: int) -> Iterator[bytes]:
        if self.s3 is not None:
            yield from _s3_get_chunks(self.s3, self._abs(rel), chunk)
            return
        with self.fs.open_input_stream(self._abs(rel)) as f:
            while block := f.read(chunk):
                yield block

    def delete(self, rel: str) -> None:
        info = self.fs.get_file_info(self._abs(rel))
        if info.type == pafs.FileType.File:
            self.fs.delete_file(info.path)
        elif info.type == pafs.FileType.Directory:
            self.fs.delete_dir(info.path)

    def list(self, rel: str = "", suffix: str = "") -> list[str]:
        """Relative paths of files under `rel` (recursive), sorted."""
        base = self._abs(rel)
        info = self.fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            return []
        sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        root_len = len(self.root.rstrip("/")) + 1
        out = [
            i.path[root_len:]
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File
            and i.path.endswith(suffix)
            and not posixpath.basename(i.path).startswith(".tmp-")
        ]
        return sorted(out)

    # ------------------------------------------------------------------ typed helpers

    def read_json(self, rel: str) -> Any:
        return json.loads(self.read_bytes(rel))

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())

    def write_table(self, rel: str, table: pa.Table) -> None:
        """Parquet, deterministic bytes for the same table (same output locally and on S3)."""
        self.write_bytes(rel, table_to_parquet_bytes(table))

    def read_table(self, rel: str) -> pa.Table:
        return pq.read_table(io.BytesIO(self.read_bytes(rel)))


def _s3_get(settings: tuple[str | None, str | None], path: str) -> bytes:
    with _s3_errors(path):
        return _s3_object(settings, path)["Body"].read()


def _s3_get_chunks(settings: tuple[str | None, str | None], path: str, chunk: int) -> Iterator[bytes]:
    """One GET, its body read `chunk` bytes at a time (a consistent snapshot, bounded memory)."""
    with _s3_errors(path):
        body = _s3_object(settings, path)["Body"]
        try:
            while block := body.read(chunk):
                yield block
        finally:
            body.close()


def _s3_object(settings: tuple[str | None, str | None], path: str) -> Any:
    bucket, _, key = path.partition("/")
    creds = tuple(
        os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    )
    return _s3_client(*_s3_settings(*settings), creds).get_object(Bucket=bucket, Key=key)


@contextlib.contextmanager
def _s3_errors(path: str) -> Iterator[None]:
    """botocore errors as FileNotFoundError (missing object) or OSError naming the object."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise FileNotFoundError(f"s3://{path} does not exist") from None
        raise OSError(f"s3://{path}: {e}") from None
    except BotoCoreError as e:
        raise OSError(f"s3://{path}: {e}") from None


def mirror_to_local(
    store: Store, dest: Path, include: Callable[[str], bool] | None = None, chunk: int = COPY_CHUNK
) -> dict[str, str]:
    """Copy the store's files (those `include` accepts) into the local folder `dest` once per machine.

    One process copies at a time (a file lock beside `dest`; the others wait and find it done). Files go to
    `dest.partial` (kept after an interruption, so a rerun copies only what is missing) and the folder is
    renamed to `dest` with a `.complete` marker at the end. Returns {rel: sha256} of the files this call
    put in place (empty when `dest` was already complete)."""
    import fcntl
    import shutil

    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest.parent / f".{dest.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (dest / ".complete").exists():
            return {}
        partial = dest.with_name(dest.name + ".partial")
        for stale in partial.rglob(".tmp-*"):  # a killed copy's half file (the lock: no live writer)
            stale.unlink()
        digests = store.copy_tree_to_local(partial, include, chunk)
        (partial / ".complete").write_text("ok")
        if dest.exists():  # an older copy without its marker
            shutil.rmtree(dest)
        partial.rename(dest)
        _fsync_dir(str(dest.parent))
        return digests


# what a driver needs of a Hugging Face model folder: config, tokenizer, chat template (never the weights)
MODEL_METADATA_SUFFIXES = (".json", ".jinja", ".txt", ".model", ".tiktoken")


def is_model_metadata(rel: str) -> bool:
    """A model folder's small file (config, tokenizer, chat template): what a driver fetches of a model."""
    return rel.endswith(MODEL_METADATA_SUFFIXES)


def file_sha256(path: Path, chunk: int = COPY_CHUNK) -> str:
    """sha256 of a local file, read `chunk` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=8)
def _s3_client(endpoint: str | None, region: str, _creds: tuple) -> Any:
    """One boto3 client per endpoint, region and credentials in the environment (boto3 reads them itself)."""
    import boto3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def table_to_parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **PARQUET_OPTS)
    return buf.getvalue()
