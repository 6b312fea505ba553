"""The trainer's reward adapter scores without a defensive copy: its samples are built for the call alone."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.slow  # imports torch and TRL


def rewriter(event, context):
    """Edits everything it can reach in place, then scores."""
    for sample in event:
        for message in sample["messages"]:
            if isinstance(message["content"], list):
                message["content"][0]["text"] = "rewritten"
            message["content"] = "rewritten"
        sample["reference_answer"]["solution"] = "rewritten"
    return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]


def test_adapter_skips_the_copy_and_its_rows_keep_the_real_prompts(tmp_path, monkeypatch):
    from nbkit.rewards import executors
    from nbkit.train.local import LocalPaths
    from nbkit.train.local_worker import RewardAdapter

    def no_copy(batch):
        raise AssertionError("the trainer's samples are not copied")

    monkeypatch.setattr(executors, "deep_copy", no_copy)
    record = {"id": "q1", "messages": [{"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]}],
              "reference_answer": {"solution": "4"}}
    adapter = RewardAdapter(rewriter, "sagemaker", LocalPaths(tmp_path), {"high": 0.8, "low": 0.2})
    scores = adapter(prompts=[None, None], completions=["4", "5"], completion_ids=[[1], [2]],
                     trainer_state=SimpleNamespace(global_step=0), record=[json.dumps(record)] * 2,
                     prompt_id=["q1", "q1"])
    assert scores == [1.0, 1.0]
    rows = adapter.steps[1].rows
    assert [r["prompt"] for r in rows] == ["What is 2 + 2?"] * 2
    assert [r["completion"] for r in rows] == ["4", "5"]
