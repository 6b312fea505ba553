"""Job spec: defaults, presets, per-surface ranges, params mapping, and derived quantities by hand."""

from __future__ import annotations

import json
import math

import pytest

from nbkit import params
from nbkit.errors import UserError
from nbkit.train import calibration, derived
from nbkit.train.spec import (
    LOCAL_PRESET,
    Hyperparameters,
    JobSpec,
    default_name,
    fit_to_surface,
    from_dict,
    from_params,
    ranges,
    surface_of,
)

# Fixed prices and assumptions so the hand-computed figures do not move when prices.json is updated.
PRICES = {
    "as_of": "2000-01-01",
    "instance_usd_per_hour": {"ml.p5.48xlarge": 100.0},
    "lambda": {"usd_per_million_requests": 0.2, "usd_per_gb_second": 0.0000166667, "memory_gb": 0.5},
    "assumptions": {"tokens_per_s_per_node": 20000, "mean_completion_fill": 0.5, "startup_s": 1200,
                    "reward_latency_s": 0.5, "lambda_batch_size": 128,
                    "local_tiny_tokens_per_s": 9400, "local_tiny_prompt_tokens": 26},
}


def _spec(backend="local", **hyper):
    return JobSpec(backend=backend, train_data="train.jsonl", reward="builtin:numeric",
                   model="tiny" if backend == "local" else "amazon.nova-2-lite-v1:0:256k",
                   hyper=Hyperparameters(**hyper))


# ------------------------------------------------------------------------------------------ defaults


def test_defaults_are_the_documented_guidance():
    h = Hyperparameters()
    assert (h.epochs, h.learning_rate, h.number_generation, h.max_new_tokens, h.global_batch_size, h.lora_rank) == (
        1, 1e-7, 8, 8192, 256, 32)
    assert (h.lora_alpha, h.loraplus_lr_ratio, h.temperature, h.top_k, h.max_length) == (32, 64.0, 1.0, 0, 10240)
    assert h.max_steps is None and h.weight_decay == 0.0
    spec = JobSpec()
    assert spec.dry_run is True and spec.backend == "local"


def test_local_preset_values_and_overrides():
    spec = JobSpec.local_preset(train_data="t", reward="r", hyper={"max_steps": 100})
    h = spec.hyper
    assert (h.learning_rate, h.lora_rank, h.lora_alpha, h.number_generation, h.global_batch_size) == (1e-3, 16, 32, 8, 128)
    assert (h.max_new_tokens, h.temperature, h.kl_coef, h.max_steps) == (8, 1.0, 0.0, 100)
    assert h.prompts_per_step == 16
    assert LOCAL_PRESET["max_steps"] == 200  # the override did not leak into the preset
    assert spec.check() == []


def test_unknown_field_names_the_valid_ones():
    with pytest.raises(UserError) as err:
        from_dict({"hyper": {"learning_rat": 1e-3}})
    text = str(err.value)
    assert "hyper.learning_rat: unknown field" in text and "learning_rate" in text
    with pytest.raises(UserError, match="aws.regon: unknown field.*region"):
        from_dict({"aws": {"regon": "us-east-1"}})


@pytest.mark.parametrize(("backend", "rank", "surface"), [
    ("local", 16, "local"), ("sagemaker", 32, "smtj-lora"), ("sagemaker", 0, "smtj-full"),
    ("hyperpod", 8, "smhp-lora"), ("hyperpod", 0, "smhp-full"), ("bedrock", 0, "bedrock"),
])
def test_surface_of(backend, rank, surface):
    assert surface_of(backend, rank) == surface


def test_reasoning_effort_accepts_null_spellings():
    assert Hyperparameters(reasoning_effort="none").reasoning_effort is None
    assert Hyperparameters(reasoning_effort="HIGH").reasoning_effort == "high"
    with pytest.raises(ValueError):
        Hyperparameters(reasoning_effort="max")


# -------------------------------------------------------------------------------------------- ranges


def _errors(spec, surface=None):
    return {i.field: i for i in spec.check(surface) if i.severity == "error"}


