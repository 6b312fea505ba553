"""How fast is the local GRPO backend? Steps/s and completions/s on the demo preset, reward time split out.

Run: .venv/bin/python bench/train_local.py [--steps 40] [--threads 2] [--no-baseline]

Two runs on the sample math task (the demo's data sizes, the tiny default model, LOCAL_PRESET: 16 prompts x
8 generations, 8 new tokens, LoRA r=16, beta 0):
1. baseline, in this process: plain TRL GRPOTrainer + LoRA with an inline exact-match reward, nothing else;
2. the local backend as the demo runs it: a background worker with the Lambda-handler reward through the
   harness, KL-to-base measurement, MLflow logging, the completions table and validation every 20 steps.
Figures come from the training phase only (first to last step; imports and model loading are reported
apart), and the ratio backend/baseline is the workbench's overhead. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def data(root: Path) -> tuple[list[dict], Path, Path]:
    from nbkit.data.io import write_jsonl
    from nbkit.data.samples import make_task

    train, evals = make_task("math", n_train=400, n_eval=200, seed=0)
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "eval.jsonl", evals)
    return train, root / "train.jsonl", root / "eval.jsonl"


def baseline(model_path: Path, train: list[dict], steps: int, threads: int, out: Path) -> dict:
    """Plain TRL: the same preset and model, a Python reward, no logging; times each optimizer step."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from nbkit.policy.tiny import answer_text, normalize_answer
    from nbkit.train.local import grpo_config_kwargs, lora_config_kwargs
    from nbkit.train.spec import JobSpec

    torch.set_num_threads(threads)
    spec = JobSpec.local_preset(hyper={"max_steps": steps})
    rows = [{"prompt": [m for m in r["messages"] if m["role"] != "assistant"],
             "answer": normalize_answer(answer_text(r) or "")} for r in train]
    reward_s = [0.0]

    def exact(completions, answer, **_):
        start = time.perf_counter()
        scores = [float(normalize_answer(c[0]["content"]) == a) for c, a in zip(completions, answer, strict=True)]
        reward_s[0] += time.perf_counter() - start
        return scores

    stamps: list[float] = []
    rewards: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **_):
            stamps.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **_):
            if logs and "reward" in logs:
                rewards.append(logs["reward"])

    kwargs = grpo_config_kwargs(spec, steps) | {"output_dir": str(out), "save_strategy": "no"}
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    trainer = GRPOTrainer(model=model, reward_funcs=exact, args=GRPOConfig(**kwargs),
                          train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                          peft_config=LoraConfig(**lora_config_kwargs(spec)), callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)  # TRL prints a 30-key dict per step
    start = time.perf_counter()
    trainer.train()
    return _figures(start, stamps, reward_s[0], rewards, spec.hyper.global_batch_size)


def backend(model: str, train: Path, evals: Path, steps: int, threads: int, out: Path) -> dict:
    """The local backend exactly as notebook 04 launches it, timed from its own progress records."""
    from nbkit.train import local
    from nbkit.train.spec import JobSpec

    spec = JobSpec.local_preset(
        name="bench", model=model, train_data=str(train), eval_data=str(evals), reward="builtin:numeric",
        output=str(out / "training"), dry_run=False, hyper={"max_steps": steps, "save_steps": steps},
        local={"threads": threads, "eval_every": 20, "eval_prompts": 64},
    )
    submitted = time.time()
    handle = local.submit(local.plan(spec), out)
    state = handle.wait(progress=False)
    if state != "completed":
        raise SystemExit(f"backend run {state}: {handle.error()}\n{handle.logs(tail=40)}")
    wall = time.time() - submitted
    rows = local.read_progress(handle.files.progress)
    train_rows = [r for r in rows if r["kind"] == "train"]
    eval_rows = [r for r in rows if r["kind"] == "eval"]
    first_step = train_rows[0]["time"] - train_rows[0].get("step_time", 0.0)  # when step 1 began
    figures = _figures(first_step, [r["time"] for r in train_rows],
                       sum(r.get("reward_time_s", 0.0) for r in train_rows),
                       [r["reward_mean"] for r in train_rows], spec.hyper.global_batch_size)
    figures.update(
        wall_s=round(wall, 2),
        startup_s=round(first_step - submitted, 2),  # imports, model, reward, MLflow store, step-0 validation
        finish_s=round(submitted + wall - train_rows[-1]["time"], 2),  # merge, save, Nova layout, tables
        validation_s=round(sum(r.get("val_time_s", 0.0) for r in eval_rows if r["step"] > 0), 2),
        kl_last=train_rows[-1].get("kl"),
        val_reward_first=eval_rows[0]["val_reward"] if eval_rows else None,
        val_reward_last=eval_rows[-1]["val_reward"] if eval_rows else None,
    )
    return figures


