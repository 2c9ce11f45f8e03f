"""Object storage for originals: a local directory by default, S3 (or any S3-compatible server) by config.

Keys are `tenant/document/version/filename`-like paths chosen by the caller. Writes are atomic: a
reader never sees half an object.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

from pdfchat.common.errors import NotFound
from pdfchat.common.settings import ObjectStoreSettings


class ObjectStore(Protocol):
    async def put_file(self, key: str, path: Path) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...

    async def exists(self, key: str) -> bool: ...


class LocalObjectStore:
    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self._root / key).resolve()
        if self._root not in path.parents:
            raise ValueError(f"object key escapes the store: {key!r}")
        return path

    async def put_file(self, key: str, path: Path) -> None:
        target = self._path(key)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
            os.close(fd)
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)

        await asyncio.to_thread(copy)

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except FileNotFoundError as exc:
            raise NotFound(f"object {key!r} not found") from exc

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, True)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).exists)


class S3ObjectStore:
    def __init__(self, settings: ObjectStoreSettings) -> None:
        import boto3

        self._bucket = settings.s3_bucket
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
        )

    async def put_file(self, key: str, path: Path) -> None:
        await asyncio.to_thread(self._client.upload_file, str(path), self._bucket, key)

    async def get(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                return self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
            except self._client.exceptions.NoSuchKey as exc:
                raise NotFound(f"object {key!r} not found") from exc

        return await asyncio.to_thread(read)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._client.delete_object, Bucket=self._bucket, Key=key)

    async def exists(self, key: str) -> bool:
        def head() -> bool:
            try:
                self._client.head_object(Bucket=self._bucket, Key=key)
            except self._client.exceptions.ClientError:
                return False
            return True

        return await asyncio.to_thread(head)

    async def ensure_bucket(self) -> None:
        def create() -> None:
            try:
                self._client.head_bucket(Bucket=self._bucket)
            except self._client.exceptions.ClientError:
                self._client.create_bucket(Bucket=self._bucket)

        await asyncio.to_thread(create)


def create_object_store(settings: ObjectStoreSettings) -> ObjectStore:
    if settings.object_store == "s3":
        return S3ObjectStore(settings)
    return LocalObjectStore(Path(settings.object_store_dir))
