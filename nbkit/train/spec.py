"""One typed job spec for every training backend, with the per-surface allowed ranges.

Why one object: the same hyperparameters, data, reward and output drive a local GRPO run on a CPU and a
Nova 2 Lite job on SageMaker, HyperPod or Bedrock, so a user who validated a run locally moves it to AWS
by changing `backend` (and the AWS settings), nothing else. The ranges are the AWS override templates'
(reference/nova-rft.md section 3); botocore checks minimums but not maximums, so we check both here,
before any call, with messages that name the field, the value and the allowed range.

Conventions used everywhere in `nbkit.train`:
- `global_batch_size` counts rollouts (completions) per optimizer step, as in TRL and the local preset
  (16 prompts x 8 generations = 128); prompts per step = global_batch_size / number_generation.
- `lora_rank == 0` means full-rank training; any other value selects LoRA (the Nova recipes do not expose
  the rank itself, only alpha and the LoRA+ ratio).
- `max_steps is None` means "derived from epochs" (see `nbkit.train.derived`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import Field, ValidationError, field_validator

from nbkit.errors import UserError
from nbkit.validation import StrictModel, user_error

Backend = Literal["local", "sagemaker", "hyperpod", "bedrock", "sagemaker-serverless"]
BACKENDS: tuple[str, ...] = get_args(Backend)
SURFACES: tuple[str, ...] = ("local", "smtj-lora", "smtj-full", "smhp-lora", "smhp-full", "bedrock",
                             "serverless-lora", "serverless-full")
SURFACE_TITLES = {
    "local": "local (TRL GRPO on this machine)",
    "smtj-lora": "SageMaker training job, LoRA",
    "smtj-full": "SageMaker training job, full rank",
    "smhp-lora": "SageMaker HyperPod, LoRA",
    "smhp-full": "SageMaker HyperPod, full rank",
    "bedrock": "Amazon Bedrock",
    "serverless-lora": "SageMaker AI serverless customization (RLVRTrainer), LoRA",
    "serverless-full": "SageMaker AI serverless customization (RLVRTrainer), full rank",
}
NOVA_2_LITE = "amazon.nova-2-lite-v1:0:256k"


class _Strict(StrictModel):
    """Typos in a params file must fail loudly, not fall back to a default silently."""


class Hyperparameters(_Strict):
    """The RFT knobs; defaults are AWS's documented general guidance for Nova RFT (reference section 3)."""

    epochs: int = Field(1, ge=1, description="passes over the training prompts (used when max_steps is not set)")
    learning_rate: float = Field(1e-7, gt=0, description="optimizer learning rate")
    number_generation: int = Field(8, ge=1, description="completions sampled per prompt (GRPO group size)")
    max_new_tokens: int = Field(8192, ge=1, description="longest completion, in tokens")
    global_batch_size: int = Field(256, ge=1, description="rollouts (completions) per optimizer step")
    lora_rank: int = Field(32, ge=0, description="LoRA rank; 0 means full-rank training")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling alpha")
    loraplus_lr_ratio: float = Field(64.0, ge=0, description="LoRA+ learning-rate ratio of B over A")
    temperature: float = Field(1.0, ge=0, description="sampling temperature of rollouts")
    top_k: int = Field(0, ge=0, description="top-k sampling of rollouts; 0 means off")
    max_length: int = Field(10240, ge=1, description="prompt + completion length limit, in tokens")
    kl_coef: float = Field(0.001, ge=0, description="KL penalty towards the base policy (beta); 0 means off")
    entropy_coef: float = Field(0.001, ge=0, description="entropy bonus (ent_coeff in the recipes)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay (regularization)")
    save_steps: int = Field(0, ge=0, description="checkpoint every N steps; 0 means only at the end")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; None means from epochs and the data size")
    reasoning_effort: Literal["low", "medium", "high"] | None = Field(
        None, description="Nova reasoning effort: low, medium or high; None means reasoning off"
    )
    seed: int = Field(0, description="seed of sampling, shuffling and initialization")

    @field_validator("reasoning_effort", mode="before")
    @classmethod
    def _effort(cls, value: Any) -> Any:
        """YAML `null`, "" and "none" all mean reasoning off."""
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def prompts_per_step(self) -> int:
        """Distinct prompts per step: every prompt is sampled number_generation times."""
        return max(1, self.global_batch_size // max(1, self.number_generation))

    @property
    def full_rank(self) -> bool:
        return self.lora_rank == 0


class AwsSettings(_Strict):
    """What the managed backends need besides the hyperparameters. Backends may add fields here.

    Empty strings mean "not set"; `None` counts mean "the surface's default" (see `surface_default`).
    """

    region: str = Field("us-east-1", description="AWS region of the job, the data bucket and the Lambda")
    role_arn: str = Field("", description="SageMaker execution role / Bedrock service role ARN")
    reward_lambda_arn: str = Field("", description="ARN of the deployed reward Lambda ('' = deploy one)")
    reward_lambda_name: str = Field("", description="name for the deployed reward Lambda ('' = from job name)")
    lambda_concurrency_limit: int | None = Field(
        None, ge=1, description="reward Lambda concurrency; None = surface default (SMHP 100, SMTJ 12)"
    )
    instance_type: str = Field("ml.p5.48xlarge", description="training instance type (SMTJ, SMHP)")
    instance_count: int | None = Field(None, ge=1, description="nodes / replicas; None = surface default")
    s3_bucket: str = Field("", description="bucket for data and outputs")
    s3_prefix: str = Field("rft-workbench", description="key prefix under the bucket")
    output_s3_path: str = Field("", description="s3:// output location; '' = s3://<bucket>/<prefix>/output")
    cluster_name: str = Field("", description="HyperPod cluster name")
    namespace: str = Field("kubeflow", description="HyperPod Kubernetes namespace")
    mlflow_tracking_uri: str = Field("", description="SageMaker managed MLflow tracking server ARN (SMHP)")
    image_uri: str = Field("", description="training image override; '' = the region's Nova RFT image")
    continue_from: str = Field("", description="checkpoint s3 path from a previous job's manifest.json")
    continue_from_scheme: Literal["", "lora", "full"] = Field(
        "", description="peft scheme of that checkpoint (must match this job: lora->lora, full->full)"
    )
    tags: dict[str, str] = Field(default_factory=dict, description="tags put on the created resources")
    # Added for the managed backends (nbkit.train.sagemaker / hyperpod / bedrock / nova_eval).
    lambda_role_arn: str = Field("", description="execution role of the reward Lambda deployed from a file")
    max_runtime_hours: float = Field(24.0, gt=0, le=672, description="SMTJ stopping condition (SDK default 1 h)")
    generation_replicas: int = Field(2, ge=1, description="HyperPod: nodes generating rollouts")
    rollout_worker_replicas: int = Field(1, ge=1, description="HyperPod: rollout workers calling the reward")
    cluster_nodes: int | None = Field(None, ge=1, description="HyperPod: p5 nodes in the cluster (documented min 8)")
    mlflow_experiment_name: str = Field("rft-workbench", description="HyperPod MLflow experiment name")
    custom_model_name: str = Field("", description="Bedrock custom model name; '' = from the job name")
    eval_interval: int | None = Field(None, ge=1, description="Bedrock evalInterval (1..100); None = service default")
    max_prompt_length: int | None = Field(None, ge=1, description="Bedrock maxPromptLength; None = service default")
    probe_reward: bool = Field(True, description="invoke the reward Lambda on 2 training records before submitting")
    model_package_group: str = Field("", description="serverless: model package group of the tuned model; '' = name")


class LocalSettings(_Strict):
    """Knobs of the local TRL backend only (threads, logging, evaluation during training)."""

    # 1: the tiny model trains faster on one thread than on two (the demo's 300 steps: 117 s against 183 s);
    # the numbers are the same with any count (nbkit.policy.determinism)
    threads: int = Field(1, ge=1, description="torch threads of the training worker (more only pays on a larger "
                                              "model)")
    device: str = Field("cpu", description="torch device")
    tracking_uri: str = Field("", description="MLflow tracking URI; '' = sqlite under <run>/training")
    experiment: str = Field("rft-workbench", description="MLflow experiment name")
    eval_every: int = Field(50, ge=0, description="validation reward every N steps; 0 = off")
    eval_prompts: int = Field(64, ge=0, description="eval-split prompts scored at each validation")
    log_every: int = Field(1, ge=1, description="log training metrics every N steps")
    log_completions: bool = Field(True, description="record every (step, prompt, completion, reward)")
    completions_every: int = Field(10, ge=1, description="MLflow completions table every N steps")
    max_prompt_length: int = Field(256, ge=1, description="prompts are truncated to this many tokens")
    lr_scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = Field(
        "constant", description="learning-rate schedule"
    )
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="share of steps spent warming up the lr")
    resume_from: str = Field("", description="'' = fresh; 'last' = latest checkpoint of the run; or a path")
    calibrate_steps: int = Field(
        4, ge=0, description="steps timed on this machine before a real launch (cached per model and settings) "
        "for the time estimate; 0 = none, the estimate then rests on the bundled figure")

    @field_validator("calibrate_steps")
    @classmethod
    def _two_steps_or_none(cls, value: int) -> int:
        if value == 1:
            raise ValueError("a step time needs two logged steps: use 0 (no calibration) or at least 2")
        return value


