"""Sampling from a local Hugging Face causal LM (the tiny default model, a downloaded model, a checkpoint).

Batched (prompts x samples per forward pass, left-padded), seeded per batch so a re-run with the same seed,
prompts and batch size gives the same text, greedy at temperature 0, chat template applied when the
tokenizer has one. Sampling settings are exactly the ones asked for: the model's own generation defaults
(Qwen's top_p 0.8, repetition penalty, ...) are not applied, because base and tuned models must be sampled
alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from nbkit.errors import UserError
from nbkit.policy.base import Completion, Generator, Messages


class HFGenerator(Generator):
    """Generator over a local model folder (config.json) or a PEFT adapter folder (adapter_config.json)."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 64,
        top_k: int = 0,
        top_p: float = 1.0,
        threads: int | None = None,
        progress: bool = True,
    ) -> None:
        self.path = Path(path)
        if not (self.path / "config.json").exists() and not (self.path / "adapter_config.json").exists():
            raise UserError(
                f"model {str(path)!r} is not a local Hugging Face model folder (no config.json or adapter_config.json); "
                "no model hub is reachable here: pass a folder written by save_pretrained(), or model='tiny'"
            )
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1 sequences, got {batch_size}")
        self.name = str(path)
        self.batch_size = batch_size
        self.top_k, self.top_p = top_k, top_p
        self.progress = progress
        if threads:
            import torch

            torch.set_num_threads(threads)
        self._attach(*load_model(self.path, device, dtype))

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str = "in-memory", batch_size: int = 64,
                   progress: bool = False) -> HFGenerator:
        """Wrap a model already in memory (the policy being trained), so validation during training generates
        exactly as evaluation does."""
        self = cls.__new__(cls)
        self.path, self.name, self.batch_size = Path(name), name, batch_size
        self.top_k, self.top_p, self.progress = 0, 1.0, progress
        self._attach(tokenizer, model)
        return self

    def _attach(self, tokenizer: Any, model: Any) -> None:
        self.tokenizer, self.model = tokenizer, model
        self.device = model.device
        self.stop_ids = stop_token_ids(model, tokenizer)

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "path": str(self.path), "device": str(self.device), "batch_size": self.batch_size,
            "top_k": self.top_k, "top_p": self.top_p,
        }

    def render(self, prompt: Messages) -> list[int]:
        """Token ids the model sees: the chat template with the assistant header, or plain turns without one."""
        tok = self.tokenizer
        if tok.chat_template:
            ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
            if hasattr(ids, "keys"):
                ids = ids["input_ids"]
            return list(ids)
        text = "\n".join(m["content"] for m in prompt) + "\n"
        return tok(text, add_special_tokens=True)["input_ids"]

    def _generate(
        self, prompts: list[Messages], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[Completion]]:
        from nbkit.progress import Task

        encoded = [self.render(p) for p in prompts]
        limit = getattr(self.model.config, "max_position_embeddings", None)
        too_long = [i for i, ids in enumerate(encoded) if limit and len(ids) + max_new_tokens > limit]
        if too_long:
            raise UserError(
                f"{len(too_long)} prompt(s) (e.g. index {too_long[0]}, {len(encoded[too_long[0]])} tokens) plus "
                f"max_new_tokens={max_new_tokens} exceed the model's {limit} positions; shorten them or lower max_new_tokens"
            )
        rows = [(i, s) for i in range(len(prompts)) for s in range(n)]
        out: list[list[Completion | None]] = [[None] * n for _ in prompts]
        with Task(f"generating {len(rows)} samples", total=len(rows), unit="sample", bar=self.progress) as task:
            for b, start in enumerate(range(0, len(rows), self.batch_size)):
                batch = rows[start : start + self.batch_size]
                done = self._batch([encoded[i] for i, _ in batch], max_new_tokens, temperature, seed * 1_000_003 + b)
                for (i, s), completion in zip(batch, done, strict=True):
                    out[i][s] = completion
                task.update(len(batch))
        return cast("list[list[Completion]]", out)  # every slot is filled by now

    def _batch(self, batch: list[list[int]], max_new_tokens: int, temperature: float, seed: int) -> list[Completion]:
        """One left-padded generate call; finish reason from whether a stop token appeared."""
        import torch
        from transformers import GenerationConfig

        pad = self.tokenizer.pad_token_id
        width = max(len(ids) for ids in batch)
        input_ids = torch.tensor([[pad] * (width - len(ids)) + ids for ids in batch], device=self.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch], device=self.device)
        sample = temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
            top_k=self.top_k if sample else None, top_p=self.top_p if sample else None,
            eos_token_id=sorted(self.stop_ids), pad_token_id=pad, bos_token_id=None,
        )
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        with torch.inference_mode():
            generated = self.model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config)
        return [self._completion(row.tolist()) for row in generated[:, width:]]

    def _completion(self, new_ids: list[int]) -> Completion:
        """Text up to the first stop token; tokens counted up to and including it."""
        stop_at = next((k for k, t in enumerate(new_ids) if t in self.stop_ids), None)
        kept = new_ids if stop_at is None else new_ids[: stop_at + 1]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, num_tokens=len(kept), finish_reason="length" if stop_at is None else "stop")


def load_model(path: Path, device: str = "auto", dtype: str = "auto") -> tuple[Any, Any]:
    """Tokenizer (left padding, a pad token) and the model in eval mode on the chosen device."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = _device(device)
    torch_dtype = _dtype(dtype, resolved)
    adapter = (path / "adapter_config.json").exists() and not (path / "config.json").exists()
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
        if adapter:
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except OSError as exc:
        raise UserError(f"could not load the model in {path}: {exc}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(resolved).eval()
    return tokenizer, model


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every token that ends a turn: the generation config's eos ids and the tokenizer's eos."""
    ids: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    if not ids:
        raise UserError("the model has no end-of-sequence token (generation_config.eos_token_id, tokenizer.eos_token)")
    return ids


def _device(device: str) -> Any:
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:N'") from None


def _dtype(dtype: str, device: Any) -> Any:
    """fp32 on CPU (bf16 matmuls are slow there), bf16 on a GPU, unless told otherwise."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if not hasattr(torch, dtype):
        raise UserError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return getattr(torch, dtype)
