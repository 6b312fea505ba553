"""Sampling from a local Hugging Face causal LM (the tiny default model, a downloaded model, a checkpoint).

Batched (prompts x samples per forward pass, left-padded), seeded per batch so a re-run with the same seed,
prompts and batch size gives the same text, greedy at temperature 0, chat template applied when the
tokenizer has one. Sampling settings are exactly the ones asked for: the model's own generation defaults
(Qwen's top_p 0.8, repetition penalty, ...) are not applied, because base and tuned models must be sampled
alike.

The samples of one prompt share its forward pass: `sample_groups` runs each distinct prompt once, copies its
KV cache to its samples and decodes them together, drawing the same random numbers as `model.generate` on the
repeated prompts does, so the text is the same, token for token, at a fraction of the cost (the prompt is most
of the tokens when answers are short). bench/sample.py measures both.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
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
        self._rendered: dict[str, list[int]] = {}  # prompt (as JSON) -> token ids: each is tokenized once

    def describe(self) -> dict[str, Any]:
        return super().describe() | {
            "path": str(self.path), "device": str(self.device), "batch_size": self.batch_size,
            "top_k": self.top_k, "top_p": self.top_p,
        }

    def render(self, prompt: Messages) -> list[int]:
        """Token ids the model sees (tokenized once per distinct prompt, then remembered)."""
        key = json.dumps(prompt, sort_keys=True, ensure_ascii=False, default=str)
        ids = self._rendered.get(key)
        if ids is None:
            ids = self._rendered[key] = self._tokenize(prompt)
        return ids

    def _tokenize(self, prompt: Messages) -> list[int]:
        """The chat template with the assistant header, or plain turns without one."""
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
                done = self._batch([i for i, _ in batch], encoded, max_new_tokens, temperature, seed * 1_000_003 + b)
                for (i, s), completion in zip(batch, done, strict=True):
                    out[i][s] = completion
                task.update(len(batch))
        return cast("list[list[Completion]]", out)  # every slot is filled by now

    def _batch(self, rows: list[int], encoded: list[list[int]], max_new_tokens: int, temperature: float,
               seed: int) -> list[Completion]:
        """One batch of rows (prompt indices, a prompt's samples next to each other), seeded; finish reason
        from whether a stop token appeared."""
        import torch

        prompts: list[Any] = []
        counts: list[int] = []
        for k, i in enumerate(rows):
            if k and rows[k - 1] == i:
                counts[-1] += 1
            else:
                prompts.append(encoded[i])
                counts.append(1)
        torch.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
        generated = sample_groups(
            self.model, prompts, counts, max_new_tokens=max_new_tokens, temperature=temperature,
            top_k=self.top_k, top_p=self.top_p, stop_ids=self.stop_ids, pad_id=self.tokenizer.pad_token_id,
        )
        return [self._completion(row) for row in generated.tolist()]

    def _completion(self, new_ids: list[int]) -> Completion:
        """Text up to the first stop token; tokens counted up to and including it."""
        stop_at = next((k for k, t in enumerate(new_ids) if t in self.stop_ids), None)
        kept = new_ids if stop_at is None else new_ids[: stop_at + 1]
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        return Completion(text=text, num_tokens=len(kept), finish_reason="length" if stop_at is None else "stop")


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: Any = None) -> tuple[Any, Any]:
    """(input ids, attention mask) of left-padded prompts, as decoder-only generation wants them."""
    import torch

    width = max(len(ids) for ids in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def sample_groups(
    model: Any,
    prompts: Sequence[Sequence[int]],
    counts: Sequence[int] | int,
    *,
    max_new_tokens: int,
    temperature: float,
    stop_ids: Sequence[int] | set[int],
    pad_id: int,
    top_k: int = 0,
    top_p: float = 1.0,
) -> Any:
    """New token ids, one row per sample (prompt i repeated counts[i] times, in order), padded after a stop.

    What `model.generate` returns for the left-padded, repeated prompts with these settings (same random
    draws from torch's generator, so the same tokens), but each distinct prompt goes through the model once:
    its KV cache is copied to its samples after the prompt pass. Models whose cache cannot be copied that way
    go through `model.generate` itself. Runs without gradients; the caller seeds torch.
    """
    import torch

    counts = [counts] * len(prompts) if isinstance(counts, int) else list(counts)
    device = model.device
    ids, mask = left_pad(prompts, pad_id, device)
    repeat = torch.tensor(counts, device=device)
    sample = temperature > 0
    stops = torch.tensor(sorted(stop_ids), device=device)
    with torch.no_grad():
        # As generate: positions count real tokens only, and an all-ones mask is dropped (no padding).
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        attention = None if bool((mask == 1).all()) else mask
        keep = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True, **keep)
        cache = out.past_key_values
        if not _shareable(cache):
            return _generate_repeated(model, ids, mask, repeat, max_new_tokens, temperature, top_k, top_p, stops,
                                      pad_id)
        rows = torch.repeat_interleave(torch.arange(len(prompts), device=device), repeat)
        cache.batch_select_indices(rows)
        logits = out.logits[:, -1].to(dtype=torch.float32)[rows]
        attention = attention[rows] if attention is not None else None
        position = positions[rows, -1:]
        del out
        unfinished = torch.ones(len(rows), dtype=torch.long, device=device)
        tokens = []
        for step in range(max_new_tokens):
            if sample:
                probs = torch.nn.functional.softmax(_warp(logits, temperature, top_k, top_p), dim=-1)
                chosen = torch.multinomial(probs, num_samples=1).squeeze(1)
            else:
                chosen = torch.argmax(logits, dim=-1)
            chosen = chosen * unfinished + pad_id * (1 - unfinished)
            tokens.append(chosen)
            unfinished = unfinished & ~torch.isin(chosen, stops)
            if step == max_new_tokens - 1 or unfinished.max() == 0:
                break
            position = position + 1
            if attention is not None:
                attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=-1)
            out = model(input_ids=chosen[:, None], attention_mask=attention, position_ids=position,
                        past_key_values=cache, use_cache=True, **keep)
            logits = out.logits[:, -1].to(dtype=torch.float32)
    return torch.stack(tokens, dim=1)


def _warp(logits: Any, temperature: float, top_k: int, top_p: float) -> Any:
    """Temperature, top-k and top-p exactly as transformers' warpers apply them, in their order."""
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    scores = logits / temperature if temperature != 1.0 else logits
    if top_k:
        scores = TopKLogitsWarper(top_k=top_k)(None, scores)
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p=top_p)(None, scores)
    return scores


def _accepts(model: Any, name: str) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return name in inspect.signature(base.forward).parameters


def _shareable(cache: Any) -> bool:
    """A cache of plain key/value layers (full or sliding attention), which rows can be copied between."""
    from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer

    return type(cache) is DynamicCache and all(
        type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


def _generate_repeated(model: Any, ids: Any, mask: Any, repeat: Any, max_new_tokens: int, temperature: float,
                       top_k: int, top_p: float, stops: Any, pad_id: int) -> Any:
    """The same sampling through `model.generate` on the repeated prompts (models with other caches)."""
    from transformers import GenerationConfig

    sample = temperature > 0
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else None,
        top_k=top_k if sample else None, top_p=top_p if sample else None,
        eos_token_id=stops.tolist(), pad_token_id=pad_id, bos_token_id=None,
    )
    rows_ids, rows_mask = ids.repeat_interleave(repeat, dim=0), mask.repeat_interleave(repeat, dim=0)
    generated = model.generate(input_ids=rows_ids, attention_mask=rows_mask, generation_config=config)
    return generated[:, ids.shape[1]:]


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
