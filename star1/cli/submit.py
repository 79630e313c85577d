"""`star1 submit ray …` (Ray Jobs API) and `star1 submit k8s …` (a KubeRay RayJob from the chart)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml

from star1.cli.common import app, console
from star1.config import ConfigError, apply_override, load_config, load_yaml

submit_app = typer.Typer(
    no_args_is_help=True, help="Submit a job to a Ray cluster (ray) or to Kubernetes as a RayJob (k8s)."
)
app.add_typer(submit_app, name="submit")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="run config; validated here before submitting")
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="run-config override, e.g. --set ray.num_cpus=4")
]


def _say(msg: str) -> None:
    console.print(msg, highlight=False, markup=False)


def _config_text(config: Path, set_: list[str] | None) -> str:
    """The run config to ship, validated first (exit 2): the file as written, or with --set applied."""
    _validated(config, set_)
    if not set_:
        return config.read_text(encoding="utf-8")
    data = load_yaml(config) or {}
    for s in set_:
        apply_override(data, s)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _validated(config: Path | None, set_: list[str] | None) -> None:
    """Fail with exit 2 before anything is submitted when the run config does not validate."""
    try:
        load_config(config, set_)
    except ConfigError as e:
        console.print(f"[red]config error:[/red] {e}")
        raise typer.Exit(2) from None


@submit_app.command("ray")
def ray_(
    script: Annotated[str, typer.Argument(help="entrypoint script, e.g. jobs/collect.py")],
    args: Annotated[list[str] | None, typer.Argument(help="more arguments for the script (after --)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    address: Annotated[
        str | None, typer.Option("--address", help="dashboard URL (default: $RAY_ADDRESS, else local)")
    ] = None,
    working_dir: Annotated[Path, typer.Option("--working-dir", help="uploaded; the job runs in it")] = Path(
        "."
    ),
    python: Annotated[str, typer.Option("--python", help="interpreter on the cluster")] = "python",
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the job (no secrets)")] = None,
    runtime_env: Annotated[
        Path | None, typer.Option("--runtime-env", help="YAML runtime env (pip, env_vars, …) to add")
    ] = None,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="more working-dir excludes")] = None,
    logs_to: Annotated[
        str | None,
        typer.Option("--logs-to", help="also ship the driver log + run manifest to this store URI"),
    ] = None,
    submission_id: Annotated[str | None, typer.Option("--submission-id")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="submit and return")] = False,
) -> None:
    """Submit SCRIPT to a Ray cluster and stream its logs; exit 0 only if it succeeded (Ctrl-C stops it)."""
    from star1.deploy.submit import RaySubmission, SubmitError, relative_to_working_dir, submit_ray

    try:
        job_args: list[str] = []
        if config is not None:
            _validated(config, set_)
            job_args += ["--config", relative_to_working_dir(config, working_dir, "--config")]
        for s in set_ or []:
            job_args += ["--set", s]
        extra_env = {}
        for kv in env or []:
            if "=" not in kv:
                raise SubmitError(f"--env {kv}: expected KEY=VALUE")
            k, v = kv.split("=", 1)
            extra_env[k] = v
        rt = {}
        if runtime_env is not None:
            rt = yaml.safe_load(runtime_env.read_text(encoding="utf-8")) or {}
            if not isinstance(rt, dict):
                raise SubmitError(f"--runtime-env {runtime_env}: expected a YAML mapping")
        sub = RaySubmission(
            script=relative_to_working_dir(working_dir / script, working_dir, "script"),
            args=job_args + list(args or []),
            working_dir=working_dir,
            python=python,
            env=extra_env,
            runtime_env=rt,
            excludes=list(exclude or []),
            logs_to=logs_to,
            submission_id=submission_id,
        )
        code = submit_ray(
            sub,
            address or os.environ.get("RAY_ADDRESS") or "http://127.0.0.1:8265",
            follow=not no_wait,
            say=_say,
        )
    except (SubmitError, OSError, yaml.YAMLError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@submit_app.command("k8s")
def k8s(
    job: Annotated[str | None, typer.Argument(help="curate, sft or eval (rendered from the chart)")] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    values: Annotated[
        list[Path] | None, typer.Option("--values", "-f", help="chart values file(s), as for helm")
    ] = None,
    helm_set: Annotated[
        list[str] | None, typer.Option("--helm-set", help="chart value, e.g. jobs.sft.workers.gpu.gpus=4")
    ] = None,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="create this RayJob YAML instead of rendering the chart")
    ] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="release name (chart) or RayJob name (--manifest)")
    ] = None,
    owner_job: Annotated[
        str | None,
        typer.Option(
            "--owner-job", help="JOB_NAME:JOB_UID: the RayJob is owned by this batch Job (deleted with it)"
        ),
    ] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "star1",
    context: Annotated[str | None, typer.Option("--context", help="kubeconfig context")] = None,
    chart: Annotated[Path | None, typer.Option("--chart", help="default: helm/star1")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the objects; create nothing")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="create and return")] = False,
    poll: Annotated[float, typer.Option("--poll", help="seconds between status reads")] = 10.0,
    timeout: Annotated[float | None, typer.Option("--timeout", help="stop following after this")] = None,
) -> None:
    """Create a KubeRay RayJob for JOB (rendered from the chart) or from --manifest, follow it to its end;
    exit 0 only if it succeeded. Ctrl-C detaches (the RayJob keeps running). With --manifest, --config is
    copied into a ConfigMap the RayJob owns and mounts (the nightly creator does this)."""
    from star1.deploy import rayjob as rj
    from star1.deploy.chart import ChartError
    from star1.deploy.rayjob import RayJobError, chart_values, dump_yaml, from_chart, from_manifest
    from star1.deploy.submit import stamp, submit_k8s

    if (job is None) == (manifest is None):
        console.print("[red]error:[/red] give a JOB (curate, sft, eval) or --manifest FILE, not both")
        raise typer.Exit(2)
    try:
        configmap, policies = None, []
        if manifest is not None:
            rayjob = from_manifest(manifest, name, namespace)
            if config is not None:
                configmap = rj.own_config(rayjob, _config_text(config, set_))
        else:
            assert job is not None
            config_yaml = None
            if config is not None:
                config_yaml = _config_text(config, set_)
            vals = chart_values(job, list(values or []), list(helm_set or []), config_yaml)
            release = name or f"star1-{stamp()[4:]}"
            configmap, rayjob, policies = from_chart(job, vals, release, namespace, chart)
        if owner_job:
            rj.owner_job(rayjob, owner_job)
    except (RayJobError, ChartError, ConfigError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if dry_run:
        docs = [*policies, *(d for d in (configmap, rayjob) if d is not None)]
        sys.stdout.write(dump_yaml(docs))
        return
    try:
        code = submit_k8s(
            rayjob,
            configmap,
            policies=policies,
            context=context,
            follow=not no_wait,
            poll=poll,
            timeout=timeout,
            say=_say,
        )
    except RayJobError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)
