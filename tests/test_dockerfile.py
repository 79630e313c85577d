"""The Dockerfile, parsed (there is no Docker engine here): the image's Ray is the pinned client Ray, every
install goes through the constraints file scripts/setup.sh uses, the runtime stages are non-root and carry no
compiler, and the build context holds what the image copies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
    out = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            out[name.strip().lower()] = version.strip()
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


def test_ray_version_is_the_pinned_one(dockerfile):
    assert args(dockerfile)["RAY_VERSION"] == pins()["ray"]
    ray_installs = [x for x in dockerfile if re.search(r"pip install .*ray\[", x)]
    assert ray_installs and all('"ray[default,train]==${RAY_VERSION}"' in x for x in ray_installs)
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


def test_runtime_stages_are_non_root_without_a_compiler(dockerfile):
    s = stages(dockerfile)
    assert set(s) >= {"cpu-build", "cpu", "gpu-build", "gpu"}
    assert dockerfile[-1].startswith("CMD") and list(s)[-1] == "gpu"  # `docker build .` gives the GPU image
    for name in ("cpu", "gpu"):
        users = [x for x in s[name] if x.startswith("USER")]
        assert users and users[-1] == "USER 1000:1000", name
        text = "\n".join(s[name])
        assert not re.search(r"build-essential|gcc|g\+\+|\bdevel\b", text), name
        assert "pip install" not in text, name  # everything comes built from the build stage
    assert "build-essential" not in "\n".join(s["cpu-build"])  # the CPU image never needs one
    assert any("-devel-" in x for x in s["gpu-build"]) and any("-base-" in x for x in s["gpu"])
    assert any("DS_BUILD_FUSED_ADAM=1" in x for x in s["gpu-build"])


def test_build_context_holds_what_the_image_copies(dockerfile):
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {x[1:].rstrip("/") for x in ignore if x.startswith("!")}
    assert "*" in ignore
    for line in dockerfile:
        if line.startswith("COPY") and "--from" not in line:
            for src in line.split()[1:-1]:
                assert src in allowed, f"{line}: {src} is not in the build context"
                assert (REPO / src).exists(), src
