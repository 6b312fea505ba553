"""Sampling throughput: the project's generator against a plain `model.generate` loop, same prompts and settings.

Run: .venv/bin/python bench/sample.py [--model FOLDER] [--prompts 200] [--n 8] [--threads 1]

Both sides sample the demo's baseline workload (200 eval prompts of the sample math task x 8 samples, batches
of 64 sequences, temperature 1, each batch seeded the same way) from the same model in this process,
interleaved, best of three:
- plain: the prompts rendered with the chat template, each repeated n times, left-padded, `model.generate`;
- nbkit: `HFGenerator.generate`, whose batches run each distinct prompt once and share its KV cache with its
  samples (nbkit.policy.hf.sample_groups).
It checks that both give the same completions for the same seed, and prints samples/s of each and the ratio
(CPU seconds of this process: the machine may be shared), for answers capped at 16 tokens (notebook 03) and at
4 (the length of a typical math answer). Without --model the model is the demo's architecture (the default
tiny recipe) with random weights, built in seconds; random weights never stop early, so every sample runs to the
cap. The last line is JSON. Target: ratio >= 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def random_model(folder: Path) -> Path:
    """The default tiny recipe's tokenizer and architecture, random weights (no warm start)."""
    from nbkit.data.samples import make_task
    from nbkit.policy import tiny

    train, _ = make_task("math", n_train=1200, n_eval=200, seed=0)
    recipe = tiny.resolve_recipe("default")
    examples, _ = tiny._examples(train, recipe)
    tokenizer = tiny.build_tokenizer([tiny._render(m, a) for m, a in examples], recipe)
    model = tiny.build_model(tokenizer, recipe)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def plain_loop(gen, prompts: list, n: int, max_new_tokens: int, seed: int) -> list:
    """What one would write with transformers alone: repeat each prompt n times, generate in batches."""
    import torch
    from transformers import GenerationConfig

    from nbkit.policy.hf import left_pad

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                              eos_token_id=sorted(gen.stop_ids), pad_token_id=gen.tokenizer.pad_token_id,
                              bos_token_id=None)
    rows = [(i, s) for i in range(len(prompts)) for s in range(n)]
    encoded = [gen.render(p) for p in prompts]
    out = [[None] * n for _ in prompts]
    for b, start in enumerate(range(0, len(rows), gen.batch_size)):
        batch = rows[start:start + gen.batch_size]
        ids, mask = left_pad([encoded[i] for i, _ in batch], gen.tokenizer.pad_token_id)
        torch.manual_seed(seed * 1_000_003 + b)  # the generator's seeding of batch b
        with torch.inference_mode():
            generated = gen.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        for (i, s), row in zip(batch, generated[:, ids.shape[1]:].tolist(), strict=True):
            out[i][s] = gen._completion(row)
    return out


def measure(fn, *args, **kw) -> tuple[float, list]:
    start = time.process_time()
    result = fn(*args, **kw)
    return time.process_time() - start, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a local HF model folder (default: the demo's tiny architecture)")
    parser.add_argument("--prompts", type=int, default=200, help="eval prompts of the sample math task")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from nbkit.data.samples import make_task
    from nbkit.policy.hf import HFGenerator

    torch.set_num_threads(args.threads)
    _, evals = make_task("math", n_train=1200, n_eval=args.prompts, seed=0)
    prompts = [[m for m in r["messages"] if m["role"] != "assistant"] for r in evals]
    results = {}
    with tempfile.TemporaryDirectory(prefix="nbkit-bench-sample-") as tmp:
        folder = args.model or random_model(Path(tmp) / "model")
        gen = HFGenerator(folder, batch_size=64, progress=False)
        samples = len(prompts) * args.n
        print(f"{samples:,} samples ({len(prompts)} prompts x {args.n}), batches of {gen.batch_size}, "
              f"{args.threads} thread(s), model {'random-weight tiny (default recipe)' if args.model is None else folder}; "
              f"load average {os.getloadavg()[0]:.1f}")
        for cap in (16, 4):
            plain_s, ours_s, same = [], [], True
            for r in range(args.repeats):
                t, reference = measure(plain_loop, gen, prompts, args.n, cap, seed=r)
                plain_s.append(t)
                t, ours = measure(gen.generate, prompts, n=args.n, max_new_tokens=cap, temperature=1.0, seed=r)
                ours_s.append(t)
                same = same and ours == reference
            plain_rate, ours_rate = samples / min(plain_s), samples / min(ours_s)
            tokens = sum(c.num_tokens for row in ours for c in row) / samples
            print(f"max_new_tokens {cap:>2} (mean {tokens:4.1f} generated): plain generate {plain_rate:8,.0f} samples/CPU-s"
                  f"   nbkit {ours_rate:8,.0f} samples/CPU-s   ratio {ours_rate / plain_rate:.2f}   "
                  f"same completions: {same}")
            results[cap] = {"plain_per_cpu_s": round(plain_rate, 1), "nbkit_per_cpu_s": round(ours_rate, 1),
                            "ratio": round(ours_rate / plain_rate, 3), "same_outputs": same,
                            "mean_tokens": round(tokens, 2)}
    print(json.dumps({"bench": "sample", "samples": samples, "threads": args.threads,
                      "load_average": round(os.getloadavg()[0], 2),
                      "by_max_new_tokens": results}))
    return 0 if all(r["same_outputs"] and r["ratio"] >= 1.0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