def test_smtj_lora_ranges_name_field_value_and_range():
    spec = _spec("sagemaker", learning_rate=1e-8, global_batch_size=256, max_length=2048, max_new_tokens=1000,
                 lora_alpha=48, loraplus_lr_ratio=101.0, weight_decay=1.5, max_steps=3)
    errs = _errors(spec)
    assert set(errs) == {"hyper.learning_rate", "hyper.global_batch_size", "hyper.max_length", "hyper.lora_alpha",
                         "hyper.loraplus_lr_ratio", "hyper.weight_decay", "hyper.max_steps"}
    assert str(errs["hyper.learning_rate"]) == (
        "hyper.learning_rate = 1e-08: outside the allowed range on SageMaker training job, LoRA: 1e-07..0.001 "
        "(default 1e-05)")
    assert "16..128" in str(errs["hyper.global_batch_size"])
    assert "{16, 32, 64}" in str(errs["hyper.lora_alpha"])
    assert "0..100" in str(errs["hyper.loraplus_lr_ratio"])


def test_full_rank_smtj_allows_256_and_ignores_lora_knobs():
    spec = _spec("sagemaker", lora_rank=0, global_batch_size=256, max_length=10240, lora_alpha=48)
    issues = spec.check()
    assert not [i for i in issues if i.severity == "error"]
    warn = [i for i in issues if i.field == "hyper.lora_alpha"]
    assert warn and warn[0].severity == "warning" and "not used" in warn[0].message


def test_smhp_learning_rate_floor_differs_from_smtj():
    spec = _spec("hyperpod", learning_rate=5e-8, global_batch_size=256)
    assert _errors(spec) == {}
    assert "hyper.learning_rate" in _errors(spec, "smtj-lora")
    assert "hyper.loraplus_lr_ratio" in _errors(_spec("hyperpod", loraplus_lr_ratio=0.5))  # 1.0..70.0 there


def test_bedrock_ranges_and_ignored_knobs():
    spec = _spec("bedrock", epochs=60, global_batch_size=512, number_generation=16, learning_rate=2e-3,
                 reasoning_effort="medium", temperature=0.7)
    errs = _errors(spec)
    assert set(errs) == {"hyper.epochs", "hyper.learning_rate"}
    assert "1..50" in str(errs["hyper.epochs"])
    assert any(i.field == "hyper.temperature" and i.severity == "warning" for i in spec.check())
    assert "hyper.reasoning_effort" in _errors(_spec("sagemaker", reasoning_effort="medium"))  # high|low|null on SM


def test_cross_field_checks():
    spec = _spec("local", number_generation=8, global_batch_size=60, max_new_tokens=600, max_length=512)
    errs = _errors(spec)
    assert "multiple of number_generation (8)" in errs["hyper.global_batch_size"].message
    assert "try 64" in errs["hyper.global_batch_size"].message
    assert "below max_length (512)" in errs["hyper.max_new_tokens"].message
    warn = {i.field for i in _spec(temperature=0.0, save_steps=20, max_steps=10).check()}
    assert {"hyper.temperature", "hyper.save_steps"} <= warn


def test_local_checks_are_loose_but_catch_nonsense():
    assert _errors(_spec("local", learning_rate=0.05, global_batch_size=16, number_generation=2)) == {}
    assert "hyper.number_generation" in _errors(_spec("local", number_generation=1, global_batch_size=8))
    assert "hyper.reasoning_effort" in _errors(_spec("local", reasoning_effort="high"))


def test_job_level_checks():
    spec = JobSpec(backend="sagemaker", name="my_job!", hyper=Hyperparameters(global_batch_size=64))
    errs = _errors(spec)
    assert {"name", "train_data", "reward", "model"} <= set(errs)
    assert "Nova 2 Lite" in errs["model"].message
    ok = JobSpec(backend="sagemaker", name="rft-1", model="amazon.nova-2-lite-v1:0:256k", train_data="s3://b/t.jsonl",
                 hyper=Hyperparameters(global_batch_size=64), aws={"reward_lambda_arn": "arn:aws:lambda:x"})
    assert _errors(ok) == {}


def test_require_valid_lists_every_error_at_once():
    spec = _spec("sagemaker", learning_rate=1.0, global_batch_size=8)
    with pytest.raises(UserError) as err:
        spec.require_valid()
    text = str(err.value)
    assert "hyper.learning_rate = 1" in text and "hyper.global_batch_size = 8" in text
    assert text.count("\n  - ") == 2


