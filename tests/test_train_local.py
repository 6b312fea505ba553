"""Local backend pieces that need no model: the Nova output layout, step statistics, the plan, the handle."""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import time

import pytest

from nbkit.errors import UserError
from nbkit.train import local
from nbkit.train.nova_layout import (
    NOVA_COLUMNS,
    extract_output,
    metrics_csv,
    nova_row,
    read_output,
    write_output,
)
from nbkit.train.spec import LOCAL_PRESET, Hyperparameters, JobSpec, LocalSettings


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


# ------------------------------------------------------------------------------------------ Nova layout


def test_write_output_roundtrip_has_nova_members_and_columns(tmp_path):
    rows = [
        {"step_number": 1, "epoch_number": 0, "train_reward_mean": 0.25, "train_episode_length_mean": 3.5,
         "policy_entropy": 1.2, "gradient_norm": 0.4, "mean_advantage": 0.0, "min_advantage": -1.5,
         "max_advantage": 2.0},
        {"step_number": 2, "epoch_number": 0, "train_reward_mean": 0.5, "policy_entropy": float("nan")},
    ]
    archive = write_output(tmp_path / "out", tmp_path / "ckpt", rows)
    assert archive == tmp_path / "out" / "output.tar.gz"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["manifest.json", "step_wise_training_metrics.csv"]
        header = tar.extractfile("step_wise_training_metrics.csv").read().decode().splitlines()[0]
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert header.split(",") == list(NOVA_COLUMNS)
    assert manifest == {"checkpoint_s3_bucket": str(tmp_path / "ckpt")}
    out = read_output(archive)
    assert out.checkpoint == str(tmp_path / "ckpt")
    assert out.metrics["step_number"].tolist() == [1, 2]
    assert out.metrics["train_reward_mean"].tolist() == [0.25, 0.5]
    assert out.metrics["min_advantage"].iloc[0] == -1.5
    assert math.isnan(out.metrics["policy_entropy"].iloc[1])  # missing values stay missing, never 0
    assert oct(archive.stat().st_mode & 0o777) == oct(0o644)


def test_metrics_csv_writes_integers_for_step_and_epoch_and_blank_for_missing():
    text = metrics_csv([{"step_number": 3.0, "epoch_number": 1.7, "train_reward_mean": None}])
    assert text.splitlines()[1].split(",")[:3] == ["3", "1", ""]


def test_reader_tolerates_extra_missing_and_reordered_columns_in_nested_archive(tmp_path):
    csv = (
        "Epoch_Number, step_number,train_reward_mean,new_metric,run_note\n"
        "0,2,0.5,7,b\n"
        "0,1,0.25,3,a\n"
    )
    archive = tmp_path / "output.tar.gz"
    _tar(archive, {"job/output/step_wise_training_metrics.csv": csv.encode(),
                   "job/output/manifest.json": b'{"checkpoint_s3_bucket": "s3://escrow/job/step5", "x": 1}'})
    out = read_output(archive)
    frame = out.metrics
    assert list(frame.columns[: len(NOVA_COLUMNS)]) == list(NOVA_COLUMNS)
    assert frame["step_number"].tolist() == [1, 2]  # sorted by step
    assert frame["new_metric"].tolist() == [3, 7]  # extra numeric column kept
    assert frame["run_note"].tolist() == ["a", "b"]  # text column kept as text
    assert frame["gradient_norm"].isna().all()  # missing Nova column present, empty
    assert out.checkpoint == "s3://escrow/job/step5"
    assert out.manifest["x"] == 1


def test_reader_accepts_folders_and_extract_copies_bytes(tmp_path):
    archive = write_output(tmp_path / "a", "/ckpt", [{"step_number": 1, "train_reward_mean": 0.1}])
    dest = extract_output(archive, tmp_path / "x")
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "step_wise_training_metrics.csv"]
    with tarfile.open(archive) as tar:
        assert (dest / "step_wise_training_metrics.csv").read_bytes() == tar.extractfile(
            "step_wise_training_metrics.csv").read()
    assert read_output(dest).checkpoint == "/ckpt"  # folder with the two files
    assert read_output(tmp_path / "a").checkpoint == "/ckpt"  # folder with the archive


