"""Replay: completions produced elsewhere, served through the generator interface.

Sources:
- JSONL, one completion per line, with the prompt as `messages` (a trailing assistant turn is the response)
  or as `prompt` (the last user text), and the answer as `response` / `completion` / `text` / `output`;
  optional `sample`, `num_tokens`, `finish_reason`.
- A `samples.parquet` written by `nbkit.evaluate.sample_and_score` (re-score old outputs with a new reward).
- A Nova RFT evaluation output: `details_*.parquet` (or a folder searched recursively for them), whose
  `predictions[0]` is the generation and `specifics.original_line` the data record (reference section 4).

Prompts are matched by content (every turn, normalized; or the last user text when the source has no
full conversation), so the same analysis runs on managed evaluation results. A prompt with no stored
answer, or fewer stored answers than asked for, is an error that names it: nothing is filled in.
"""

from __future__ import annotations

import ast
import json
import math
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nbkit.errors import UserError
from nbkit.plain import content_text
from nbkit.policy.base import (
    FINISH_REASONS,
    Completion,
    Generator,
    Messages,
    approx_tokens,
    without_answer,
)

RESPONSE_KEYS = ("response", "completion", "text", "output", "generation")
REWARD_KEY = "lambda_reward_score"


class ReplayGenerator(Generator):
    """Serves stored completions for the prompts asked; the seed and sampling settings cannot apply."""

    def __init__(self, path: str | os.PathLike, *, progress: bool = True) -> None:
        self.path = Path(path)
        self.name = f"replay:{path}"
        rows = read_replay(self.path)
        self.by_prompt: dict[str, list[tuple[int, Completion]]] = defaultdict(list)
        self.by_user_text: dict[str, list[tuple[int, Completion]]] = defaultdict(list)
        for row in rows:
            target = self.by_prompt if row["key"] is not None else self.by_user_text
            target[row["key"] if row["key"] is not None else _norm(row["prompt"])].append(
                (row["sample"], row["completion"])
            )
        for table in (self.by_prompt, self.by_user_text):
            for key in table:
                table[key].sort(key=lambda pair: pair[0])
        self.rows = len(rows)
        self.max_new_tokens_seen = max((r["completion"].num_tokens for r in rows), default=0)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"path": str(self.path), "rows": self.rows}

    def _generate(
        self, prompts: list[Messages], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[Completion]]:
        out, missing, short = [], [], []
        for i, prompt in enumerate(prompts):
            stored = self.lookup(prompt)
            if not stored:
                missing.append(i)
            elif len(stored) < n:
                short.append((i, len(stored)))
            out.append([c for _, c in stored[:n]])
        if missing or short:
            problems = []
            if missing:
                problems.append(f"{len(missing)} prompt(s) have no stored completion (first: "
                                f"{_last_user(prompts[missing[0]])!r:.80})")
            if short:
                i, have = short[0]
                problems.append(f"{len(short)} prompt(s) have fewer than n={n} stored completions (first: "
                                f"{_last_user(prompts[i])!r:.60} has {have})")
            raise UserError(
                f"{self.name}: " + "; ".join(problems) + ". Replay serves what the file holds: evaluate the same "
                "prompts the outputs were produced for, and set k to at most the samples per prompt in the file"
            )
        return out

    def lookup(self, prompt: Messages) -> list[tuple[int, Completion]]:
        """Stored completions of a prompt: by the full conversation, else by its last user text."""
        from nbkit.data.records import prompt_key

        found = self.by_prompt.get(prompt_key({"messages": without_answer(prompt)}))
        return found if found else self.by_user_text.get(_norm(_last_user(prompt)), [])


def read_replay(path: Path) -> list[dict[str, Any]]:
    """Rows {key, prompt, sample, completion} from a JSONL file, a samples.parquet, or Nova details parquet(s)."""
    if not path.exists():
        raise UserError(f"replay source {path} does not exist; give a .jsonl file, a details_*.parquet or a folder")
    if path.is_dir() or path.suffix == ".parquet":
        files = sorted(path.rglob("details_*.parquet")) if path.is_dir() else [path]
        if not files and path.is_dir():
            files = sorted(path.rglob("samples.parquet"))
        if not files:
            raise UserError(f"no details_*.parquet (Nova RFT eval output) or samples.parquet under {path}")
        rows = []
        for file in files:
            rows.extend(_parquet_rows(file))
        return rows
    return _jsonl_rows(path)


def _parquet_rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd
    import pyarrow.parquet as pq

    columns = set(pq.read_schema(path).names)
    if "predictions" in columns:
        frame = read_nova_details(path)
        rows: list[dict[str, Any]] = []
        seen: defaultdict[str, int] = defaultdict(int)
        for rec in frame.itertuples(index=False):
            key = _key(rec.record.get("messages")) if rec.record.get("messages") else None
            marker = key if key is not None else _norm(rec.prompt)
            rows.append({"key": key, "prompt": rec.prompt, "sample": seen[marker],
                         "completion": Completion(rec.response, approx_tokens(rec.response), "stop")})
            seen[marker] += 1
        return rows
    if {"prompt", "response"} <= columns:
        frame = pd.read_parquet(path)
        rows = []
        for k, rec in enumerate(frame.to_dict("records")):
            rows.append({"key": None, "prompt": str(rec["prompt"]), "sample": int(rec.get("sample", k)),
                         "completion": _completion(rec, str(rec["response"]), f"{path} row {k}")})
        return rows
    raise UserError(
        f"{path}: not a Nova RFT details parquet (no 'predictions' column) nor a samples.parquet "
        f"(needs 'prompt' and 'response'); its columns are {sorted(columns)}"
    )


