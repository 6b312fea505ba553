"""The default local model: a tiny Qwen2-architecture causal LM built offline and warmed up on the task.

No model hub is reachable on the machines this runs on, so the default policy is built from a config: a
byte-level BPE tokenizer trained with `tokenizers` on the training split (with exactly Qwen2's normalizer
and pre-tokenizer, because `AutoTokenizer` re-imposes them on reload for model_type qwen2), TRL's Qwen2.5
chat template (so TRL recognises it), and a few randomly initialised layers.

A random model scores exactly 0 on an exact-match reward, which leaves GRPO nothing to learn from, so the
model gets a supervised warm start on the training split (completion = the reference answer). The warm
start sits on a loss plateau for an unpredictable number of steps, so it is gated on *sampled* accuracy
(temperature 1, as GRPO samples): it stops as soon as accuracy reaches `target_accuracy` and fails loudly if
the step cap comes first. By default the gate reads the prompts being trained on, which is what GRPO will
sample (a policy at ~0.3 there has mixed groups and headroom); `gate_prompts` training records are always
held out too, and their accuracy, recorded in the build record, predicts the baseline on unseen prompts.

The finished folder is cached under `paths.cache_dir("models", <key>)`, keyed by a hash of the recipe,
the training records and the build code version, so repeated runs reuse it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from nbkit import REPRODUCIBLE_MATH, paths
from nbkit.errors import UserError
from nbkit.plain import content_text, fold_text
from nbkit.policy.determinism import use_deterministic_kernels

# Bump when the build code changes in a way that changes the model: it is part of the cache key.
# 2: built under nbkit's reproducible CPU math (MKL strict CNR, ATen AVX2), see nbkit/__init__.py.
# 3: the warm start's shared system turn goes through the model once a batch (same loss up to rounding).
# 4: torch's deterministic kernels (nbkit.policy.determinism): the same model from every build, any threads.
BUILD_VERSION = 4
ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END]
BUILD_INFO = "nbkit_build.json"


@dataclasses.dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the built model; every field is part of the cache key."""

    layers: int = 4
    hidden: int = 128
    intermediate: int = 512
    heads: int = 4
    kv_heads: int = 2
    vocab_size: int = 512
    max_position_embeddings: int = 1024
    lr: float = 1.0e-3
    warmup_steps: int = 20
    batch_size: int = 64  # fewer, larger steps: 64 reached the gate in as few examples as 32 (40k vs 41-51k)
    max_steps: int = 1500
    eval_every: int = 25
    target_accuracy: float = 0.3
    gate_on: str = "train"  # "train": gate on prompts trained on; "heldout": on prompts kept out of training
    gate_prompts: int = 64
    gate_samples: int = 4
    gate_temperature: float = 1.0
    gate_max_new_tokens: int = 12
    answer_key: str = "solution"
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RECIPES: dict[str, TinyRecipe] = {
    # The demo: GRPO starts from ~0.3 sampled accuracy on its training prompts, with headroom.
    "default": TinyRecipe(),
    # CI smoke runs: a smaller model and a lower gate, built in seconds; same code path.
    "smoke": TinyRecipe(
        layers=2, hidden=64, intermediate=256, heads=4, kv_heads=2, vocab_size=384, lr=2.0e-3,
        warmup_steps=10, batch_size=32, max_steps=800, eval_every=25, target_accuracy=0.15,
        gate_prompts=16, gate_samples=4,
    ),
}


def resolve_recipe(recipe: TinyRecipe | str | Mapping[str, Any] | None) -> TinyRecipe:
    """A recipe from a preset name, a dict of overrides on the default recipe, or a recipe itself."""
    if recipe is None:
        return RECIPES["default"]
    if isinstance(recipe, TinyRecipe):
        return recipe
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise UserError(f"unknown tiny-model recipe {recipe!r}; recipes are: {', '.join(RECIPES)}")
        return RECIPES[recipe]
    if isinstance(recipe, Mapping):
        base = RECIPES[str(recipe.get("base", "default"))]
        fields = {f.name for f in dataclasses.fields(TinyRecipe)}
        unknown = sorted(set(recipe) - fields - {"base"})
        if unknown:
            raise UserError(
                f"unknown tiny-model recipe field(s) {', '.join(unknown)}; fields are: {', '.join(sorted(fields))}"
            )
        return dataclasses.replace(base, **{k: v for k, v in recipe.items() if k != "base"})
    raise UserError(f"tiny-model recipe must be a name, a dict or a TinyRecipe, got {type(recipe).__name__}")


