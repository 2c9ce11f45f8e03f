import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdfchat.common.errors import NotFound
from pdfchat.common.object_store import LocalObjectStore, S3ObjectStore
from pdfchat.common.settings import ObjectStoreSettings
from pdfchat_tools.infra import free_port, wait_for_port


async def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    source = tmp_path / "in.pdf"
    source.write_bytes(b"%PDF-1.7 hello")
    await store.put_file("t1/doc/original.pdf", source)
    assert await store.exists("t1/doc/original.pdf")
    assert await store.get("t1/doc/original.pdf") == b"%PDF-1.7 hello"
    await store.delete("t1/doc/original.pdf")
    assert not await store.exists("t1/doc/original.pdf")
    with pytest.raises(NotFound):
        await store.get("t1/doc/original.pdf")


async def test_local_store_refuses_keys_that_escape_its_root(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    with pytest.raises(ValueError, match="escapes"):
        await store.get("../secrets")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 30, "moto server")
        time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.integration
async def test_s3_store_round_trip(s3_endpoint: str, tmp_path: Path) -> None:
    settings = ObjectStoreSettings(
        object_store="s3",
        s3_endpoint_url=s3_endpoint,
        s3_bucket="pdfchat-test",
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    store = S3ObjectStore(settings)
    await store.ensure_bucket()
    source = tmp_path / "in.pdf"
    source.write_bytes(b"%PDF-1.7 s3")
    await store.put_file("t1/doc/original.pdf", source)
    assert await store.exists("t1/doc/original.pdf")
    assert await store.get("t1/doc/original.pdf") == b"%PDF-1.7 s3"
    await store.delete("t1/doc/original.pdf")
    assert not await store.exists("t1/doc/original.pdf")
    with pytest.raises(NotFound):
        await store.get("t1/doc/original.pdf")
