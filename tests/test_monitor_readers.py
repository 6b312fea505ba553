"""Readers of Nova's step-wise CSV and CloudWatch log lines (files under tests/fixtures/monitor/, moto Logs),
the normalized frame they produce, and source resolution."""

from __future__ import annotations

import io
import json
import math
import tarfile
import time
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from moto import mock_aws

from nbkit.errors import UserError
from nbkit.monitor import frame as fr
from nbkit.monitor.cloudwatch import parse_log_lines, parse_smhp_line, parse_smtj_line, read_cloudwatch
from nbkit.monitor.nova_csv import read_nova_csv
from nbkit.monitor.sources import CloudWatchLogs, MlflowRun, NovaCsv, load_metrics, parse_source, resolve

FIXTURES = Path(__file__).parent / "fixtures" / "monitor"
CSV = FIXTURES / "step_wise_training_metrics.csv"


# ------------------------------------------------------------------------------------------- frame


def test_normalize_renames_aliases_keeps_extras_and_fills_missing_columns():
    wide = pd.DataFrame({"step_number": [2, 1], "train_reward_mean": [0.5, 0.4], "mean_advantage": [0.0, 0.1]})
    frame = fr.normalize(wide, {"step_number": "step", "train_reward_mean": "reward_mean"}, source="x")
    assert list(frame.columns[: len(fr.COLUMNS)]) == list(fr.COLUMNS)
    assert frame["step"].tolist() == [1, 2]  # sorted
    assert frame["reward_mean"].tolist() == [0.4, 0.5]
    assert frame["mean_advantage"].tolist() == [0.1, 0.0]
    assert "train_reward_mean" not in frame.columns  # renamed, not duplicated
    assert frame["kl"].isna().all() and frame["val_reward"].isna().all()


def test_normalize_prefers_normalized_key_over_alias_and_keeps_alias_column():
    wide = pd.DataFrame({"step": [0, 1, 2], "reward_mean": [0.1, np.nan, 0.3], "reward": [9.0, 0.2, 9.0]})
    frame = fr.normalize(wide, {"reward": "reward_mean"})
    assert frame["reward_mean"].tolist() == [0.1, 0.2, 0.3]  # gap filled from the alias only
    assert frame["reward"].tolist() == [9.0, 0.2, 9.0]


def test_normalize_collapses_repeated_steps_to_the_last_and_says_so():
    wide = pd.DataFrame({"step": [0, 1, 1, 2], "reward_mean": [0.1, 0.2, 0.25, 0.3]})
    frame = fr.normalize(wide)
    assert frame["reward_mean"].tolist() == [0.1, 0.25, 0.3]
    assert any("1 row(s) repeated" in n for n in frame.attrs["notes"])


def test_normalize_rejects_text_in_a_metric_column_and_a_missing_step():
    with pytest.raises(UserError, match="'kl'.*'oops'"):
        fr.normalize(pd.DataFrame({"step": [0, 1], "kl": ["0.1", "oops"]}))
    with pytest.raises(UserError, match="no step column"):
        fr.normalize(pd.DataFrame({"reward_mean": [0.1]}))


def test_validate_frame_names_missing_columns():
    with pytest.raises(UserError, match="lacks column"):
        fr.validate_frame(pd.DataFrame({"step": [1]}))
    assert fr.validate_frame(fr.empty_frame()).empty


# ---------------------------------------------------------------------------------------- Nova CSV


def test_nova_csv_maps_the_documented_columns():
    frame = read_nova_csv(CSV)
    assert len(frame) == 12 and frame["step"].tolist() == list(range(1, 13))
    assert frame["reward_mean"].iloc[0] == pytest.approx(0.375)
    assert frame["completion_len_mean"].iloc[-1] == pytest.approx(456.0)
    assert frame["entropy"].iloc[1] == pytest.approx(0.82)
    assert frame["grad_norm"].iloc[0] == pytest.approx(0.91)
    assert frame["min_advantage"].iloc[0] == pytest.approx(-1.11)  # extras kept under their own names
    assert frame["epoch_number"].eq(0).all()
    assert frame["time"].isna().all() and frame["kl"].isna().all()
    assert frame.attrs["kind"] == "nova_csv"