# The local preset: what actually learns on the ~1M-parameter default model on a CPU (measured, see
# /work/shared/reference/stack.md "Local RFT on a CPU"). LoRA on a 1M model needs a lr ~10^4 larger than
# Nova's guidance (5e-3 collapses, 3e-4 is slow); 8 new tokens fit the sample math answers; beta 0 skips
# the reference model (no KL term, half the forward passes); 16 prompts x 8 = 128 rollouts per step gives
# a clearly rising curve in 200 steps (~95 s on 2 cores); plain LoRA (LoRA+ ratio 1.0) is what was measured.
LOCAL_PRESET: dict[str, Any] = {
    "learning_rate": 1e-3,
    "lora_rank": 16,
    "lora_alpha": 32,
    "loraplus_lr_ratio": 1.0,
    "number_generation": 8,
    "global_batch_size": 128,
    "max_new_tokens": 8,
    "max_length": 512,
    "temperature": 1.0,
    "top_k": 0,
    "kl_coef": 0.0,
    "entropy_coef": 0.0,
    "max_steps": 200,
    "save_steps": 50,
}
# AWS's documented general guidance for Nova RFT (reference/nova-rft.md section 3), as an opt-in preset:
# only these six values, everything else stays the surface's own published default.
NOVA_GUIDANCE: dict[str, Any] = {"epochs": 1, "learning_rate": 1e-7, "number_generation": 8, "max_new_tokens": 8192,
                                 "global_batch_size": 256, "lora_rank": 32}
