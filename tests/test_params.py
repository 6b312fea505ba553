"""nbkit.params: coercion, unknown names, params files."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import Field

from nbkit import params
from nbkit.errors import UserError


class _Probe(params.NotebookParams):
    notebook = "99_probe"
    learning_rate: float = Field(1e-3, description="step size")
    steps: int = Field(10, description="how many")
    tags: list[str] = Field(default_factory=list, description="labels")


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.setitem(params.NOTEBOOKS, "99_probe", _Probe)
    return _Probe


def test_yaml_float_strings_and_numpy_scalars_are_coerced(probe):
    p = params.validate("99_probe", {"learning_rate": "3e-6", "steps": np.int64(7), "tags": ("a", "b")})
    assert p.learning_rate == pytest.approx(3e-6)
    assert type(p.steps) is int and p.steps == 7
    assert p.tags == ["a", "b"]


def test_unknown_name_lists_the_valid_ones(probe):
    with pytest.raises(UserError) as err:
        params.validate("99_probe", {"learnin_rate": 0.1}, source="params/x.yaml")
    text = str(err.value)
    assert "learnin_rate: unknown parameter" in text
    assert "learning_rate" in text and "steps" in text and "params/x.yaml" in text


def test_bad_type_names_field_and_value(probe):
    with pytest.raises(UserError, match=r"steps = 'many'"):
        params.validate("99_probe", {"steps": "many"})


def test_notebook_by_number_and_unknown_notebook():
    assert params.params_class("01") is params.ExploreDataParams
    with pytest.raises(UserError, match="unknown notebook"):
        params.params_class("42")


def test_from_namespace_picks_declared_names_only(probe):
    ns = {"learning_rate": 0.5, "steps": 3, "unrelated": object(), "run_dir": "runs/x"}
    p = params.from_namespace("99_probe", ns)
    assert (p.learning_rate, p.steps, p.run_dir) == (0.5, 3, "runs/x")


def test_load_file_merges_shared_keys_into_declaring_sections(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("seed: 7\n01_explore_data: {}\n03_evaluate_baseline:\n  seed: 9\n")
    merged = params.load_file(f)
    assert list(merged) == ["01_explore_data", "03_evaluate_baseline"]
    assert merged["01_explore_data"]["seed"] == 7
    assert merged["03_evaluate_baseline"]["seed"] == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonsense_key: 1\n01_explore_data: {}\n", "declared by no notebook"),
        ("09_bogus: {}\n", "unknown notebook section"),
        ("01_explore_data: [1, 2]\n", "must be a mapping"),
        ("- a\n- b\n", "must be a mapping"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_load_file_rejects_bad_files(tmp_path, text, message):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=message):
        params.load_file(f)


def test_missing_params_file():
    with pytest.raises(UserError, match="not found"):
        params.load_file("/nonexistent/p.yaml")


# -------------------------------------------------------------- strictness, nested maps, overrides


def test_a_boolean_is_not_a_number(probe):
    with pytest.raises(UserError, match=r"steps = True: true/false is not a number"):
        params.validate("99_probe", {"steps": True})
    with pytest.raises(UserError, match=r"n_train = True: true/false is not a number"):
        params.validate("01_explore_data", {"n_train": True})
    assert params.validate("04_launch_training", {"dry_run": True}).dry_run is True  # a real bool field


def test_nested_maps_are_checked_with_their_valid_names():
    with pytest.raises(UserError) as err:
        params.validate("05_monitor_training", {"thresholds": {"max_eror_rate": 0.1, "min_points": "x"}})
    text = str(err.value)
    assert "thresholds.max_eror_rate: unknown threshold; valid names are: window_frac" in text
    assert "thresholds.min_points = 'x'" in text
    with pytest.raises(UserError, match=r"local.thread: unknown field; valid names are: threads"):
        params.validate("04_launch_training", {"local": {"thread": 1}})
    with pytest.raises(UserError, match=r"aws.instance_count = True: true/false is not a number"):
        params.validate("04_launch_training", {"backend": "sagemaker", "aws": {"instance_count": True}})
    with pytest.raises(UserError, match=r"timeout_s = -1"):
        params.validate("04_launch_training", {"timeout_s": -1})


def test_a_bad_nested_key_stops_the_pipeline_before_anything_runs(tmp_path):
    from nbkit import runner

    pfile = tmp_path / "p.yaml"
    pfile.write_text("01_explore_data: {}\n05_monitor_training:\n  thresholds: {min_pionts: 3}\n")
    with pytest.raises(UserError, match="thresholds.min_pionts: unknown threshold"):
        runner.plan(pfile, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_overrides_set_sections_shared_keys_and_nested_maps(tmp_path):
    pfile = tmp_path / "p.yaml"
    pfile.write_text("seed: 1\n04_launch_training:\n  max_steps: 10\n  local: {eval_every: 5}\n05_monitor_training: {}\n")
    merged = params.load_file(pfile, ["seed=7", "04_launch_training.max_steps=20",
                                      "04_launch_training.local.threads=1", "05_monitor_training.follow=true"])
    assert merged["04_launch_training"]["seed"] == 7 and merged["04_launch_training"]["max_steps"] == 20
    assert merged["04_launch_training"]["local"] == {"eval_every": 5, "threads": 1}
    assert merged["05_monitor_training"]["follow"] is True
    assert "seed: 1" in pfile.read_text()  # the file itself is never changed
    for bad, message in (("max_steps", "is not KEY=VALUE"), ("04_launch_training.max_steps.x=1", "holds a int"),
                         ("x=[", "not valid YAML")):
        with pytest.raises(UserError, match=message):
            params.load_file(pfile, [bad])
