"""Loading rewards from every kind of spec, and clear errors for the ways a spec can be wrong."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from nbkit.errors import UserError
from nbkit.rewards import Reward, load_reward, make_sample
from nbkit.rewards import graders as G

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
RECORD = {"id": "math-0001", "messages": [{"role": "user", "content": "Solve for x: 3x + 2 = 11"}],
          "reference_answer": {"solution": "x = 3"}}
SAMPLES = [make_sample(RECORD, r, sample_id=f"s{i}") for i, r in enumerate(["x = 3", "4", r"\boxed{3}"])]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))


def scores(reward: Reward) -> list[float]:
    return [r["aggregate_reward_score"] for r in reward.handler(SAMPLES, None)]


def test_file_spec_uses_lambda_handler_and_is_its_own_source():
    reward = load_reward(str(FIXTURES / "substring.py"))
    assert reward.name == "substring" and reward.function == "lambda_handler"
    assert reward.source == FIXTURES / "substring.py"
    assert scores(reward) == [1.0, 0.0, 1.0]


def test_file_function_and_module_function_specs(tmp_path, monkeypatch):
    path = tmp_path / "two_rewards.py"
    path.write_text("def half(event, context):\n    return [{'id': s['id'], 'aggregate_reward_score': 0.5} for s in event]\n")
    reward = load_reward(f"{path}:half")
    assert reward.name == "two_rewards:half" and reward.function == "half" and scores(reward) == [0.5] * 3
    monkeypatch.syspath_prepend(str(tmp_path))
    module = load_reward("two_rewards:half")
    assert module.function == "half" and module.source == path and scores(module) == [0.5] * 3


def test_relative_paths_resolve_from_the_repository_root(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    reward = load_reward("tests/fixtures/rewards/substring.py")
    assert reward.source == FIXTURES / "substring.py"


def test_builtin_specs_with_options_and_composites():
    assert scores(load_reward("builtin:numeric")) == [1.0, 0.0, 1.0]
    tolerant = load_reward("builtin:numeric?rel_tol=0.5")
    assert tolerant.grader == G.NumericMatch(rel_tol=0.5) and scores(tolerant) == [1.0, 1.0, 1.0]
    combo = load_reward("builtin:composite?numeric=0.8&format=0.2")
    assert isinstance(combo.grader, G.Composite)
    assert scores(combo) == pytest.approx([1.0, 0.2, 0.8])  # "4": number only but wrong; boxed: right, not bare
    gated = load_reward("builtin:composite?numeric=0.8&format=0.2&gate=format")
    assert scores(gated) == pytest.approx([1.0, 0.2, 0.0])
    pattern = load_reward("builtin:format?pattern=%5C%5Cboxed%5C%7B.%2B%5C%7D&fullmatch=false")
    assert scores(pattern) == [0.0, 0.0, 1.0]


def test_grader_config_files(tmp_path):
    yaml_file = tmp_path / "grader.yaml"
    yaml_file.write_text("grader: composite\ncomponents:\n  - {name: answer, grader: numeric, weight: 3}\n"
                         "  - {name: short, grader: length, target: 3, limit: 10, weight: 1}\n")
    reward = load_reward(str(yaml_file))
    assert reward.name == "grader"
    assert scores(reward) == pytest.approx([0.75 + 0.25 * (1 - 2 / 7), 0.25, 0.75 + 0.25 * (1 - 6 / 7)])
    bad = tmp_path / "bad.json"
    bad.write_text('{"grader": "numeric", "tolerance": 2}')
    with pytest.raises(UserError, match="bad options for grader 'numeric'"):
        load_reward(str(bad))


def test_generated_source_of_a_builtin_runs_stand_alone(tmp_path):
    reward = load_reward("builtin:composite?numeric=0.8&format=0.2")
    source = reward.source
    assert source.name == "nbkit_reward.py" and source.read_text().startswith('"""Built-in graders')
    assert load_reward("builtin:composite?numeric=0.8&format=0.2").source == source, "content-addressed"
    as_file = load_reward(str(source))
    assert as_file.handler(SAMPLES, None) == reward.handler(SAMPLES, None)
    # -I: isolated mode, no nbkit and no site-packages on the path: the file needs the standard library only
    script = ("import json, sys; sys.path.insert(0, sys.argv[1]); import nbkit_reward; "
              "print(json.dumps(nbkit_reward.lambda_handler(json.loads(sys.argv[2]), None)))")
    import json

    out = subprocess.run([sys.executable, "-I", "-c", script, str(source.parent), json.dumps(SAMPLES)],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == reward.handler(SAMPLES, None)


def test_python_objects_load_too():
    grader_reward = load_reward(G.ExactMatch())
    assert grader_reward.name == "builtin:exact" and grader_reward.source is not None

    def my_reward(event, context):
        return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]

    fn = load_reward(my_reward)
    assert fn.name == "my_reward" and fn.source == Path(__file__) and fn.function == "my_reward"
    assert load_reward(fn) is fn


