"""Repository rules that keep the workbench reproducible: clean notebooks, consistent environments."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from nbkit import params, paths, runner

NOTEBOOK_FILES = sorted(paths.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def test_every_notebook_has_a_params_class_and_back():
    assert [p.stem for p in NOTEBOOK_FILES] == list(params.NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert nb["cells"][0]["cell_type"] == "markdown", "first cell is the title"


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_parameters_cell_is_generated_from_the_params_class(path):
    """The params class is the one source of names, defaults and help; the cell is its papermill form."""
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert "".join(cell["source"]) == params.parameters_cell(path.stem), (
        "regenerate the cell: nbkit.params.parameters_cell(notebook) gives its text")
    declared = runner.declared_parameters(path.stem)
    fields = params.params_class(path.stem).model_fields
    assert list(declared) == list(fields), "papermill must read every line (no second '=' in a help text)"
    assert all(info["help"] for info in declared.values())


@pytest.mark.parametrize("path", NOTEBOOK_FILES, ids=lambda p: p.stem)
def test_notebook_calls_its_stage_entry_with_its_parameters(path):
    """One convention: each notebook hands its validated parameters to its stage's entry function."""
    import importlib

    entry = params.params_class(path.stem).entry
    module, function = entry.split(":")
    assert callable(getattr(importlib.import_module(module), function)), entry
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert f"{module.rsplit('.', 1)[-1]}.{function}(P" in code or f".{function}(P" in code, entry


@pytest.mark.parametrize("name", ["demo.yaml", "smoke.yaml"])
def test_params_files_validate(name):
    merged = params.load_file(paths.PARAMS / name)
    assert "01_explore_data" in merged
    for notebook, values in merged.items():
        params.validate(notebook, values, source=name)


def test_environment_yml_matches_pyproject():
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    extras = re.fullmatch(r"-e \.\[(.+)\]", pip[-1]).group(1).split(",")
    assert set(extras) <= set(project["optional-dependencies"])
    assert "-c constraints.txt" in pip
    torch_pin = next(r for r in project["optional-dependencies"]["local"] if r.startswith("torch"))
    assert torch_pin in pip, "conda users must get the same CPU torch pin first"
    make = (paths.ROOT / "Makefile").read_text()
    assert f"-e '.[{','.join(extras)}]'" in make, "make setup and environment.yml install the same extras"


def test_every_requirement_is_pinned_and_constrained():
    project = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    constraints = {
        line.split("==")[0].lower().replace("_", "-"): line.split("==")[1]
        for line in (paths.ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    reqs = list(project["dependencies"])
    for group in project["optional-dependencies"].values():
        reqs += [r for r in group if not r.startswith("rft-workbench")]
    for req in reqs:
        name, _, version = req.partition("==")
        assert version, f"{req} is not pinned exactly"
        base = name.split("[")[0].lower().replace("_", "-")
        if base != "torch":
            assert constraints.get(base) == version, f"{req} disagrees with constraints.txt"
