"""The hyperparameter editor without a browser: set `.value`, `.click()`, assert the file and the numbers."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from nbkit import params, paths
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


def test_errors_show_next_to_their_field_and_block_save(params_file, run):
    ed = _editor(params_file, run)
    ed.hyper["global_batch_size"].value = 60
    note = ed.notes["hyper.global_batch_size"].value
    assert "multiple of number_generation" in note and "error" in note
    assert ed.hyper["global_batch_size"].layout.border == widgets.ERROR_BORDER
    assert "1 error on local" in ed.issues_html.value and "marked fields" in ed.issues_html.value
    assert "hidden while the spec has errors" in ed.derived_html.value and ed.derived is None
    before = params_file.read_text()
    ed.save_button.click()
    assert "not saved" in ed.status_html.value and params_file.read_text() == before
    ed.hyper["global_batch_size"].value = 64
    assert ed.notes["hyper.global_batch_size"].value == "" and ed.hyper["global_batch_size"].layout.border == ""
    assert "<b>" in ed.derived_html.value


def test_form_errors_name_their_field_not_the_form(params_file, run):
    ed = _editor(params_file, run)
    ed.hyper["epochs"].value = 0  # below Hyperparameters' minimum: no spec can hold it
    assert "greater than or equal to 1" in ed.notes["hyper.epochs"].value
    assert "form" not in ed.issues_html.value
    ed.aws["tags"].value = "{not json"
    assert "not valid JSON" in ed.notes["aws.tags"].value and ed.settings.selected_index == 0


def test_save_writes_only_the_changed_keys_and_keeps_everything_else(params_file, run):
    ed = _editor(params_file, run)
    ed.hyper["learning_rate"].value = 5e-4
    ed.hyper["max_steps"].value = 120
    ed.local["eval_every"].value = 20
    ed.save_button.click()
    assert "saved" in ed.status_html.value and "learning_rate, max_steps, local" in ed.status_html.value
    text = params_file.read_text()
    for comment in ("# top comment stays", "# shared model", "# 04 comment", "# where to train",
                    "# why this rate", "# 05 comment stays with 05"):
        assert comment in text
    assert "learning_rate: 0.0005   # why this rate" in text  # the value changed, its comment stayed
    data = yaml.safe_load(text)
    assert data["seed"] == 0 and data["model"] == "tiny" and data["01_explore_data"] == {}
    assert data["05_monitor_training"] == {}
    assert data["04_launch_training"] == {"backend": "local", "dry_run": False, "learning_rate": 5e-4,
                                          "local": {"threads": 2, "eval_every": 20}, "max_steps": 120}
    # the file still validates and reproduces the form
    again = widgets.editor(params_file=params_file, run_dir=run)
    assert params.validate("04_launch_training", params.load_file(params_file)["04_launch_training"])
    assert again.spec() == ed.spec()
    assert not [p for p in params_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_save_on_a_copy_of_demo_changes_exactly_the_edited_keys(tmp_path, runs_root):
    """The notebook's call: P from its parameters cell (defaults), save_to a copy of params/demo.yaml."""
    copy = tmp_path / "demo.yaml"
    original = (paths.PARAMS / "demo.yaml").read_text()
    copy.write_text(original)
    P = params.validate("04_launch_training", {"run_dir": "", "save_to": str(copy)})
    ed = widgets.editor(params=P, params_file=P.save_to)
    # the form shows the file, not the preset and the notebook's defaults
    steps = yaml.safe_load(original)["04_launch_training"]["max_steps"]
    assert steps != params.LaunchTrainingParams.model_fields["max_steps"].default
    assert ed.hyper["max_steps"].value == steps and ed.dry_run.value is False
    assert ed.status_html.value == ""  # nothing differs from the file yet
    ed.hyper["learning_rate"].text.value = 5e-4  # typed in the box beside the log slider
    ed.hyper["number_generation"].value = 4
    assert "unsaved changes: learning_rate, number_generation" in ed.status_html.value
    ed.save_button.click()
    before, after = yaml.safe_load(original), yaml.safe_load(copy.read_text())
    assert after["04_launch_training"].pop("learning_rate") == 5e-4
    assert after["04_launch_training"].pop("number_generation") == 4
    for section in (before, after):
        section["04_launch_training"].pop("learning_rate", None)
        section["04_launch_training"].pop("number_generation", None)
    assert after == before  # every other key exactly as it was
    lines = zip(original.splitlines(), copy.read_text().splitlines(), strict=True)
    changed = [(a, b) for a, b in lines if a != b]
    assert [b.split("#")[0].strip() for _, b in changed] == ["learning_rate: 0.0005", "number_generation: 4"]
    assert all(a.split("#", 1)[1] == b.split("#", 1)[1] for a, b in changed)  # their comments kept
    assert "saved into" in ed.status_html.value
    ed.hyper["max_steps"].value = steps + 100  # a later edit: the mark comes back
    assert "unsaved changes: max_steps" in ed.status_html.value


