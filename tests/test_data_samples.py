"""Bundled sample tasks: valid, seeded, leak-free, and with correct reference answers."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from nbkit.data import check_record, prompt_key, prompt_text
from nbkit.data.samples import MATH_SYSTEM, TASKS, make_task, pool_size
from nbkit.errors import UserError


@pytest.mark.parametrize("name", list(TASKS))
@pytest.mark.parametrize("profile", ["sagemaker", "bedrock"])
def test_tasks_are_valid_unique_and_leak_free(name, profile):
    train, eval_ = make_task(name, 100, 100, seed=3)
    assert (len(train), len(eval_)) == (100, 100)
    for record in train + eval_:
        errors, warnings = check_record(record, profile)
        assert errors == [] and warnings == [], (record, errors, warnings)
    all_ids = [r["id"] for r in train + eval_]
    assert len(set(all_ids)) == len(all_ids)
    assert not {prompt_key(r) for r in train} & {prompt_key(r) for r in eval_}
    assert len({prompt_key(r) for r in train}) == 100
    assert all(r["domain"] and r["difficulty_level"] in ("easy", "medium") for r in train + eval_)


@pytest.mark.parametrize("name", list(TASKS))
def test_tasks_are_seeded(name):
    assert make_task(name, 120, 100, seed=1) == make_task(name, 120, 100, seed=1)
    assert make_task(name, 120, 100, seed=1)[0] != make_task(name, 120, 100, seed=2)[0]


def test_ids_depend_on_content_not_on_the_seed():
    by_id_1 = {r["id"]: prompt_text(r) for r in sum(make_task("math", 300, 300, seed=1), [])}
    by_id_2 = {r["id"]: prompt_text(r) for r in sum(make_task("math", 300, 300, seed=2), [])}
    shared = set(by_id_1) & set(by_id_2)
    assert shared and all(by_id_1[i] == by_id_2[i] for i in shared)


def test_math_is_short_learnable_and_correct():
    train, eval_ = make_task("math", 400, 200, seed=0)
    records = train + eval_
    assert Counter(r["domain"] for r in train) == {"arithmetic": 200, "algebra": 200}
    assert {r["messages"][0]["content"] for r in records} == {MATH_SYSTEM}
    for record in records:
        prompt = prompt_text(record)
        solution = record["reference_answer"]["solution"]
        assert len(prompt) <= 30, prompt
        if record["domain"] == "arithmetic":
            a, op, b = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", prompt).groups()
            assert int(a) <= 20 and int(b) <= 20
            assert solution == str({"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op])
        else:
            match = re.fullmatch(r"Solve for x: (\d+)x(?: ([-+]) (\d+))? = (-?\d+)", prompt)
            a, sign, b, c = match.groups()
            x = int(re.fullmatch(r"x = (-?\d+)", solution).group(1))
            b_val = 0 if b is None else int(b) * (1 if sign == "+" else -1)
            assert int(a) * x + b_val == int(c) and 0 <= x <= 12


def test_tools_task_references_match_the_request():
    train, _ = make_task("tools", 150, 100, seed=0)
    assert Counter(r["reference_answer"]["tool_called"] for r in train) == {
        "StatRollAPI": 50, "DiceRollAPI": 50, "InitiativeAPI": 50}
    for record in train:
        ref = record["reference_answer"]
        names = [t["function"]["name"] for t in record["tools"]]
        assert ref["tool_called"] in names
        prompt = prompt_text(record)
        args = ref["tool_parameters"]
        if ref["tool_called"] == "StatRollAPI":
            assert f"{args['modifier']:+d}" in prompt
        elif ref["tool_called"] == "DiceRollAPI":
            assert f"{args['count']}d{args['sides']}" in prompt
        else:
            assert f"{args['dexterity_modifier']:+d}" in prompt and args["advantage"] == ("advantage" in prompt)
        tool = next(t for t in record["tools"] if t["function"]["name"] == ref["tool_called"])
        assert set(tool["function"]["parameters"]["required"]) == set(args)


def test_tools_records_do_not_share_mutable_tool_lists():
    train, _ = make_task("tools", 10, 0)
    train[0]["tools"][0]["function"]["name"] = "changed"
    assert train[1]["tools"][0]["function"]["name"] == "StatRollAPI"


def test_chem_references_come_from_rdkit_lipinski():
    rdkit = pytest.importorskip("rdkit")
    del rdkit
    from rdkit import Chem
    from rdkit.Chem import Lipinski

    train, eval_ = make_task("chem", 200, 100, seed=0)
    for record in train + eval_:
        smiles = prompt_text(record).rsplit(": ", 1)[1]
        mol = Chem.MolFromSmiles(smiles)
        assert record["reference_answer"] == {"donor_bond_counts": Lipinski.NumHDonors(mol),
                                              "acceptor_bond_counts": Lipinski.NumHAcceptors(mol)}
    ethanol = next(r for r in sum(make_task("chem", pool_size("chem"), 0), []) if prompt_text(r).endswith(": CCO"))
    assert ethanol["reference_answer"] == {"donor_bond_counts": 1, "acceptor_bond_counts": 1}


def test_bad_requests_are_user_errors():
    with pytest.raises(UserError, match="bundled tasks are: math, tools, chem"):
        make_task("poetry", 10, 10)
    with pytest.raises(UserError, match="distinct prompts"):
        make_task("tools", pool_size("tools"), 1)
    with pytest.raises(UserError, match="n_train"):
        make_task("math", 0, 10)
