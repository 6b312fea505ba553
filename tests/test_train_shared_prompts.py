"""GRPO rollouts of one prompt share its forward pass: the same samples as TRL's generate, the same loss inputs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PROMPTS, GENERATIONS, NEW_TOKENS = 3, 4, 5


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """The worker's trainer class on a random tiny Qwen2 with LoRA, the local preset's settings, one thread."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from trl import GRPOConfig

    from nbkit.data.samples import make_task
    from nbkit.policy import tiny
    from nbkit.train.local import grpo_config_kwargs, lora_config_kwargs
    from nbkit.train.local_worker import trainer_class
    from nbkit.train.spec import LOCAL_PRESET, Hyperparameters, JobSpec

    torch.set_num_threads(1)
    train, _ = make_task("math", n_train=24, n_eval=4, seed=0)
    recipe = tiny.resolve_recipe("smoke")
    examples, _ = tiny._examples(train, recipe)
    tokenizer = tiny.build_tokenizer([tiny._render(m, a) for m, a in examples], recipe)
    tokenizer.padding_side = "left"
    model = tiny.build_model(tokenizer, recipe)
    hyper = LOCAL_PRESET | {"global_batch_size": PROMPTS * GENERATIONS, "number_generation": GENERATIONS,
                            "max_new_tokens": NEW_TOKENS, "max_steps": 1}
    spec = JobSpec(backend="local", name="t", model="tiny", hyper=Hyperparameters(**hyper))
    config = GRPOConfig(**grpo_config_kwargs(spec, 1) | {"output_dir": str(tmp_path_factory.mktemp("out"))})
    model = get_peft_model(model, LoraConfig(**lora_config_kwargs(spec)))
    # LoRA B starts at zero; give the adapter weight so its gradients and the copies' gradients mean something
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05, generator=torch.Generator().manual_seed(len(name)))
    rows = [{"prompt": [m for m in r["messages"] if m["role"] != "assistant"]} for r in train]
    return trainer_class()(model=model, reward_funcs=lambda completions, **_: [0.0] * len(completions),
                           args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)


def repeated_prompts(trainer) -> list[list[int]]:
    from nbkit.data.samples import make_task

    train, _ = make_task("math", n_train=24, n_eval=4, seed=0)
    tok = trainer.processing_class
    prompts = [tok.apply_chat_template([m for m in r["messages"] if m["role"] != "assistant"],
                                       add_generation_prompt=True, tokenize=True)["input_ids"] for r in train[:PROMPTS]]
    assert len({len(p) for p in prompts}) > 1, "prompts of different lengths: left padding is exercised"
    return [list(p) for p in prompts for _ in range(GENERATIONS)]


def test_rollouts_are_the_ones_trls_generate_samples(trainer):
    import torch
    from trl import GRPOTrainer

    from nbkit.train import shared_prompts

    prompts = repeated_prompts(trainer)
    assert shared_prompts.generate(trainer, prompts, None, {}) is not None, "the shared path is taken"
    torch.manual_seed(5)
    ours, logprobs = trainer._generate_single_turn(prompts, None, {}, GENERATIONS)
    torch.manual_seed(5)
    theirs, _ = GRPOTrainer._generate_single_turn(trainer, prompts, None, {}, GENERATIONS)
    assert logprobs is None
    assert ours == theirs
    assert len(ours) == len(prompts) and all(1 <= len(c) <= NEW_TOKENS for c in ours)


def test_other_sampling_settings_go_to_trl(trainer, monkeypatch):
    from nbkit.train import shared_prompts

    monkeypatch.setattr(trainer.generation_config, "repetition_penalty", 1.3)
    assert shared_prompts.generate(trainer, repeated_prompts(trainer), None, {}) is None


def batch(trainer):
    """input ids and mask of prompts (left-padded, each repeated, shuffled as TRL shuffles them) + completions
    (right-padded, ragged)."""
    import torch

    from nbkit.policy.hf import left_pad

    prompts = repeated_prompts(trainer)
    g = torch.Generator().manual_seed(0)
    prompts = [prompts[i] for i in torch.randperm(len(prompts), generator=g).tolist()]
    ids, mask = left_pad(prompts, trainer.processing_class.pad_token_id)
    completion = torch.randint(0, 300, (len(prompts), NEW_TOKENS), generator=g)
    lengths = torch.randint(1, NEW_TOKENS + 1, (len(prompts),), generator=g)
    completion_mask = (torch.arange(NEW_TOKENS)[None] < lengths[:, None]).long()
    return torch.cat([ids, completion], dim=1), torch.cat([mask, completion_mask], dim=1)


