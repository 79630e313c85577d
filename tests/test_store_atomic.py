"""Atomic writes under a real kill: a writer process SIGKILLed in the middle of writing a large object leaves
readers the old object or the new one, never a torn one, on a local folder and on S3 (moto's server)."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from star1.store import Store

ROOT = Path(__file__).resolve().parents[1]
SIZE = 24 << 20  # big enough that a write takes a while (and goes multipart on S3)
HEADER = 16
FRACTIONS = (0.5, 0.2, 0.8, 0.05, 0.35)  # where in a write each kill aims

_WRITER = """
import sys
from star1.store import Store
store, size, v = Store.from_uri(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
import time
while True:
    v += 1
    data = v.to_bytes(8, "big") + size.to_bytes(8, "big") + bytes([v % 251]) * size
    print("writing", v, flush=True)
    t = time.perf_counter()
    store.write_bytes("obj.bin", data)
    print("done", v, time.perf_counter() - t, flush=True)
"""


def version_of(data: bytes) -> int:
    """The version a read holds; fails on a torn or mixed object."""
    assert len(data) >= HEADER, f"torn object: {len(data)} bytes"
    v, size = int.from_bytes(data[:8], "big"), int.from_bytes(data[8:16], "big")
    assert len(data) == HEADER + size, f"torn object: {len(data)} of {HEADER + size} bytes"
    assert data[HEADER:] == bytes([v % 251]) * size, f"object of version {v} holds other bytes"
    return v


def kill_mid_write(store: Store, start: int, fraction: float = 0.5) -> tuple[int, int]:
    """Run a writer, SIGKILL it `fraction` of the way through a write (by the median of its finished
    writes); return (last finished version, version hit)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, store.uri, str(SIZE), str(start)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    assert proc.stdout is not None
    durations: list[float] = []
    last_done = start
    try:
        for line in proc.stdout:
            word, v, *rest = line.split()
            if word == "done":
                durations.append(float(rest[0]))
                last_done = int(v)
            elif len(durations) >= 2:  # "writing": now kill it part of the way through
                time.sleep(statistics.median(durations) * fraction)
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                return last_done, int(v)
        raise AssertionError(f"writer exited early with {proc.wait()}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def hammer(store: Store, kill_once) -> list[str]:
    """Kill a writer mid-write a few times while a reader thread reads the object non-stop."""
    errors: list[str] = []
    reads = [0]
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                version_of(store.read_bytes("obj.bin"))
                reads[0] += 1
            except AssertionError as e:
                errors.append(str(e))

    store.write_bytes("obj.bin", (0).to_bytes(8, "big") + SIZE.to_bytes(8, "big") + bytes([0]) * SIZE)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    start, hits_mid = 0, 0
    try:
        for attempt in range(10):  # at least 3 kills, and until one provably landed mid-write
            if attempt >= 3 and hits_mid:
                break
            # a busy machine stretches writes unevenly: aim at several points of the write
            last_done, hit = kill_mid_write(store, start, FRACTIONS[attempt % len(FRACTIONS)])
            v = version_of(store.read_bytes("obj.bin"))
            assert v >= last_done, (v, last_done)  # a finished write is never lost
            hits_mid += kill_once(hit)
            start = max(v, hit) + 1
    finally:
        stop.set()
        th.join()
    assert reads[0] > 0
    assert hits_mid > 0, "no kill landed mid-write; the test proved nothing"
    return errors


def test_local_kill_mid_write_never_tears(tmp_path):
    store = Store.from_uri(str(tmp_path / "root"))

    seen: set[str] = set()

    def temp_left(_v: int) -> int:
        """The killed write left its temp file: it died between creating it and the rename (writing or
        syncing the bytes), the window where a non-atomic write would have torn the object."""
        temps = {p.name for p in (tmp_path / "root").iterdir() if p.name.startswith(".tmp-")}
        new, _ = temps - seen, seen.update(temps)
        return int(bool(new))

    assert hammer(store, temp_left) == []
    assert store.list() == ["obj.bin"]  # temp leftovers never show up as objects


def test_s3_kill_mid_write_never_tears(bucket):
    import boto3

    store = Store.from_uri(f"s3://{bucket}/p")
    s3 = boto3.client("s3")

    def upload_left_open(_v: int) -> int:  # an unfinished multipart upload: killed mid-write
        return int(bool(s3.list_multipart_uploads(Bucket=bucket).get("Uploads")))

    assert hammer(store, upload_left_open) == []


def test_local_write_fsyncs_file_before_rename_and_folder_after(tmp_path, monkeypatch):
    store = Store.from_uri(str(tmp_path))
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(a, b) -> None:
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    store.write_bytes("sub/f.bin", b"data")
    assert events == ["fsync-file", "rename", "fsync-dir"]
    assert (tmp_path / "sub" / "f.bin").read_bytes() == b"data"


@pytest.fixture(autouse=True)
def _quiet_boto(monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