PRESETS: dict[str, dict[str, Any]] = {"nova": NOVA_GUIDANCE, "local-cpu": LOCAL_PRESET}


def preset_values(preset: str, backend: str) -> dict[str, Any]:
    """Hyperparameter values of a preset; "auto" = local-cpu locally, nothing (the surface's defaults) on AWS."""
    name = preset or "auto"
    if name == "auto":
        return dict(LOCAL_PRESET) if backend == "local" else {}
    if name not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; presets are: auto, {', '.join(PRESETS)}")
    return dict(PRESETS[name])


# Where each hyperparameter lives in the Nova recipes (SMTJ spelling; HyperPod spells the LoRA+ key
# `loraplus_lr_ratio`). A field without a recipe key (epochs, max_steps, seed, lora_rank) has no recipe default.
RECIPE_KEYS: dict[str, str] = {
    "learning_rate": "training_config.trainer.optim_config.lr",
    "weight_decay": "training_config.trainer.optim_config.weight_decay",
    "number_generation": "training_config.rollout.advantage_strategy.number_generation",
    "max_new_tokens": "training_config.rollout.generator.max_new_tokens",
    "temperature": "training_config.rollout.generator.temperature",
    "top_k": "training_config.rollout.generator.top_k",
    "global_batch_size": "training_config.global_batch_size",
    "max_length": "training_config.max_length",
    "reasoning_effort": "training_config.reasoning_effort",
    "kl_coef": "training_config.trainer.kl_loss_coef",
    "entropy_coef": "training_config.trainer.ent_coeff",
    "lora_alpha": "training_config.trainer.peft.lora_tuning.alpha",
    "loraplus_lr_ratio": "training_config.trainer.peft.lora_tuning.lora_plus_lr_ratio",
}
SAVE_AT_END = "save_steps"  # the recipes interpolate save_steps = max_steps: one checkpoint at the end (our 0)


def recipe_key(surface: str, name: str) -> str:
    """The recipe path of a hyperparameter (one of RECIPE_KEYS) on a surface, in that surface's spelling."""
    key = RECIPE_KEYS[name]
    if name == "loraplus_lr_ratio" and surface.startswith("smhp"):
        return key.replace("lora_plus_lr_ratio", "loraplus_lr_ratio")
    return key


def recipe_surface(surface: str) -> str | None:
    """The recipe template a surface runs (serverless runs the Hub's SMTJ template)."""
    if surface.startswith(("smtj", "smhp")):
        return surface
    if surface.startswith("serverless"):
        return surface.replace("serverless", "smtj")
    return None


def surface_defaults(surface: str) -> dict[str, tuple[Any, str]]:
    """field -> (value, where it comes from): the published recipe's value of every field it has."""
    template_key = recipe_surface(surface)
    if template_key is None:
        return {}
    from nbkit.train import recipes as rec

    recipe = rec.resolve(rec.load(template_key))
    source = "recipe " + rec.template(template_key).upstream.rsplit("/", 1)[-1]
    if surface.startswith("serverless"):
        source += " (the Hub's copy applies at submit)"
    out: dict[str, tuple[Any, str]] = {SAVE_AT_END: (0, source + ": save_steps = max_steps, one checkpoint at the end")}
    for name in RECIPE_KEYS:
        try:
            out[name] = (rec.get_path(recipe, recipe_key(surface, name)), source)
        except KeyError:
            continue
    return out


def with_surface_defaults(spec: JobSpec) -> JobSpec:
    """The spec with every hyperparameter the user did not set taken from the surface's published default,
    and `sources` saying where each value came from (the plan prints it).

    Why: a surface's recipe is the published default (SMTJ samples top_k 1 and no entropy bonus, HyperPod
    top_k 0 and ent_coeff 0.001); a workbench-wide default would silently change what runs.
    """
    names = list(Hyperparameters.model_fields)
    if all(name in spec.sources for name in names):
        return spec
    defaults = surface_defaults(spec.surface)
    guidance = "workbench default" if spec.surface == "local" else "AWS RFT guidance (no recipe value)"
    given = spec.hyper.model_fields_set
    values = spec.hyper.model_dump()
    sources = dict(spec.sources)
    for name in names:
        if name in sources:
            continue
        if name in given:
            sources[name] = "set"
        elif name in defaults:
            values[name], sources[name] = defaults[name]
        elif name == "max_steps" and values[name] is None:
            sources[name] = "from epochs and the data size"
        else:
            sources[name] = guidance if name in NOVA_GUIDANCE else "workbench default"
    return spec.model_copy(update={"hyper": Hyperparameters(**values), "sources": sources})