def _tar_with(tmp_path, name, data: bytes):
    archive = tmp_path / "output.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        manifest = json.dumps({"checkpoint_s3_bucket": "s3://customer-escrow-1-smtj-x/job/step5"}).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    return archive


def test_nova_csv_read_from_inside_output_tar_gz_and_from_a_folder(tmp_path):
    archive = _tar_with(tmp_path, "nested/step_wise_training_metrics.csv", CSV.read_bytes())
    from_tar = read_nova_csv(archive)
    pd.testing.assert_frame_equal(from_tar, read_nova_csv(CSV))
    assert "output.tar.gz:nested/step_wise_training_metrics.csv" in from_tar.attrs["source"]
    assert read_nova_csv(tmp_path)["step"].tolist() == list(range(1, 13))  # folder holding the archive


def test_nova_csv_bad_cell_names_line_and_column(tmp_path):
    bad = CSV.read_text().splitlines()
    cells = bad[4].split(",")
    cells[2] = "oops"
    bad[4] = ",".join(cells)
    path = tmp_path / "step_wise_training_metrics.csv"
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(UserError, match=r"line 5, column 'train_reward_mean': 'oops'"):
        read_nova_csv(path)


def test_nova_csv_header_only_is_an_empty_frame_and_wrong_file_is_an_error(tmp_path):
    path = tmp_path / "step_wise_training_metrics.csv"
    path.write_text(CSV.read_text().splitlines()[0] + "\n")
    assert read_nova_csv(path).empty
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match="no step_number column"):
        read_nova_csv(other)
    wrong = tmp_path / "model"
    wrong.mkdir()
    with pytest.raises(UserError, match="holds no step_wise_training_metrics.csv"):
        read_nova_csv(_tar_with(wrong, "weights.txt", b"1"))


# --------------------------------------------------------------------------------------- log lines


def test_parse_smtj_line_reads_every_key_and_ignores_other_lines():
    line = (FIXTURES / "smtj.log").read_text().splitlines()[2]
    parsed = parse_smtj_line(line)
    assert parsed["step"] == 1 and parsed["training/global_step"] == 1
    assert parsed["critic/score/mean"] == pytest.approx(0.3265)
    assert parsed["actor/pg_loss"] == pytest.approx(-0.01)
    assert parsed["perf/throughput"] == pytest.approx(1201.5)
    assert parse_smtj_line("[INFO] rollout workers ready: 4") is None
    assert parse_smtj_line("global_step:3 - x:1") is None  # 'step:' must start a field


def test_parse_smhp_line_handles_keys_with_spaces():
    line = (FIXTURES / "smhp_node0.log").read_text().splitlines()[2]
    parsed = parse_smhp_line(line)
    assert parsed["global_step"] == 1 and parsed["iterations_total"] == 999
    assert parsed["train_rm_score"] == pytest.approx(0.42)
    assert parsed["train_step_timing_in_s"] == pytest.approx(42.5)
    assert parsed["lr"] == pytest.approx(7e-07)


def test_smtj_log_to_frame_maps_names_and_reports_unparseable_values():
    frame = parse_log_lines((FIXTURES / "smtj.log").read_text().splitlines(), "auto", "smtj.log")
    assert frame["step"].tolist() == list(range(1, 14))
    assert frame["reward_mean"].iloc[0] == pytest.approx(0.3265)
    assert frame["kl"].iloc[2] == pytest.approx(0.003)
    assert frame["entropy"].iloc[0] == pytest.approx(0.88)
    assert frame["completion_len_mean"].iloc[0] == 405
    assert frame["lr"].iloc[0] == pytest.approx(1e-5) and frame["loss"].iloc[0] == pytest.approx(-0.01)
    assert frame["critic/rewards/mean"].iloc[0] == pytest.approx(0.3255)
    # step 13's entropy 'nan(ind)' is not a number: the step is kept, the value is NaN, and a note says why
    assert math.isnan(frame["entropy"].iloc[-1]) and frame["reward_mean"].iloc[-1] == pytest.approx(0.69)
    assert any("actor/entropy='nan(ind)'" in n for n in frame.attrs["notes"])
    assert frame.attrs["kind"] == "cloudwatch_smtj"