def test_every_surface_has_a_range_table():
    for surface in ("local", "smtj-lora", "smtj-full", "smhp-lora", "smhp-full", "bedrock"):
        assert "learning_rate" in ranges(surface)
    with pytest.raises(UserError, match="unknown surface"):
        ranges("ec2")


# -------------------------------------------------------------------------------------------- params


def test_from_params_fills_preset_run_paths_and_name(tmp_path):
    spec = from_params({"backend": "local", "learning_rate": 5e-4, "seed": 7}, run_dir=str(tmp_path / "my run"))
    assert spec.hyper.learning_rate == 5e-4 and spec.hyper.max_steps == 200 and spec.hyper.seed == 7
    assert spec.train_data == str(tmp_path / "my run" / "data" / "train.jsonl")
    assert spec.eval_data == str(tmp_path / "my run" / "data" / "eval.jsonl")
    assert spec.name == "rft-my-run"


def test_unset_values_take_each_surface_recipe_defaults_and_say_so():
    """Finding: the `nova` preset silently changed SMTJ's published defaults (top_k 0 instead of the recipe's 1,
    ent_coeff 0.001 instead of 0.0). Unset values now come from the surface's recipe (aws/sagemaker-hyperpod-recipes
    nova_lite_v2_smtj_p5_p5en_gpu_lora_rft.yaml: top_k 1, ent_coeff 0.0, lr 1e-4, number_generation 2, max_length
    8192; nova_lite_2_0_p5_gpu_lora_rft.yaml: top_k 0, ent_coeff 0.001), and `sources` says so."""
    smtj = from_params({"backend": "sagemaker", "model": "amazon.nova-2-lite-v1:0:256k", "learning_rate": 2e-5})
    h = smtj.hyper
    assert (h.top_k, h.entropy_coef, h.number_generation, h.max_length, h.global_batch_size) == (1, 0.0, 2, 8192, 64)
    assert (h.max_new_tokens, h.kl_coef, h.reasoning_effort, h.learning_rate) == (6000, 0.001, "high", 2e-5)
    assert smtj.sources["top_k"] == "recipe nova_lite_v2_smtj_p5_p5en_gpu_lora_rft"
    assert smtj.sources["learning_rate"] == "params" and smtj.sources["max_steps"] == "from epochs and the data size"
    smhp = from_params({"backend": "hyperpod"}).hyper
    assert (smhp.top_k, smhp.entropy_coef, smhp.number_generation, smhp.global_batch_size) == (0, 0.001, 8, 256)
    # A spec built directly gets the same treatment for the fields it leaves unset.
    assert derived.with_surface_defaults(_spec("sagemaker", max_steps=10)).hyper.top_k == 1


def test_nova_preset_sets_only_the_guidance_and_fits_the_surface():
    spec = from_params({"backend": "sagemaker", "preset": "nova"})
    h = spec.hyper
    assert (h.learning_rate, h.number_generation, h.max_new_tokens) == (1e-7, 8, 8192)
    assert h.global_batch_size == 64 and "replaced by the surface default" in spec.sources["global_batch_size"]
    assert (h.top_k, h.entropy_coef) == (1, 0.0)  # not the guidance's business: the recipe's values
    user = from_params({"backend": "sagemaker", "global_batch_size": 256})
    assert user.hyper.global_batch_size == 256 and "hyper.global_batch_size" in _errors(user)
    assert fit_to_surface({"learning_rate": 1e-9}, "hyperpod") == {"learning_rate": 7e-7}
    off = from_params({"backend": "hyperpod", "reasoning_effort": "none"})
    assert off.hyper.reasoning_effort is None and off.sources["reasoning_effort"] == "params"


def test_from_params_max_steps_zero_means_from_epochs():
    spec = from_params({"backend": "local", "max_steps": 0, "epochs": 3})
    assert spec.hyper.max_steps is None and spec.hyper.epochs == 3


