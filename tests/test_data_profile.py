"""Data profile and findings: counts, lengths, duplicates, conflicts, leakage, sizes, tokenizers."""

from __future__ import annotations

import json

import pytest

from nbkit.data import profile_data, token_counter
from nbkit.data.plots import plot_distributions, plot_duplicates, plot_lengths
from nbkit.data.profile import approx_tokens


def make(i: int, question: str | None = None, answer: str | None = None, **extra) -> dict:
    return {"id": f"r{i}", "messages": [{"role": "system", "content": "Answer briefly."},
                                        {"role": "user", "content": question or f"What is {i} + 1?"}],
            "reference_answer": {"solution": answer or str(i + 1)}, **extra}


def codes(profile) -> dict[str, str]:
    return {f.code: f.severity for f in profile.findings}


def finding(profile, code):
    return next(f for f in profile.findings if f.code == code)


def test_clean_data_gets_ok_findings_and_counts():
    p = profile_data([make(i, domain="a") for i in range(120)], [make(i, domain="a") for i in range(200, 320)])
    c = codes(p)
    assert c["train_size"] == c["eval_size"] == c["no_duplicates"] == c["no_leakage"] == "ok"
    assert p.worst == "info"
    train = p.splits["train"]
    assert train["records"] == 120
    assert train["roles"] == {"system": 120, "user": 120}
    assert train["turn_patterns"] == {"system>user": 120}
    assert train["system_prompts"]["variants"] == 1 and train["system_prompts"]["without"] == 0
    assert train["reference_answer"] == {"kinds": {"object": 120}, "keys": {"solution": 120}}
    assert train["extra_fields"] == {"domain": 120} and train["categories"] == {"domain": {"a": 120}}


def test_small_splits_and_missing_eval_are_warned():
    p = profile_data([make(i) for i in range(10)], [make(i) for i in range(10, 15)])
    assert codes(p)["small_train"] == "warning" and finding(p, "small_train").count == 10
    assert codes(p)["small_eval"] == "warning"
    assert codes(profile_data([make(i) for i in range(150)]))["no_eval"] == "warning"


def test_bedrock_size_limits():
    p = profile_data([make(i) for i in range(50)], profile="bedrock")
    assert codes(p)["bedrock_size"] == "error"
    assert "bedrock_size" not in codes(profile_data([make(i) for i in range(150)], profile="bedrock"))


def test_duplicates_by_id_and_by_normalized_prompt():
    train = [make(1), make(2, question="what is  2 + 1? "), make(3, question="What is 2 + 1?"), make(4)]
    train[3]["id"] = "r1"
    p = profile_data(train)
    dup_prompt = finding(p, "duplicate_prompt")
    assert dup_prompt.count == 1 and dup_prompt.severity == "warning"
    assert finding(p, "duplicate_id").examples == ["r1"]
    kinds = sorted((d["kind"], d["count"]) for d in p.duplicates)
    assert kinds == [("id", 2), ("prompt", 2)]


def test_conflicting_reference_answers_for_identical_prompts():
    train = [make(1, question="What is 2 + 2?", answer="4"), make(2, question="what is 2 + 2?", answer="5"),
             make(3, question="What is 3 + 3?", answer="6"), make(4, question="What is 3 + 3?", answer="6")]
    p = profile_data(train)
    assert codes(p)["conflicting_references"] == "error"
    assert len(p.conflicts) == 1 and p.conflicts[0]["ids"] == ["r1", "r2"]


def test_reference_key_order_does_not_make_a_conflict():
    a = make(1, question="q")
    b = make(2, question="q")
    a["reference_answer"] = {"x": 1, "y": 2}
    b["reference_answer"] = {"y": 2, "x": 1}
    assert profile_data([a, b]).conflicts == []


def test_train_eval_leakage_by_prompt_and_shared_ids():
    train = [make(i) for i in range(5)]
    eval_ = [make(10, question="WHAT IS 0 + 1?"), make(11)]
    eval_[1]["id"] = "r2"  # same id as a train record, different prompt
    p = profile_data(train, eval_)
    assert codes(p)["leakage"] == "error" and finding(p, "leakage").count == 1
    assert codes(p)["shared_ids"] == "warning"
    assert "no_leakage" not in codes(p)


