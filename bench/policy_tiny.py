"""Benchmark the default local model: warm-start time, its baseline on the sample math task, and sampling speed.

Builds the tiny model from scratch (a fresh cache folder), evaluates it on the eval split exactly as notebook
03 does, and compares batched against one-at-a-time sampling in the same process. Prints figures; the last
line is JSON.

    .venv/bin/python bench/policy_tiny.py --recipe default --n-train 1200 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="default", help="tiny-model recipe (default, smoke)")
    parser.add_argument("--n-train", type=int, default=1200, help="training records of the sample math task (the demo uses 1200)")
    parser.add_argument("--n-eval", type=int, default=200, help="eval records")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--k", type=int, default=8, help="samples per eval prompt")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    import torch

    from nbkit.data.samples import make_task
    from nbkit.evaluate import sample_and_score, summarize
    from nbkit.policy import load_generator
    from nbkit.policy.tiny import build_info, ensure_tiny_model

    torch.set_num_threads(args.threads)
    train, eval_ = make_task("math", n_train=args.n_train, n_eval=args.n_eval, seed=0)
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        folder = ensure_tiny_model(train, cache_dir=cache, recipe=args.recipe)
        build_s = time.perf_counter() - start
        info = build_info(folder)
        print(f"build ({args.recipe}, {info['parameters']:,} parameters, {args.threads} threads): {build_s:.1f} s, "
              f"warm start {info['warm_start_steps']} steps, gate accuracy {info['gate_accuracy']:.3f}")
        for h in info["history"]:
            print(f"  step {h['step']:5d}  loss {h['loss']:.3f}  held-out {h['heldout_accuracy']:.3f}  "
                  f"train {h['train_accuracy']:.3f}  {h['seconds']:.1f} s")

        gen = load_generator(str(folder), batch_size=64, progress=False)
        start = time.perf_counter()
        frame = sample_and_score(gen, "builtin:numeric", eval_, k=args.k, max_new_tokens=args.max_new_tokens,
                                 temperature=1.0, seed=0)
        eval_s = time.perf_counter() - start
        summary = summarize(frame, max_new_tokens=args.max_new_tokens, n_boot=2000, seed=0)
        r, p = summary["reward"], summary["pass_rate"]
        by_domain = {k: round(v["mean_reward"], 3) for k, v in summary["by_group"].get("domain", {}).items()}
        print(f"baseline on {len(eval_)} eval prompts x {args.k}: mean reward {r['mean']:.3f} "
              f"(95% CI {r['ci_low']:.3f} to {r['ci_high']:.3f}), {summary['recommendation']['label']}; "
              f"always/mixed/never {p['always']:.0%}/{p['mixed']:.0%}/{p['never']:.0%}; by domain {by_domain}; "
              f"{eval_s:.1f} s")

        prompts = [r["messages"] for r in eval_[:32]]
        timings = {}
        for batch in (64, 1):
            gen.batch_size = batch
            start = time.perf_counter()
            gen.generate(prompts, n=4, max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)
            timings[batch] = len(prompts) * 4 / (time.perf_counter() - start)
        ratio = timings[64] / timings[1]
        print(f"sampling: batched (64) {timings[64]:.0f} samples/s vs one at a time {timings[1]:.0f} samples/s "
              f"-> {ratio:.1f}x")
    print(json.dumps({
        "recipe": args.recipe, "n_train": args.n_train, "threads": args.threads, "build_s": round(build_s, 1),
        "warm_start_steps": info["warm_start_steps"], "gate_accuracy": info["gate_accuracy"],
        "baseline_mean": round(r["mean"], 4), "baseline_ci": [round(r["ci_low"], 4), round(r["ci_high"], 4)],
        "verdict": summary["recommendation"]["verdict"], "eval_s": round(eval_s, 1),
        "samples_per_s_batched": round(timings[64], 1), "samples_per_s_single": round(timings[1], 1),
        "batched_speedup": round(ratio, 2),
    }))


if __name__ == "__main__":
    main()
