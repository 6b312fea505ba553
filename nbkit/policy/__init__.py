"""Policies: where completions come from. One interface (`Generator.generate`) over a local Hugging Face
model (the tiny default model, any local folder, a LoRA checkpoint), Bedrock Converse, and replayed outputs.

`load_generator(model)` reads the model spec used everywhere in the workbench:
- `tiny`: the default local model, built offline from the training split and cached (see nbkit.policy.tiny);
- a local folder holding a Hugging Face model (config.json) or a PEFT adapter (adapter_config.json);
- `bedrock:<model id or ARN>`: a Nova base model or a custom model, through the Converse API;
- `replay:<path>`: completions produced elsewhere (JSONL, samples.parquet, Nova RFT eval details parquet).
Heavy libraries (torch, transformers, boto3, pandas) load only when a generator is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nbkit.errors import UserError
from nbkit.policy.base import FINISH_REASONS, Completion, Generator

__all__ = ["FINISH_REASONS", "Completion", "Generator", "ModelRef", "load_generator", "resolve_local_model"]

ModelKind = Literal["tiny", "local", "bedrock", "replay"]


@dataclass(frozen=True)
class ModelRef:
    """A model spec as the params files write it, parsed once: `tiny`, a local folder, `bedrock:<id or ARN>`
    or `replay:<path>`. `target` is what follows the prefix (the folder for `local`, "" for `tiny`)."""

    kind: ModelKind
    target: str

    @classmethod
    def parse(cls, model: str) -> ModelRef:
        spec = str(model).strip()
        prefixed: tuple[ModelKind, ...] = ("bedrock", "replay")
        for kind in prefixed:
            if spec.startswith(f"{kind}:"):
                return cls(kind, spec[len(kind) + 1:])
        if spec == "tiny":
            return cls("tiny", "")
        if not spec:
            raise UserError("model is empty: use 'tiny', a local model folder, bedrock:<model id> or replay:<path>")
        return cls("local", spec)

    @property
    def remote(self) -> bool:
        """Completions come from elsewhere (a service or a file): no local weights, threads or batches."""
        return self.kind in ("bedrock", "replay")

    def __str__(self) -> str:
        return {"tiny": "tiny", "local": self.target}.get(self.kind, f"{self.kind}:{self.target}")


def load_generator(model: str, **kw: Any) -> Generator:
    """The generator for a model spec; keyword arguments go to the generator (device, batch_size, ...).

    For `tiny`, also: `train_records` (the training split) or `run_dir` (read from <run>/data/train.jsonl),
    `recipe` (a tiny-model recipe name or overrides) and `cache_dir`. `run_dir` also anchors relative folders.
    """
    ref = ModelRef.parse(model)
    if ref.kind == "bedrock":
        from nbkit.policy.bedrock import BedrockGenerator

        kw.pop("run_dir", None)  # nothing of a remote model lives in the run folder
        return BedrockGenerator(ref.target, **kw)
    if ref.kind == "replay":
        from nbkit.policy.replay import ReplayGenerator

        return ReplayGenerator(_anchor(ref.target, kw.pop("run_dir", "")), **kw)
    from nbkit.policy.hf import HFGenerator

    local = {k: kw.pop(k) for k in ("train_records", "run_dir", "recipe", "cache_dir") if k in kw}
    return HFGenerator(resolve_local_model(str(ref), **local), **kw)


def resolve_local_model(
    model: str,
    *,
    train_records: Sequence[Mapping[str, Any]] | None = None,
    run_dir: str | os.PathLike = "",
    recipe: Any = None,
    cache_dir: str | os.PathLike | None = None,
    threads: int | None = None,
) -> Path:
    """The folder of a local model spec: `tiny` is built (or reused) from the training split, else a path."""
    ref = ModelRef.parse(model)
    if ref.kind == "tiny":
        from nbkit.policy.tiny import ensure_tiny_model

        if train_records is None:
            from nbkit.data import load_split

            train_records = load_split(run_dir, "train")
        return ensure_tiny_model(train_records, cache_dir=cache_dir, recipe=recipe, threads=threads)
    if ref.remote:
        raise UserError(f"model {model!r} has no local weights: a local folder or 'tiny' is needed here")
    return _anchor(ref.target, run_dir)


def _anchor(path: str, run_dir: str | os.PathLike = "") -> Path:
    """A relative path as given if it exists, else inside the run folder, else under the project root."""
    from nbkit import paths

    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    for base in ([paths.run_dir(run_dir)] if str(run_dir) else []) + [paths.ROOT]:
        if (base / candidate).exists():
            return base / candidate
    return candidate
