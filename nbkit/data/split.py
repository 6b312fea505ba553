"""Seeded train/eval split that cannot leak: copies of one prompt always land in the same split."""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from nbkit.data.records import prompt_key
from nbkit.errors import UserError

MISSING = "<missing>"


def field_value(record: dict[str, Any], path: str) -> Any:
    """A record's value at a dotted path (`difficulty_level`, `reference_answer.tool_called`); MISSING if absent."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _stratum(record: dict[str, Any], path: str) -> str:
    value = field_value(record, path)
    return value if isinstance(value, str) else repr(value) if value is not MISSING else MISSING


def split_records(
    records: list[dict[str, Any]],
    eval_fraction: float = 0.2,
    seed: int = 0,
    stratify_by: str = "",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, eval): a seeded split of `records`, by prompt group, optionally stratified by a field.

    Records with the same normalized prompt form one group and move together, so the split adds no train/eval
    leakage. With `stratify_by` (a field or dotted path, e.g. `difficulty_level`), each value gets its share of
    eval separately, so both splits keep the same mix; records without the field form their own stratum.
    Every record ends up in exactly one split; order inside a split is seeded-random.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise UserError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    if len(records) < 2:
        raise UserError(f"cannot split {len(records)} record(s); a split needs at least 2 (give eval_data instead)")
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[prompt_key(record)].append(record)
    strata: dict[str, list[list[dict[str, Any]]]] = defaultdict(list)
    for members in groups.values():
        strata[_stratum(members[0], stratify_by) if stratify_by else ""].append(members)
    if stratify_by and set(strata) == {MISSING}:
        raise UserError(f"no record has the field {stratify_by!r} to stratify by; check the name or set stratify_by=''")
    rng = random.Random(seed)
    train: list[dict[str, Any]] = []
    eval_: list[dict[str, Any]] = []
    for name in sorted(strata):
        stratum_groups = strata[name]
        rng.shuffle(stratum_groups)
        n_records = sum(len(g) for g in stratum_groups)
        target = round(n_records * eval_fraction)
        taken = 0
        for members in stratum_groups:
            if taken < target and taken + len(members) <= max(target, 1):
                eval_.extend(members)
                taken += len(members)
            else:
                train.extend(members)
    if not eval_ or not train:  # tiny inputs: move one group so neither split is empty
        source, dest = (train, eval_) if not eval_ else (eval_, train)
        key = prompt_key(source[-1])
        moved = [r for r in source if prompt_key(r) == key]
        if len(moved) == len(source):
            raise UserError("every record has the same prompt, so no split can keep eval free of train prompts")
        source[:] = [r for r in source if prompt_key(r) != key]
        dest.extend(moved)
    rng.shuffle(train)
    rng.shuffle(eval_)
    return train, eval_
