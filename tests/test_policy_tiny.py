"""The default local model: built offline, reloadable by the Auto classes, warm-started until the gate, cached."""

from __future__ import annotations

import json

import pytest

from nbkit.data.samples import make_task
from nbkit.errors import UserError
from nbkit.policy import tiny

pytestmark = pytest.mark.slow

# Tiny and quick: the gate is at chance level, so the build checks the mechanics in seconds.
QUICK = {"base": "smoke", "target_accuracy": 0.0, "eval_every": 5, "max_steps": 5}


@pytest.fixture(scope="module")
def train():
    return make_task("math", n_train=200, n_eval=10, seed=0)[0]


@pytest.fixture(scope="module")
def built(train, tmp_path_factory):
    cache = tmp_path_factory.mktemp("tiny-cache")
    return tiny.ensure_tiny_model(train, cache_dir=cache, recipe=QUICK, threads=1), cache


def test_folder_loads_with_auto_classes_and_has_what_trl_needs(built):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, _ = built
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert model.config.model_type == "qwen2"
    assert model.config.max_position_embeddings >= 1024
    assert tok.pad_token == tiny.ENDOFTEXT and tok.eos_token == tiny.IM_END
    assert tok.pad_token_id != tok.eos_token_id
    assert model.config.vocab_size == len(tok)
    messages = [{"role": "system", "content": "Reply with the final answer only."},
                {"role": "user", "content": "What is 7 + 5?"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nReply with the final answer only.<|im_end|>\n"
                    "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n")
    # TRL keys its Qwen2.5 handling on the exact template text
    from trl.chat_template_utils import qwen2_5_chat_template

    assert tok.chat_template == qwen2_5_chat_template


def test_tokenizer_round_trips_and_special_tokens_are_single_ids(built):
    from transformers import AutoTokenizer

    folder, _ = built
    tok = AutoTokenizer.from_pretrained(folder)
    for text in ["Solve for x: 3x + 2 = 11", "x = -12", "What is 12 * 11?", "héllo ✓ 42"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    assert len(tok("<|im_end|>", add_special_tokens=False)["input_ids"]) == 1
    # Qwen2's pre-tokenizer splits numbers into single digits: 123 is three tokens
    assert tok.convert_ids_to_tokens(tok("123", add_special_tokens=False)["input_ids"]) == ["1", "2", "3"]


def test_cache_hit_returns_the_same_folder_without_rebuilding(built, train, monkeypatch):
    folder, cache = built

    def no_build(*a, **k):
        raise AssertionError("rebuilt on a cache hit")

    monkeypatch.setattr(tiny, "build_tiny_model", no_build)
    assert tiny.ensure_tiny_model(train, cache_dir=cache, recipe=QUICK) == folder


def test_cache_key_depends_on_recipe_and_data(train):
    base = tiny.resolve_recipe(QUICK)
    key = tiny.cache_key(train, base)
    assert tiny.cache_key(train, base) == key
    assert tiny.cache_key(train, tiny.resolve_recipe({**QUICK, "hidden": 32})) != key
    assert tiny.cache_key(train, tiny.resolve_recipe({**QUICK, "seed": 1})) != key
    assert tiny.cache_key(train[:-1], base) != key
    edited = json.loads(json.dumps(train))
    edited[0]["reference_answer"] = {"solution": "999"}
    assert tiny.cache_key(edited, base) != key


def test_build_record_says_how_the_warm_start_went(built):
    folder, _ = built
    info = tiny.build_info(folder)
    assert info["recipe"]["layers"] == 2 and info["warm_start_steps"] == 5
    assert info["history"][-1]["accuracy"] >= 0.0 and info["parameters"] > 10_000


def test_gate_never_reached_is_a_clear_error_and_leaves_no_folder(train, tmp_path):
    recipe = {"base": "smoke", "target_accuracy": 1.01, "eval_every": 3, "max_steps": 3}
    with pytest.raises(UserError, match="did not reach sampled accuracy 1.01 within 3 steps"):
        tiny.ensure_tiny_model(train, cache_dir=tmp_path, recipe=recipe, threads=1)
    assert list(tmp_path.iterdir()) == []


def test_gate_on_train_uses_the_prompts_trained_on(train, tmp_path):
    recipe = {"base": "smoke", "gate_on": "train", "target_accuracy": 0.0, "eval_every": 2, "max_steps": 2}
    last = tiny.build_info(tiny.ensure_tiny_model(train, cache_dir=tmp_path, recipe=recipe, threads=1))["history"][-1]
    assert last["accuracy"] == last["train_accuracy"]
    assert 0.0 <= last["heldout_accuracy"] <= 1.0
    with pytest.raises(UserError, match="gate_on must be 'heldout' or 'train'"):
        tiny.ensure_tiny_model(train, cache_dir=tmp_path, recipe={**recipe, "gate_on": "eval"})


def test_too_few_records_with_answers_is_a_clear_error(train, tmp_path):
    few = [dict(r, reference_answer=None) if i % 2 else r for i, r in enumerate(train[:80])]
    with pytest.raises(UserError, match=r"at least 48 training records with a reference answer.*40 without"):
        tiny.ensure_tiny_model(few, cache_dir=tmp_path, recipe="smoke")


def test_recipe_resolution():
    assert tiny.resolve_recipe(None) == tiny.RECIPES["default"]
    assert tiny.resolve_recipe("smoke").layers == 2
    assert tiny.resolve_recipe({"base": "smoke", "lr": 0.5}).lr == 0.5
    with pytest.raises(UserError, match="unknown tiny-model recipe 'huge'"):
        tiny.resolve_recipe("huge")
    with pytest.raises(UserError, match="unknown tiny-model recipe field.*layerz"):
        tiny.resolve_recipe({"layerz": 3})


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"reference_answer": {"solution": "x = 3"}}, "x = 3"),
        ({"reference_answer": "12"}, "12"),
        ({"reference_answer": {"answer": 7}}, "7"),
        ({"metadata": {"reference_answer": {"solution": "5"}}}, "5"),
        ({"reference_answer": {"a": 1, "b": 2}}, '{"a": 1, "b": 2}'),
        ({}, None),
    ],
)
def test_answer_text(record, expected):
    assert tiny.answer_text(record) == expected


