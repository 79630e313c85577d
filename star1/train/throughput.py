"""Tokens/s and model FLOPs utilisation: MFU = 6 · N · tokens/s ÷ the device's peak FLOP/s.

6·N per token is forward + backward of the dense parameters (attention FLOPs and the recomputation of
gradient checkpointing are not counted, the usual convention). Peaks are dense bf16 from vendor sheets; on a
CPU the peak is measured (fp32 matmul with the worker's threads), so CPU MFU is relative to what this CPU
reaches on large matmuls, not to a datasheet.
"""

from __future__ import annotations

import time

import torch

# dense bf16 TFLOP/s by GPU name fragment (first match wins: more specific first)
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H800", 989.0),
    ("H20", 148.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
    ("MI300X", 1307.0),
)


def gpu_peak_tflops(name: str) -> float | None:
    for fragment, tflops in PEAK_TFLOPS:
        if fragment.lower() in name.lower():
            return tflops
    return None


def measure_cpu_tflops(seconds: float = 0.5, n: int = 1024) -> float:
    """fp32 matmul throughput of this process's torch threads, in TFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        done += 1
    return 2 * n**3 * done / (time.perf_counter() - start) / 1e12


def device_peak(device: torch.device, configured: float | None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it came from)."""
    if configured is not None:
        return configured, "configured"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_peak_tflops(name)
        return peak, (f"table:{name}" if peak else f"unknown GPU {name}: set train.throughput.peak_tflops")
    return measure_cpu_tflops(), "measured fp32 matmul (CPU)"


def mfu(params: int, tokens_per_s: float, peak_tflops: float | None) -> float | None:
    return 6 * params * tokens_per_s / (peak_tflops * 1e12) if peak_tflops else None