def answer_text(record: Mapping[str, Any], answer_key: str = "solution") -> str | None:
    """The text the warm start teaches for a record: the reference answer as the model should say it."""
    ref = record.get("reference_answer")
    if ref is None and isinstance(record.get("metadata"), Mapping):
        ref = record["metadata"].get("reference_answer")
    if ref is None:
        return None
    if isinstance(ref, str):
        return ref.strip() or None
    if isinstance(ref, Mapping):
        if answer_key in ref:
            return str(ref[answer_key]).strip() or None
        if len(ref) == 1:
            return str(next(iter(ref.values()))).strip() or None
    return json.dumps(ref, sort_keys=True, ensure_ascii=False)


def normalize_answer(text: str) -> str:
    """Whitespace- and case-insensitive form used by the warm-start gate's exact match."""
    return fold_text(text.replace(IM_END, " ").replace(ENDOFTEXT, " "))


def cache_key(train_records: Sequence[Mapping[str, Any]], recipe: TinyRecipe) -> str:
    """Hash of the recipe, the training data (in order) and the build code: same inputs, same folder."""
    digest = hashlib.sha256()
    math = {name: os.environ.get(name, "") for name in REPRODUCIBLE_MATH}  # another math mode, another model
    digest.update(json.dumps({"build": BUILD_VERSION, "recipe": recipe.to_dict(), "math": math},
                             sort_keys=True).encode())
    for record in train_records:
        digest.update(json.dumps(record, sort_keys=True, ensure_ascii=False, default=str).encode())
        digest.update(b"\n")
    digest.update(_chat_template().encode())
    return digest.hexdigest()[:16]


def ensure_tiny_model(
    train_records: Sequence[Mapping[str, Any]],
    cache_dir: str | os.PathLike | None = None,
    recipe: TinyRecipe | str | Mapping[str, Any] | None = None,
    *,
    threads: int | None = None,
) -> Path:
    """The default local model's Hugging Face folder, built (tokenizer, model, warm start) on a cache miss.

    `threads` sets torch's CPU threads for the build only (on a shared, busy machine 1 thread can be several
    times faster than 2, whose threads wait on each other); None keeps torch's setting.
    """
    rec = resolve_recipe(recipe)
    if rec.gate_on not in ("heldout", "train"):
        raise UserError(f"tiny-model recipe gate_on must be 'heldout' or 'train', got {rec.gate_on!r}")
    records = list(train_records)
    key = cache_key(records, rec)
    target = Path(cache_dir) / f"tiny-{key}" if cache_dir else paths.cache_dir("models", f"tiny-{key}")
    if (target / BUILD_INFO).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tiny-{key}-", dir=target.parent))
    try:
        with _torch_threads(threads):
            build_tiny_model(records, tmp, rec)
        if (target / BUILD_INFO).exists():  # a concurrent build finished first: keep theirs
            shutil.rmtree(tmp)
            return target
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def build_tiny_model(records: Sequence[Mapping[str, Any]], out: Path, recipe: TinyRecipe) -> dict[str, Any]:
    """Build tokenizer + model, warm-start them, save the folder and its build record; return the record."""
    import torch

    examples, skipped = _examples(records, recipe)
    if len(examples) < recipe.gate_prompts + recipe.batch_size:
        raise UserError(
            f"the tiny model needs at least {recipe.gate_prompts + recipe.batch_size} training records with a "
            f"reference answer (gate_prompts + batch_size of the recipe), got {len(examples)} "
            f"({skipped} without a reference_answer); add data or point `model` at a local HF model folder"
        )
    started = time.perf_counter()
    _seed_everything(recipe.seed)
    shuffled = list(examples)
    random.Random(recipe.seed).shuffle(shuffled)
    gate, train = shuffled[: recipe.gate_prompts], shuffled[recipe.gate_prompts :]
    tokenizer = build_tokenizer([_render(m, a) for m, a in examples], recipe)
    model = build_model(tokenizer, recipe)
    history = warm_start(model, tokenizer, train, gate, recipe)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "recipe": recipe.to_dict(),
        "build_version": BUILD_VERSION,
        "train_records": len(records),
        "records_without_answer": skipped,
        "gate_records": len(gate),
        "parameters": sum(p.numel() for p in model.parameters()),
        "warm_start_steps": history[-1]["step"] if history else 0,
        "gate_accuracy": history[-1]["accuracy"] if history else 0.0,
        "history": history,
        "build_seconds": round(time.perf_counter() - started, 2),
        "torch_threads": torch.get_num_threads(),
    }
    (out / BUILD_INFO).write_text(json.dumps(info, indent=2))
    return info


