"""One eval run of one model: load benchmarks, generate (resuming from stored chunks), judge, score, write
per-sample Parquet, per-benchmark and run summaries, and the manifest (last) — the layout of `results.py`.

    eval/<run_name>/manifest.json, summary.json, <benchmark>/samples.parquet, <benchmark>/summary.json
    eval/<run_name>/generations/part-*.parquet, judgements/part-*.parquet   (the unit of resume)
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from star1.config import ConfigError, ModelConfig, Star1Config
from star1.evals.engines import EnginePool, GenRequest, GenResult, ModelHandle
from star1.evals.generations import ChunkStore, run_pass
from star1.evals.items import Item, LoadedBenchmark, load_benchmark
from star1.evals.judging import Pending, RefusalJudge, guard_request, guard_verdict
from star1.evals.metrics import no_value_reason, summarize
from star1.evals.profiles import samples_per_item, sampling_for
from star1.evals.registry import BenchmarkSpec, resolve
from star1.evals.results import SAMPLE, BenchmarkSummary, RunSummary, is_unsafe, samples_path, summary_path
from star1.evals.sandbox import Isolation, Limits, detect
from star1.evals.sandbox.remote import RemoteSandbox
from star1.evals.scorers.choice import score_choice
from star1.evals.scorers.code import CodeJob, CodeScorer
from star1.evals.scorers.common import Verdict, closes_unopened_think, unanswered
from star1.evals.scorers.math_answer import MathJob, MathScorer
from star1.evals.tracking import forget, log_eval
from star1.manifest import Manifest, git_sha, stable_hash
from star1.stage_run import StageRun
from star1.store import Store

ALGORITHM = "eval-v2"  # v2: samples carry `label`, summaries `n_rate_items` and `binomial`
PAPER_SAFETY = ("strongreject", "jbb_harmful", "wildchat_toxic", "wildjailbreak")
PAPER_REASONING = ("mmlu_pro", "aime24", "math500", "gpqa_diamond", "humaneval")


@dataclass
class EvalResult:
    run_name: str
    store: Store
    summary: RunSummary
    manifest: Manifest
    skipped: bool

    @property
    def root(self) -> str:
        return f"eval/{self.run_name}"

    def url(self, rel: str = "summary.json") -> str:
        return self.store.url(f"{self.root}/{rel}")


def slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or "model"


def _identity(desc: dict[str, Any]) -> str:
    """What a generation depends on besides prompt and sampling: the model's bytes and how it runs."""
    keys = ("engine", "model_source", "model_hash", "tokenizer_hash", "chat_template_hash", "dtype",
            "max_model_len", "tensor_parallel_size", "endpoint", "model_path", "engine_kwargs")  # fmt: skip
    return stable_hash({k: desc.get(k) for k in keys})


def registry_path(cfg: Star1Config) -> str | None:
    reg = cfg.eval.registry
    if reg is None:
        return None
    p = Path(reg).expanduser()
    return str(p if p.is_absolute() else Path(cfg.base_dir) / p)


def _blank_row(spec: BenchmarkSpec, item: Item, s: int, res: GenResult | None) -> dict[str, Any]:
    return {
        "benchmark": spec.name,
        "item_id": item.item_id,
        "sample_idx": s,
        "category": item.category,
        "prompt": item.prompt,
        "output": res.output() if res else None,
        "finish_reason": res.finish_reason if res else None,
        "answer": None,
        "verdict": None,
        "score": None,
        "judge_output": None,
        "p_unsafe": None,
        "error": (res.error if res else "no generation") if (res is None or res.error) else None,
        "_label": item.label,
        "_gold": item.gold,
        "_meta": item.meta,
        "_tokens": res.completion_tokens if res else 0,
    }