def from_recipe_default(spec: JobSpec, name: str) -> bool:
    """True when a value is the recipe's own: nothing needs to be sent for it (the recipe already holds it)."""
    return spec.sources.get(name, "").startswith("recipe ")


class JobSpec(_Strict):
    """Everything a backend needs to plan a training job. `dry_run` defaults to True: paid is opt-in."""

    backend: Backend = Field("local", description="where to train: local, sagemaker, hyperpod or bedrock")
    name: str = Field("rft-job", description="job name (also the base of AWS resource names)")
    model: str = Field("tiny", description="base model: 'tiny', a local HF folder, or the Nova model id")
    train_data: str = Field("", description="training JSONL (local path or s3://)")
    eval_data: str = Field("", description="evaluation JSONL (local path or s3://); '' = none")
    reward: str = Field("", description="reward spec: file.py, file.py:func, package.module:func, builtin:<name>")
    output: str = Field("", description="output location; '' = <run>/training (local) or from aws settings")
    dry_run: bool = Field(True, description="plan only, submit nothing (local runs are free: set false)")
    hyper: Hyperparameters = Field(default_factory=Hyperparameters)
    aws: AwsSettings = Field(default_factory=AwsSettings)
    local: LocalSettings = Field(default_factory=LocalSettings)
    sources: dict[str, str] = Field(
        default_factory=dict, description="hyperparameter -> where its value came from (set, preset, recipe, ...)"
    )

    @classmethod
    def local_preset(cls, **fields: Any) -> JobSpec:
        """A local job with the CPU preset; `hyper=` / `local=` dicts override single values of it."""
        hyper = LOCAL_PRESET | dict(fields.pop("hyper", None) or {})
        return cls(backend="local", hyper=Hyperparameters(**hyper), **fields)

    @property
    def surface(self) -> str:
        return surface_of(self.backend, self.hyper.lora_rank)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def steps(self, n_train: int) -> int:
        """Optimizer steps on this job's surface: with the generations its recipe really samples per prompt,
        and epochs only on Bedrock (no max_steps there)."""
        spec = with_surface_defaults(self)
        update: dict[str, Any] = {"number_generation": effective(spec, "number_generation")}
        if self.surface == "bedrock":
            update["max_steps"] = None
        return steps_for(spec.hyper.model_copy(update=update), n_train)

    def rows(self) -> list[tuple[str, str, str]]:
        """(field, value, allowed on this surface) rows: the spec as a plain table for reports."""
        table = ranges(self.surface)
        out = [(name, _fmt(getattr(self, name)), "") for name in
               ("backend", "name", "model", "train_data", "eval_data", "reward", "output", "dry_run")]
        out.append(("surface", SURFACE_TITLES[self.surface], ""))
        for name in Hyperparameters.model_fields:
            rng = table.get(name)
            allowed = "" if rng is None else (rng.describe() if rng.exposed else f"not used ({rng.note})")
            value = getattr(self.hyper, name)
            shown = "from epochs" if name == "max_steps" and value is None else _fmt(value)
            out.append((f"hyper.{name}", shown, allowed))
        settings = ("local", self.local) if self.backend == "local" else ("aws", self.aws)
        for name, value in settings[1].model_dump(mode="json").items():
            out.append((f"{settings[0]}.{name}", _fmt(value), ""))
        return out

    def table(self) -> str:
        """`rows()` as aligned plain text, for print() (widgets render blank in static HTML)."""
        rows = self.rows()
        w0, w1 = max(len(r[0]) for r in rows), min(60, max(len(r[1]) for r in rows))
        return "\n".join(f"{a:<{w0}}  {b:<{w1}}  {c}".rstrip() for a, b, c in rows)

    def check(self, surface: str | None = None) -> list[Issue]:
        """Every problem of this spec on a surface (default: its own), errors and warnings, none raised."""
        return check(self, surface)

    def errors(self, surface: str | None = None) -> list[Issue]:
        return [i for i in self.check(surface) if i.severity == "error"]

    def require_valid(self, surface: str | None = None) -> list[Issue]:
        """Raise one UserError listing every error; return the warnings so callers can show them."""
        issues = self.check(surface)
        errors = [i for i in issues if i.severity == "error"]
        if errors:
            where = SURFACE_TITLES[surface or self.surface]
            lines = "\n".join(f"  - {i}" for i in errors)
            raise UserError(f"job spec {self.name!r} is not valid for {where}:\n{lines}")
        return [i for i in issues if i.severity != "error"]