def test_reader_errors_say_what_is_missing(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_output(tmp_path / "nope.tar.gz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no Nova training output"):
        read_output(tmp_path / "empty")
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tar")
    with pytest.raises(UserError, match="not a readable tar.gz"):
        read_output(bad)
    other = tmp_path / "other.tar.gz"
    _tar(other, {"readme.txt": b"hi"})
    with pytest.raises(UserError, match="neither manifest.json nor"):
        read_output(other)
    broken = tmp_path / "broken.tar.gz"
    _tar(broken, {"manifest.json": b"{not json"})
    with pytest.raises(UserError, match="manifest.json is not valid JSON"):
        read_output(broken)


def test_hostile_member_names_never_escape_the_destination(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    _tar(archive, {"../../manifest.json": b'{"checkpoint_s3_bucket": "x"}', "/etc/passwd": b"root"})
    dest = extract_output(archive, tmp_path / "dest")
    assert [p.name for p in dest.iterdir()] == ["manifest.json"]
    assert not (tmp_path.parent / "manifest.json").exists()


# ------------------------------------------------------------------------------------------ statistics


def test_reward_stats_hand_computed():
    rewards = [1.0, 1.0, 0.0, 0.5, 0.9, 0.1]
    statuses = ["ok", "ok", "exception", "ok", "ok", "ok"]
    groups = ["a", "a", "b", "b", "c", "c"]
    stats = local.reward_stats(rewards, statuses, groups)
    assert stats["reward_mean"] == pytest.approx(3.5 / 6)
    assert stats["reward_std"] == pytest.approx(math.sqrt(1.0283333333 / 5), rel=1e-6)  # ddof=1, as TRL
    assert stats["reward_p50"] == pytest.approx(0.7)
    assert stats["share_high"] == pytest.approx(3 / 6)  # 1.0, 1.0, 0.9 (>= 0.8)
    assert stats["share_low"] == pytest.approx(2 / 6)  # 0.0, 0.1 (< 0.2)
    assert stats["share_medium"] == pytest.approx(1 / 6)
    assert stats["reward_error_rate"] == pytest.approx(1 / 6)
    assert stats["rollout_completion_rate"] == pytest.approx(5 / 6)
    assert stats["zero_var_group_share"] == pytest.approx(1 / 3)  # only group a is flat


def test_nova_row_maps_normalized_names():
    row = nova_row(7, {"epoch": 1.75, "reward_mean": 0.3, "completion_len_mean": 4.0, "entropy": 2.0,
                       "grad_norm": 0.1, "advantage_mean": 0.0, "advantage_min": -1.0, "advantage_max": 1.0})
    assert row == {"step_number": 7, "epoch_number": 1, "train_reward_mean": 0.3, "train_episode_length_mean": 4.0,
                   "policy_entropy": 2.0, "gradient_norm": 0.1, "mean_advantage": 0.0, "min_advantage": -1.0,
                   "max_advantage": 1.0}


# ------------------------------------------------------------------------------------------------ plan


def _spec(tmp_path, **hyper) -> JobSpec:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}]}) + "\n"
                             for i in range(40)))
    return JobSpec(backend="local", name="t", train_data=str(train), eval_data="", reward="builtin:numeric",
                   output=str(tmp_path / "training"), dry_run=False,
                   hyper=Hyperparameters(**(LOCAL_PRESET | hyper)), local=LocalSettings(threads=1))


