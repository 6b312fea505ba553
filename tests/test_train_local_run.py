"""Short local GRPO runs on a tiny model built here: MLflow metrics, completions, Nova layout, stop/resume.

The reward raises for the first rollout of every prompt group (sample ids end in "-0"), so exactly a quarter
of each step's rollouts fail: training must go on and count them in reward_error_rate.
"""

from __future__ import annotations

import json
import time

import pytest

from nbkit.train import local
from nbkit.train.spec import LOCAL_PRESET, Hyperparameters, JobSpec, LocalSettings

pytestmark = pytest.mark.slow

NORMALIZED = ("reward_mean", "reward_std", "reward_p10", "reward_p50", "reward_p90", "share_high", "share_medium",
              "share_low", "reward_error_rate", "rollout_completion_rate", "zero_var_group_share", "entropy", "kl",
              "completion_len_mean", "clipped_share", "lr", "grad_norm", "policy_updates")
PROMPTS, GENERATIONS = 4, 4
ROLLOUTS = PROMPTS * GENERATIONS

REWARD = '''
def lambda_handler(event, context):
    """Longer answers score higher (random text varies in length, so groups have reward variance);
    raises on the first sample of each group (ids end in -0)."""
    out = []
    for sample in event:
        if sample["id"].endswith("-0"):
            raise ValueError("first sample of the group")
        text = sample["messages"][-1]["content"]
        score = min(1.0, len(text) / 24)
        out.append({"id": sample["id"], "aggregate_reward_score": score,
                    "metrics_list": [{"name": "length", "value": score, "type": "Reward"},
                                     {"name": "chars", "value": len(text), "type": "Metric"}]})
    return out
'''


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Math records, the reward file and a randomly initialised tiny Qwen2 model (built in ~1 s, no warm start)."""
    from nbkit.data.io import write_jsonl
    from nbkit.data.samples import make_task
    from nbkit.policy import tiny

    root = tmp_path_factory.mktemp("local-train")
    train, evals = make_task("math", n_train=48, n_eval=8, seed=0)
    write_jsonl(root / "train.jsonl", train)
    write_jsonl(root / "eval.jsonl", evals)
    (root / "reward.py").write_text(REWARD)
    recipe = tiny.resolve_recipe("smoke")
    examples, _ = tiny._examples(train, recipe)
    tokenizer = tiny.build_tokenizer([tiny._render(m, a) for m, a in examples], recipe)
    model = tiny.build_model(tokenizer, recipe)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    return root


def make_spec(root, max_steps: int, **local_settings) -> JobSpec:
    hyper = LOCAL_PRESET | {"global_batch_size": ROLLOUTS, "number_generation": GENERATIONS, "max_new_tokens": 6,
                            "max_steps": max_steps, "save_steps": 2}
    settings = {"threads": 2, "eval_every": 2, "eval_prompts": 8, "completions_every": 2} | local_settings
    return JobSpec(backend="local", name="t", model=str(root / "model"), train_data=str(root / "train.jsonl"),
                   eval_data=str(root / "eval.jsonl"), reward=str(root / "reward.py"), dry_run=False,
                   hyper=Hyperparameters(**hyper), local=LocalSettings(**settings))


def run_in_process(spec: JobSpec, run_dir) -> local.LocalJobHandle:
    from nbkit.train.local_worker import Worker

    spec = spec.model_copy(update={"output": str(run_dir / "training")})
    handle = local.prepare(local.plan(spec), run_dir)
    Worker(handle.files.job_dir).run()
    return handle


def metric_steps(client, run_id: str, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run_id, key)]


def test_short_run_logs_metrics_completions_and_nova_layout(workspace, monkeypatch):
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForCausalLM

    steps = 4
    handle = run_in_process(make_spec(workspace, steps), workspace / "run-a")
    assert handle.status() == "completed", handle.error() + "\n" + handle.logs(tail=30)
    assert handle.progress() == (steps, steps)

    client = MlflowClient(handle.tracking_uri)
    run = client.get_run(handle.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert handle.tracking_uri == f"sqlite:///{(workspace / 'run-a' / 'training' / 'mlflow.db').resolve()}"
    # stored relative to the run folder (a copied run shows its own artifacts); MLflow reads them from there
    assert run.info.artifact_uri == f"training/mlartifacts/{run.info.run_id}/artifacts"
    monkeypatch.chdir(workspace / "run-a")
    for key in NORMALIZED + ("loss", "advantage_max", "completions/max_length"):  # ours and TRL's own
        assert metric_steps(client, run.info.run_id, key) == list(range(1, steps + 1)), key
    logged = set(run.data.metrics)  # one name per metric: no TRL copy of what a normalized name carries
    assert not logged & {"reward", "learning_rate", "completions/mean_length", "completions/clipped_ratio",
                         "frac_reward_zero_std"} and not [k for k in logged if k.startswith("rewards/")]
    description = run.data.tags["mlflow.note.content"]
    assert description.startswith("t: GRPO with LoRA rank") and "4 steps" in description
    assert description.endswith("Completed at step 4.")
    kind = client.get_experiment(run.info.experiment_id).tags.get("mlflow.experimentKind")
    assert kind == "custom_model_development"  # the MLflow UI opens on the training runs, not GenAI traces
    assert metric_steps(client, run.info.run_id, "val_reward") == [0, 2, 4]  # base model, then every 2 steps
    error_rates = [m.value for m in client.get_metric_history(run.info.run_id, "reward_error_rate")]
    assert error_rates == [0.25] * steps  # one failing rollout in every group of 4, never fatal
    updates = [m.value for m in client.get_metric_history(run.info.run_id, "policy_updates")]
    assert updates == [1.0, 2.0, 3.0, 4.0]
    assert run.data.params["hyper.learning_rate"] == "0.001" and run.data.params["trl.beta"] == "0.0"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"spec.json", "plan.json", "completions", "validation", "output"} <= artifacts
    tables = sorted(a.path for a in client.list_artifacts(run.info.run_id, "completions"))
    assert tables == ["completions/step_000001.json", "completions/step_000002.json", "completions/step_000004.json"]

    table = handle.completions()
    assert len(table) == steps * ROLLOUTS
    assert {"step", "prompt_id", "prompt", "completion", "reward", "status", "components"} <= set(table.columns)
    assert table.groupby("step").size().to_dict() == dict.fromkeys(range(1, steps + 1), ROLLOUTS)
    failed = table[table["sample"] == 0]
    assert (failed["status"] == "exception").all() and (failed["reward"] == 0.0).all()
    assert failed["error"].str.contains("first sample of the group").all()
    ok = table[table["sample"] != 0]
    assert (ok["status"] == "ok").all()
    assert json.loads(ok["components"].iloc[0]).keys() == {"length", "chars"}
    means = [m.value for m in client.get_metric_history(run.info.run_id, "reward_mean")]
    assert means == pytest.approx(table.groupby("step")["reward"].mean().tolist())

    folder = handle.outputs(workspace / "fetched")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["checkpoint_s3_bucket"] == "training/checkpoints/final"  # relative to the run folder
    assert local.load_tuned_model_path(workspace / "run-a") == handle.checkpoint.resolve()
    from nbkit.train.nova_layout import NOVA_COLUMNS, read_output

    csv = read_output(folder).metrics
    assert list(csv.columns) == list(NOVA_COLUMNS)
    assert csv["step_number"].tolist() == list(range(1, steps + 1))
    assert csv["train_reward_mean"].tolist() == pytest.approx(means)
    assert csv["gradient_norm"].notna().all() and csv["max_advantage"].notna().all()

    tuned = AutoModelForCausalLM.from_pretrained(handle.checkpoint)
    base = AutoModelForCausalLM.from_pretrained(workspace / "model")
    assert "lora" not in " ".join(n for n, _ in tuned.named_parameters())  # merged, a plain HF model
    changed = [n for (n, p), (_, q) in zip(tuned.named_parameters(), base.named_parameters(), strict=True)
               if not p.detach().equal(q.detach())]
    assert changed, "training did not change any weight"


def test_missing_reward_file_fails_with_the_reason(workspace):
    spec = make_spec(workspace, 2).model_copy(update={"reward": str(workspace / "no_such_reward.py")})
    handle = run_in_process(spec, workspace / "run-b")
    assert handle.status() == "failed"
    assert "no_such_reward.py" in handle.error() and "not found" in handle.error()


def test_background_job_stops_gracefully_and_resumes_after_reattach(workspace):
    from mlflow.tracking import MlflowClient

    from nbkit.train import launch, load_job

    run_dir = workspace / "run-c"
    steps = 6
    spec = make_spec(workspace, steps, eval_every=0)
    started = time.monotonic()
    handle = launch(spec, run_dir)
    assert time.monotonic() - started < 5  # returns at once; the worker trains in the background
    assert handle.status() in ("pending", "running")

    again = load_job(run_dir)  # a notebook restart: only the run folder is known
    assert isinstance(again, local.LocalJobHandle) and again.job_id == handle.job_id
    deadline = time.monotonic() + 180
    while (again.progress() or (0, 0))[0] < 2 and again.status() in ("pending", "running"):
        assert time.monotonic() < deadline, again.logs(tail=30)
        time.sleep(0.3)
    again.stop()
    assert again.status() == "stopped", again.error() + "\n" + again.logs(tail=30)
    stopped_at = again.progress()[0]
    assert 2 <= stopped_at < steps
    assert (again.files.checkpoints / f"checkpoint-{stopped_at}").is_dir()  # the stop saved a checkpoint
    assert (again.checkpoint / "config.json").exists()  # and a usable model
    first_csv = (again.outputs() / "step_wise_training_metrics.csv").read_text().splitlines()
    assert len(first_csv) == 1 + stopped_at

    again.resume()
    assert again.wait(timeout=240, progress=False) == "completed", again.error() + "\n" + again.logs(tail=30)
    info = again.info()
    assert info["step"] == steps and info["attempt"] == 2
    client = MlflowClient(again.tracking_uri)
    run_id = again.mlflow_run_id
    assert run_id == json.loads((run_dir / "training" / "job.json").read_text())["handle"]["mlflow_run_id"]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert metric_steps(client, run_id, "reward_mean") == list(range(1, steps + 1))  # one value per step
    table = again.completions()
    assert len(table) == steps * ROLLOUTS
    assert not table.duplicated(["step", "prompt_id", "sample"]).any()
    csv = (again.outputs() / "step_wise_training_metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in csv[1:]] == [str(s) for s in range(1, steps + 1)]


def test_a_killed_worker_is_recorded_and_launching_again_resumes_from_its_checkpoint(workspace):
    """kill -9 of the worker: the job reads failed, its MLflow run is closed as FAILED with the reason, and the
    same launch (what `nbkit run --from 04` does) continues from the last checkpoint, deleting nothing."""
    import os
    import signal

    import psutil
    from mlflow.tracking import MlflowClient

    from nbkit.errors import UserError
    from nbkit.train import launch

    run_dir = workspace / "run-kill"
    steps = 8
    spec = make_spec(workspace, steps, eval_every=0)
    handle = launch(spec, run_dir)
    deadline = time.monotonic() + 180
    while not (handle.files.checkpoints / "checkpoint-2").is_dir() or (handle.progress() or (0, 0))[0] < 3:
        assert time.monotonic() < deadline and handle.status() in ("pending", "running"), handle.logs(tail=30)
        time.sleep(0.2)
    pid = handle.info()["pid"]
    os.kill(pid, signal.SIGKILL)
    psutil.Process(pid).wait(timeout=30) if psutil.pid_exists(pid) else None
    assert handle.status() == "failed"
    assert "ended without reporting" in handle.error()
    client = MlflowClient(handle.tracking_uri)
    dead = client.get_run(handle.mlflow_run_id)
    assert dead.info.status == "FAILED" and "ended without reporting" in dead.data.tags["nbkit.end_reason"]
    kept = handle.files.latest_checkpoint()
    assert kept is not None

    with pytest.raises(UserError, match="restart: true"):  # other settings never silently start over
        launch(spec.model_copy(update={"hyper": spec.hyper.model_copy(update={"learning_rate": 2e-3})}), run_dir)
    resumed = launch(spec, run_dir)
    assert resumed.job_id == handle.job_id and kept.is_dir()
    assert resumed.wait(timeout=240, progress=False) == "completed", resumed.error() + resumed.logs(tail=30)
    info = resumed.info()
    assert info["step"] == steps and info["attempt"] == 2
    assert client.get_run(resumed.mlflow_run_id).info.status == "FINISHED"
    logged = metric_steps(client, resumed.mlflow_run_id, "reward_mean")
    redone = int(kept.name.split("-")[1])  # steps after the checkpoint ran twice: MLflow keeps both points
    assert sorted(set(logged)) == list(range(1, steps + 1)) and logged[:redone] == list(range(1, redone + 1))
    assert [s for s in range(1, steps + 1) if (resumed.metrics()["step"] == s).sum() != 1] == []

    fresh = launch(spec, run_dir, restart=True)  # an explicit restart: a new job, the old files kept
    assert fresh.job_id != handle.job_id
    old = run_dir / "training" / "previous" / handle.job_id
    assert (old / "checkpoints" / "final" / "config.json").exists() and (old / "job" / "status.json").exists()
    fresh.stop()