def _sample(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row in the SAMPLE schema; over-refusal rows carry their prompt's label (safe / unsafe)."""
    label = ("unsafe" if is_unsafe(row["_label"]) else "safe") if kind == "overrefusal" else None
    return {**{k: row[k] for k in SAMPLE.names if k != "label"}, "label": label}


def _apply(row: dict[str, Any], v: Verdict) -> None:
    row.update(
        verdict=v.verdict,
        score=v.score,
        answer=v.answer,
        judge_output=v.judge_output,
        p_unsafe=v.p_unsafe,
        error=v.error,
    )


class _Run:
    """The work of one run, split in steps (generation, judging, scoring, writing)."""

    def __init__(self, cfg: Star1Config, store: Store, model: ModelConfig, run_name: str, pool: EnginePool,
                 log: Callable[[str], None]) -> None:  # fmt: skip
        self.cfg, self.ev, self.store, self.pool, self.log = cfg, cfg.eval, store, pool, log
        self.root = f"eval/{run_name}"
        self.run_name = run_name
        self.target = ModelHandle(model, store)
        self.timings: dict[str, float] = {}
        self.stats: dict[str, Any] = {}
        store_opts = {"endpoint_url": cfg.store.endpoint_url, "region": cfg.store.region}
        t0 = time.time()
        registry = registry_path(cfg)
        specs = resolve(self.ev.benchmarks, registry)
        base = str(Path(registry).parent) if registry else cfg.base_dir  # a registry's files sit beside it
        self.benches: list[LoadedBenchmark] = [
            load_benchmark(s, base, self.ev.limit, store_opts) for s in specs
        ]
        self.timings["load_s"] = round(time.time() - t0, 2)
        self.warnings = [w for w in (b.count_warning() for b in self.benches) if w]
        for w in self.warnings:
            log(f"warning: {w}")
        kinds = {b.spec.kind for b in self.benches}
        self.guard = ModelHandle(self.ev.guard.model, store) if "safety" in kinds else None
        ref = self.ev.refusal.model
        self.refusal_handle = ModelHandle(ref, store) if ref is not None and "overrefusal" in kinds else None
        self.remote: RemoteSandbox | None = None
        self.isolation = self._isolation() if any(b.spec.scorer == "code" for b in self.benches) else None

    def _isolation(self) -> Isolation:
        """Where generated code will run, settled before anything is generated (IsolationError if nowhere)."""
        sb = self.ev.sandbox
        if sb.ray_resource:
            self.remote = RemoteSandbox(sb.ray_resource, sb.unsafe_allow_no_isolation, sb.isolation)
            iso = self.remote.probe()
        else:
            iso = detect(sb.unsafe_allow_no_isolation, sb.isolation)
        if iso.kind == "none":
            self.log(
                "WARNING: generated code runs WITHOUT OS isolation "
                f"(eval.sandbox.unsafe_allow_no_isolation): {iso.detail}"
            )
        return iso

    def limits(self) -> Limits:
        sb = self.ev.sandbox
        return Limits(sb.timeout_s, sb.cpu_s, sb.memory_mb, sb.disk_mb, sb.output_kb * 1024)

    # ------------------------------------------------------------------ what the manifest records

    def params(self) -> dict[str, Any]:
        n = samples_per_item(self.ev)
        p: dict[str, Any] = {
            "model": {**self.target.cfg.model_dump(mode="json"), **self.target.describe()},
            "profile": self.ev.profile,
            "samples_per_item": n,
            "seed": self.ev.seed,
            "limit": self.ev.limit,
            "benchmarks": {
                b.spec.name: {
                    "spec": b.spec.model_dump(mode="json"),
                    "sampling": [sampling_for(b.spec, self.ev, s).as_dict() for s in range(n)],
                    "items": len(b.items),
                }
                for b in self.benches
            },
        }
        if self.guard is not None:
            g = self.ev.guard
            p["guard"] = {**g.model_dump(mode="json", exclude={"model"}), "model": self.guard.describe()}
        if any(b.spec.kind == "overrefusal" for b in self.benches):
            p["refusal"] = {
                "max_tokens": self.ev.refusal.max_tokens,
                "guided": self.ev.refusal.guided,
                "model": self.refusal_handle.describe() if self.refusal_handle else None,
            }
        if any(b.spec.scorer == "math" for b in self.benches):
            p["math"] = self.ev.math.model_dump(mode="json")
        if any(b.spec.scorer == "code" for b in self.benches):
            assert self.isolation is not None
            p["sandbox"] = {**self.ev.sandbox.model_dump(mode="json"), **self.isolation.describe()}
        return p

    def inputs(self) -> list[dict[str, Any]]:
        return [
            {**i, "name": f"benchmark:{b.spec.name}:{i.get('uri')}"} for b in self.benches for i in b.inputs
        ]

    def outputs(self) -> list[str]:
        out = [f"{self.root}/{summary_path()}"]
        for b in self.benches:
            out += [f"{self.root}/{samples_path(b.spec.name)}", f"{self.root}/{summary_path(b.spec.name)}"]
        return out

    # ------------------------------------------------------------------ steps

    def generate(self) -> dict[str, list[dict[str, Any]]]:
        ident = _identity(self.target.describe())
        n = samples_per_item(self.ev)
        plan: list[tuple[BenchmarkSpec, Item, int, GenRequest]] = []
        for b in self.benches:
            for item in b.items:
                for s in range(n):
                    sampling = sampling_for(b.spec, self.ev, s)
                    key = stable_hash({"model": ident, "prompt": item.prompt, "sampling": sampling.as_dict()})
                    plan.append((b.spec, item, s, GenRequest(key, sampling, (("user", item.prompt),))))
        self.log(
            f"generate with {self.target.cfg.label} ({self.target.cfg.engine}/{self.target.cfg.backend})"
        )
        self.target.expect([p[3] for p in plan])
        results, stats = run_pass(
            lambda: self.pool.get(self.target),
            self.target.workload,
            ChunkStore(self.store, f"{self.root}/generations"),
            self.ev.chunk_size,
            self.log,
        )
        self.stats["generation"] = stats
        self.timings["generate_s"] = stats["seconds"]
        stats["think_open"] = think_open = self.think_open(results.values())
        rows: dict[str, list[dict[str, Any]]] = {b.spec.name: [] for b in self.benches}
        for spec, item, s, req in plan:
            row = _blank_row(spec, item, s, results.get(req.key))
            row["_think_open"] = think_open
            if row["error"]:
                _apply(row, Verdict("generation_failed", None, error=row["error"]))
            rows[spec.name].append(row)
        return rows

    def think_open(self, results: Iterable[GenResult]) -> bool:
        """Whether the target's prompt opens a `<think>` block: its `thinking` (vllm: read from the chat
        template); on auto (an endpoint) whether a response closes a `</think>` it never opened."""
        mode = self.target.describe()["thinking"]
        if mode == "auto":
            return any(closes_unopened_think(r.output()) for r in results)
        return mode == "open"

    def judge(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        t0 = time.time()
        specs = {b.spec.name: b.spec for b in self.benches}
        guard_pending: list[Pending] = []
        refusal_pending: list[Pending] = []
        ref_id = _identity(self.refusal_handle.describe()) if self.refusal_handle else None
        self.refusal = RefusalJudge(
            self.ev.refusal.model, ref_id, self.ev.refusal.max_tokens, self.ev.refusal.guided
        )
        guard_id = _identity(self.guard.describe()) if self.guard else ""
        for name, rs in rows.items():
            kind = specs[name].kind
            for row in rs:
                if row["verdict"] == "generation_failed":
                    continue
                think = row["_think_open"]
                if kind == "safety":
                    if not self.ev.guard.include_reasoning and (v := unanswered(row["output"], think, True)):
                        _apply(row, v)  # the guard reads the final answer: there is none
                        continue
                    out = row["output"] or ""
                    req = guard_request(
                        self.ev.guard, guard_id, row["prompt"], out, self.ev.guard.guided, think
                    )
                    guard_pending.append(Pending(row, req))
                elif kind == "overrefusal":
                    if v := unanswered(row["output"], think, is_unsafe(row["_label"])):
                        _apply(row, v)
                        continue
                    first = self.refusal.first_stage(row)
                    if isinstance(first, Verdict):
                        _apply(row, first)
                    else:
                        refusal_pending.append(Pending(row, first))
        if guard_pending and self.guard is not None:
            self.log(f"judge safety with {self.guard.cfg.label} ({self.ev.guard.format})")
            self.guard.expect([p.request for p in guard_pending])
            res, stats = run_pass(
                lambda: self.pool.get(self.guard),  # type: ignore[arg-type]
                self.guard.workload,
                ChunkStore(self.store, f"{self.root}/judgements"),
                self.ev.chunk_size,
                self.log,
                "guard judgements",
            )
            self.stats["guard"] = stats
            for p in guard_pending:
                _apply(p.row, guard_verdict(res.get(p.request.key)))
        if refusal_pending and self.refusal_handle is not None:
            self.log(
                f"judge refusals with {self.refusal_handle.cfg.label} ({len(refusal_pending)} undecided)"
            )
            self.refusal_handle.expect([p.request for p in refusal_pending])
            res, stats = run_pass(
                lambda: self.pool.get(self.refusal_handle),  # type: ignore[arg-type]
                self.refusal_handle.workload,
                ChunkStore(self.store, f"{self.root}/judgements"),
                self.ev.chunk_size,
                self.log,
                "refusal judgements",
            )
            self.stats["refusal_judge"] = stats
            for p in refusal_pending:
                _apply(p.row, self.refusal.verdict(p.row, res.get(p.request.key)))
        self.timings["judge_s"] = round(time.time() - t0, 2)

    def score(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        t0 = time.time()
        for b in self.benches:
            spec, rs = b.spec, [r for r in rows[b.spec.name] if r["verdict"] != "generation_failed"]
            if spec.scorer == "math":
                scorer = MathScorer(
                    self.ev.math.workers, self.ev.math.timeout_s, bool(spec.scorer_args.get("integer"))
                )
                jobs = [MathJob(r["_gold"], r["output"], r["_think_open"]) for r in rs]
                for r, v in zip(rs, scorer.score(jobs), strict=True):
                    _apply(r, v)
            elif spec.scorer == "choice":
                n_opt = int(spec.scorer_args.get("n_options", 4))
                for r in rs:
                    _apply(r, score_choice(r["output"], r["_gold"], n_opt, r["_think_open"]))
            elif spec.scorer == "code":
                assert self.isolation is not None
                code = CodeScorer(self.isolation, self.limits(), self.ev.sandbox.workers, self.remote)
                cjobs = [CodeJob(r["output"], r["_meta"], r["_think_open"]) for r in rs]
                for r, v in zip(rs, code.score(cjobs), strict=True):
                    _apply(r, v)
        self.timings["score_s"] = round(time.time() - t0, 2)

    def version(self, b: LoadedBenchmark) -> dict[str, str]:
        spec = b.spec
        v = {
            "spec": spec.version,
            "data": b.data_hash[:16],
            "template": stable_hash(spec.template)[:16],
            "profile": stable_hash(
                [sampling_for(spec, self.ev, s).as_dict() for s in range(samples_per_item(self.ev))]
            )[:16],
            "scorer": f"{spec.scorer}:{stable_hash(spec.scorer_args)[:8]}",
            "limit": str(self.ev.limit or "all"),
        }
        if spec.kind == "safety" and self.guard is not None:
            g = self.ev.guard
            v["judge"] = f"{self.guard.cfg.label}#{(self.guard.describe().get('model_hash') or '')[:12]}"
            v["judge_format"] = f"{g.format}:{'with' if g.include_reasoning else 'without'}_reasoning"
        if spec.scorer == "code" and self.isolation is not None:
            v["sandbox"] = self.isolation.kind
        if spec.kind == "overrefusal":
            v["judge"] = self.refusal_handle.cfg.label if self.refusal_handle else "strmatch+xstest_fallback"
        return v

    def write(
        self, rows: dict[str, list[dict[str, Any]]]
    ) -> tuple[RunSummary, dict[str, Any], dict[str, Any]]:
        n = samples_per_item(self.ev)
        summaries: dict[str, BenchmarkSummary] = {}
        counts: dict[str, Any] = {}
        failures: dict[str, Any] = {"by_reason": {}, "benchmarks": {}, "reasons": []}
        for b in self.benches:
            rs = rows[b.spec.name]
            summ = summarize(b.spec, rs, n, self.version(b))
            if b.spec.kind == "overrefusal":
                decided = self.refusal.decided_by(b.spec.name)
                summ.extra.update({f"decided_by_{k}": float(v) for k, v in decided.items()})
            table = pa.Table.from_pylist([_sample(b.spec.kind, r) for r in rs], schema=SAMPLE)
            self.store.write_table(f"{self.root}/{samples_path(b.spec.name)}", table)
            self.store.write_json(f"{self.root}/{summary_path(b.spec.name)}", summ.model_dump())
            summaries[b.spec.name] = summ
            counts[b.spec.name] = {
                "read": b.read,
                "items": len(b.items),
                "expected_items": b.spec.expected_items,
                "samples": len(rs),
                "unscored": summ.unscored,
                "dropped": dict(b.dropped),
                "completion_tokens": sum(r["_tokens"] for r in rs),
            }
            gen_failed = sum(r["verdict"] == "generation_failed" for r in rs)
            reasons = self._incomplete(b.spec, rs, summ, gen_failed)
            if reasons:
                failures["reasons"] += reasons
                failures["benchmarks"][b.spec.name] = {
                    "unscored": summ.unscored,
                    "samples": len(rs),
                    "generation_failed": gen_failed,
                }
                for r in rs:
                    if r["score"] is None:
                        failures["by_reason"][r["verdict"]] = failures["by_reason"].get(r["verdict"], 0) + 1
        desc = self.target.describe()
        run = RunSummary(
            run_name=self.run_name,
            model=self.target.cfg.label,
            model_hash=desc.get("model_hash"),
            engine=desc.get("engine"),
            created_at=time.time(),
            git_sha=git_sha(),
            benchmarks=summaries,
            extra=self._averages(summaries),
        )
        self.store.write_json(f"{self.root}/{summary_path()}", run.model_dump())
        failures["rows"] = sum(failures["by_reason"].values())
        return run, counts, failures

    def _incomplete(
        self, spec: BenchmarkSpec, rs: list[dict[str, Any]], summ: BenchmarkSummary, gen_failed: int
    ) -> list[str]:
        """Why a benchmark leaves the run incomplete, one sentence each naming it (empty: it is complete)."""
        out = []
        if gen_failed:
            out.append(f"{spec.name}: {gen_failed} of {len(rs)} generations failed")
        if summ.unscored > self.ev.max_unscored * len(rs):
            out.append(
                f"{spec.name}: {summ.unscored} of {len(rs)} samples unscored "
                f"(more than eval.max_unscored = {self.ev.max_unscored:.0%})"
            )
        if math.isnan(summ.value):
            out.append(no_value_reason(spec, rs, summ.metric))
        return out

    def _averages(self, summaries: dict[str, BenchmarkSummary]) -> dict[str, Any]:
        extra: dict[str, Any] = {"profile": self.ev.profile, "samples_per_item": samples_per_item(self.ev)}
        if self.guard is not None:
            extra["guard"] = self.guard.cfg.label
            extra["guard_includes_reasoning"] = self.ev.guard.include_reasoning
        for name, group in (("avg_safety", PAPER_SAFETY), ("avg_reasoning", PAPER_REASONING)):
            vals = [summaries[b].value for b in group if b in summaries]
            if len(vals) == len(group):
                extra[name] = round(sum(vals) / len(vals), 4)  # the paper's unweighted means
        return extra


def engine_pool(cfg: Star1Config, store: Store) -> EnginePool:
    """The engines of a run; joining a running cluster, ray-backend engines wait `ray.resource_wait_s` for
    their GPUs (a local cluster cannot grow: they look once)."""
    from star1.ray_utils import joins_cluster

    wait = cfg.ray.resource_wait_s if joins_cluster(cfg.ray) else 0.0
    return EnginePool(store, resource_wait_s=wait)


def run_eval(
    cfg: Star1Config,
    store: Store,
    model: ModelConfig | None = None,
    run_name: str | None = None,
    force: bool = False,
    pool: EnginePool | None = None,
    log: Callable[[str], None] = print,
) -> EvalResult:
    """Evaluate one model on the configured benchmarks; skipped when a complete, current run is stored."""
    model = model or cfg.eval.model
    if model is None:
        raise ConfigError("eval.model is not set (the model to evaluate)")
    name = run_name or cfg.eval.run_name or slug(model.label)
    own = pool is None
    pool = pool or engine_pool(cfg, store)
    try:
        work = _Run(cfg, store, model, name, pool, log)
        with StageRun(
            store, work.root, ALGORITHM, work.params(), work.inputs(), work.outputs(), force
        ) as run:
            if run.skipped:
                assert run.previous is not None
                summary = RunSummary.model_validate(store.read_json(f"{work.root}/{summary_path()}"))
                log(f"eval/{name}: up to date")
                return EvalResult(name, store, summary, run.previous, True)
            store.delete(f"{work.root}/{summary_path()}")
            forget(store, name)
            rows = work.generate()
            work.judge(rows)
            work.score(rows)
            summary, counts, failures = work.write(rows)
            outputs = {"summary": {"uri": store.url(f"{work.root}/{summary_path()}")}}
            for b in work.benches:
                outputs[b.spec.name] = {"uri": store.url(f"{work.root}/{samples_path(b.spec.name)}")}
            usage = {"passes": work.stats, **({"api": pool.usage()} if pool.usage() else {})}
            status = "incomplete" if failures["benchmarks"] else "complete"
            usage["tracking"] = log_eval(cfg, store, summary, run.params, status)
            if failures["benchmarks"]:
                manifest = run.incomplete(outputs, counts, failures, work.timings, usage, work.warnings)
            else:
                manifest = run.complete(outputs, counts, work.timings, usage, work.warnings)
        return EvalResult(name, store, summary, manifest, False)
    finally:
        if own:
            pool.close()