def _jsonl_rows(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    seen: defaultdict[str, int] = defaultdict(int)
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(rec, dict):
                raise UserError(f"{where}: each line must be a JSON object, got {type(rec).__name__}")
            messages = rec.get("messages")
            response = next((rec[k] for k in RESPONSE_KEYS if k in rec), None)
            if response is None and isinstance(messages, list) and messages \
                    and isinstance(messages[-1], dict) and messages[-1].get("role") in ("assistant", "nova_assistant"):
                response = content_text(messages[-1].get("content"))
            if response is None:
                raise UserError(f"{where}: no response: give one of {', '.join(RESPONSE_KEYS)} or end "
                                "`messages` with the assistant turn")
            if isinstance(messages, list) and messages:
                key, prompt = _key(messages), _last_user(messages)
            elif isinstance(rec.get("prompt"), str):
                key, prompt = None, rec["prompt"]
            else:
                raise UserError(f"{where}: no prompt: give `messages` (the conversation) or `prompt` (last user text)")
            marker = key if key is not None else _norm(prompt)
            sample = int(rec["sample"]) if "sample" in rec else seen[marker]
            seen[marker] += 1
            rows.append({"key": key, "prompt": prompt, "sample": sample,
                         "completion": _completion(rec, content_text(response), where)})
    if not rows:
        raise UserError(f"{path} holds no completions")
    return rows


def _completion(rec: Mapping[str, Any], text: str, where: str) -> Completion:
    reason = rec.get("finish_reason") or "stop"
    if reason not in FINISH_REASONS:
        raise UserError(f"{where}: finish_reason {reason!r} is not one of {FINISH_REASONS}")
    tokens = rec.get("num_tokens")
    if tokens is None or (isinstance(tokens, float) and math.isnan(tokens)):
        tokens = approx_tokens(text)
    return Completion(text=text, num_tokens=int(tokens), finish_reason=str(reason))


def read_nova_details(path: str | os.PathLike) -> Any:
    """A Nova RFT evaluation `details_*.parquet` (or every one under a folder) as a tidy DataFrame.

    Columns: `sample_id`, `prompt_id` (the record's id, else sample_id), `prompt` (last user text),
    `reference` (JSON of the reference answer), `response` (predictions[0]), `predictions` (all of them),
    `reward` (lambda_reward_score; NaN when absent), `components` (JSON of the other lambda_<name> metrics,
    prefix removed), `record` (the original JSONL line as a dict), `source` (file). Cells may be dicts or
    their Python-repr / JSON strings; both are read. A row that cannot be read is an error naming it.
    """
    import pandas as pd

    root = Path(path)
    files = sorted(root.rglob("details_*.parquet")) if root.is_dir() else [root]
    if not files or not all(f.exists() for f in files):
        raise UserError(f"no Nova RFT details parquet at {root} (look for eval-result/details/model/*/details_*.parquet)")
    rows = []
    for file in files:
        frame = pd.read_parquet(file)
        if "predictions" not in frame.columns:
            raise UserError(f"{file}: no 'predictions' column; columns are {list(frame.columns)}")
        for k, rec in enumerate(frame.to_dict("records")):
            rows.append(_details_row(rec, f"{file} row {k}", file, k))
    columns = ["sample_id", "prompt_id", "prompt", "reference", "response", "predictions", "reward",
               "components", "record", "source"]
    return pd.DataFrame(rows, columns=columns)


def _details_row(rec: Mapping[str, Any], where: str, file: Path, k: int) -> dict[str, Any]:
    predictions = _as_list(_literal(rec.get("predictions"), where, "predictions"))
    if not predictions:
        raise UserError(f"{where}: 'predictions' is empty; the generation is predictions[0]")
    specifics = _literal(rec.get("specifics"), where, "specifics") or {}
    metrics = _literal(rec.get("metrics"), where, "metrics") or {}
    record = _literal(specifics.get("original_line"), where, "specifics.original_line") or {}
    if not isinstance(record, dict):
        raise UserError(f"{where}: specifics.original_line must be the data record (a JSON object)")
    scores = _flat_lambda_metrics(metrics)
    reward = scores.pop("reward_score", math.nan)
    sample_id = specifics.get("sample_id")
    sample_id = str(sample_id) if sample_id is not None else f"{file.stem}-{k}"
    return {
        "sample_id": sample_id,
        "prompt_id": str(record.get("id") or sample_id),
        "prompt": _last_user(record.get("messages") or []),
        "reference": json.dumps(record.get("reference_answer"), sort_keys=True, ensure_ascii=False),
        "response": str(predictions[0]),
        "predictions": [str(p) for p in predictions],
        "reward": float(reward),
        "components": json.dumps(scores, sort_keys=True),
        "record": record,
        "source": str(file),
    }


def _flat_lambda_metrics(metrics: Any) -> dict[str, float]:
    """{name: value} of every `lambda_<name>` number, at the top level or under rft_eval_lambda_metric."""
    out: dict[str, float] = {}
    stack = [metrics]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, value in item.items():
                if isinstance(value, Mapping):
                    stack.append(value)
                elif str(key).startswith("lambda_") and (number := _number(value)) is not None:
                    out[str(key)[len("lambda_"):]] = number
    return out


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def _literal(value: Any, where: str, field: str) -> Any:
    """A cell that is a value already, or its JSON / Python-repr string (Nova writes both)."""
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    if field == "predictions":
        return [value]  # a bare generation, not a stringified list
    raise UserError(f"{where}: {field} is neither JSON nor a Python literal: {text[:80]!r}")


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _key(messages: list[Any]) -> str:
    from nbkit.data.records import prompt_key

    return prompt_key({"messages": without_answer([m for m in messages if isinstance(m, dict)])})


def _last_user(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def _norm(text: str) -> str:
    return " ".join(str(text).split()).lower()