def test_smhp_lines_from_two_nodes_collapse_per_step_and_time_from_step_timing():
    lines = (FIXTURES / "smhp_node0.log").read_text().splitlines() + (FIXTURES / "smhp_node1.log").read_text().splitlines()
    frame = parse_log_lines(lines, "smhp")
    assert frame["step"].tolist() == list(range(1, 11))
    assert frame["reward_mean"].iloc[-1] == pytest.approx(0.6)
    assert frame["entropy"].iloc[0] == pytest.approx(1.17) and frame["loss"].iloc[0] == pytest.approx(0.49)
    assert frame["clipfrac"].eq(0.01).all()  # PPO ratio clipping, not length clipping
    assert frame["clipped_share"].isna().all()
    assert frame["time"].iloc[-1] == pytest.approx(42.5 * 20)  # cumulative timing over both nodes' lines
    assert any("repeated" in n for n in frame.attrs["notes"])


def test_mixed_formats_and_unknown_format_are_errors():
    lines = (FIXTURES / "smtj.log").read_text().splitlines() + (FIXTURES / "smhp_node0.log").read_text().splitlines()
    with pytest.raises(UserError, match="mixes SMTJ and SMHP"):
        parse_log_lines(lines)
    with pytest.raises(UserError, match="unknown log format"):
        parse_log_lines([], "xml")
    assert parse_log_lines(["nothing here"]).empty


# ------------------------------------------------------------------------------------- moto Logs