def logps_and_grads(trainer, method):
    import torch

    model = trainer.model
    model.zero_grad()
    input_ids, attention_mask = batch(trainer)
    logps, entropies, _ = method(trainer, model, input_ids, attention_mask, NEW_TOKENS, compute_entropy=True)
    weights = torch.linspace(-1.0, 1.0, logps.size(0))[:, None]
    ((logps * weights).sum() + entropies.sum()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logps.detach(), entropies.detach(), grads


def test_log_probs_entropies_and_gradients_match_trls_full_pass(trainer):
    import torch
    from trl import GRPOTrainer

    from nbkit.train.shared_prompts import completion_logps

    with torch.no_grad():
        assert completion_logps(trainer, trainer.model, *batch(trainer), NEW_TOKENS, None, False, {}) is not None
    ours = logps_and_grads(trainer, type(trainer)._get_per_token_logps_and_entropies)
    theirs = logps_and_grads(trainer, GRPOTrainer._get_per_token_logps_and_entropies)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-5, rtol=1e-5)
    assert ours[2].keys() == theirs[2].keys() and any("lora_A" in n for n in ours[2])
    for name, grad in theirs[2].items():
        torch.testing.assert_close(ours[2][name], grad, atol=1e-6, rtol=1e-4, msg=name)
    assert (ours[0] == 0).any(), "padded completion positions score 0, as in TRL"


def test_prompt_groups_find_repeated_rows_wherever_they_are():
    import torch

    from nbkit.train.shared_prompts import prompt_groups

    ids = torch.tensor([[0, 5, 6], [7, 8, 9], [0, 5, 6], [7, 8, 9], [1, 2, 3], [7, 8, 9]])
    mask = torch.ones_like(ids)
    first, which = prompt_groups(ids, mask)
    assert torch.equal(ids[first][which], ids)  # every row is its group's first row
    assert sorted(first.tolist()) == [0, 1, 4]
    mask[2, 0] = 0  # same ids, other padding: another prompt
    first, which = prompt_groups(ids, mask)
    assert len(first) == 4 and torch.equal(mask[first][which], mask)
    assert prompt_groups(ids[:2], mask[:2]) is None


def test_kl_to_base_reads_whole_prompt_groups_through_the_shared_pass(trainer, monkeypatch):
    """The KL estimate takes its rollouts from a few whole groups, so its two passes share prompts too."""
    import torch

    from nbkit.policy.hf import left_pad
    from nbkit.train import shared_prompts

    prompts = repeated_prompts(trainer)  # grouped, as rollouts are before the loss shuffles them
    ids, mask = left_pad(prompts, trainer.processing_class.pad_token_id)
    g = torch.Generator().manual_seed(1)
    completion = torch.randint(0, 300, (len(prompts), NEW_TOKENS), generator=g)
    output = {"prompt_ids": ids, "prompt_mask": mask, "completion_ids": completion,
              "completion_mask": torch.ones_like(completion)}
    calls = []
    real = shared_prompts.completion_logps

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(shared_prompts, "completion_logps", spy)
    ours = trainer._kl_to_base(output)
    assert calls == [True, True], "policy and base passes both shared their prompts"
    monkeypatch.setattr(shared_prompts, "completion_logps", lambda *a, **k: None)  # TRL's full passes
    assert ours == pytest.approx(trainer._kl_to_base(output), rel=1e-4, abs=1e-7)
    assert ours > 0, "the adapter moved the policy off the base model"


def test_validation_leaves_the_training_random_state_as_it_was(trainer):
    """The generator seeds torch per batch; validating must not change what training samples next."""
    import torch

    from nbkit.data.samples import make_task
    from nbkit.train.local_worker import Validator

    _, evals = make_task("math", n_train=24, n_eval=4, seed=0)
    validator = Validator(evals, trainer.processing_class, None, "sagemaker", max_new_tokens=3)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    texts = validator.generate(trainer.model)
    assert len(texts) == len(evals)
    assert torch.equal(torch.get_rng_state(), before)
