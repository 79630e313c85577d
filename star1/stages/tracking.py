"""A data run in the experiment tracker: one tracker run, `data/<run_name>`, per invocation that made a stage
do work (a rerun where every stage is up to date logs nothing). Per stage, from its manifest: rows in, kept
and rejected (by reason), and each model role's usage and cost. The run is tagged `data_sha256` with the
hash of the export a training run reads, the tag the training run carries for its data, so searching the
tracker for `tags.data_sha256 = '…'` finds both."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from star1.config import Star1Config
from star1.manifest import Manifest, read_manifest
from star1.store import Store
from star1.tracking import open_run
from star1.tracking.params import tracker_key

USAGE = ("requests", "prompt_tokens", "completion_tokens", "retries", "cache_hits", "cost_usd")
TRAIN_DEFAULT = "export/star1.parquet"  # what a training run reads when its data are not export files


def stage_metrics(stage: str, m: Manifest) -> dict[str, float]:
    """`<stage>/in`, `/kept`, `/rejected`, `/rejected/<reason>`, `/usage/<role>/<counter>`, `/cost_usd`."""
    c = m.counts
    if isinstance(c.get("total"), Mapping):  # collect: per source, and the rules that dropped rows
        t = c["total"]
        rows, kept, reasons = t.get("read"), t.get("kept"), dict(c.get("rules", {}))
    else:
        rows, kept, reasons = c.get("in"), c.get("out"), dict(c.get("rejected", {}))
    out: dict[str, float] = {}
    for key, value in (("in", rows), ("kept", kept), ("rejected", sum(reasons.values()))):
        if isinstance(value, int | float):
            out[tracker_key(stage, key)] = float(value)
    for reason, n in reasons.items():
        out[tracker_key(stage, "rejected", reason)] = float(n)
    cost = 0.0
    for role, u in m.usage.items():
        if not (isinstance(u, Mapping) and "requests" in u):
            continue  # not a model role's usage (embedding settings, lineage)
        for counter in USAGE:
            if isinstance(u.get(counter), int | float):
                out[tracker_key(stage, "usage", role, counter)] = float(u[counter])
        cost += float(u.get("cost_usd") or 0.0)
    out[tracker_key(stage, "cost_usd")] = cost
    return out


def data_hash(cfg: Star1Config, store: Store) -> str | None:
    """The training run's `data_sha256` for this export: the sha256 of the export files its `train.data`
    names, comma-joined in order (as training records them); `export/star1.parquet` without one."""
    named = [s.store for s in cfg.train.data] if cfg.train is not None else []
    files = named if named and all(n and n.startswith("export/") for n in named) else [TRAIN_DEFAULT]
    if not all(store.exists(f) for f in files):  # type: ignore[arg-type]
        return None
    return ",".join(store.sha256(f) for f in files)  # type: ignore[arg-type]


def snapshot(store: Store, names: list[str]) -> dict[str, float | None]:
    """Each stage's manifest time: what `log_data_run` compares to see which stages did work."""
    out: dict[str, float | None] = {}
    for n in names:
        m = read_manifest(store, n)
        out[n] = m.created_at if m else None
    return out


def log_data_run(
    cfg: Star1Config,
    store: Store,
    names: list[str],
    before: dict[str, float | None],
    error: str | None = None,
) -> dict[str, Any] | None:
    """Log the stages `names` (their manifests now) when any of them did work since `before`; `error`: the
    run stopped there (the tracker run ends FAILED). Returns the tracking summary, or None (nothing ran)."""
    manifests = {n: read_manifest(store, n) for n in names}
    ran = [n for n, m in manifests.items() if m is not None and m.created_at != before.get(n)]
    if not ran:
        return None
    with open_run(cfg, kind="data", name=cfg.run_name, store=store) as run:
        run.log_params({"store": store.uri, "stages": names, "run_name": cfg.run_name})
        metrics: dict[str, float] = {}
        tags: dict[str, Any] = {"stages_run": ",".join(ran)}
        for n, m in manifests.items():
            if m is None:
                continue
            metrics.update(stage_metrics(n, m))
            tags[f"status.{n}"] = m.status
            tags[f"fingerprint.{n}"] = m.fingerprint
            run.log_link(f"manifest.{n}", store.url(f"{n}/manifest.json"))
        metrics["total/cost_usd"] = sum(metrics.get(tracker_key(n, "cost_usd"), 0.0) for n in names)
        run.log_metrics(metrics, step=0)
        export = manifests.get("export")
        if export is not None and export.status == "complete":
            tags["data_sha256"] = data_hash(cfg, store)
            for label, out in export.outputs.items():
                run.log_link(f"export.{label}", out["uri"])
        if error:
            tags["error"] = error[:500]
        run.set_tags(tags)
        return run.end("FAILED" if error else "FINISHED")
