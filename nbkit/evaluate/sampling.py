"""Sample k completions per prompt and score them with the reward, through the same harness training uses.

The baseline (notebook 03) and the tuned model (notebook 06) both go through `sample_and_score` with the
same seed and settings, so their frames pair row for row: one row per (prompt, sample).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nbkit.errors import UserError
from nbkit.layout import SAMPLES

COLUMNS = ("prompt_id", "sample", "prompt", "reference", "response", "reward", "status", "components",
           "num_tokens", "finish_reason")
EXTRA_COLUMNS = ("domain", "difficulty_level")


def sample_and_score(
    generator: Any,
    reward: Any,
    records: Sequence[Mapping[str, Any]],
    k: int = 4,
    max_new_tokens: int = 256,
    temperature: float = 1.0,
    seed: int = 0,
    *,
    variant: str = "sagemaker",
    batch_size: int = 16,
    workers: int = 0,
    timeout: float | None = 60.0,
    retries: int = 0,
) -> Any:
    """One row per (prompt, sample): the completion, its reward and status, token count and finish reason.

    `reward` is a loaded Reward or a spec (`builtin:numeric`, `path.py[:func]`). Every sample is kept:
    a failed reward call leaves `reward` NaN with its status (exception, timeout, ...) saying why.
    """
    import pandas as pd

    from nbkit.rewards import load_reward, make_sample, run_harness

    records = list(records)
    if not records:
        raise UserError("no records to evaluate: the eval split is empty (check notebook 01's output)")
    prompts = [_prompt(r, i) for i, r in enumerate(records)]
    ids = prompt_ids(records)
    duplicates = sorted(i for i, count in Counter(ids).items() if count > 1)
    if duplicates:
        raise UserError(f"{len(duplicates)} record id(s) repeat (e.g. {duplicates[:3]}); ids must be unique to pair "
                        "samples with prompts: de-duplicate the eval split (notebook 01 does)")
    completions = generator.generate(prompts, n=k, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    reward_obj = load_reward(reward) if isinstance(reward, str) else reward
    samples, rows = [], []
    for record, rid, per_prompt in zip(records, ids, completions, strict=True):
        for s, completion in enumerate(per_prompt):
            samples.append(make_sample(record, completion.text, variant=variant, sample_id=f"{rid}#{s}"))
            rows.append(_row(record, rid, s, completion))
    report = run_harness(reward_obj, samples, batch_size=batch_size, workers=workers, timeout=timeout,
                         retries=retries)
    for row, result in zip(rows, report.results, strict=True):
        row["reward"] = float(result.score) if result.status == "ok" and result.score is not None else math.nan
        row["status"] = result.status
        row["components"] = json.dumps(result.metrics or {}, sort_keys=True)
        row["error"] = result.error or ""
    frame = pd.DataFrame(rows)
    order = [*COLUMNS, *(c for c in EXTRA_COLUMNS if c in frame.columns), "error"]
    frame = frame[order]
    frame["sample"] = frame["sample"].astype("int64")
    frame["num_tokens"] = frame["num_tokens"].astype("int64")
    frame["reward"] = frame["reward"].astype("float64")
    frame.attrs["sampling"] = sampling_record(generator, reward_obj, k, max_new_tokens, temperature, seed, variant)
    return frame


def sampling_record(generator: Any, reward: Any, k: int, max_new_tokens: int, temperature: float, seed: int,
                    variant: str) -> dict[str, Any]:
    """How a samples frame was made, kept in its parquet file (`frame.attrs`): `compare` refuses to pair
    frames sampled or scored differently, because the difference would not come from the weights."""
    described = generator.describe() if hasattr(generator, "describe") else {}
    return {"k": int(k), "max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "seed": int(seed),
            "top_k": described.get("top_k"), "top_p": described.get("top_p"), "variant": variant,
            "reward": getattr(reward, "spec", "") or getattr(reward, "name", ""), "generator": described}


def prompt_ids(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The `prompt_id` each record gets in a samples frame (its id, or a stable hash of its messages)."""
    from nbkit.rewards.contract import record_id

    return [record_id(dict(r)) for r in records]


def write_samples(frame: Any, stage_dir: str | Path) -> Path:
    """`<stage>/samples.parquet`, the frame notebooks 06 and 07 read."""
    path = Path(stage_dir) / SAMPLES
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def _prompt(record: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """The conversation the model continues: the record's turns without a trailing assistant answer."""
    from nbkit.policy.base import without_answer

    messages = record.get("messages") if isinstance(record, Mapping) else None
    if not isinstance(messages, list) or not messages:
        rid = record.get("id", "(no id)") if isinstance(record, Mapping) else "(not a dict)"
        raise UserError(f"record {index} ({rid}) has no 'messages' list: it cannot be prompted; validate the data "
                        "with notebook 01 / `nbkit validate`")
    return without_answer([dict(m) for m in messages])


def _row(record: Mapping[str, Any], rid: str, sample: int, completion: Any) -> dict[str, Any]:
    from nbkit.plain import content_text

    prompt = next((content_text(m.get("content")) for m in reversed(record["messages"]) if m.get("role") == "user"), "")
    row = {
        "prompt_id": rid,
        "sample": sample,
        "prompt": prompt,
        "reference": json.dumps(record.get("reference_answer"), sort_keys=True, ensure_ascii=False, default=str),
        "response": completion.text,
        "num_tokens": int(completion.num_tokens),
        "finish_reason": completion.finish_reason,
    }
    for column in EXTRA_COLUMNS:
        if column in record:
            row[column] = None if record[column] is None else str(record[column])
    return row
