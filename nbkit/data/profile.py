"""What is in an RFT dataset, and what is wrong with it, in plain language.

`profile_data(train, eval)` counts roles, turn patterns, system prompts, tools, reference-answer shapes, extra
fields and lengths (characters and tokens), finds duplicates by id and by normalized prompt, identical prompts
with conflicting reference answers, and train/eval leakage, and checks sizes and lengths against the
documented recommendations and the generation budget. Each problem becomes a `Finding` with a severity.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from nbkit.data.records import (
    BEDROCK_MAX_PROMPTS,
    KNOWN_FIELDS,
    MIN_EVAL,
    MIN_TRAIN,
    full_prompt_text,
    prompt_key,
    prompt_text,
    reference_key,
    system_text,
)

SEVERITIES = ("error", "warning", "info", "ok")  # most to least serious
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_MAX_EXAMPLES = 5
_MAX_CATEGORIES = 20  # an extra field with more distinct values is free text, not a category


@dataclass
class Finding:
    """One statement about the data: how serious, a stable code, what it means and what to do, and examples."""

    severity: str
    code: str
    message: str
    count: int = 0
    examples: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- tokens


def approx_tokens(text: str) -> int:
    """Words and punctuation marks: within ~30% of subword tokenizers on English; a default that needs no model."""
    return len(_TOKEN_RE.findall(text))


def token_counter(tokenizer: Any = None) -> Callable[[str], int]:
    """A text -> token count function from whatever the user has.

    None: the regex approximation. A str: a local Hugging Face tokenizer folder (loaded offline). An object
    with `.encode` (HF `PreTrainedTokenizer`, `tokenizers.Tokenizer`): its token ids, without special tokens.
    Any other callable: its result, an int or a sequence of tokens.
    """
    if tokenizer is None or tokenizer == "":
        return approx_tokens
    if isinstance(tokenizer, str):
        from transformers import AutoTokenizer  # lazy: transformers takes seconds to import

        tokenizer = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    if hasattr(tokenizer, "encode"):
        encode = tokenizer.encode

        def count(text: str) -> int:
            try:
                out = encode(text, add_special_tokens=False)
            except TypeError:  # tokenizers.Tokenizer.encode has no such keyword
                out = encode(text)
            return len(out.ids) if hasattr(out, "ids") else len(out)

        return count
    if callable(tokenizer):
        def count_callable(text: str) -> int:
            out = tokenizer(text)
            return out if isinstance(out, int) else len(out)

        return count_callable
    raise TypeError(f"tokenizer must be None, a folder path, a tokenizer or a callable, got {type(tokenizer).__name__}")


# ---------------------------------------------------------------- per-split summary


def reference_text(reference: Any) -> str:
    """What a model would have to write to give the reference answer: the string, or an object's leaf values."""
    if isinstance(reference, str):
        return reference
    if isinstance(reference, dict):
        return " ".join(reference_text(v) for v in reference.values())
    if isinstance(reference, list):
        return " ".join(reference_text(v) for v in reference)
    return "" if reference is None else str(reference)


_KIND_NAMES: dict[type, str] = {str: "string", dict: "object"}


def _reference_kind(record: dict[str, Any]) -> str:
    if "reference_answer" not in record:
        return "absent"
    ref = record["reference_answer"]
    if ref is None or ref == "" or ref == {} or ref == [] or (isinstance(ref, str) and not ref.strip()):
        return "empty"
    return _KIND_NAMES.get(type(ref), type(ref).__name__)


def _stats(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])

    return {"min": float(ordered[0]), "mean": round(statistics.fmean(ordered), 2), "p50": pct(0.5),
            "p90": pct(0.9), "p99": pct(0.99), "max": float(ordered[-1])}


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else json.dumps(value, sort_keys=True)