def test_rewards_pickle_by_spec_or_config():
    for spec in ("builtin:numeric?rel_tol=0.1", str(FIXTURES / "substring.py")):
        reward = load_reward(spec)
        again = pickle.loads(pickle.dumps(reward))
        assert again.name == reward.name and scores(again) == scores(reward)
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(load_reward(lambda event, context: []))


def test_judge_is_not_packageable_but_loads():
    class Gen:
        def generate(self, prompts, n, max_new_tokens, temperature, seed):
            return [[type("C", (), {"text": "Score: 10"})()] for _ in prompts]

    reward = load_reward(G.LLMJudge(Gen()))
    assert reward.source is None
    assert scores(reward) == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("spec, words", [
    ("no/such/reward.py", "not found"),
    ("builtin:fuzzy", "unknown built-in grader 'fuzzy'.*builtin:numeric"),
    ("builtin:numeric?rel_tol", "bad option 'rel_tol'"),
    ("builtin:numeric?tolerance=1", "bad options for grader 'numeric'"),
    ("builtin:composite?numeric=1&fuzzy=1", "component 'fuzzy'"),
    ("no_such_module_xyz:handler", "cannot import module 'no_such_module_xyz'"),
    ("", "non-empty string"),
])
def test_bad_specs(spec, words):
    with pytest.raises(UserError, match=words):
        load_reward(spec)


@pytest.mark.parametrize("body, words", [
    ("def lambda_handler(event, context)\n    return []\n", r"bad\.py:1: syntax error"),
    ("def score(event, context):\n    return []\n", r"no function 'lambda_handler'; functions defined there: \['score'\]"),
    ("def lambda_handler(event):\n    return []\n", r"must accept \(event, context\)"),
    ("import not_installed_pkg_xyz\n", "imports 'not_installed_pkg_xyz', which is not installed"),
    ("x = 1\nraise RuntimeError('boom at import')\n", r"bad\.py:2: the reward file raised while loading: RuntimeError"),
    ("import sys\nsys.exit(2)\n", "SystemExit"),
    ("lambda_handler = 3\n", "is int, not a function"),
])
def test_bad_reward_files(tmp_path, body, words):
    path = tmp_path / "bad.py"
    path.write_text(body)
    with pytest.raises(UserError, match=words):
        load_reward(str(path))


def test_edited_files_reload(tmp_path):
    path = tmp_path / "edit.py"
    path.write_text("def lambda_handler(e, c):\n    return [{'id': s['id'], 'aggregate_reward_score': 0.0} for s in e]\n")
    assert scores(load_reward(str(path))) == [0.0] * 3
    path.write_text("def lambda_handler(e, c):\n    return [{'id': s['id'], 'aggregate_reward_score': 1.0} for s in e]\n")
    import os

    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert scores(load_reward(str(path))) == [1.0] * 3
