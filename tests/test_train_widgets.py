"""The hyperparameter editor without a browser: set `.value`, `.click()`, assert the file and the numbers."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from nbkit import params
from nbkit.train import widgets
from nbkit.train.spec import JobSpec

PARAMS = """\
# top comment stays
seed: 0
model: tiny  # shared model

01_explore_data: {}

# 04 comment
04_launch_training:
  backend: local          # where to train
  dry_run: false
  learning_rate: 1.0e-3   # why this rate
  local:
    threads: 2

# 05 comment stays with 05
05_monitor_training: {}
"""


@pytest.fixture
def params_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    return path


@pytest.fixture
def run(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    lines = [json.dumps({"messages": [{"role": "user", "content": f"{i}+1?"}], "reference_answer": str(i + 1)})
             for i in range(800)]
    (run / "data" / "train.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _editor(params_file, run):
    return widgets.editor(params_file=params_file, run_dir=run)


def test_editor_starts_from_the_params_file(params_file, run):
    ed = _editor(params_file, run)
    assert ed.backend.value == "local" and ed.dry_run.value is False
    assert ed.hyper["learning_rate"].value == pytest.approx(1e-3)
    assert ed.hyper["global_batch_size"].value == 128  # local preset for values the file leaves out
    assert ed.n_train == 800 and ed.top["train_data"].value == str(run / "data" / "train.jsonl")
    assert "valid for local" in ed.issues_html.value


def test_derived_numbers_update_live(params_file, run):
    ed = _editor(params_file, run)
    assert ed.derived.total_rollouts == 200 * 128
    ed.hyper["global_batch_size"].value = 64
    assert (ed.derived.prompts_per_step, ed.derived.total_rollouts) == (8, 200 * 64)
    ed.hyper["max_steps"].value = 0  # 0 = derive from epochs: ceil(800 / 8) = 100 steps per epoch
    ed.hyper["epochs"].value = 2
    assert ed.derived.total_steps == 200 and ed.derived.steps_per_epoch == 100
    assert "<b>200</b>" in ed.derived_html.value


def test_errors_show_inline_and_block_save(params_file, run):
    ed = _editor(params_file, run)
    ed.hyper["global_batch_size"].value = 60
    assert "multiple of number_generation" in ed.issues_html.value and "error" in ed.issues_html.value
    before = params_file.read_text()
    ed.save_button.click()
    assert "not saved" in ed.status_html.value and params_file.read_text() == before


def test_save_writes_the_section_and_keeps_everything_else(params_file, run):
    ed = _editor(params_file, run)
    ed.hyper["learning_rate"].value = 5e-4
    ed.hyper["max_steps"].value = 120
    ed.local["eval_every"].value = 20
    ed.save_button.click()
    assert "saved" in ed.status_html.value
    text = params_file.read_text()
    for comment in ("# top comment stays", "# shared model", "# 04 comment", "# where to train",
                    "# why this rate", "# 05 comment stays with 05"):
        assert comment in text
    data = yaml.safe_load(text)
    assert data["seed"] == 0 and data["model"] == "tiny" and data["01_explore_data"] == {}
    assert data["05_monitor_training"] == {}
    sec = data["04_launch_training"]
    assert sec["learning_rate"] == 5e-4 and sec["max_steps"] == 120 and sec["global_batch_size"] == 128
    assert sec["local"] == {"eval_every": 20}  # non-default local settings only (threads 2 is the default)
    assert "train_data" not in sec and "name" not in sec  # run-derived values are not frozen into the file
    # the file still validates and reproduces the form
    merged = params.load_file(params_file)["04_launch_training"]
    again = widgets.editor(params_file=params_file, run_dir=run)
    assert params.validate("04_launch_training", merged).learning_rate == 5e-4
    assert again.spec() == ed.spec()
    assert not [p for p in params_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_switching_backend_rebuilds_ranges_without_moving_values(params_file, run):
    ed = _editor(params_file, run)
    ed.top["model"].value = "amazon.nova-2-lite-v1:0:256k"
    ed.backend.value = "sagemaker"
    lr = ed.hyper["learning_rate"]
    assert type(lr).__name__ == "FloatLogSlider" and lr.value == pytest.approx(1e-3)
    assert 10 ** lr.min == pytest.approx(1e-7) and 10 ** lr.max == pytest.approx(1e-3)
    assert type(ed.hyper["lora_alpha"]).__name__ == "Dropdown"
    assert "16..128" in ed.range_labels["global_batch_size"].value
    assert "hyper.max_length = 512" in ed.issues_html.value  # shown, not silently clamped to 4096
    ed.hyper["max_length"].value = 8192
    ed.backend.value = "hyperpod"  # SMHP allows 1e-8; SMTJ's floor is 1e-7
    ed.hyper["learning_rate"].value = 1e-8
    ed.backend.value = "sagemaker"  # the slider widens to keep 1e-8 and the error says why
    assert ed.hyper["learning_rate"].value == pytest.approx(1e-8)
    assert "hyper.learning_rate = 1e-08" in ed.issues_html.value
    ed.hyper["learning_rate"].value = 1e-5
    assert "error" not in ed.issues_html.value
    assert ed.derived.instance_count == 4 and ed.derived.cost_usd is not None
    ed.hyper["lora_rank"].value = 0  # full rank: another range table
    assert ed.hyper["lora_alpha"].disabled and "0..256" not in ed.range_labels["global_batch_size"].value
    assert "16..256" in ed.range_labels["global_batch_size"].value


def test_launch_button_dry_run_records_the_job(params_file, run):
    ed = _editor(params_file, run)
    ed.dry_run.value = True
    ed.launch_button.click()
    record = json.loads((run / "training" / "job.json").read_text())
    assert record["dry_run"] is True and "planned" in ed.status_html.value
    assert record["derived"]["n_train"] == 800 and record["spec"]["hyper"]["learning_rate"] == 1e-3
    assert ed.last_handle.status() == "planned"


def test_launch_without_run_dir_reports_inline():
    ed = widgets.editor(JobSpec.local_preset(train_data="x", reward="builtin:numeric"))
    ed.launch_button.click()
    assert "no run folder" in ed.status_html.value
    assert "training data size unknown" in ed.derived_html.value


def test_aws_settings_round_trip(params_file, run):
    ed = _editor(params_file, run)
    ed.aws["region"].value = "us-west-2"
    ed.aws["instance_count"].value = 8
    ed.aws["tags"].value = '{"team": "nlp"}'
    spec = ed.spec()
    assert (spec.aws.region, spec.aws.instance_count, spec.aws.tags) == ("us-west-2", 8, {"team": "nlp"})
    ed.aws["instance_count"].value = 0  # 0 in the form = the surface's default
    assert ed.spec().aws.instance_count is None
    values = ed.section_values()
    assert values["aws"] == {"region": "us-west-2", "tags": {"team": "nlp"}}


def test_save_section_creates_and_appends(tmp_path):
    path = tmp_path / "new.yaml"
    widgets.save_section(path, "04_launch_training", {"backend": "local", "learning_rate": 1e-3})
    assert yaml.safe_load(path.read_text()) == {"04_launch_training": {"backend": "local", "learning_rate": 1e-3}}
    path.write_text("seed: 1\n04_launch_training: {max_steps: 5}\n05_monitor_training: {}\n")
    os.chmod(path, 0o640)
    widgets.save_section(path, "04_launch_training", {"aws": {"region": "eu-west-1"}, "reasoning_effort": None})
    data = yaml.safe_load(path.read_text())
    assert data["04_launch_training"] == {"max_steps": 5, "aws": {"region": "eu-west-1"}, "reasoning_effort": None}
    assert data["seed"] == 1 and data["05_monitor_training"] == {}
    assert os.stat(path).st_mode & 0o777 == 0o640