def test_plan_sets_cpu_safe_trainer_config_from_spec(tmp_path):
    plan = local.plan(_spec(tmp_path, kl_coef=0.02, entropy_coef=0.001, max_steps=None, epochs=2,
                            global_batch_size=32, number_generation=4))
    grpo = plan.request["grpo_config"]
    assert grpo["bf16"] is False and grpo["fp16"] is False and grpo["gradient_checkpointing"] is False
    assert grpo["learning_rate"] == 1e-3 and grpo["beta"] == 0.02 and grpo["entropy_coef"] == 0.001
    assert grpo["per_device_train_batch_size"] == 32 and grpo["num_generations"] == 4
    assert grpo["max_completion_length"] == 8
    assert grpo["max_steps"] == 10  # 40 prompts / 8 per step x 2 epochs
    assert grpo["report_to"] == "none"  # the worker logs to MLflow itself
    assert plan.request["peft"]["r"] == 16 and plan.request["peft"]["target_modules"] == "all-linear"
    assert plan.request["loraplus_lr_ratio"] is None  # ratio 1.0 = plain LoRA
    assert plan.request["mlflow"]["tracking_uri"] == f"sqlite:///{(tmp_path / 'training' / 'mlflow.db').resolve()}"
    assert any("val_reward" in w for w in plan.warnings)  # no eval data
    assert "local plan" in plan.describe()


def test_plan_full_rank_and_loraplus(tmp_path):
    full = local.plan(_spec(tmp_path, lora_rank=0))
    assert full.request["peft"] is None and full.request["kl_measured"] is False
    plus = local.plan(_spec(tmp_path, loraplus_lr_ratio=16.0))
    assert plus.request["loraplus_lr_ratio"] == 16.0
    with pytest.raises(UserError, match="freezes LoRA's B"):
        local.plan(_spec(tmp_path, loraplus_lr_ratio=0.0))


def test_plan_refuses_other_backends(tmp_path):
    spec = _spec(tmp_path).model_copy(update={"backend": "bedrock"})
    with pytest.raises(UserError, match="cannot plan a 'bedrock' job"):
        local.plan(spec)


# ---------------------------------------------------------------------------------------------- handle


def _handle(tmp_path, status: dict | None) -> local.LocalJobHandle:
    files = local.LocalPaths(tmp_path / "training")
    files.job_dir.mkdir(parents=True)
    local.LocalJobConfig(job_id="job-1", run_dir=str(tmp_path), training_dir=str(files.training),
                         spec=JobSpec.local_preset(local={"experiment": "e"}),
                         tracking_uri=f"sqlite:///{tmp_path / 'training' / 'x.db'}",
                         submitted="2026-12-02T00:00:00+00:00").write(files.config)
    if status is not None:
        files.status.write_text(json.dumps(status))
    return local.LocalJobHandle("job-1", tmp_path, files.training)


def test_status_of_a_worker_that_died_silently_is_failed_with_a_pointer_to_the_log(tmp_path):
    handle = _handle(tmp_path, {"status": "running", "pid": 2**22 + 12345, "step": 3, "max_steps": 10,
                                "updated_ts": time.time() - 100})
    assert handle.status() == "failed"
    assert "ended without reporting" in handle.error() and "worker.log" in handle.error()
    assert handle.progress() == (3, 10)


def test_status_running_while_the_worker_process_lives(tmp_path):
    import psutil

    me = psutil.Process(os.getpid())
    handle = _handle(tmp_path, {"status": "running", "pid": me.pid, "pid_create_time": me.create_time()})
    assert handle.status() == "running"
    reused = _handle(tmp_path / "b", {"status": "running", "pid": me.pid, "pid_create_time": me.create_time() - 50})
    assert reused.status() == "failed"  # same pid, different process: not our worker