def surface_of(backend: str, lora_rank: int) -> str:
    """The range table that applies: the managed surfaces have different ranges for LoRA and full rank."""
    if backend in ("local", "bedrock"):
        return backend
    prefix = {"sagemaker": "smtj", "hyperpod": "smhp", "sagemaker-serverless": "serverless"}.get(backend)
    if prefix is None:
        raise UserError(f"unknown backend {backend!r}; backends are: {', '.join(BACKENDS)}")
    return f"{prefix}-{'full' if lora_rank == 0 else 'lora'}"


def from_dict(data: dict[str, Any], source: str = "job spec") -> JobSpec:
    """Build a spec from plain data (a job.json, a params section) with a readable error on bad fields."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        raise user_error(exc, f"invalid {source}", JobSpec, "field") from None


# --------------------------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class Range:
    """Allowed values of one field on one surface: an interval, a set of choices, or a note only.

    `default` is the surface's own recipe default (shown to the user), `log` asks for a log-scale slider,
    `exposed=False` marks a knob the surface's override template does not offer (value is not sent).
    """

    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    default: Any = None
    log: bool = False
    exposed: bool = True
    note: str = ""

    def contains(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        if value is None:
            return True
        return (self.lo is None or value >= self.lo) and (self.hi is None or value <= self.hi)

    def describe(self) -> str:
        if self.choices is not None:
            text = "{" + ", ".join("null" if c is None else _fmt(c) for c in self.choices) + "}"
        elif self.lo is not None and self.hi is not None:
            text = f"{_fmt(self.lo)}..{_fmt(self.hi)}"
        elif self.lo is not None:
            text = f">= {_fmt(self.lo)}"
        elif self.hi is not None:
            text = f"<= {_fmt(self.hi)}"
        else:
            text = "any"
        return text + (f" (default {_fmt(self.default)})" if self.default is not None else "")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


_SM_COMMON = {
    "max_steps": Range(5, 100000, default=10),
    "save_steps": Range(0, 100000, default=10, note="0 = at the end"),
    "max_length": Range(4096, 32768),
    "weight_decay": Range(0.0, 1.0, default=0.0),
    "reasoning_effort": Range(choices=("high", "low", None), default="high"),
    "temperature": Range(0.0, 2.0, default=1.0),
    "top_k": Range(0, None),
    "kl_coef": Range(0.0, None),
    "entropy_coef": Range(0.0, None),
}
_LORA_SMHP = {
    "lora_alpha": Range(choices=(16, 32, 64), default=32),
    "loraplus_lr_ratio": Range(1.0, 70.0, default=64.0),
}
_LORA_SMTJ = {
    "lora_alpha": Range(choices=(16, 32, 64), default=32),
    "loraplus_lr_ratio": Range(0.0, 100.0, default=64.0),
}
# SMTJ recipes carry training_config.rollout.advantage_strategy.number_generation (default 2) and the SDK
# keeps every recipe key it is given (sagemaker-train 1.27.0 sm_recipes/utils.py
# _drop_unknown_recipe_overrides drops only keys the recipe lacks); AWS's SMTJ sample uses 4. The SMTJ
# override template lists no range for it, so the HyperPod template's 2..16 applies.
_SMTJ_GENERATIONS = Range(2, 16, default=2, note="HyperPod template's range; the SMTJ template lists none")
_NOT_LORA = {
    "lora_alpha": Range(exposed=False, note="full-rank training has no LoRA alpha"),
    "loraplus_lr_ratio": Range(exposed=False, note="full-rank training has no LoRA+ ratio"),
}

# Serverless RFT (RLVRTrainer, compute=None) runs the Hub recipe's SMTJ template and takes the override
# parameters of its `SmtjOverrideParamsS3Uri` file (sagemaker-train 1.27.0
# common_utils/finetune_utils.py:_get_fine_tuning_options_and_model_arn). The parameters and ranges below are
# those of the nova_smtj_rft / nova_smtj_lora_rft templates in aws/sagemaker-hyperpod-recipes
# launcher/recipe_templatization/nova/nova_recipe_template_parameters.json, which the SDK's removal of
# `data_s3_path` and `reward_lambda_arn` (rlvr_trainer.py:_process_hyperparameters) matches; everything else
# is the recipe's own value.
_SERVERLESS_OFF = "not among the serverless override parameters; the Hub recipe's value applies"
_SERVERLESS = {
    "learning_rate": Range(1e-7, 1e-3, default=1e-5, log=True),
    "max_steps": Range(5, 100000, default=10),
    "save_steps": Range(0, 100000, default=10, note="0 = at the end"),
    "max_length": Range(4096, 32768, default=8192),
    **{name: Range(exposed=False, note=_SERVERLESS_OFF) for name in (
        "number_generation", "max_new_tokens", "temperature", "top_k", "kl_coef", "entropy_coef", "weight_decay",
        "reasoning_effort", "epochs")},
}

RANGES: dict[str, dict[str, Range]] = {
    "smhp-lora": _SM_COMMON
    | _LORA_SMHP
    | {
        "learning_rate": Range(1e-8, 1e-3, default=7e-7, log=True),
        "number_generation": Range(2, 16, default=8),
        "global_batch_size": Range(16, 256, default=256),
        "max_length": Range(4096, 32768, default=10240),
    },
    "smhp-full": _SM_COMMON
    | _NOT_LORA
    | {
        "learning_rate": Range(1e-8, 1e-3, default=7e-7, log=True),
        "number_generation": Range(2, 16, default=8),
        "global_batch_size": Range(16, 256, default=256),
        "max_length": Range(4096, 32768, default=10240),
    },
    "smtj-lora": _SM_COMMON
    | _LORA_SMTJ
    | {
        "learning_rate": Range(1e-7, 1e-3, default=1e-5, log=True),
        "number_generation": _SMTJ_GENERATIONS,
        "global_batch_size": Range(16, 128, default=64),
        "max_length": Range(4096, 32768, default=8192),
    },
    "smtj-full": _SM_COMMON
    | _NOT_LORA
    | {
        "learning_rate": Range(1e-7, 1e-3, default=1e-5, log=True),
        "number_generation": _SMTJ_GENERATIONS,
        "global_batch_size": Range(16, 256, default=64),
        "max_length": Range(4096, 32768, default=8192),
    },
    "bedrock": {
        "epochs": Range(1, 50, default=1),
        "global_batch_size": Range(16, 512),
        "learning_rate": Range(1e-7, 1e-3, log=True),
        "number_generation": Range(2, 16),
        "reasoning_effort": Range(choices=("low", "medium", "high", None)),
        "max_new_tokens": Range(1, None),
        "lora_alpha": Range(exposed=False, note="Bedrock does not expose LoRA settings"),
        "loraplus_lr_ratio": Range(exposed=False, note="Bedrock does not expose LoRA settings"),
        "temperature": Range(exposed=False, note="Bedrock does not expose sampling settings"),
        "top_k": Range(exposed=False, note="Bedrock does not expose sampling settings"),
        "kl_coef": Range(exposed=False, note="Bedrock does not expose the KL coefficient"),
        "entropy_coef": Range(exposed=False, note="Bedrock does not expose the entropy coefficient"),
        "weight_decay": Range(exposed=False, note="Bedrock does not expose weight decay"),
        "save_steps": Range(exposed=False, note="Bedrock does not expose checkpointing"),
        "max_length": Range(exposed=False, note="Bedrock takes maxPromptLength and inferenceMaxTokens"),
        "max_steps": Range(exposed=False, note="Bedrock trains for epochCount epochs"),
    },
    "serverless-lora": _SERVERLESS | _LORA_SMTJ | {"global_batch_size": Range(16, 128, default=64)},
    "serverless-full": _SERVERLESS | _NOT_LORA | {"global_batch_size": Range(16, 256, default=64)},
    # Loose sanity bounds: a local run is free, so only values that cannot work are errors.
    "local": {
        "learning_rate": Range(1e-8, 1e-1, log=True),
        "number_generation": Range(2, 64),
        "global_batch_size": Range(2, 4096),
        "max_new_tokens": Range(1, 131072),
        "max_length": Range(8, 131072),
        "lora_rank": Range(0, 256),
        "lora_alpha": Range(1, 1024),
        "loraplus_lr_ratio": Range(0.0, 100.0),
        "temperature": Range(0.0, 5.0),
        "top_k": Range(0, None),
        "kl_coef": Range(0.0, 10.0),
        "entropy_coef": Range(0.0, 10.0),
        "weight_decay": Range(0.0, 1.0),
        "max_steps": Range(1, 1000000),
        "save_steps": Range(0, 1000000),
        "epochs": Range(1, 1000),
        "reasoning_effort": Range(choices=(None,), note="reasoning effort is a Nova setting"),
    },
}

# Counts a surface applies when the spec leaves them unset. SMTJ: 2, 4, 6 or 8 instances for LoRA and full
# rank alike (AWS Nova 2 user guide, "Reinforcement Fine-Tuning (RFT) with Amazon Nova models", creating jobs;
# reference/nova-rft.md section 9); the default is the recipes' `run.replicas: 4`. HyperPod: the override
# templates' replicas enum {2, 4, 8, 16} with defaults 2 (LoRA) and 4 (full rank)
# (nova_recipe_template_parameters.json, nova_lora_rft / nova_rft).
SURFACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "smtj-lora": {"instance_count": 4, "instance_counts": (2, 4, 6, 8), "lambda_concurrency_limit": 12},
    "smtj-full": {"instance_count": 4, "instance_counts": (2, 4, 6, 8), "lambda_concurrency_limit": 12},
    "smhp-lora": {"instance_count": 2, "instance_counts": (2, 4, 8, 16), "lambda_concurrency_limit": 100},
    "smhp-full": {"instance_count": 4, "instance_counts": (2, 4, 8, 16), "lambda_concurrency_limit": 100},
    "bedrock": {"instance_count": None, "lambda_concurrency_limit": None, "min_prompts": 100, "max_prompts": 20000},
    "serverless-lora": {"instance_count": None, "lambda_concurrency_limit": 12},
    "serverless-full": {"instance_count": None, "lambda_concurrency_limit": 12},
    "local": {"instance_count": 1, "lambda_concurrency_limit": None},
}


def surface_default(surface: str, key: str) -> Any:
    return SURFACE_DEFAULTS.get(surface, {}).get(key)


def ranges(surface: str) -> dict[str, Range]:
    """The allowed range of each hyperparameter on a surface (fields without a range are unbounded)."""
    if surface not in RANGES:
        raise UserError(f"unknown surface {surface!r}; surfaces are: {', '.join(SURFACES)}")
    return RANGES[surface]


# --------------------------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Issue:
    """One problem of a spec: `field` is the dotted name (hyper.learning_rate), `value` what was given."""

    field: str
    value: Any
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.field} = {_fmt(self.value)}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "message": self.message, "severity": self.severity}


def check(spec: JobSpec, surface: str | None = None) -> list[Issue]:
    """Range checks of the surface plus cross-field checks that hold everywhere; nothing is raised."""
    spec = with_surface_defaults(spec)
    surface = surface or spec.surface
    title = SURFACE_TITLES.get(surface, surface)
    issues = _range_issues(spec.hyper, surface, title, spec.sources)
    issues += _cross_field_issues(spec, surface)
    issues += _job_issues(spec, surface)
    return issues


def _range_issues(hyper: Hyperparameters, surface: str, title: str, sources: dict[str, str]) -> list[Issue]:
    issues = []
    defaults = Hyperparameters()
    for name, rng in ranges(surface).items():
        value = getattr(hyper, name)
        field = f"hyper.{name}"
        if not rng.exposed and not sources.get(name, "set").startswith(("set", "params", "preset")):
            continue  # the surface's own default: nothing the user chose is being ignored
        if not rng.exposed:
            if rng.default is not None and value != rng.default:
                issues.append(Issue(field, value, f"not used on {title} ({rng.note}); its recipe's value "
                                    f"{_fmt(rng.default)} applies", "warning"))
            elif rng.default is None and value is not None and value != getattr(defaults, name):
                issues.append(Issue(field, value, f"not used on {title} ({rng.note}); the value is ignored", "warning"))
            continue
        if name == "max_steps" and value is None:
            continue
        if not rng.contains(value):
            issues.append(Issue(field, value, f"outside the allowed range on {title}: {rng.describe()}"))
    return issues


def _cross_field_issues(spec: JobSpec, surface: str) -> list[Issue]:
    """Relations between fields that no single range expresses."""
    h, issues = spec.hyper, []
    # Bedrock's API takes any batchSize in 16..512 with any trainingSamplePerPrompt (botocore
    # bedrock/2023-04-20 service model; no multiple-of rule documented), so the rule is the other surfaces'.
    if surface != "bedrock" and h.global_batch_size % h.number_generation:
        issues.append(Issue(
            "hyper.global_batch_size", h.global_batch_size,
            f"must be a multiple of number_generation ({h.number_generation}): every prompt is sampled "
            f"number_generation times; try {h.number_generation * max(1, round(h.global_batch_size / h.number_generation))}",
        ))
    if surface != "bedrock" and h.max_new_tokens >= h.max_length:
        issues.append(Issue(
            "hyper.max_new_tokens", h.max_new_tokens,
            f"must be below max_length ({h.max_length}), which also holds the prompt; raise max_length or "
            "lower max_new_tokens",
        ))
    if h.max_steps is not None and h.save_steps > h.max_steps and surface != "bedrock":
        issues.append(Issue(
            "hyper.save_steps", h.save_steps,
            f"larger than max_steps ({h.max_steps}): only the final checkpoint is saved", "warning",
        ))
    if h.temperature == 0 and h.number_generation > 1 and surface != "bedrock":
        issues.append(Issue(
            "hyper.temperature", h.temperature,
            "0 makes every generation of a prompt identical: every group has zero reward variance and GRPO "
            "learns nothing; use ~1.0", "warning",
        ))
    if surface == "local":
        lp = spec.local.max_prompt_length
        if lp + h.max_new_tokens > h.max_length:
            issues.append(Issue(
                "local.max_prompt_length", lp,
                f"plus max_new_tokens ({h.max_new_tokens}) exceeds max_length ({h.max_length})", "warning",
            ))
    if surface.startswith(("smtj", "smhp")) and h.lora_rank not in (0, 32):
        issues.append(Issue(
            "hyper.lora_rank", h.lora_rank,
            "Nova recipes do not expose the LoRA rank: any non-zero value selects the LoRA recipe "
            "(rank chosen by the service)", "warning",
        ))
    return issues


_AWS_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _job_issues(spec: JobSpec, surface: str) -> list[Issue]:
    """Top-level fields: what is missing, and names AWS would reject."""
    issues = []
    if not spec.train_data:
        issues.append(Issue("train_data", spec.train_data, "no training data: give a JSONL path (or s3:// URI)"))
    if not spec.reward and (surface == "local" or not spec.aws.reward_lambda_arn):
        issues.append(Issue("reward", spec.reward, "no reward: give a file.py, module:func or builtin:<name> (or aws.reward_lambda_arn)"))
    if surface == "local":
        if not spec.name or "/" in spec.name or spec.name in (".", ".."):
            issues.append(Issue("name", spec.name, "must be a non-empty name without '/'"))
    else:
        if spec.model == "tiny" or spec.model.startswith(("/", "./", "~")):
            issues.append(Issue(
                "model", spec.model,
                f"only Nova 2 Lite has RFT on AWS: set model to {NOVA_2_LITE!r} (or a checkpoint from a previous "
                "job's manifest.json via aws.continue_from)",
            ))
    if surface != "local" and not _AWS_NAME.match(spec.name):
        issues.append(Issue(
            "name", spec.name,
            "AWS job names are 1-63 letters, digits and hyphens, starting and ending with a letter or digit",
        ))
    return issues


# --------------------------------------------------------------------------------------------- params


def from_params(values: dict[str, Any], run_dir: str | None = None) -> JobSpec:
    """Build the spec from notebook 04's parameters (a LaunchTrainingParams dump or a params section).

    Hyperparameters left at None come from the preset ("auto": local-cpu for local, the surface's published
    recipe defaults on AWS; "nova": AWS's general guidance for six values); `max_steps: 0` means "from
    epochs", `reasoning_effort: none` means reasoning off; `aws` and `local` dicts fill the settings; empty
    data paths mean the run folder's split. The spec's `sources` says where each value came from.
    """
    values = dict(values)
    backend = values.get("backend") or "local"
    preset = str(values.get("preset") or "auto")
    hyper = preset_values(preset, backend)
    sources = {name: f"preset {preset}" for name in hyper}
    given = {name for name in Hyperparameters.model_fields if values.get(name) is not None}
    for name in given:
        hyper[name] = values[name]
        sources[name] = "params"
    if values.get("max_steps") == 0:  # 0 in a params file: "derive the steps from epochs", not the preset's
        hyper["max_steps"] = None
        sources["max_steps"] = "params (0: from epochs and the data size)"
    fitted = fit_to_surface(hyper, backend, keep=given)
    sources |= {name: f"{sources[name]}, replaced by the surface default (outside its range)"
                for name in fitted if fitted[name] != hyper[name]}
    hyper = fitted
    data: dict[str, Any] = {k: values[k] for k in ("backend", "name", "model", "reward", "dry_run") if k in values}
    data.update({k: values.get(k) or "" for k in ("train_data", "eval_data", "output")})
    if run_dir is not None:
        from nbkit.layout import RunLayout

        layout = RunLayout(run_dir)
        data["train_data"] = data["train_data"] or str(layout.split("train"))
        data["eval_data"] = data["eval_data"] or str(layout.split("eval"))
        if backend == "local":
            data["output"] = data["output"] or str(layout.training)
        if not values.get("name"):
            data["name"] = default_name(layout.root.name)
    data["hyper"] = hyper
    data["aws"] = values.get("aws") or {}
    data["local"] = values.get("local") or {}
    data["sources"] = sources
    return with_surface_defaults(from_dict(data, "04_launch_training parameters"))


def fit_to_surface(hyper: dict[str, Any], backend: str, keep: Collection[str] = frozenset()) -> dict[str, Any]:
    """Replace preset values the surface does not allow by the surface's own published default.

    Why: AWS's general guidance (batch 256) lies outside some surfaces' ranges (SMTJ LoRA: 16..128), so
    the Nova preset alone would make an invalid SMTJ job. Values the user set (`keep`) are never changed:
    those get a range error instead.
    """
    try:
        probe = Hyperparameters(**hyper)
    except ValidationError:
        return hyper  # the spec's own validation reports it, with the field names
    surface = surface_of(backend, probe.lora_rank)
    table, recipe = ranges(surface), surface_defaults(surface)
    out = dict(hyper)
    for name in hyper:
        rng = table.get(name)
        if name in keep or rng is None or not rng.exposed or out[name] is None or rng.contains(out[name]):
            continue
        default = recipe[name][0] if name in recipe else rng.default
        if default is not None:
            out[name] = default
    return out


def effective(spec: JobSpec, name: str) -> Any:
    """The value a surface really uses: a knob it does not expose keeps its recipe's value (serverless: the
    recipe's 2 generations per prompt)."""
    rng = ranges(spec.surface).get(name)
    if rng is not None and not rng.exposed:
        recipe = surface_defaults(spec.surface).get(name)
        if recipe is not None:
            return recipe[0]
        if rng.default is not None:
            return rng.default
    return getattr(spec.hyper, name)


def default_name(run_name: str) -> str:
    """A job name AWS accepts, from the run folder's name (rft-<run>, cleaned, at most 63 characters)."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", run_name).strip("-") or "job"
    return f"rft-{cleaned}"[:63].rstrip("-")


def steps_for(hyper: Hyperparameters, n_train: int) -> int:
    """Optimizer steps of a run: max_steps, or enough steps to see every prompt `epochs` times."""
    if hyper.max_steps is not None:
        return hyper.max_steps
    return hyper.epochs * max(1, math.ceil(n_train / hyper.prompts_per_step))