@pytest.fixture
def logs_client(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("logs", region_name="us-east-1")


def _put(client, group, stream, lines):
    """Events one second apart, ending now (CloudWatch rejects events older than 14 days)."""
    client.create_log_stream(logGroupName=group, logStreamName=stream)
    start_ms = int(time.time() * 1000) - len(lines) * 1000
    events = [{"timestamp": start_ms + i * 1000, "message": line} for i, line in enumerate(lines)]
    response = client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    assert "rejectedLogEventsInfo" not in response


def test_read_cloudwatch_smtj_pages_through_every_event(logs_client):
    group = "/aws/sagemaker/TrainingJobs"
    logs_client.create_log_group(logGroupName=group)
    _put(logs_client, group, "rft-job-1/algo-1-1700000000", (FIXTURES / "smtj.log").read_text().splitlines())
    _put(logs_client, group, "other-job/algo-1", ["step:99 - critic/score/mean:0.1 - actor/lr:1"])
    frame = read_cloudwatch(group, "rft-job-1", "smtj", client=logs_client, page_size=4)
    assert frame["step"].tolist() == list(range(1, 14))  # every page read; the other job's stream excluded
    assert frame["reward_mean"].iloc[-1] == pytest.approx(0.69)
    assert frame["time"].iloc[0] == 0 and frame["time"].iloc[1] == pytest.approx(1.0)  # seconds between events
    assert frame.attrs["kind"] == "cloudwatch_smtj"


def test_read_cloudwatch_smhp_streams_per_node(logs_client):
    group = "/aws/sagemaker/Clusters/rft-cluster/abc123"
    logs_client.create_log_group(logGroupName=group)
    for node in (0, 1):
        _put(logs_client, group, f"node-{node}", (FIXTURES / f"smhp_node{node}.log").read_text().splitlines())
    frame = load_metrics(CloudWatchLogs(group, None, "smhp"), client=logs_client)
    assert frame["step"].tolist() == list(range(1, 11))
    assert frame["reward_mean"].iloc[4] == pytest.approx(0.5)


def test_read_cloudwatch_missing_group_says_what_to_check(logs_client):
    with pytest.raises(UserError, match="not found in region us-east-1"):
        read_cloudwatch("/aws/sagemaker/TrainingJobs", "nope", client=logs_client)


# ---------------------------------------------------------------------------------------- sources


def test_parse_source_text_forms(tmp_path, monkeypatch):
    assert parse_source("mlflow:abc@sqlite:///x/mlflow.db") == MlflowRun("sqlite:///x/mlflow.db", "abc")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert parse_source("mlflow:abc") == MlflowRun("http://mlflow:5000", "abc")
    assert parse_source("cloudwatch:smtj:/aws/sagemaker/TrainingJobs:job-1") == CloudWatchLogs(
        "/aws/sagemaker/TrainingJobs", "job-1", "smtj")
    assert parse_source("cloudwatch:smhp:/aws/sagemaker/Clusters/c/id") == CloudWatchLogs(
        "/aws/sagemaker/Clusters/c/id", None, "smhp")
    with pytest.raises(UserError, match="cloudwatch:<smtj|smhp|auto>"):
        parse_source("cloudwatch:json:/g")
    assert resolve(("http://x", "rid"))[0] == MlflowRun("http://x", "rid")
    assert resolve(str(CSV))[0] == NovaCsv(CSV)
    with pytest.raises(UserError, match="metrics source not found"):
        resolve(str(tmp_path / "missing.csv"))


def _job(run, record):
    training = run / "training"
    training.mkdir(parents=True, exist_ok=True)
    (training / "job.json").write_text(json.dumps({"handle": {}, **record}))
    return training / "job.json"


def test_sagemaker_job_reads_downloaded_output_else_cloudwatch(tmp_path, logs_client):
    run = tmp_path / "run"
    _job(run, {"backend": "sagemaker", "job_id": "arn:aws:sagemaker:us-east-1:1:training-job/rft-job-1",
               "spec": {"aws": {"region": "us-east-1"}, "hyper": {"max_new_tokens": 6000}}})
    source, context = resolve(run)
    assert source == CloudWatchLogs("/aws/sagemaker/TrainingJobs", "rft-job-1", "smtj", "us-east-1")
    assert context.max_new_tokens == 6000 and context.backend == "sagemaker"
    logs_client.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    _put(logs_client, "/aws/sagemaker/TrainingJobs", "rft-job-1/algo-1", (FIXTURES / "smtj.log").read_text().splitlines())
    assert len(load_metrics(run, client=logs_client)) == 13
    out = run / "training" / "output"
    out.mkdir()
    (out / "step_wise_training_metrics.csv").write_text(CSV.read_text())
    assert resolve(run)[0] == NovaCsv(out)  # the job's final output wins once downloaded
    assert len(load_metrics(run / "training" / "job.json")) == 12


def test_dry_run_and_bedrock_without_outputs_are_explained(tmp_path):
    run = tmp_path / "dry"
    _job(run, {"backend": "local", "job_id": "dry-run-x", "dry_run": True})
    with pytest.raises(UserError, match="dry run"):
        resolve(run)
    run = tmp_path / "bedrock"
    _job(run, {"backend": "bedrock", "job_id": "arn:aws:bedrock:us-east-1:1:model-customization-job/x"})
    with pytest.raises(UserError, match="Bedrock publishes step_wise_training_metrics.csv"):
        resolve(run)


def test_sagemaker_managed_mlflow_needs_the_plugin(monkeypatch):
    import importlib.util

    # make setup installs sagemaker-mlflow (the aws extra): simulate an environment without it.
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "sagemaker_mlflow" else find_spec(name, *a))
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rft"
    with pytest.raises(UserError, match="sagemaker-mlflow"):
        load_metrics(MlflowRun(arn, "run1"))


def test_notebook_source_paths_are_taken_from_the_project_root():
    from nbkit import params, paths
    from nbkit.monitor.notebook import source_of

    p = params.validate("05_monitor_training", {"source": "tests/fixtures/monitor/step_wise_training_metrics.csv"})
    assert source_of(p) == paths.ROOT / "tests/fixtures/monitor/step_wise_training_metrics.csv"
    p = params.validate("05_monitor_training", {"source": "cloudwatch:smtj:/aws/sagemaker/TrainingJobs:j"})
    assert source_of(p) == CloudWatchLogs("/aws/sagemaker/TrainingJobs", "j", "smtj")