def build_info(folder: str | os.PathLike) -> dict[str, Any]:
    """The build record of a tiny-model folder (recipe, warm-start history, timings)."""
    path = Path(folder) / BUILD_INFO
    if not path.exists():
        raise UserError(f"{folder} is not a tiny-model folder built by nbkit (no {BUILD_INFO})")
    return json.loads(path.read_text())


def _examples(records: Sequence[Mapping[str, Any]], recipe: TinyRecipe) -> tuple[list[tuple[list, str]], int]:
    """(messages without assistant turns, answer) pairs; records without a reference answer are counted."""
    out, skipped = [], 0
    for record in records:
        answer = answer_text(record, recipe.answer_key)
        messages = [{"role": str(m.get("role", "user")), "content": content_text(m.get("content"))}
                    for m in record.get("messages", []) if m.get("role") != "assistant"]
        if answer is None or not messages:
            skipped += 1
            continue
        out.append((messages, answer))
    return out, skipped


def _render(messages: list[dict[str, str]], answer: str) -> str:
    """Plain ChatML text of one example, for tokenizer training (templates need no tokenizer here)."""
    turns = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return f"{turns}{IM_START}assistant\n{answer}{IM_END}\n"


def _chat_template() -> str:
    """TRL's Qwen2.5 chat template, verbatim: TRL keys its tool-call parsing on this exact text."""
    from importlib import resources

    return (resources.files("trl") / "chat_templates" / "qwen2_5.jinja").read_text(encoding="utf-8")


def build_tokenizer(texts: Sequence[str], recipe: TinyRecipe):
    """A byte-level BPE tokenizer with Qwen2's exact normalizer/pre-tokenizer, so it reloads unchanged."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    plain = [t.replace(IM_START, " ").replace(IM_END, " ") for t in texts]
    tok.train_from_iterator(plain, trainer=trainer)
    state = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    # transformers annotates merges as list[str] and unk_token as str; its BPE takes (a, b) pairs and None
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"], merges=merges, unk_token=None, eos_token=IM_END, pad_token=ENDOFTEXT,  # type: ignore[arg-type]
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=recipe.max_position_embeddings,
    )
    tokenizer.chat_template = _chat_template()
    return tokenizer


def build_model(tokenizer, recipe: TinyRecipe):
    """A randomly initialised Qwen2 causal LM sized by the recipe (seeded, so rebuilds are identical)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos = tokenizer.convert_tokens_to_ids(IM_END)
    pad = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden,
        intermediate_size=recipe.intermediate,
        num_hidden_layers=recipe.layers,
        num_attention_heads=recipe.heads,
        num_key_value_heads=recipe.kv_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    torch.manual_seed(recipe.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad], pad_token_id=pad, bos_token_id=None, do_sample=True, temperature=1.0, top_k=None,
    )
    return model


def warm_start(model, tokenizer, train, gate, recipe: TinyRecipe) -> list[dict[str, Any]]:
    """Supervised pass (loss on the answer only) until sampled accuracy on `gate` reaches the target."""
    import torch

    from nbkit.progress import Task

    rows = [_encode(tokenizer, messages, answer) for messages, answer in train]
    heldout_set, seen_set = _GateSet(tokenizer, gate), _GateSet(tokenizer, train[: len(gate)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, recipe.warmup_steps))
    )
    order_rng = random.Random(recipe.seed + 1)
    order: list[int] = []
    history: list[dict[str, Any]] = []
    started = time.perf_counter()
    what = f"warm start of the tiny model (to accuracy {recipe.target_accuracy}, at most {recipe.max_steps} steps)"
    with Task(what, total=recipe.max_steps, unit="step") as task:
        for step in range(1, recipe.max_steps + 1):
            if len(order) < recipe.batch_size:
                fresh = list(range(len(rows)))
                order_rng.shuffle(fresh)
                order.extend(fresh)
            batch, order = order[: recipe.batch_size], order[recipe.batch_size :]
            model.train()
            loss = _batch_loss(model, [rows[i] for i in batch], tokenizer.pad_token_id)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if step % recipe.eval_every == 0 or step == recipe.max_steps:
                heldout = gate_accuracy(model, tokenizer, heldout_set, recipe, seed=recipe.seed + step)
                seen = gate_accuracy(model, tokenizer, seen_set, recipe, seed=recipe.seed + step)
                accuracy = heldout if recipe.gate_on == "heldout" else seen
                history.append({
                    "step": step, "loss": round(loss.item(), 4), "accuracy": accuracy, "heldout_accuracy": heldout,
                    "train_accuracy": seen, "seconds": round(time.perf_counter() - started, 2),
                })
                task.set(step, note=f"loss {loss.item():.3f}, accuracy {accuracy:.2f} of {recipe.target_accuracy}")
                if accuracy >= recipe.target_accuracy:
                    model.eval()
                    return history
            elif step % 10 == 0:
                task.set(step)
    best = max(h["accuracy"] for h in history)
    raise UserError(
        f"the tiny model's warm start did not reach sampled accuracy {recipe.target_accuracy} within "
        f"{recipe.max_steps} steps (best {best:.3f}, last loss {history[-1]['loss']}); raise max_steps, lower "
        "target_accuracy or lr in the recipe, or check that reference answers are short texts the prompts determine"
    )