def _figures(start: float, stamps: list[float], reward_s: float, rewards: list[float], rollouts: int) -> dict:
    """Throughput of the training phase and the share of it spent in the reward."""
    train_s = stamps[-1] - start
    steps = len(stamps)
    window = max(1, steps // 5)
    return {
        "steps": steps,
        "train_s": round(train_s, 2),
        "steps_per_s": round(steps / train_s, 3),
        "completions_per_s": round(steps * rollouts / train_s, 1),
        "reward_s": round(reward_s, 3),
        "reward_share": round(reward_s / train_s, 4),
        "reward_first": round(sum(rewards[:window]) / window, 4),
        "reward_last": round(sum(rewards[-window:]) / window, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="GRPO steps per run (the demo runs 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the demo machine has 2 cores)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-TRL baseline run")
    args = parser.parse_args()

    from nbkit.policy.tiny import ensure_tiny_model

    with tempfile.TemporaryDirectory(prefix="bench-train-local-") as tmp:
        root = Path(tmp)
        train, train_path, eval_path = data(root)
        started = time.perf_counter()
        model_path = ensure_tiny_model(train)
        build_s = time.perf_counter() - started
        print(f"tiny model: {model_path} ({build_s:.1f} s, cached after the first build)")
        base = None
        if not args.no_baseline:
            base = baseline(model_path, train, args.steps, args.threads, root / "baseline")
            print(f"baseline (plain TRL):  {base['steps_per_s']:.3f} steps/s, {base['completions_per_s']:.0f} "
                  f"completions/s, reward {base['reward_share']:.1%} of {base['train_s']:.1f} s, "
                  f"mean reward {base['reward_first']:.3f} -> {base['reward_last']:.3f}")
        ours = backend(str(model_path), train_path, eval_path, args.steps, args.threads, root / "run")
        print(f"local backend:         {ours['steps_per_s']:.3f} steps/s, {ours['completions_per_s']:.0f} "
              f"completions/s, reward {ours['reward_share']:.1%} of {ours['train_s']:.1f} s "
              f"(validation {ours['validation_s']:.1f} s), mean reward {ours['reward_first']:.3f} -> "
              f"{ours['reward_last']:.3f}, val_reward {ours['val_reward_first']} -> {ours['val_reward_last']}")
        print(f"whole job: {ours['wall_s']:.1f} s = startup {ours['startup_s']:.1f} s (imports, model, MLflow "
              f"store, step-0 validation) + training {ours['train_s']:.1f} s + finish {ours['finish_s']:.1f} s")
        result = {"bench": "train_local", "steps": args.steps, "threads": args.threads,
                  "rollouts_per_step": 128, "model_build_s": round(build_s, 2), "backend": ours, "baseline": base}
        if base:
            result["backend_over_baseline_time"] = round(ours["train_s"] / base["train_s"], 3)
            print(f"backend / baseline training time: {result['backend_over_baseline_time']:.2f}x")
        print(json.dumps(result))


if __name__ == "__main__":
    main()