def test_system_prompt_must_match_for_a_leak():
    eval_ = [make(0)]
    eval_[0]["messages"][0]["content"] = "Show your work."
    assert [x["kind"] for x in profile_data([make(0)], eval_).leakage] == ["id"]  # same id, not the same prompt


def test_missing_and_mixed_reference_answers():
    train = [make(1), make(2), make(3)]
    train[0]["reference_answer"] = "2"
    del train[1]["reference_answer"]
    train[2]["reference_answer"] = {"solution": "4", "steps": ["a"]}
    p = profile_data(train + [make(4)])
    assert finding(p, "missing_references").count == 1 and finding(p, "missing_references").examples == ["r2"]
    assert codes(p)["mixed_reference_types"] == "warning"
    assert "'steps' in 1 of 2" in finding(p, "partial_reference_keys").message


def test_lengths_against_the_budget():
    long_q = "word " * 300
    p = profile_data([make(1), make(2, question=long_q, answer="a b c d e f g h i j")],
                     max_prompt_tokens=100, max_new_tokens=5)
    assert finding(p, "prompt_over_budget").examples == ["r2"]
    assert finding(p, "answer_over_budget").examples == ["r2"]
    rows = {r["id"]: r for r in p.lengths}
    assert rows["r2"]["prompt_tokens"] == 300 + 2 + 1  # the words, the system prompt's 2 words and "."
    assert rows["r1"]["reference_tokens"] == 1
    ok = profile_data([make(1)], max_prompt_tokens=100, max_new_tokens=5)
    assert codes(ok)["prompts_fit"] == "ok" and codes(ok)["answers_fit"] == "ok"


def test_multi_turn_and_system_prompt_variants():
    a = make(1)
    b = make(2)
    b["messages"][0]["content"] = "Think step by step."
    c = make(3)
    c["messages"] = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                     {"role": "user", "content": "q2"}]
    p = profile_data([a, b, c])
    assert codes(p)["multi_turn"] == "warning"
    assert finding(p, "system_prompt_variants").count == 2
    assert finding(p, "some_without_system").count == 1


def test_mix_shift_between_splits():
    train = [make(i, level="easy") for i in range(50)] + [make(i, level="hard") for i in range(50, 100)]
    eval_ = [make(i, level="easy") for i in range(100, 190)] + [make(i, level="hard") for i in range(190, 200)]
    assert codes(profile_data(train, eval_))["mix_shift"] == "warning"


def test_tokenizers_are_pluggable():
    assert approx_tokens("Solve for x: 3x + 2 = 11") == 9
    assert token_counter(lambda text: len(text))("abcd") == 4  # a callable returning an int
    assert token_counter(str.split)("a b c") == 3  # a callable returning tokens
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = tokenizers.Tokenizer(WordLevel({"[UNK]": 0, "what": 1, "is": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    assert token_counter(tok)("what is 2 + 2 ?") == 6  # a real tokenizer object with .encode(...).ids
    p = profile_data([make(1)], tokenizer=tok)
    assert p.settings["tokenizer"] != "regex approximation"


def test_profile_is_json_serializable_and_plots_have_labels():
    p = profile_data([make(i, level="easy") for i in range(20)], [make(i, level="easy") for i in range(20, 30)],
                     max_prompt_tokens=12, max_new_tokens=4)
    json.dumps(p.to_dict())
    assert len(p.findings_frame()) == len(p.findings)
    assert list(p.lengths_frame()["split"].unique()) == ["train", "eval"]
    for fig in (plot_lengths(p, 12, 4), plot_distributions(p), plot_duplicates(p)):
        for ax in fig.axes:
            assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


@pytest.mark.slow
def test_tokenizer_folder_is_loaded_offline(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tok = tokenizers.Tokenizer(WordLevel({"[UNK]": 0, "what": 1, "is": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path)
    assert token_counter(str(tmp_path))("what is 2 + 2 ?") == 6