def test_params_class_validates_the_spec_before_the_pipeline_runs():
    P = params.validate("04_launch_training", {"learning_rate": "1e-3", "aws": {}, "local": {"threads": 1}})
    assert P.learning_rate == 1e-3
    with pytest.raises(UserError, match="hyper.learning_rate = 1e-08.*1e-07..0.001"):
        params.validate("04_launch_training", {"backend": "sagemaker", "model": "amazon.nova-2-lite-v1:0:256k",
                                               "learning_rate": 1e-8})
    with pytest.raises(UserError, match="local.thread: unknown field"):
        params.validate("04_launch_training", {"local": {"thread": 1}})
    with pytest.raises(UserError, match="unknown backend|backend"):
        params.validate("04_launch_training", {"backend": "ec2"})


def test_default_name_is_an_aws_job_name():
    assert default_name("demo_2024 run!") == "rft-demo-2024-run"
    assert len(default_name("x" * 100)) == 63


def test_spec_rows_show_values_and_ranges():
    rows = {r[0]: r for r in _spec("hyperpod").rows()}
    assert rows["hyper.learning_rate"][1] == "1e-07" and rows["hyper.learning_rate"][2].startswith("1e-08..0.001")
    assert rows["hyper.max_steps"][1] == "from epochs"
    assert "aws.region" in rows and "local.threads" not in rows


# ------------------------------------------------------------------------------------------- derived


def test_derived_hyperpod_by_hand():
    d = derived.compute(_spec("hyperpod"), 1000, PRICES)
    assert (d.prompts_per_step, d.rollouts_per_step, d.steps_per_epoch, d.total_steps) == (32, 256, 32, 32)
    assert d.epochs_effective == pytest.approx(1.024)
    assert d.total_rollouts == 8192 and d.reward_calls == 8192
    assert d.completion_tokens_max == 8192 * 8192 and d.completion_tokens_expected == 8192 * 4096
    # 256 rollouts a step go to the reward 128 at a time (lambda_batch_size): 2 invocations, one wave at
    # concurrency 100, each scoring 128 samples of 0.5 s (the old estimate assumed one sample per call: 8192 calls)
    assert (d.lambda_concurrency, d.lambda_invocations, d.lambda_waves_per_step) == (100, 64, 1)
    assert (d.instance_type, d.instance_count) == ("ml.p5.48xlarge", 2)
    step = 256 * 0.5 * 8192 / (20000 * 2) + 1 * 128 * 0.5  # generation + 1 reward wave of 128 samples
    assert d.step_time_s == pytest.approx(step)
    assert d.wall_time_s == pytest.approx(1200 + 32 * step)
    hours = (1200 + 32 * step) / 3600 * 2
    assert d.instance_hours == pytest.approx(hours)
    assert d.compute_cost_usd == pytest.approx(hours * 100.0)
    lam = 64 / 1e6 * 0.2 + 8192 * 0.5 * 0.5 * 0.0000166667  # requests + GB-seconds of every sample
    assert d.lambda_cost_usd == pytest.approx(lam)
    assert d.cost_usd == pytest.approx(hours * 100.0 + lam)
    assert d.prices_as_of == "2000-01-01"


def test_derived_smtj_with_epochs_concurrency_and_measured_latency():
    spec = _spec("sagemaker", global_batch_size=64, epochs=2)
    d = derived.compute(spec, 100, PRICES, reward_latency_s=2.0, prompt_tokens_mean=100)
    # number_generation unset: the SMTJ recipe's 2 per prompt, so a step sees 64 / 2 = 32 prompts
    assert (d.prompts_per_step, d.steps_per_epoch, d.total_steps, d.total_rollouts) == (32, 4, 8, 512)
    assert d.epochs_effective == pytest.approx(8 * 32 / 100)
    assert (d.lambda_concurrency, d.lambda_waves_per_step, d.instance_count) == (12, 1, 4)  # one call of 64
    assert d.lambda_invocations == 8
    assert d.step_time_s == pytest.approx(64 * 0.5 * 6000 / (20000 * 4) + 64 * 2.0)  # recipe's 6000 new tokens
    assert d.tokens_expected == 512 * 100 + 512 * 3000
    assert not any("no measured latency" in a for a in d.assumptions)
    assert not d.warnings
    few = derived.compute(_spec("sagemaker", global_batch_size=64), 100, PRICES)
    assert few.total_steps == 4 and any("outside" in w and "5..100000" in w for w in few.warnings)
    # Finding: SMTJ forced number_generation to 2. The recipe has the key and the SDK keeps it: it is sent.
    four = derived.compute(_spec("sagemaker", global_batch_size=64, number_generation=4, epochs=2), 100, PRICES)
    assert four.prompts_per_step == 16 and not [i for i in spec.check() if i.field == "hyper.number_generation"]


