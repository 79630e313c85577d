"""The Dockerfile, parsed (there is no Docker engine here): the image's Ray is the pinned client Ray, every
install goes through the constraints file scripts/setup.sh uses, the dependencies come from hash-locked files
(requirements/*.lock.txt, `make lock`) whose pins agree with constraints.txt and pyproject.toml and install
before any project file is copied, every base image is pinned by digest, the GPU runtime carries the JIT
toolchain vLLM needs (compiler, nvcc, CUDA/NVRTC/cuBLAS/NCCL headers) and the CPU image none, both are
non-root, and the build context holds what the image copies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]


def logical_lines(text: str) -> list[str]:
    """Dockerfile instructions with `\\` continuations joined and comments dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[str]:
    return logical_lines((REPO / "Dockerfile").read_text())


def pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def stages(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    name = None
    for line in lines:
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            name = m.group(1)
            out[name] = [line]
        elif name:
            out[name].append(line)
    return out


def args(lines: list[str]) -> dict[str, str]:
    return dict(re.match(r"ARG\s+(\w+)=(\S+)", x).groups() for x in lines if re.match(r"ARG\s+\w+=", x))


def base(lines: list[str], stage: str) -> str:
    """The image a stage starts from, with `${ARG}` resolved from the global ARG defaults."""
    ref = re.match(r"FROM\s+(\S+)", stages(lines)[stage][0]).group(1)
    return re.sub(r"\$\{(\w+)\}", lambda m: args(lines)[m.group(1)], ref)


def pinned(ref: str) -> tuple[str, str, str]:
    """`name:tag@sha256:<64 hex>` as (name, tag, digest); anything else fails."""
    m = re.fullmatch(r"([a-z0-9./_-]+):([\w.-]+)@(sha256:[0-9a-f]{64})", ref)
    assert m, f"{ref} is not pinned by digest (name:tag@sha256:…)"
    return m.group(1), m.group(2), m.group(3)


# files of the project itself (pyproject, README, the chart, the code): none is copied before the dependencies
PROJECT = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "helm/", "star1", "jobs")
# what the GPU runtime installs so vLLM's JIT paths compile (as vLLM's own runtime image does); the CUDA
# packages are written `<name>-${CUDA_MM}` (the CUDA major-minor, e.g. 13-0)
JIT_TOOLCHAIN = ("gcc", "g++", "cuda-nvcc", "cuda-cudart-dev", "cuda-cccl", "cuda-nvrtc-dev", "libcublas-dev")
COMPILERS = r"build-essential|\bgcc\b|g\+\+|\bclang\b|-devel-|cuda-nvcc|-dev\b|-dev-"

# the lock files each build stage installs, in order
LOCKS = {"cpu-build": ["cpu.lock.txt"], "gpu-build": ["gpu.lock.txt", "gpu-deepspeed.lock.txt"]}


def lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """A `uv pip compile --generate-hashes` file: {name: (version, [hashes])}."""
    out: dict[str, tuple[str, list[str]]] = {}
    current = None
    for raw in (REPO / "requirements" / name).read_text().splitlines():
        line = raw.split("#")[0].strip().rstrip("\\").strip()
        if not line:
            continue
        if line.startswith("--hash="):
            assert current, f"{name}: a hash before any requirement"
            out[current][1].append(line.removeprefix("--hash="))
            continue
        assert not line.startswith("-"), f"{name}: unexpected option {line}"
        m = re.fullmatch(r"([A-Za-z0-9._-]+)(\[[^\]]*\])?==(\S+)", line.split(";")[0].strip())
        assert m, f"{name}: not an exact pin: {line}"
        current = canonicalize_name(m.group(1))
        out[current] = (m.group(3), [])
    return out


def test_ray_version_is_the_pinned_one(dockerfile):
    assert args(dockerfile)["RAY_VERSION"] == pins()["ray"]
    # Ray comes from the locks, which pin the constraints' Ray; each build checks the version it installed
    for stage, files in LOCKS.items():
        assert lock(files[0])["ray"][0] == pins()["ray"], files[0]
        assert any("v('ray')" in x and "${RAY_VERSION}" in x for x in stages(dockerfile)[stage]), stage
    # no other Ray version hides anywhere (a base image tag, a literal pin)
    for line in dockerfile:
        for v in re.findall(r"ray[^\s]*?[:=]=?(\d+\.\d+\.\d+)", line):
            assert v == pins()["ray"], line