def _encode(tokenizer, messages: list[dict[str, str]], answer: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) of prompt + answer + end-of-turn, labels masked (-100) on the prompt."""
    prompt = _token_ids(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
    completion = tokenizer(answer + IM_END, add_special_tokens=False)["input_ids"]
    return prompt + completion, [-100] * len(prompt) + completion


def _token_ids(encoded: Any) -> list[int]:
    """apply_chat_template returns a list or a BatchEncoding depending on the transformers version."""
    if isinstance(encoded, Mapping) or hasattr(encoded, "keys"):
        encoded = encoded["input_ids"]
    return list(encoded)


def _batch_loss(model, rows: list[tuple[list[int], list[int]]], pad_id: int):
    """Mean next-token loss over the answer tokens of a right-padded batch.

    Every row starts with the same tokens (the chat template's system turn, ~a third of a math prompt): they go
    through the model once, and their KV cache is copied to the rows (gradients flow back through the copies),
    which gives the loss of the full pass up to float rounding on fewer tokens.
    """
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row_ids, row_labels) in enumerate(rows):
        ids[i, : len(row_ids)] = torch.tensor(row_ids)
        labels[i, : len(row_labels)] = torch.tensor(row_labels)
        mask[i, : len(row_ids)] = 1
    shared = _shared_prefix(rows)
    if shared < 2 or len(rows) < 2:
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss
    head = model(input_ids=ids[:1, :shared], use_cache=True)
    cache = head.past_key_values
    cache.batch_select_indices(torch.zeros(len(rows), dtype=torch.long))
    logits = model(input_ids=ids[:, shared:], attention_mask=mask, past_key_values=cache).logits
    # position p predicts token p + 1; no label before shared + 1 (_shared_prefix stops before the answers)
    return torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, shared + 1:].flatten(),
                                             ignore_index=-100)


def _shared_prefix(rows: list[tuple[list[int], list[int]]]) -> int:
    """Length of the token prefix all rows share, ending before the first labelled token of any row."""
    first, *others = [ids for ids, _ in rows]
    limit = min(next((k for k, t in enumerate(labels) if t != -100), len(labels)) for _, labels in rows) - 1
    shared = 0
    while shared < limit and all(len(o) > shared and o[shared] == first[shared] for o in others):
        shared += 1
    return shared


class _GateSet:
    """The gate's prompts, tokenized once (the gate runs every eval_every steps), and their answers."""

    def __init__(self, tokenizer, examples) -> None:
        self.prompts = [_token_ids(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True))
                        for m, _ in examples]
        self.answers = [normalize_answer(a) for _, a in examples]

    def __len__(self) -> int:
        return len(self.prompts)


def gate_accuracy(model, tokenizer, gate, recipe: TinyRecipe, seed: int) -> float:
    """Share of sampled answers (gate_samples per gate prompt) that exactly match the reference.

    `gate` is a list of (messages, answer) or a _GateSet. Each prompt goes through the model once for all its
    samples (nbkit.policy.hf.sample_groups: the tokens model.generate would draw).
    """
    import torch

    from nbkit.policy.hf import sample_groups, stop_token_ids

    model.eval()
    gate = gate if isinstance(gate, _GateSet) else _GateSet(tokenizer, gate)
    torch.manual_seed(seed)
    out = sample_groups(model, gate.prompts, recipe.gate_samples, max_new_tokens=recipe.gate_max_new_tokens,
                        temperature=recipe.gate_temperature, stop_ids=stop_token_ids(model, tokenizer),
                        pad_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(out, skip_special_tokens=True)
    answers = [a for a in gate.answers for _ in range(recipe.gate_samples)]
    hits = sum(normalize_answer(t) == a for t, a in zip(texts, answers, strict=True))
    return round(hits / len(texts), 4)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Temporarily use `threads` CPU threads in torch (None: leave as is)."""
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    use_deterministic_kernels()  # the warm start trains: its gradients must not depend on thread scheduling