def test_a_dragged_log_slider_saves_the_value_it_shows(params_file, run):
    ed = _editor(params_file, run)
    field = ed.hyper["learning_rate"]
    field.slider.value = 10 ** -3.3  # what a drag gives: 0.000501187...
    assert field.text.value == field.value == 0.000501
    ed.save_button.click()
    assert yaml.safe_load(params_file.read_text())["04_launch_training"]["learning_rate"] == 0.000501


def test_a_typed_value_outside_the_range_is_kept_and_flagged_not_clamped(params_file, run):
    ed = _editor(params_file, run)
    field = ed.hyper["learning_rate"]
    field.text.value = 0.5  # local allows 1e-8..0.1
    assert field.value == 0.5 and 10 ** field.slider.max >= 0.5  # the slider widened to show it
    assert "outside the allowed range" in ed.notes["hyper.learning_rate"].value
    assert field.layout.border == widgets.ERROR_BORDER
    epochs = ed.hyper["epochs"]
    epochs.text.value = 5000  # beyond the slider's 1..1000
    assert epochs.value == 5000 and epochs.slider.max == 5000
    assert "outside the allowed range" in ed.notes["hyper.epochs"].value


def test_defaults_resolve_like_the_spec_table_with_an_empty_run_dir(tmp_path, runs_root):
    from nbkit.train.stage import prepare

    P = params.validate("04_launch_training", {"run_dir": "", "save_to": str(tmp_path / "new.yaml")})
    ed = widgets.editor(params=P, params_file=P.save_to)
    table = prepare(P).spec
    assert ed.spec().train_data == table.train_data and ed.spec().name == table.name
    assert not [i for i in ed.issues if i.field in ("train_data", "name")]  # no "no training data" error
    assert "does not exist yet" in ed.derived_html.value and "s3://" not in ed.derived_html.value


def test_number_generation_is_a_dropdown_and_the_batch_slider_steps_by_it(params_file, run):
    ed = _editor(params_file, run)
    generations = ed.hyper["number_generation"]
    assert type(generations).__name__ == "Dropdown" and {2, 8, 64} <= {v for _, v in generations.options}
    assert ed.hyper["global_batch_size"].slider.step == 8
    ed.hyper["number_generation"].value = 16
    assert ed.hyper["global_batch_size"].slider.step == 16 and ed.hyper["global_batch_size"].value == 128


def test_a_knob_the_surface_does_not_use_shows_the_value_it_uses(params_file, run):
    ed = _editor(params_file, run)
    ed.top["model"].value = "amazon.nova-2-lite-v1:0:256k"
    ed.hyper["max_length"].value = 8192
    ed.backend.value = "sagemaker-serverless"  # serverless samples the Hub recipe's 2 generations per prompt
    shown_ngen = ed.hyper["number_generation"]
    assert shown_ngen.disabled and shown_ngen.value == 2
    assert ed.spec().hyper.number_generation == 8  # the spec keeps the value; the widget shows what runs
    assert "the value shown applies" in ed.range_labels["number_generation"].value