def test_every_install_uses_the_setup_constraints(dockerfile):
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert re.search(r"pip.*install .*-c constraints\.txt", setup)
    installs = [x for x in dockerfile if re.search(r"\bpip install\b", x)]
    assert len(installs) >= 4
    assert all("-c constraints.txt" in x for x in installs), installs
    for stage in ("cpu-build", "gpu-build"):
        assert any(x.startswith("COPY constraints.txt") for x in stages(dockerfile)[stage]), stage
    # the other pinned versions match the constraints too
    a, p = args(dockerfile), pins()
    assert a["VLLM_VERSION"] == p["vllm"] and a["DEEPSPEED_VERSION"] == p["deepspeed"]


def test_dependencies_install_from_the_hash_locks_before_the_project(dockerfile):
    """Every dependency install in a build stage is `--require-hashes -r requirements/<lock>`, from the lock
    files and constraints alone, in its own layers before any project file (pyproject, README, the chart,
    the code) is copied: editing those reinstalls star1, never its dependencies."""
    for stage, files in LOCKS.items():
        lines = stages(dockerfile)[stage]
        copies = [(i, x) for i, x in enumerate(lines) if x.startswith("COPY") and "--from" not in x]
        project = [i for i, x in copies if any(src.startswith(PROJECT) for src in x.split()[1:-1])]
        first_project = min(project)
        installs = [(i, x) for i, x in enumerate(lines) if re.search(r"\bpip install\b", x)]
        deps = [(i, x) for i, x in installs if "--no-deps" not in x]
        assert [re.search(r"-r requirements/(\S+)", x).group(1) for _, x in deps] == files, stage
        for i, x in deps:
            assert "--require-hashes" in x and i < first_project, x
        # before the dependency layers: only the constraints and the locks
        early = [src for i, x in copies if i < deps[-1][0] for src in x.split()[1:-1]]
        assert sorted(early) == sorted(["constraints.txt", *(f"requirements/{f}" for f in files)]), early
        # the only other install is star1 itself, without dependencies, after everything it builds from
        (star1,) = [(i, x) for i, x in installs if (i, x) not in deps]
        assert re.search(r"--no-deps .* \.(\s|$)", star1[1]) and star1[0] > max(project), star1
        copied = {src for i, x in copies if i in project for src in x.split()[1:-1]}
        # the wheel carries the chart (setup.py), and pip reads README.md (pyproject's readme)
        assert copied >= {"pyproject.toml", "setup.py", "README.md", "helm/star1", "helm/examples", "star1"}


@pytest.mark.parametrize("name", sorted({f for files in LOCKS.values() for f in files}))
def test_every_locked_requirement_is_pinned_with_hashes(name):
    entries = lock(name)
    assert entries
    for pkg, (_, hashes) in entries.items():
        assert hashes and all(re.fullmatch(r"sha256:[0-9a-f]{64}", h) for h in hashes), pkg


def test_lock_pins_agree_with_the_constraints():
    p = pins()
    cpu, gpu, gpu_ds = lock("cpu.lock.txt"), lock("gpu.lock.txt"), lock("gpu-deepspeed.lock.txt")
    assert cpu["ray"][0] == gpu["ray"][0] == p["ray"]
    assert gpu["vllm"][0] == p["vllm"] and "vllm" not in cpu  # no vLLM in the CPU image
    assert cpu["deepspeed"][0] == gpu_ds["deepspeed"][0] == p["deepspeed"]
    assert "deepspeed" not in gpu and list(gpu_ds) == ["deepspeed"]  # built in a second step, after torch
    # torch: the CPU build (+cpu) from PyTorch's CPU index in the CPU image, PyPI's CUDA build in the GPU one
    assert cpu["torch"][0] == p["torch"] + "+cpu" and gpu["torch"][0] == p["torch"]
    for entries in (cpu, gpu):
        for name, version in p.items():
            if name in entries:
                assert Version(entries[name][0]).public == version, name


