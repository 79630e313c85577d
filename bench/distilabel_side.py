"""distilabel's OpenAILLM on the api_throughput workload (run inside distilabel's own virtualenv).

    DISTIL_PY -m pip install "distilabel[openai]==1.5.3" "openai<2" requests
    DISTIL_PY bench/distilabel_side.py --base-url http://127.0.0.1:PORT/v1 --prompts 2000

Prints one JSON line: rows, successful generations, wall seconds. bench/api_throughput.py runs this for
you with `--distilabel DISTIL_PY`, against the same server, and adds the server's 429 counts.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--input-batch-size", type=int, default=50)
    ap.add_argument("--max-retries", type=int, default=7, help="the same retry budget as the other clients")
    args = ap.parse_args()

    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    rows = [{"instruction": f"prompt number {i} about wifi"} for i in range(args.prompts)]
    with Pipeline(name="star1-bench") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=args.input_batch_size)
        gen = TextGeneration(
            llm=OpenAILLM(
                model="classifier-m",
                base_url=args.base_url,
                api_key="x",
                timeout=30,
                max_retries=args.max_retries,
            ),
            input_batch_size=args.input_batch_size,
        )
        load >> gen
    t0 = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    wall = time.perf_counter() - t0
    out = distiset["default"]["train"]
    ok = sum(1 for g in out["generation"] if g)
    print(json.dumps({"rows": args.prompts, "out_rows": len(out), "ok": ok, "wall_s": round(wall, 2)}))


if __name__ == "__main__":
    main()
