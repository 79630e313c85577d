"""Peak memory of the driver (the chart's head pod: 2 CPUs, 8 GiB) on large inputs, before and after issue 19.

Each measurement runs in a fresh subprocess and reports its peak RSS (VmHWM) and how many
bytes it left on local disk:

  (a) the eval driver resolving an `s3://` model (synthetic safetensors shards, >= 6 GiB, on a moto S3
      server) and hashing it: before = the old `_download` (one GET into memory per file); after = backend
      `local` (streamed download, hashed as it streams) and backend `ray` (small files only, weights hashed
      streaming from the store);
  (b) train `prepare()` on the same model: before = the old `_from_s3` (`pyarrow.fs.copy_files` of the whole
      folder; run on a smaller copy of the model, because pyarrow's 1 MiB ranged reads make moto re-read the
      whole shard for each); after = config, tokenizer and chat template only;
  (c) the `wildchat_toxic` benchmark over a synthetic 1M-row WildChat-shaped Parquet dataset through the HF
      loader: before = every row a Python dict, then the transform; after = Arrow batches prefiltered.

    python bench/driver_memory.py [--model-gib 6] [--shards 4] [--rows 1000000] [--only abc]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MIB = 1 << 20
TARGETS_MIB = {"a": 1024, "b": 1024, "c": 2048}


# --------------------------------------------------------------------------- the old code paths (baseline)


def _old_eval_download(store: Any, dest: Path) -> Path:
    """star1/evals/engines/model_source.py `_download` before issue 19: each file read whole, then written."""
    tmp = dest.with_name(dest.name + ".partial")
    for rel in store.list(""):
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(store.read_bytes(rel))
    (tmp / ".complete").write_text("ok")
    tmp.rename(dest)
    return dest


def _old_train_from_s3(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Path:
    """star1/train/models.py `_from_s3` before issue 19: the whole folder copied with pyarrow."""
    import posixpath
    from urllib.parse import urlparse

    import pyarrow.fs as pafs

    from star1.llm.local_server import cache_root
    from star1.store import s3_filesystem

    parsed = urlparse(uri)
    src = posixpath.join(parsed.netloc, parsed.path.strip("/"))
    cache_root().mkdir(parents=True, exist_ok=True)
    out = cache_root() / "s3-old"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=cache_root()))
    pafs.copy_files(src, str(tmp), source_filesystem=s3_filesystem(endpoint_url, region))
    tmp.rename(out)
    return out


# --------------------------------------------------------------------------- one measurement (child process)


def _child(kind: str, uri: str, work: Path) -> dict[str, Any]:
    from star1.config import ModelConfig, parse_config
    from star1.store import Store

    os.environ["STAR1_CACHE"] = str(work / "cache")
    t0 = time.time()
    out: dict[str, Any] = {}
    if kind.startswith("eval"):
        from star1.evals.engines import model_source as ms

        if kind == "eval_before":
            d = _old_eval_download(Store.from_uri(uri), work / "cache" / "old")
            model = ms.ResolvedModel(d, uri, uri)
        else:
            model = ms.resolve_model(ModelConfig(path=uri, backend=kind.removeprefix("eval_")), None)
        out["model_hash"] = ms.model_hashes(model, None)["model_hash"]
    elif kind.startswith("train"):
        from star1.train import run

        if kind == "train_before":
            run.resolve_model = lambda u, e=None, r=None, weights=True: _old_train_from_s3(u, e, r)
        data = str(ROOT / "tests" / "fixtures" / "star1_records.json")
        cfg = parse_config(
            {
                "run_name": "bench",
                "store": {"uri": str(work / "store")},
                "train": {"model": uri, "data": [data], "recipe": {"effective_batch": 2}},
            }
        )
        prep = run.prepare(cfg, cfg.train, Store.from_uri(str(work / "store")), lambda _m: None)
        out["samples"] = prep.stats.samples
    else:
        from star1.evals import items
        from star1.evals.registry import BenchmarkSpec, load_registry

        if kind == "wildchat_before":
            items.PREFILTERS = {}  # every row becomes a Python dict first, as before issue 19
        base = load_registry()["wildchat_toxic"].model_dump()
        loader = {"kind": "hf", "path": "parquet", "split": "train", "kwargs": {"data_files": uri}}
        b = items.load_benchmark(BenchmarkSpec.model_validate({**base, "loader": loader}))
        out.update(items=len(b.items), read=b.read, dropped=dict(b.dropped))
    out["seconds"] = round(time.time() - t0, 1)
    out["peak_rss_mib"] = _peak_rss_mib()
    out["disk_mib"] = round(_disk(work / "cache") / MIB)
    return out


def _peak_rss_mib() -> int:
    """VmHWM: this process's peak RSS since its exec. (`getrusage`'s ru_maxrss survives exec, so a child
    forked from this bench's parent, which holds the moto server, would report the parent's peak.)"""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _measure(kind: str, uri: str, env: dict[str, str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"star1-mem-{kind}-"))
    try:
        cmd = [sys.executable, __file__, "--child", kind, "--uri", uri, "--work", str(work)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"{kind} failed:\n{proc.stderr[-4000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"{kind:>16}: peak RSS {res['peak_rss_mib']:>6} MiB, {res['disk_mib']:>6} MiB on disk, "
        f"{res['seconds']} s"
    )
    return res


# --------------------------------------------------------------------------- synthetic inputs


def _safetensors_shard(path: Path, nbytes: int) -> None:
    """A valid safetensors file of one F16 tensor, zeros (sparse on disk, written in no time)."""
    header = json.dumps({"w": {"dtype": "F16", "shape": [nbytes // 2], "data_offsets": [0, nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        f.truncate(8 + len(header) + nbytes)


def _upload_model(client: Any, bucket: str, prefix: str, shards: int, shard_bytes: int, tmp: Path) -> None:
    from boto3.s3.transfer import TransferConfig

    smol = Path(os.environ.get("STAR1_CACHE", Path.home() / ".cache" / "star1")) / "models"
    tok = smol / "SmolLM2-135M-Instruct"
    if not (tok / "tokenizer.json").is_file():
        from star1.llm.local_server import convert_gguf

        tok = convert_gguf()
    small = [p for p in tok.iterdir() if p.suffix in (".json", ".jinja")]
    for p in small:
        client.upload_file(str(p), bucket, f"{prefix}/{p.name}")
    shard = tmp / "shard.safetensors"
    _safetensors_shard(shard, shard_bytes)
    cfg = TransferConfig(multipart_threshold=64 * MIB, multipart_chunksize=256 * MIB, max_concurrency=2)
    for i in range(1, shards + 1):
        client.upload_file(
            str(shard), bucket, f"{prefix}/model-{i:05d}-of-{shards:05d}.safetensors", Config=cfg
        )
    shard.unlink()


def _wildchat_parquet(path: Path, rows: int, seed: int = 0, chunk: int = 100_000) -> None:
    """WildChat-1M's columns the benchmark reads (conversation, moderation, toxic, turn, language), ~1 KB of
    text per row; about 4% toxic, of which most English single-turn flagged."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from star1.evals.transforms import WILDCHAT_CATEGORIES

    rng = np.random.default_rng(seed)
    filler = "lorem ipsum dolor sit amet " * 16
    writer = None
    for start in range(0, rows, chunk):
        n = min(chunk, rows - start)
        ids = np.arange(start, start + n)
        text = pa.array([f"user prompt {i} {filler}" for i in ids] + [f"reply {i} {filler}" for i in ids])
        order = np.stack([np.arange(n), np.arange(n) + n], axis=1).ravel()
        turns = pa.StructArray.from_arrays(
            [pa.array(["user", "assistant"] * n), text.take(pa.array(order))], ["role", "content"]
        )
        conversation = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()), turns)
        scores = pa.StructArray.from_arrays(
            [pa.array(rng.random(2 * n)) for _ in WILDCHAT_CATEGORIES], list(WILDCHAT_CATEGORIES)
        )
        flagged = pa.array(np.stack([np.zeros(n, bool), rng.random(n) < 0.7], axis=1).ravel())
        moderation = pa.ListArray.from_arrays(
            pa.array(np.arange(0, 2 * n + 1, 2), pa.int32()),
            pa.StructArray.from_arrays([flagged, scores], ["flagged", "category_scores"]),
        )
        table = pa.table(
            {
                "conversation_hash": pa.array([f"h{i:08d}" for i in ids]),
                "toxic": pa.array(rng.random(n) < 0.04),
                "turn": pa.array(np.where(rng.random(n) < 0.8, 1, 2)),
                "language": pa.array(np.where(rng.random(n) < 0.5, "English", "Chinese")),
                "conversation": conversation,
                "openai_moderation": moderation,
            }
        )
        writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    writer.close()


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-gib", type=float, default=6.0)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--small-model-mib", type=int, default=256, help="(b) before: the model size it runs on")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--only", default="abc", help="which measurements: any of a, b, c")
    ap.add_argument("--out", default=str(ROOT / "docs" / "bench" / "driver_memory.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--uri", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.uri, Path(args.work))))
        return

    import boto3
    from moto.server import ThreadedMotoServer

    from tests.conftest import _free_port

    tmp = Path(tempfile.mkdtemp(prefix="star1-mem-"))
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "HF_DATASETS_CACHE": str(tmp / "hf"),
        "PYTHONPATH": str(ROOT),
    }
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1")
    client.create_bucket(Bucket="bench")
    shard_bytes = int(args.model_gib * (1 << 30)) // args.shards
    results: dict[str, Any] = {}
    try:
        if "a" in args.only or "b" in args.only:
            t0 = time.time()
            _upload_model(client, "bench", "big", args.shards, shard_bytes, tmp)
            print(
                f"model: {args.shards} × {shard_bytes / (1 << 30):.2f} GiB uploaded "
                f"in {time.time() - t0:.0f} s"
            )
            uri = "s3://bench/big"
        if "a" in args.only:
            results["a_eval_resolve"] = {
                "before": _measure("eval_before", uri, env),
                "after_backend_local": _measure("eval_local", uri, env),
                "after_backend_ray": _measure("eval_ray", uri, env),
            }
        if "b" in args.only:
            small = args.small_model_mib * MIB // args.shards
            _upload_model(client, "bench", "small", args.shards, small, tmp)
            results["b_train_prepare"] = {
                "before_small_model": {
                    "model_mib": args.small_model_mib,
                    **_measure("train_before", "s3://bench/small", env),
                },
                "after": _measure("train_after", uri, env),
            }
        if "c" in args.only:
            pq_path = tmp / "wildchat.parquet"
            t0 = time.time()
            _wildchat_parquet(pq_path, args.rows)
            print(
                f"wildchat: {args.rows} rows, {pq_path.stat().st_size / MIB:.0f} MiB Parquet "
                f"in {time.time() - t0:.0f} s"
            )
            _measure("wildchat_after", str(pq_path), env)  # builds the datasets cache, not counted
            results["c_wildchat"] = {
                "before": _measure("wildchat_before", str(pq_path), env),
                "after": _measure("wildchat_after", str(pq_path), env),
            }
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "what": "peak RSS of the driver (fresh subprocess each), bench/driver_memory.py",
        "model_gib": args.model_gib,
        "shards": args.shards,
        "wildchat_rows": args.rows,
        "targets_mib": TARGETS_MIB,
        "machine": f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}",
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "results": results,
    }
    out = Path(args.out)
    if out.exists():  # keep the measurements of a partial rerun (--only) beside the others
        old = json.loads(out.read_text())
        report["results"] = {**old.get("results", {}), **results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