def _summarize(records: list[dict[str, Any]], lengths: list[dict[str, Any]]) -> dict[str, Any]:
    roles: Counter = Counter()
    patterns: Counter = Counter()
    systems: Counter = Counter()
    tool_names: Counter = Counter()
    ref_kinds: Counter = Counter()
    ref_keys: Counter = Counter()
    fields: Counter = Counter()
    values: dict[str, Counter] = defaultdict(Counter)
    with_tools = 0
    for record in records:
        messages = record.get("messages") or []
        turn = [str(m.get("role")) for m in messages if isinstance(m, dict)]
        roles.update(turn)
        patterns[">".join(turn)] += 1
        systems[system_text(record)] += 1
        tools = record.get("tools") or []
        if tools:
            with_tools += 1
            tool_names.update(t.get("function", {}).get("name", "?") for t in tools if isinstance(t, dict))
        kind = _reference_kind(record)
        ref_kinds[kind] += 1
        if kind == "object":
            ref_keys.update(record["reference_answer"].keys())
        for name, value in record.items():
            if name not in KNOWN_FIELDS:
                fields[name] += 1
                values[name][_hashable(value)] += 1
    categories = {name: dict(c.most_common()) for name, c in values.items() if len(c) <= _MAX_CATEGORIES}
    return {
        "records": len(records),
        "roles": dict(roles.most_common()),
        "turn_patterns": dict(patterns.most_common()),
        "system_prompts": {"variants": len([s for s in systems if s]), "without": systems.get("", 0),
                           "top": [{"text": s, "count": n} for s, n in systems.most_common(10) if s]},
        "tools": {"records_with_tools": with_tools, "names": dict(tool_names.most_common())},
        "reference_answer": {"kinds": dict(ref_kinds.most_common()), "keys": dict(ref_keys.most_common())},
        "extra_fields": dict(fields.most_common()),
        "categories": categories,
        "lengths": {key: _stats([row[key] for row in lengths])
                    for key in ("prompt_chars", "prompt_tokens", "reference_chars", "reference_tokens")},
    }


# ---------------------------------------------------------------- the profile