def test_derived_local_preset_by_hand():
    spec = JobSpec.local_preset(train_data="t", reward="r")
    d = derived.compute(spec, 800, PRICES)
    assert (d.prompts_per_step, d.steps_per_epoch, d.total_steps, d.total_rollouts) == (16, 50, 200, 25600)
    assert d.epochs_effective == 4.0
    assert d.validation_reward_calls == 0  # no eval data: the worker validates nothing
    assert d.step_time_s == pytest.approx(128 * (26 + 8) / 9400)
    assert d.cost_usd is None and d.lambda_invocations is None
    assert d.basis["step_time_source"] == "bundled figure, not measured on this machine"
    # Finding: validations were counted as 200 // 50 = 4; the worker validates at step 0, every 50 steps and
    # at the last step: 0, 50, 100, 150, 200 = 5 passes.
    with_eval = derived.compute(spec.model_copy(update={"eval_data": "e"}), 800, PRICES)
    assert with_eval.validations == 5 and with_eval.validation_reward_calls == 5 * 64
    odd = spec.model_copy(update={"eval_data": "e", "hyper": spec.hyper.model_copy(update={"max_steps": 120})})
    assert derived.compute(odd, 800, PRICES).validations == 4  # 0, 50, 100 and the last step, 120


def test_derived_bedrock_uses_epochs_and_warns_on_size():
    spec = _spec("bedrock", max_steps=7, epochs=2, global_batch_size=128)
    d = derived.compute(spec, 50, PRICES)
    assert d.total_steps == 2 * math.ceil(50 / 16)
    assert any("100..20000" in w for w in d.warnings)
    assert d.wall_time_s is None and d.cost_usd is None and d.lambda_cost_usd is not None


def test_derived_unknown_price_gives_unknown_cost_not_zero():
    spec = _spec("hyperpod")
    spec.aws.instance_type = "ml.p5en.48xlarge"
    d = derived.compute(spec, 1000, PRICES)
    assert d.compute_cost_usd is None and d.cost_usd is None and d.wall_time_s is not None
    assert "unknown" in d.table()


def test_prices_override_file_merges_key_by_key(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"as_of": "2030-01-01", "instance_usd_per_hour": {"ml.p5.48xlarge": 50.0}}))
    prices = derived.load_prices(path)
    assert prices["as_of"] == "2030-01-01" and prices["instance_usd_per_hour"]["ml.p5.48xlarge"] == 50.0
    assert "ml.p5en.48xlarge" in prices["instance_usd_per_hour"] and "lambda" in prices
    with pytest.raises(UserError, match="missing.json does not exist: a prices file is a JSON object"):
        derived.load_prices(tmp_path / "missing.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(UserError, match="list.json holds list, not a JSON object; a prices file is"):
        derived.load_prices(tmp_path / "list.json")


def test_bundled_prices_are_dated():
    prices = derived.load_prices()
    assert len(prices["as_of"]) == 10 and prices["currency"] == "USD"


def test_count_records_and_for_run(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n{"a": 3}\n')
    assert derived.count_records(data / "train.jsonl") == 3
    assert derived.count_records("s3://bucket/train.jsonl") is None
    assert derived.count_records(tmp_path / "nope.jsonl") is None
    (tmp_path / "reward").mkdir()
    (tmp_path / "reward" / "report.json").write_text(json.dumps({"latency": {"p50_s": 0.25}}))
    spec = _spec("hyperpod").model_copy(update={"train_data": str(data / "train.jsonl")})
    d = calibration.for_run(spec, tmp_path, PRICES)
    assert d.n_train == 3 and d.step_time_s == pytest.approx(256 * 0.5 * 8192 / 40000 + 128 * 0.25)
    assert calibration.for_run(spec.model_copy(update={"train_data": "s3://b/t"}), tmp_path) is None
