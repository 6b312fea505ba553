"""The local Hugging Face generator on a tiny model built in the test: batching, seeds, greedy, finish reasons."""

from __future__ import annotations

import json

import pytest

from nbkit.data.samples import make_task
from nbkit.errors import UserError
from nbkit.policy import Completion, load_generator, resolve_local_model
from nbkit.policy.hf import HFGenerator

pytestmark = pytest.mark.slow

QUICK = {"base": "smoke", "target_accuracy": 0.0, "eval_every": 20, "max_steps": 20}


@pytest.fixture(scope="module")
def split():
    return make_task("math", n_train=120, n_eval=12, seed=1)


@pytest.fixture(scope="module")
def folder(split, tmp_path_factory):
    return resolve_local_model("tiny", train_records=split[0], recipe=QUICK, threads=1,
                               cache_dir=tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine, 2 threads waiting on each other are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def gen(folder):
    return load_generator(str(folder), progress=False, batch_size=16)


@pytest.fixture(scope="module")
def prompts(split):
    return [r["messages"] for r in split[1]]


def test_shape_and_types(gen, prompts):
    out = gen.generate(prompts, n=3, max_new_tokens=6, temperature=1.0, seed=0)
    assert len(out) == len(prompts) and all(len(row) == 3 for row in out)
    for completion in (c for row in out for c in row):
        assert isinstance(completion, Completion)
        assert 1 <= completion.num_tokens <= 6
        assert completion.finish_reason in ("stop", "length")
        if completion.finish_reason == "length":
            assert completion.num_tokens == 6


def test_same_seed_same_output_other_seed_differs(gen, prompts):
    a = gen.generate(prompts, n=2, max_new_tokens=6, temperature=1.0, seed=11)
    b = gen.generate(prompts, n=2, max_new_tokens=6, temperature=1.0, seed=11)
    c = gen.generate(prompts, n=2, max_new_tokens=6, temperature=1.0, seed=12)
    assert a == b
    assert a != c


def test_greedy_ignores_the_seed_and_the_batch_size(folder, gen, prompts):
    a = gen.generate(prompts, n=2, max_new_tokens=6, temperature=0.0, seed=1)
    b = gen.generate(prompts, n=1, max_new_tokens=6, temperature=0.0, seed=2)
    assert all(row[0] == row[1] for row in a)  # greedy: both samples identical
    assert [row[0] for row in a] == [row[0] for row in b]
    single = load_generator(str(folder), progress=False, batch_size=1)
    assert single.generate(prompts[:4], n=1, max_new_tokens=6, temperature=0.0, seed=0) == [r[:1] for r in b[:4]]


def test_one_token_budget_truncates(gen, prompts):
    out = gen.generate(prompts[:3], n=2, max_new_tokens=1, temperature=1.0, seed=0)
    for c in (c for row in out for c in row):
        assert c.num_tokens == 1
        assert c.finish_reason == ("stop" if c.text == "" else "length")


def test_chat_template_and_stop_tokens(gen, prompts):
    text = gen.tokenizer.decode(gen.render(prompts[0]))
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    assert gen.tokenizer.convert_tokens_to_ids("<|im_end|>") in gen.stop_ids
    assert gen.describe()["device"] == "cpu"


def test_warm_start_taught_the_answer_format(gen, prompts):
    out = gen.generate(prompts, n=4, max_new_tokens=8, temperature=1.0, seed=0)
    stopped = [c for row in out for c in row if c.finish_reason == "stop"]
    assert len(stopped) >= len(prompts)  # most answers end with the end-of-turn token, not the budget


def test_bad_arguments_are_clear_errors(gen, prompts):
    with pytest.raises(UserError, match="n \\(samples per prompt\\)"):
        gen.generate(prompts, n=0, max_new_tokens=4, temperature=1.0, seed=0)
    with pytest.raises(UserError, match="temperature must be >= 0"):
        gen.generate(prompts, n=1, max_new_tokens=4, temperature=-1.0, seed=0)
    with pytest.raises(UserError, match="is a data record"):
        gen.generate([{"messages": prompts[0]}], n=1, max_new_tokens=4, temperature=1.0, seed=0)
    with pytest.raises(UserError, match="exceed the model's 1024 positions"):
        gen.generate([[{"role": "user", "content": "1 " * 600}]], n=1, max_new_tokens=4, temperature=1.0, seed=0)
    assert gen.generate([], n=1, max_new_tokens=4, temperature=1.0, seed=0) == []


def test_not_a_model_folder(tmp_path):
    with pytest.raises(UserError, match="not a local Hugging Face model folder"):
        HFGenerator(tmp_path)
    with pytest.raises(UserError, match="not a local Hugging Face model folder"):
        load_generator("no/such/folder")


def test_peft_adapter_folder_loads_on_its_base(folder, gen, prompts, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(folder)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")
    gen.tokenizer.save_pretrained(tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(folder)
    tuned = load_generator(str(tmp_path / "adapter"), progress=False)
    # a fresh LoRA adapter is the identity (B = 0): greedy answers equal the base model's
    greedy = {"n": 1, "max_new_tokens": 6, "temperature": 0.0, "seed": 0}
    assert tuned.generate(prompts[:4], **greedy) == gen.generate(prompts[:4], **greedy)


def test_in_memory_model_generates_exactly_as_the_loaded_folder(gen, prompts):
    """Training's validation wraps the policy in memory: it must see what evaluation (03/06) sees."""
    wrapped = HFGenerator.from_model(gen.model, gen.tokenizer, batch_size=5)
    greedy = dict(n=1, max_new_tokens=6, temperature=0.0, seed=0)
    assert [r[0].text for r in wrapped.generate(prompts, **greedy)] == [r[0].text for r in gen.generate(prompts, **greedy)]
    assert wrapped.stop_ids == gen.stop_ids


@pytest.mark.parametrize(("temperature", "top_k", "top_p", "counts"), [
    (1.0, 0, 1.0, 3), (0.7, 5, 0.9, [1, 3, 2, 2, 1, 4]), (0.0, 0, 1.0, 2),
])
@pytest.mark.parametrize("shared", [True, False])
def test_sample_groups_draws_exactly_what_generate_draws(gen, prompts, temperature, top_k, top_p, counts, shared,
                                                         monkeypatch):
    """One prompt pass per distinct prompt, then its cache copied to its samples: the same tokens as
    model.generate on the repeated prompts, for the same seed (and the fallback through generate too)."""
    import torch
    from transformers import GenerationConfig

    from nbkit.policy import hf

    if not shared:
        monkeypatch.setattr(hf, "_shareable", lambda cache: False)
    encoded = [gen.render(p) for p in prompts[:6]]
    assert len({len(e) for e in encoded}) > 1, "prompts of different lengths: left padding is exercised"
    repeats = [counts] * len(encoded) if isinstance(counts, int) else counts
    pad = gen.tokenizer.pad_token_id
    torch.manual_seed(3)
    ours = hf.sample_groups(gen.model, encoded, counts, max_new_tokens=6, temperature=temperature, top_k=top_k,
                            top_p=top_p, stop_ids=gen.stop_ids, pad_id=pad)
    ids, mask = hf.left_pad([e for e, r in zip(encoded, repeats, strict=True) for _ in range(r)], pad)
    sample = temperature > 0
    config = GenerationConfig(max_new_tokens=6, do_sample=sample, temperature=temperature if sample else None,
                              top_k=top_k if sample else None, top_p=top_p if sample else None,
                              eos_token_id=sorted(gen.stop_ids), pad_token_id=pad, bos_token_id=None)
    torch.manual_seed(3)
    with torch.inference_mode():
        reference = gen.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)[:, ids.shape[1]:]
    assert ours.shape[0] == sum(repeats)
    assert torch.equal(ours, reference)
