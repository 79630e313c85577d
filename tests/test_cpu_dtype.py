"""The local model's dtype on CPU: bfloat16 only with bf16 arithmetic, float32 otherwise, an explicit value as
given; the local server and the in-process engine both get it, and the eval manifest records it (no model
loaded, no vLLM imported).

The cpuinfo fixtures are excerpts (the first two CPUs) of /proc/cpuinfo as these instances show it: AMD EPYC
7R32 (Zen 2, AVX2, no AVX-512), Intel Xeon Platinum 8488C (Sapphire Rapids, AVX-512-BF16 and AMX), AWS
Graviton3 (Neoverse V1, bf16) and Graviton2 (Neoverse N1, no bf16).
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from star1.config import LocalModelConfig, ModelConfig
from star1.evals.engines import ModelHandle, vllm_common
from star1.evals.engines.model_source import ResolvedModel
from star1.llm import cpu_dtype
from star1.llm.cpu_dtype import choose_cpu_dtype, cpu_features, resolve_dtype
from star1.llm.local_server import LocalVLLMServer

CPUINFO = Path(__file__).parent / "fixtures" / "cpuinfo"
EPYC, XEON, GRAVITON3, GRAVITON2 = (
    (CPUINFO / f).read_text()
    for f in (
        "amd_epyc_7r32_avx2.txt",
        "intel_xeon_8488c_amx.txt",
        "aws_graviton3_bf16.txt",
        "aws_graviton2.txt",
    )
)


@pytest.mark.parametrize(
    "text, arch, model, bf16, dtype, reason",
    [
        (EPYC, "x86", "AMD EPYC 7R32", (), "float32", "cpu lacks avx512_bf16/amx_bf16"),
        (XEON, "x86", "Intel(R) Xeon(R) Platinum 8488C", ("avx512_bf16", "amx_bf16"), "bfloat16",
         "cpu has avx512_bf16, amx_bf16"),
        (GRAVITON3, "arm", "Arm implementer 0x41 part 0xd40", ("bf16",), "bfloat16", "cpu has bf16"),
        (GRAVITON2, "arm", "Arm implementer 0x41 part 0xd0c", (), "float32", "cpu lacks bf16"),
    ],
    ids=["epyc-avx2", "xeon-amx", "graviton3", "graviton2"],
)  # fmt: skip
def test_features_and_choice_on_four_cpus(text, arch, model, bf16, dtype, reason):
    cpu = cpu_features(text)
    assert (cpu.arch, cpu.model, cpu.bf16) == (arch, model, bf16)
    assert "avx2" in cpu.flags if arch == "x86" else "asimd" in cpu.flags
    choice = choose_cpu_dtype(text)
    assert (choice.dtype, choice.reason) == (dtype, reason)


def test_a_flag_counts_only_when_every_cpu_has_it():
    one_without = XEON.replace("amx_bf16 ", "", 1)  # the first CPU listed lacks AMX
    assert cpu_features(one_without).bf16 == ("avx512_bf16",)
    assert choose_cpu_dtype(one_without).reason == "cpu has avx512_bf16"


def test_this_machine_is_read_once_and_no_cpuinfo_means_float32(monkeypatch, tmp_path):
    cpu_dtype._this_cpu.cache_clear()
    assert cpu_features() is cpu_features()  # read once per process
    assert cpu_dtype._this_cpu.cache_info().misses == 1
    monkeypatch.setattr(cpu_dtype, "CPUINFO", tmp_path / "absent")  # macOS, Windows
    cpu_dtype._this_cpu.cache_clear()
    try:
        want = cpu_dtype.DtypeChoice("float32", f"no cpu features to check on {sys.platform}")
        assert choose_cpu_dtype() == want
    finally:
        cpu_dtype._this_cpu.cache_clear()


@pytest.fixture
def cpu_is(monkeypatch):
    """Make this machine's CPU one of the fixtures."""

    def use(text: str) -> None:
        monkeypatch.setattr(cpu_dtype, "_this_cpu", lambda: cpu_dtype.parse_cpuinfo(text))

    return use


