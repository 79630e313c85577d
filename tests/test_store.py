from __future__ import annotations

import pyarrow as pa
import pytest

from star1.store import Store


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return Store.from_uri(str(tmp_path / "root"))
    bucket = request.getfixturevalue("bucket")
    return Store.from_uri(f"s3://{bucket}/prefix")


def test_bytes_json_tables_roundtrip(store):
    store.write_bytes("a/b.bin", b"\x00\x01")
    store.write_json("a/m.json", {"x": [1, 2]})
    t = pa.table({"id": ["1", "2"], "n": [1, 2]})
    store.write_table("t/data.parquet", t)
    assert store.read_bytes("a/b.bin") == b"\x00\x01"
    assert store.read_json("a/m.json") == {"x": [1, 2]}
    assert store.read_table("t/data.parquet").equals(t)
    assert store.list("a") == ["a/b.bin", "a/m.json"]
    assert store.list("", suffix=".parquet") == ["t/data.parquet"]
    assert store.exists("a/b.bin") and not store.exists("a/zzz")
    store.delete("a/b.bin")
    assert not store.exists("a/b.bin")


def test_child_and_url(store):
    c = store.child("stage")
    c.write_bytes("x.txt", b"hi")
    assert store.read_bytes("stage/x.txt") == b"hi"
    assert c.url("x.txt") == store.url("stage/x.txt")


def test_parquet_bytes_identical_local_and_s3(tmp_path, bucket):
    t = pa.table({"id": ["a", "b"], "v": [0.5, None]})
    local, s3 = Store.from_uri(str(tmp_path / "l")), Store.from_uri(f"s3://{bucket}/p")
    local.write_table("x.parquet", t)
    s3.write_table("x.parquet", t)
    assert local.read_bytes("x.parquet") == s3.read_bytes("x.parquet")


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    s = Store.from_uri(str(tmp_path))
    s.write_bytes("f", b"old")
    s.write_bytes("f", b"new")
    assert s.read_bytes("f") == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_bad_uris():
    with pytest.raises(ValueError, match="no bucket"):
        Store.from_uri("s3://")
    with pytest.raises(ValueError, match="unsupported scheme"):
        Store.from_uri("gs://b/p")
    with pytest.raises(ValueError, match=r"\.\."):
        Store.from_uri("/tmp").read_bytes("../etc/passwd")