def test_switching_backend_rebuilds_ranges_without_moving_values(params_file, run):
    ed = _editor(params_file, run)
    ed.top["model"].value = "amazon.nova-2-lite-v1:0:256k"
    ed.backend.value = "sagemaker"
    lr = ed.hyper["learning_rate"]
    assert type(lr.slider).__name__ == "FloatLogSlider" and lr.value == pytest.approx(1e-3)
    assert 10 ** lr.slider.min == pytest.approx(1e-7) and 10 ** lr.slider.max == pytest.approx(1e-3)
    assert type(ed.hyper["lora_alpha"]).__name__ == "Dropdown"
    assert "16..128" in ed.range_labels["global_batch_size"].value
    assert "outside the allowed range" in ed.notes["hyper.max_length"].value  # shown, not clamped to 4096
    ed.hyper["max_length"].value = 8192
    ed.backend.value = "hyperpod"  # SMHP allows 1e-8; SMTJ's floor is 1e-7
    ed.hyper["learning_rate"].value = 1e-8
    ed.backend.value = "sagemaker"  # the slider widens to keep 1e-8 and the error says why
    assert ed.hyper["learning_rate"].value == pytest.approx(1e-8)
    assert "outside the allowed range" in ed.notes["hyper.learning_rate"].value
    ed.hyper["learning_rate"].value = 1e-5
    assert "error" not in ed.issues_html.value and ed.notes["hyper.learning_rate"].value == ""
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
    assert "x does not exist yet" in ed.derived_html.value


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


def test_add_to_sweep_appends_the_changes_as_one_point_and_leaves_the_rest(params_file, run):
    from nbkit.sweep import grid

    ed = _editor(params_file, run)
    ed.sweep_button.click()
    assert "nothing differs" in ed.status_html.value and "sweep" not in yaml.safe_load(params_file.read_text())
    ed.hyper["learning_rate"].value = 3e-3
    ed.local["threads"].value = 1
    ed.sweep_button.click()
    assert "1 point)" in ed.status_html.value and "nbkit sweep --params" in ed.status_html.value
    ed.sweep_button.click()  # the same point again is not a second point
    text = params_file.read_text()
    assert "# why this rate" in text and "# 05 comment stays with 05" in text
    data = yaml.safe_load(text)
    assert data["04_launch_training"]["learning_rate"] == 1e-3, "the baseline in the file is unchanged"
    assert data["sweep"] == {"points": [{"04_launch_training.learning_rate": 3e-3,
                                         "04_launch_training.local.threads": 1}]}
    spec = grid.from_file(params_file)
    assert spec.points == data["sweep"]["points"]
    # each key is an override `nbkit run --set` and `nbkit sweep` apply to the file
    overrides = [f"{k}={v}" for k, v in spec.points[0].items()]
    applied = params.load_file(params_file, overrides)["04_launch_training"]
    assert applied["learning_rate"] == 3e-3 and applied["local"] == {"threads": 1}
    ed.hyper["learning_rate"].value = 1e-2
    ed.sweep_button.click()
    assert "2 points)" in ed.status_html.value and len(grid.from_file(params_file).points) == 2


def test_the_estimate_uses_this_machines_calibration_when_one_is_cached(params_file, run, tmp_path, monkeypatch):
    from nbkit.train import calibration

    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text('{"hidden_size": 64}')
    ed = _editor(params_file, run)
    # nothing measured yet (the editor never times steps itself): the bundled figure, said so
    assert ed.derived.basis["step_time_source"] == "bundled figure, not measured on this machine"
    spec = ed.spec()
    key = calibration.key_of(calibration.settings_for(spec, run / "model"))
    rows = [{"kind": "train", "step": s, "time": 100.0 + 2 * s} for s in range(1, 6)]
    stored = calibration.measure(rows, 99.0, 111.0, key, {})
    (tmp_path / "cache" / "calibration").mkdir(parents=True, exist_ok=True)
    (tmp_path / "cache" / "calibration" / f"{key}.json").write_text(json.dumps(stored.to_dict()))
    ed.refresh()
    assert ed.derived.step_time_s == 2.0
    assert ed.derived.basis["step_time_source"] == "calibration on this machine"