@dataclass
class DataProfile:
    """Summaries per split, per-record lengths, duplicate/conflict/leakage tables, and the findings."""

    splits: dict[str, dict[str, Any]]
    lengths: list[dict[str, Any]]
    duplicates: list[dict[str, Any]]
    conflicts: list[dict[str, Any]]
    leakage: list[dict[str, Any]]
    findings: list[Finding]
    settings: dict[str, Any]

    @property
    def worst(self) -> str:
        """The most serious severity among the findings ("ok" when there is nothing to report)."""
        present = {f.severity for f in self.findings}
        return next((s for s in SEVERITIES if s in present), "ok")

    def count(self, severity: str) -> int:
        return sum(f.severity == severity for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form for report.json (per-record lengths are left out: they are in the splits)."""
        return {
            "settings": self.settings, "splits": self.splits, "duplicates": self.duplicates,
            "conflicts": self.conflicts, "leakage": self.leakage,
            "findings": [asdict(f) for f in self.findings],
        }

    def describe(self) -> str:
        """The findings as plain text, most serious first."""
        order = {s: i for i, s in enumerate(SEVERITIES)}
        return "\n".join(f"[{f.severity}] {f.message}" for f in sorted(self.findings, key=lambda f: order[f.severity]))

    def findings_frame(self) -> Any:
        import pandas as pd

        order = {s: i for i, s in enumerate(SEVERITIES)}
        rows = sorted((asdict(f) for f in self.findings), key=lambda r: order[r["severity"]])
        return pd.DataFrame(rows, columns=["severity", "code", "message", "count", "examples"])

    def lengths_frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.lengths, columns=["split", "id", "prompt_chars", "prompt_tokens",
                                                   "reference_chars", "reference_tokens"])

    def duplicates_frame(self) -> Any:
        import pandas as pd

        rows = [{"kind": "duplicate " + d["kind"], **{k: v for k, v in d.items() if k != "kind"}}
                for d in self.duplicates]
        rows += [{"kind": "conflicting reference", **c} for c in self.conflicts]
        rows += [{"kind": "leakage " + x["kind"], **{k: v for k, v in x.items() if k != "kind"}} for x in self.leakage]
        return pd.DataFrame(rows, columns=["kind", "split", "key", "count", "ids"])


def _length_rows(split: str, records: list[dict[str, Any]], count: Callable[[str], int]) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        prompt = full_prompt_text(record)
        reference = reference_text(record.get("reference_answer"))
        rows.append({"split": split, "id": record.get("id"), "prompt_chars": len(prompt),
                     "prompt_tokens": count(prompt), "reference_chars": len(reference),
                     "reference_tokens": count(reference)})
    return rows


def _show_prompt(record: dict[str, Any], limit: int = 80) -> str:
    text = prompt_text(record) or full_prompt_text(record)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duplicates(split: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_prompt: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if isinstance(record.get("id"), str):
            by_id[record["id"]].append(record)
        by_prompt[prompt_key(record)].append(record)
    for rid, group in by_id.items():
        if len(group) > 1:
            out.append({"kind": "id", "split": split, "key": rid, "count": len(group), "ids": [rid]})
    for group in by_prompt.values():
        if len(group) > 1:
            out.append({"kind": "prompt", "split": split, "key": _show_prompt(group[0]), "count": len(group),
                        "ids": [str(r.get("id")) for r in group]})
    return out


def _conflicts(splits: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Identical prompts (anywhere in the data) whose reference answers differ: the reward contradicts itself."""
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for split, records in splits.items():
        for record in records:
            groups[prompt_key(record)].append((split, record))
    out = []
    for members in groups.values():
        answers = {reference_key(r) for _, r in members}
        if len(answers) > 1:
            out.append({"split": "+".join(sorted({s for s, _ in members})), "key": _show_prompt(members[0][1]),
                        "count": len(members), "ids": [str(r.get("id")) for _, r in members],
                        "answers": sorted(answers)})
    return out


def _leakage(train: list[dict[str, Any]], eval_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    train_prompts = {prompt_key(r) for r in train}
    train_ids = {r.get("id") for r in train if isinstance(r.get("id"), str)}
    out = []
    for record in eval_:
        if prompt_key(record) in train_prompts:
            out.append({"kind": "prompt", "split": "eval", "key": _show_prompt(record), "count": 1,
                        "ids": [str(record.get("id"))]})
        elif record.get("id") in train_ids:
            out.append({"kind": "id", "split": "eval", "key": record["id"], "count": 1, "ids": [record["id"]]})
    return out


def profile_data(
    train: list[dict[str, Any]],
    eval: list[dict[str, Any]] | None = None,  # noqa: A002 - the split's name
    *,
    tokenizer: Any = None,
    max_prompt_tokens: int = 0,
    max_new_tokens: int = 0,
    profile: str = "sagemaker",
) -> DataProfile:
    """Profile valid records: summaries, lengths, duplicates, conflicts, leakage, and findings.

    `max_prompt_tokens`/`max_new_tokens` (0 = not checked) are the generation budget the lengths are checked
    against; `tokenizer` is anything `token_counter` accepts; `profile` adds Bedrock's size limits.
    """
    count = token_counter(tokenizer)
    splits = {"train": train} if eval is None else {"train": train, "eval": eval}
    lengths = [row for name, records in splits.items() for row in _length_rows(name, records, count)]
    summaries = {name: _summarize(records, [r for r in lengths if r["split"] == name])
                 for name, records in splits.items()}
    duplicates = [d for name, records in splits.items() for d in _duplicates(name, records)]
    conflicts = _conflicts(splits)
    leakage = _leakage(train, eval) if eval is not None else []
    settings = {"tokenizer": "regex approximation" if tokenizer in (None, "") else str(tokenizer)[:200],
                "max_prompt_tokens": max_prompt_tokens, "max_new_tokens": max_new_tokens, "profile": profile}
    result = DataProfile(summaries, lengths, duplicates, conflicts, leakage, [], settings)
    result.findings = _findings(result, splits, profile, max_prompt_tokens, max_new_tokens, tokenizer is None)
    return result


# ---------------------------------------------------------------- findings


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "0%"


def _findings(p: DataProfile, splits: dict[str, list[dict[str, Any]]], profile: str, max_prompt_tokens: int,
              max_new_tokens: int, approx: bool) -> list[Finding]:
    out: list[Finding] = []
    out += _size_findings(splits, profile)
    out += _duplicate_findings(p)
    out += _reference_findings(p, splits)
    out += _length_findings(p, max_prompt_tokens, max_new_tokens, approx)
    out += _shape_findings(p, splits)
    out += _mix_findings(p)
    return out


def _size_findings(splits: dict[str, list[dict[str, Any]]], profile: str) -> list[Finding]:
    out = []
    n_train = len(splits["train"])
    if n_train < MIN_TRAIN:
        out.append(Finding("warning", "small_train", f"train has {n_train} records; AWS recommends starting RFT with "
                           f"at least {MIN_TRAIN} training examples. Add data before a paid run.", n_train))
    else:
        out.append(Finding("ok", "train_size", f"train has {n_train:,} records (>= {MIN_TRAIN} recommended).", n_train))
    if "eval" not in splits:
        out.append(Finding("warning", "no_eval", "there is no evaluation split; hold out at least "
                           f"{MIN_EVAL} examples to measure the tuned model on prompts it did not train on."))
    elif len(splits["eval"]) < MIN_EVAL:
        n = len(splits["eval"])
        out.append(Finding("warning", "small_eval", f"eval has {n} records; at least {MIN_EVAL} are recommended, "
                           "fewer give wide confidence intervals on the base-vs-tuned comparison.", n))
    else:
        n = len(splits["eval"])
        out.append(Finding("ok", "eval_size", f"eval has {n:,} records (>= {MIN_EVAL} recommended).", n))
    if profile == "bedrock" and not MIN_TRAIN <= n_train <= BEDROCK_MAX_PROMPTS:
        out.append(Finding("error", "bedrock_size", f"Bedrock RFT takes {MIN_TRAIN} to {BEDROCK_MAX_PROMPTS:,} "
                           f"training prompts; train has {n_train:,}. "
                           + ("Add examples." if n_train < MIN_TRAIN else "Subsample or use SageMaker."), n_train))
    return out


def _duplicate_findings(p: DataProfile) -> list[Finding]:
    out = []
    for d in p.duplicates:
        if d["kind"] == "id":
            out.append(Finding("warning", "duplicate_id", f"id {d['key']!r} is used by {d['count']} records in "
                               f"{d['split']}; results cannot be traced back to one example. Make ids unique.",
                               d["count"], d["ids"][:_MAX_EXAMPLES]))
    prompt_dups = [d for d in p.duplicates if d["kind"] == "prompt"]
    for split in sorted({d["split"] for d in prompt_dups}):
        groups = [d for d in prompt_dups if d["split"] == split]
        extra = sum(d["count"] - 1 for d in groups)
        out.append(Finding(
            "warning", "duplicate_prompt",
            f"{len(groups)} prompt(s) appear more than once in {split} ({extra} extra copies): training weighs them "
            "more and evaluation counts them twice. Remove the copies unless the weighting is intended.",
            extra, [d["key"] for d in groups[:_MAX_EXAMPLES]],
        ))
    if not p.duplicates:
        out.append(Finding("ok", "no_duplicates", "no duplicate ids or prompts within a split."))
    if p.conflicts:
        n = len(p.conflicts)
        out.append(Finding(
            "error", "conflicting_references",
            f"{n} prompt(s) appear with different reference answers: the reward will score the same answer both "
            "right and wrong. Keep one reference per prompt (or merge them into one accepting both).",
            n, [f"{c['key']} -> {' | '.join(c['answers'])[:120]}" for c in p.conflicts[:_MAX_EXAMPLES]],
        ))
    if "eval" in p.splits:
        leaked = [x for x in p.leakage if x["kind"] == "prompt"]
        shared_ids = [x for x in p.leakage if x["kind"] == "id"]
        n_eval = p.splits["eval"]["records"]
        if leaked:
            out.append(Finding(
                "error", "leakage",
                f"{len(leaked)} eval prompt(s) ({_pct(len(leaked), n_eval)} of eval) also appear in train: scores on "
                "them measure memory, not generalization. Remove them from eval or re-split by prompt.",
                len(leaked), [x["key"] for x in leaked[:_MAX_EXAMPLES]],
            ))
        if shared_ids:
            out.append(Finding(
                "warning", "shared_ids", f"{len(shared_ids)} eval record(s) reuse a train id with a different prompt; "
                "reports that join on id will mix them up. Give each split its own ids.",
                len(shared_ids), [x["key"] for x in shared_ids[:_MAX_EXAMPLES]],
            ))
        if not leaked and not shared_ids:
            out.append(Finding("ok", "no_leakage", "no eval prompt or id appears in train."))
    return out


def _reference_findings(p: DataProfile, splits: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    out = []
    kinds: Counter = Counter()
    keys: Counter = Counter()
    for s in p.splits.values():
        kinds.update(s["reference_answer"]["kinds"])
        keys.update(s["reference_answer"]["keys"])
    total = sum(kinds.values())
    lacking = kinds.get("absent", 0) + kinds.get("empty", 0)
    if lacking:
        examples = [str(r.get("id")) for recs in splits.values() for r in recs
                    if _reference_kind(r) in ("absent", "empty")][:_MAX_EXAMPLES]
        out.append(Finding(
            "warning", "missing_references",
            f"{lacking} record(s) ({_pct(lacking, total)}) have no or an empty reference_answer; a reward that "
            "compares with a reference will score them 0 whatever the model says.", lacking, examples,
        ))
    present = {k: n for k, n in kinds.items() if k not in ("absent", "empty")}
    if len(present) > 1:
        shown = ", ".join(f"{k}: {n}" for k, n in present.items())
        out.append(Finding("warning", "mixed_reference_types", f"reference_answer has several types ({shown}); the "
                           "reward function must handle each. Use one shape throughout.", len(present)))
    n_objects = kinds.get("object", 0)
    partial = {k: n for k, n in keys.items() if n < n_objects}
    if partial:
        shown = ", ".join(f"{k!r} in {n} of {n_objects}" for k, n in partial.items())
        out.append(Finding("info", "partial_reference_keys", f"some reference_answer keys are not in every object "
                           f"({shown}); the reward must tolerate their absence.", len(partial)))
    if n_objects and not partial:
        out.append(Finding("info", "reference_keys", f"every reference_answer object has the keys "
                           f"{', '.join(map(repr, keys))}.", n_objects))
    return out


def _length_findings(p: DataProfile, max_prompt_tokens: int, max_new_tokens: int, approx: bool) -> list[Finding]:
    out = []
    unit = "tokens (approximate: words and punctuation)" if approx else "tokens"
    for name, s in p.splits.items():
        stats = s["lengths"]["prompt_tokens"]
        if stats:
            out.append(Finding("info", "prompt_lengths", f"{name} prompts: median {stats['p50']:.0f}, p99 "
                               f"{stats['p99']:.0f}, max {stats['max']:.0f} {unit}.", s["records"]))
    if max_prompt_tokens:
        over = [r for r in p.lengths if r["prompt_tokens"] > max_prompt_tokens]
        if over:
            out.append(Finding(
                "warning", "prompt_over_budget",
                f"{len(over)} prompt(s) ({_pct(len(over), len(p.lengths))}) are longer than max_prompt_tokens="
                f"{max_prompt_tokens} (longest {max(r['prompt_tokens'] for r in over)}); they will be truncated or "
                "rejected. Shorten them or raise the limit.", len(over), [str(r["id"]) for r in over[:_MAX_EXAMPLES]],
            ))
        else:
            out.append(Finding("ok", "prompts_fit", f"every prompt fits max_prompt_tokens={max_prompt_tokens}."))
    if max_new_tokens:
        over = [r for r in p.lengths if r["reference_tokens"] > max_new_tokens]
        if over:
            out.append(Finding(
                "warning", "answer_over_budget",
                f"{len(over)} reference answer(s) are longer than max_new_tokens={max_new_tokens}: the model cannot "
                "write them in full within the generation budget. Raise max_new_tokens or shorten the answers.",
                len(over), [str(r["id"]) for r in over[:_MAX_EXAMPLES]],
            ))
        else:
            out.append(Finding("ok", "answers_fit", f"every reference answer fits max_new_tokens={max_new_tokens}."))
    return out


def _shape_findings(p: DataProfile, splits: dict[str, list[dict[str, Any]]]) -> list[Finding]:
    out = []
    patterns: Counter = Counter()
    systems: Counter = Counter()
    without = 0
    tools = 0
    names: Counter = Counter()
    fields: Counter = Counter()
    for s in p.splits.values():
        patterns.update(s["turn_patterns"])
        for item in s["system_prompts"]["top"]:
            systems[item["text"]] += item["count"]
        without += s["system_prompts"]["without"]
        tools += s["tools"]["records_with_tools"]
        names.update(s["tools"]["names"])
        fields.update(s["extra_fields"])
    total = sum(patterns.values())
    shown = ", ".join(f"{k or '(none)'}: {n}" for k, n in patterns.most_common(5))
    out.append(Finding("info", "turn_patterns", f"turn patterns: {shown}.", len(patterns)))
    multi = sum(n for k, n in patterns.items() if any(r in k.split(">") for r in ("assistant", "tool")))
    if multi:
        out.append(Finding("warning", "multi_turn", f"{multi} prompt(s) have assistant or tool turns; managed Nova RFT "
                           "(SageMaker, Bedrock) takes single-turn prompts only (multi-turn needs Nova Forge).", multi))
    if len(systems) > 1:
        top, n_top = systems.most_common(1)[0]
        out.append(Finding("info", "system_prompt_variants", f"{len(systems)} different system prompts; the most "
                           f"common ({_pct(n_top, total)}) is {top[:80]!r}. Check the variety is intended.",
                           len(systems), [s[:80] for s in systems]))
    elif systems:
        out.append(Finding("info", "system_prompt", f"one system prompt for {_pct(total - without, total)} of records: "
                           f"{next(iter(systems))[:80]!r}.", 1))
    if systems and without:
        out.append(Finding("info", "some_without_system", f"{without} record(s) have no system prompt while others "
                           "do; the model sees two kinds of prompt.", without))
    if tools:
        out.append(Finding("info", "tools", f"{tools} record(s) ({_pct(tools, total)}) offer tools: "
                           f"{', '.join(f'{k} ({n})' for k, n in names.most_common(10))}.", tools))
    if fields:
        shown = ", ".join(f"{k} ({_pct(n, total)})" for k, n in fields.most_common(10))
        out.append(Finding("info", "extra_fields", f"extra fields passed to the reward function as metadata: {shown}.",
                           len(fields)))
    return out


def _mix_findings(p: DataProfile) -> list[Finding]:
    """Categorical fields whose mix differs between train and eval: scores would not compare like with like."""
    if "eval" not in p.splits:
        return []
    out = []
    train_cats = p.splits["train"]["categories"]
    eval_cats = p.splits["eval"]["categories"]
    for name in sorted(set(train_cats) & set(eval_cats)):
        a, b = train_cats[name], eval_cats[name]
        na, nb = sum(a.values()), sum(b.values())
        distance = 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))
        if distance > 0.15:
            out.append(Finding("warning", "mix_shift", f"the mix of {name!r} differs between train and eval (total "
                               f"variation {distance:.2f}); split with stratify_by={name!r} to compare like with like.",
                               0, [f"train {a}", f"eval {b}"]))
    return out


def roles_and_fields(p: DataProfile) -> dict[str, dict[str, dict[str, int]]]:
    """{chart name: {split: {category: count}}} for the field and role distribution plots."""
    charts: dict[str, dict[str, dict[str, int]]] = {"roles": {}, "reference_answer": {}}
    for split, s in p.splits.items():
        charts["roles"][split] = s["roles"]
        charts["reference_answer"][split] = s["reference_answer"]["kinds"]
        for name, values in s["categories"].items():
            charts.setdefault(name, {})[split] = {str(k): v for k, v in values.items()}
    return charts
