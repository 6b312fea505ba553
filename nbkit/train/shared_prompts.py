"""GRPO's rollouts of one prompt share the prompt's forward pass, when sampling and when scoring with gradients.

TRL repeats each prompt `num_generations` times and runs every copy through the model, twice a step: to sample
the completions and to compute their log-probabilities for the loss. With short answers the prompt is most of
the tokens (the demo: 16 distinct prompts of ~38 tokens, 128 completions of at most 8), so the local trainer
runs each distinct prompt once and copies its KV cache to its rollouts:

- sampling goes through `nbkit.policy.hf.sample_groups`: the tokens `model.generate` would draw, for the same
  random state, so training sees exactly the rollouts TRL's own path would give it;
- the completions' per-token log-probabilities and entropies come from one prompt pass (with gradients, which
  flow back through the copies) and one pass over the completion tokens: TRL's full-sequence values up to
  float rounding (tests compare both, gradients included), on ~1/3.6 of the tokens.

Anything these paths do not cover (vLLM, images, tools, distributed training, other sampling settings, logit
scaling, ...) returns None, and the trainer falls back to TRL's own code. Only the training worker imports this
module (it imports torch).
"""

from __future__ import annotations

from typing import Any

import torch


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(one row index per distinct prompt, each row's distinct-prompt number), or None when no prompt repeats.

    TRL shuffles the rollouts before the loss, so a group's rows are anywhere in the batch: rows are compared
    whole (ids and padding)."""
    if prompt_ids.size(0) < 2:
        return None
    rows = torch.cat([prompt_ids, prompt_mask], dim=1)
    distinct, which = torch.unique(rows, dim=0, return_inverse=True)
    if distinct.size(0) == rows.size(0):
        return None
    first = torch.full((distinct.size(0),), rows.size(0), dtype=torch.long, device=rows.device)
    first = first.scatter_reduce(0, which, torch.arange(rows.size(0), device=rows.device), reduce="amin")
    return first, which


def _plain_trainer(trainer: Any) -> bool:
    """One process, no gradient checkpointing, no vLLM or continuous batching: a model we can call directly."""
    from accelerate.utils import DistributedType

    args = trainer.args
    return (trainer.accelerator.distributed_type == DistributedType.NO and not args.gradient_checkpointing
            and not trainer.use_vllm and not getattr(trainer, "use_transformers_continuous_batching", False))


def _sampling_settings(trainer: Any) -> dict[str, Any] | None:
    """temperature/top_k/top_p when the generation config asks for nothing else, else None."""
    config = trainer.generation_config
    if (not config.do_sample or not isinstance(config.top_k, int) or not isinstance(config.top_p, float)
            or config.min_p is not None or config.repetition_penalty not in (None, 1.0) or config.suppress_tokens
            or trainer.args.generation_kwargs or config.cache_implementation is not None):
        return None
    return {"temperature": float(config.temperature), "top_k": config.top_k, "top_p": config.top_p}


def generate(trainer: Any, prompt_ids: list[list[int]], images: Any, multimodal_fields: Any) -> list[list[int]] | None:
    """Completion ids per rollout, cut after the first end-of-sequence token (as TRL cuts them), or None."""
    from nbkit.policy.hf import sample_groups

    settings = _sampling_settings(trainer)
    if (settings is None or images is not None or multimodal_fields or trainer.pad_to_multiple_of
            or not _plain_trainer(trainer)):
        return None
    prompts: list[Any] = []
    counts: list[int] = []
    for k, ids in enumerate(prompt_ids):
        if k and ids == prompt_ids[k - 1]:
            counts[-1] += 1
        else:
            prompts.append(ids)
            counts.append(1)
    config = trainer.generation_config
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    model = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    tokens = sample_groups(model, prompts, counts, max_new_tokens=config.max_new_tokens, stop_ids=eos,
                           pad_id=config.pad_token_id, **settings)
    is_eos = torch.isin(tokens, torch.tensor(trainer.eos_token_ids, device=tokens.device))
    ends = torch.where(is_eos.any(dim=1), is_eos.int().argmax(dim=1), tokens.size(1))
    return [row[: end + 1].tolist() for row, end in zip(tokens.cpu(), ends.tolist(), strict=True)]


def _scaled_logits(model: Any) -> bool:
    """Whether the model scales or caps its logits (TRL's log-prob kernel applies that; this path does not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    text = base.config.get_text_config()
    return any(getattr(text, name, None) is not None for name in (
        "final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"))


def completion_logps(trainer: Any, model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     logits_to_keep: int, batch_size: int | None, compute_entropy: bool,
                     extra: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None, None] | None:
    """TRL's (per-token log-probs, entropies, aux loss) of the last `logits_to_keep` tokens, or None."""
    if (any(v is not None and v is not False for v in extra.values()) or not _plain_trainer(trainer)
            or (batch_size and batch_size < input_ids.size(0)) or trainer.args.cast_lm_head_to_fp32
            or _scaled_logits(model)):
        return None
    split = input_ids.size(1) - logits_to_keep
    prompt_ids, prompt_mask = input_ids[:, :split], attention_mask[:, :split]
    groups = prompt_groups(prompt_ids, prompt_mask)
    if groups is None or split < 1:
        return None
    starts, rows = groups
    completion = input_ids[:, split:]
    with trainer.accelerator.autocast():
        # Positions as in TRL's pass over the whole sequence (no position ids: 0..n-1, padding included).
        head = model(input_ids=prompt_ids[starts], attention_mask=prompt_mask[starts], use_cache=True,
                     logits_to_keep=1)
        cache = head.past_key_values
        cache.batch_select_indices(rows)
        logits = head.logits[:, -1:][rows]
        if logits_to_keep > 1:
            tail = model(input_ids=completion[:, :-1], attention_mask=attention_mask[:, :-1], past_key_values=cache,
                         use_cache=True)
            logits = torch.cat([logits, tail.logits], dim=1)
    log_probs = torch.log_softmax(logits.float() / trainer.temperature, dim=-1)
    keep = attention_mask[:, split:] == 0
    logps = log_probs.gather(-1, completion.unsqueeze(-1)).squeeze(-1).masked_fill(keep, 0.0)
    entropies = None
    if compute_entropy:
        entropies = -(log_probs.exp() * log_probs).sum(dim=-1).masked_fill(keep, 0.0)
    return logps, entropies, None