def test_terminal_status_and_to_dict_for_job_json(tmp_path):
    handle = _handle(tmp_path, {"status": "stopped", "mlflow_run_id": "abc", "step": 5, "max_steps": 10})
    assert handle.status() == "stopped"
    data = handle.to_dict()
    assert data["mlflow_run_id"] == "abc" and data["tracking_uri"] == f"sqlite:///{tmp_path}/training/x.db"
    stored = json.loads(handle.files.config.read_text())  # the run's own paths, relative to the run folder
    assert stored["tracking_uri"] == "sqlite:///training/x.db" and stored["run_dir"] == ".."
    assert data["training_dir"] == "training"
    assert data["checkpoint"].endswith("checkpoints/final") and data["output_dir"].endswith("training/output")
    again = local.handle_from_dict(data, tmp_path)
    assert again.job_id == "job-1" and again.files.training == tmp_path / "training"
    with pytest.raises(UserError, match="has not written"):
        handle.outputs()


def test_progress_reader_skips_a_half_written_last_line(tmp_path):
    path = tmp_path / "progress.jsonl"
    path.write_text('{"kind": "train", "step": 1}\n{"kind": "train", "st')
    assert local.read_progress(path) == [{"kind": "train", "step": 1}]


def test_metrics_frame_keeps_last_value_of_a_repeated_step_and_joins_validation(tmp_path):
    handle = _handle(tmp_path, {"status": "completed"})
    lines = [{"kind": "eval", "step": 0, "val_reward": 0.1}, {"kind": "train", "step": 1, "reward_mean": 0.2},
             {"kind": "train", "step": 2, "reward_mean": 0.9}, {"kind": "train", "step": 2, "reward_mean": 0.3},
             {"kind": "eval", "step": 2, "val_reward": 0.4}]
    handle.files.progress.write_text("".join(json.dumps(x) + "\n" for x in lines))
    frame = handle.metrics()
    assert frame["step"].tolist() == [0, 1, 2]
    assert frame["reward_mean"].tolist()[1:] == [0.2, 0.3]
    assert frame.loc[frame.step == 2, "val_reward"].item() == 0.4


def test_load_tuned_model_path_from_run_manifest_and_archive(tmp_path):
    model = tmp_path / "run" / "training" / "checkpoints" / "final"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    archive = write_output(tmp_path / "run" / "training" / "output", model, [])
    assert local.load_tuned_model_path(tmp_path / "run") == model
    assert local.load_tuned_model_path(archive) == model
    manifest = extract_output(archive, tmp_path / "x") / "manifest.json"
    assert local.load_tuned_model_path(manifest) == model
    s3 = write_output(tmp_path / "s3", "s3://bucket/job/step1", [])
    with pytest.raises(UserError, match="is on S3"):
        local.load_tuned_model_path(s3)


def test_resume_last_without_checkpoint_is_a_clear_error(tmp_path):
    spec = _spec(tmp_path)
    spec = spec.model_copy(update={"local": LocalSettings(threads=1, resume_from="last")})
    with pytest.raises(UserError, match="holds no checkpoint-N folder"):
        local.prepare(local.plan(spec), tmp_path / "run")


def test_the_private_trl_methods_the_trainer_overrides_are_those_of_the_pinned_trl():
    """WorkbenchGRPOTrainer (local_worker.trainer_class) overrides private GRPOTrainer methods for what no
    public hook offers: advantages are computed after the reward functions run (so `log_metric` cannot see
    them) and the KL to the base model needs two forward passes. Moving the TRL pin means re-reading them."""
    import inspect

    import trl
    from trl import GRPOTrainer

    assert trl.__version__ == "1.16.0"
    assert list(inspect.signature(GRPOTrainer._generate_and_score_completions).parameters) == ["self", "inputs"]
    assert list(inspect.signature(GRPOTrainer._get_per_token_logps_and_entropies).parameters)[:5] == [
        "self", "model", "input_ids", "attention_mask", "logits_to_keep"]
    source = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    for key in ('"advantages"', '"prompt_ids"', '"completion_ids"', '"prompt_mask"', '"completion_mask"'):
        assert key in source, key
    assert "log_metric" in inspect.getsource(GRPOTrainer._calculate_rewards)  # the public hook, for the record