def test_locks_satisfy_pyproject():
    """A lock made before a pyproject change (a new dependency, a raised floor) fails here: `make lock`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {
        "cpu.lock.txt": project["dependencies"],
        "gpu.lock.txt": [*project["dependencies"], *project["optional-dependencies"]["gpu"]],
    }
    ds = lock("gpu-deepspeed.lock.txt")
    for name, reqs in wanted.items():
        entries = {**lock(name), **(ds if name == "gpu.lock.txt" else {})}
        for r in map(Requirement, reqs):
            key = canonicalize_name(r.name)
            assert key in entries, f"{name} lacks {r.name}: run `make lock`"
            assert r.specifier.contains(entries[key][0], prereleases=True), (
                f"{name}: {key} {entries[key][0]} vs {r}"
            )


def test_runtime_stages_are_non_root_and_only_the_gpu_one_compiles(dockerfile):
    s = stages(dockerfile)
    assert set(s) >= {"cpu-build", "cpu", "gpu-build", "gpu"}
    assert dockerfile[-1].startswith("CMD") and list(s)[-1] == "gpu"  # `docker build .` gives the GPU image
    for name in ("cpu", "gpu"):
        users = [x for x in s[name] if x.startswith("USER")]
        assert users and users[-1] == "USER 1000:1000", name
        assert "pip install" not in "\n".join(s[name]), name  # everything comes built from the build stage
    # the CPU image never needs a compiler, in its build or its runtime stage
    for name in ("cpu-build", "cpu"):
        assert not re.search(COMPILERS, "\n".join(s[name])), name
    assert base(dockerfile, "cpu") == base(dockerfile, "cpu-build")
    # GPU: the toolkit (devel image) and build-essential build DeepSpeed's ops; the runtime is the CUDA base
    # image plus the JIT toolchain, for the same CUDA release
    assert "-devel-" in base(dockerfile, "gpu-build") and "-base-" in base(dockerfile, "gpu")
    cuda = args(dockerfile)["CUDA_VERSION"]
    for stage in ("gpu-build", "gpu"):
        assert pinned(base(dockerfile, stage))[1].startswith(f"{cuda}-"), stage
    assert any("build-essential" in x for x in s["gpu-build"])
    assert any("DS_BUILD_FUSED_ADAM=1" in x for x in s["gpu-build"])
    (apt,) = [x for x in s["gpu"] if "apt-get install" in x]
    words = set(apt.split())
    for pkg in JIT_TOOLCHAIN:
        assert pkg in words or f"{pkg}-${{CUDA_MM}}" in words, pkg
    assert "libnccl-dev" in words
    assert re.search(r"CUDA_MM=\$\(echo \"\$\{CUDA_VERSION\}\" \| cut -d\. -f1,2 \| tr \. -\)", apt)
    # Python's headers come with the relocatable CPython the runtime copies from the build stage
    assert "COPY --from=gpu-build /opt/python /opt/python" in s["gpu"]
    env = " ".join(x for x in s["gpu"] if x.startswith("ENV"))
    assert "CUDA_HOME=/usr/local/cuda" in env and "/usr/local/cuda/bin" in env
    # and the build proves the toolchain compiles what the JIT paths include, without a GPU
    (check,) = [x for x in s["gpu"] if "nvcc -c" in x]
    for header in ("Python.h", "cuda_runtime.h", "nvrtc.h", "cublas_v2.h", "nccl.h"):
        assert header in check, header
    assert "gcc -c" in check


def test_base_images_are_pinned_by_digest(dockerfile):
    """Every FROM names a stage or a base image pinned as name:tag@sha256:…; the tags agree with the
    versions the Dockerfile states, and both Pythons are the same release (a Ray head on the CPU image drives
    GPU workers)."""
    text = (REPO / "Dockerfile").read_text()
    assert re.match(r"# syntax=docker/dockerfile:[\d.]+@sha256:[0-9a-f]{64}\n", text)
    s = stages(dockerfile)
    a = args(dockerfile)
    images = {}
    for name in s:
        ref = base(dockerfile, name)
        if ref not in s:
            images[name] = pinned(ref)
    assert set(images) == {"cpu-build", "cpu", "uv", "gpu-build", "gpu"}
    assert images["cpu"][:2] == ("python", f"{a['PYTHON_VERSION']}-slim-bookworm")
    assert any("uv python install ${PYTHON_VERSION}" in x for x in s["gpu-build"])
    assert images["uv"][0] == "ghcr.io/astral-sh/uv"
    assert {images[x][0] for x in ("gpu-build", "gpu")} == {"nvidia/cuda"}
    # no FROM carries a literal image: every base is one of the pinned ARGs above
    for line in dockerfile:
        if line.startswith("FROM"):
            ref = line.split()[1]
            assert ref in s or re.fullmatch(r"\$\{\w+_IMAGE\}", ref), line


def test_the_driver_requirement_is_stated():
    """CUDA 13 needs an R580+ driver: the Dockerfile and the docs that describe the images say so."""
    for path in ("Dockerfile", "docs/kubernetes.md", "docs/install.md"):
        assert "R580" in (REPO / path).read_text(), path


def test_build_context_holds_what_the_image_copies(dockerfile):
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {x[1:].rstrip("/") for x in ignore if x.startswith("!")}
    assert "*" in ignore
    for line in dockerfile:
        if line.startswith("COPY") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert src in allowed, f"{line}: {src} is not in the build context"
                assert (REPO / src).exists(), src
