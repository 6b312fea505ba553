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