def test_warm_start_loss_shares_the_system_turn_and_equals_the_full_pass(train):
    """The prefix every row shares goes through the model once: same loss and gradients as the full batch."""
    import torch

    recipe = tiny.resolve_recipe("smoke")
    examples, _ = tiny._examples(train, recipe)
    tokenizer = tiny.build_tokenizer([tiny._render(m, a) for m, a in examples], recipe)
    torch.manual_seed(0)
    model = tiny.build_model(tokenizer, recipe)
    rows = [tiny._encode(tokenizer, m, a) for m, a in examples[:8]]
    shared = tiny._shared_prefix(rows)
    first_label = min(next(k for k, t in enumerate(labels) if t != -100) for _, labels in rows)
    assert 5 < shared < first_label, "the system turn is shared; no answer token is in the shared part"
    assert all(ids[:shared] == rows[0][0][:shared] for ids, _ in rows)

    def loss_and_grads(loss_fn):
        model.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in rows])
    labels = torch.tensor([r + [-100] * (width - len(r)) for _, r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in rows])
    full = loss_and_grads(lambda: model(input_ids=ids, attention_mask=mask, labels=labels).loss)
    ours = loss_and_grads(lambda: tiny._batch_loss(model, rows, pad))
    torch.testing.assert_close(ours[0], full[0], atol=1e-6, rtol=1e-6)
    for a, b in zip(ours[1], full[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert tiny._shared_prefix([([1, 2, 3], [-100, -100, 5]), ([1, 2, 4], [-100, -100, 6])]) == 1