def test_explicit_dtype_overrides_and_gpu_keeps_auto(cpu_is):
    cpu_is(EPYC)

    def never() -> bool:
        raise AssertionError("an explicit dtype needs no device check")

    assert resolve_dtype("bfloat16", never).dtype == "bfloat16"
    assert resolve_dtype("auto", lambda: False) == cpu_dtype.DtypeChoice("auto", "on a GPU, vLLM chooses")
    auto = resolve_dtype("auto", lambda: True)
    assert (auto.dtype, auto.reason) == ("float32", "auto on cpu: cpu lacks avx512_bf16/amx_bf16")
    assert LocalModelConfig().dtype == "auto" and LocalModelConfig(dtype="float32").dtype == "float32"
    with pytest.raises(ValidationError):
        LocalModelConfig(dtype="float16")


def test_local_server_command_carries_dtype():
    cmd = LocalVLLMServer(Path("/m"), "smollm2", port=8123, dtype="float32").command()
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    cmd = LocalVLLMServer(Path("/m"), "smollm2", port=8123).command()
    assert cmd[cmd.index("--dtype") + 1] == "auto"


def test_engine_kwargs_resolve_auto_on_cpu_only(cpu_is):
    auto = ModelConfig(path="m")
    cpu_is(EPYC)
    assert vllm_common.engine_kwargs(auto, cpu=True)["dtype"] == "float32"
    cpu_is(XEON)
    assert vllm_common.engine_kwargs(auto, cpu=True)["dtype"] == "bfloat16"
    assert vllm_common.engine_kwargs(auto, cpu=False)["dtype"] == "auto"  # on a GPU vLLM decides
    assert vllm_common.engine_kwargs(ModelConfig(path="m", dtype="float32"), cpu=True)["dtype"] == "float32"
    in_kwargs = ModelConfig(path="m", engine_kwargs={"dtype": "float16"})
    assert vllm_common.engine_kwargs(in_kwargs, cpu=True)["dtype"] == "float16"


@pytest.fixture
def describe(monkeypatch):
    monkeypatch.setattr(vllm_common, "vllm_version", lambda: "test")
    model = ResolvedModel(local_dir=None, source="org/m", given="org/m")  # a hub id: nothing to hash
    renderer = SimpleNamespace(chat_template=None, thinking="none")

    def run(cfg: ModelConfig, cpu: bool) -> dict:
        return vllm_common.describe(cfg, model, renderer, "local", lambda: cpu)  # type: ignore[arg-type]

    return run


def test_describe_records_the_dtype_that_ran(cpu_is, describe):
    cpu_is(EPYC)
    d = describe(ModelConfig(path="org/m"), cpu=True)
    assert d["dtype"] == "float32" and d["dtype_reason"] == "auto on cpu: cpu lacks avx512_bf16/amx_bf16"
    cpu_is(XEON)
    d = describe(ModelConfig(path="org/m"), cpu=True)
    assert d["dtype"] == "bfloat16" and d["dtype_reason"] == "auto on cpu: cpu has avx512_bf16, amx_bf16"
    # a GPU run, or a dtype set in the config, is recorded as before (no reason: nothing was chosen)
    gpu = describe(ModelConfig(path="org/m"), cpu=False)
    assert gpu["dtype"] == "auto" and "dtype_reason" not in gpu
    set_ = describe(ModelConfig(path="org/m", dtype="bfloat16"), cpu=True)
    assert set_["dtype"] == "bfloat16" and "dtype_reason" not in set_


def test_eval_identity_follows_the_resolved_dtype(cpu_is, describe):
    """Generations are keyed by the dtype that ran: a float32 run never reuses bf16 outputs."""
    from star1.evals.run import _identity

    cpu_is(XEON)
    bf16 = _identity(describe(ModelConfig(path="org/m"), cpu=True))
    assert bf16 == _identity(describe(ModelConfig(path="org/m", dtype="bfloat16"), cpu=True))
    cpu_is(EPYC)
    assert _identity(describe(ModelConfig(path="org/m"), cpu=True)) != bf16


def test_model_handle_decides_the_device_as_its_engine_will(monkeypatch):
    assert ModelHandle(ModelConfig(path="m", backend="ray", device="cpu"), None).on_cpu()
    assert not ModelHandle(ModelConfig(path="m", backend="ray", device="gpu"), None).on_cpu()
    monkeypatch.setattr(cpu_dtype, "vllm_on_cpu", lambda: False)
    assert not ModelHandle(ModelConfig(path="m"), None).on_cpu()
