"""What every generator returns, and the argument checks they share.

One interface for the local model, Bedrock and replayed outputs, so the evaluation code never asks where a
completion came from: `generate(prompts, n, max_new_tokens, temperature, seed)` returns, for each prompt,
`n` completions with their token counts and why they ended.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from nbkit.errors import UserError
from nbkit.plain import content_text

FINISH_REASONS = ("stop", "length", "error")
Messages = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Completion:
    """One sampled answer: its text, how many tokens it cost and whether it stopped, hit the cap or failed."""

    text: str
    num_tokens: int
    finish_reason: str

    def __post_init__(self) -> None:
        if self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"finish_reason must be one of {FINISH_REASONS}, got {self.finish_reason!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Generator:
    """Base of the generators: subclasses implement `_generate` on checked arguments."""

    name: str = "generator"

    def generate(
        self,
        prompts: Sequence[Messages],
        n: int = 1,
        max_new_tokens: int = 256,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> list[list[Completion]]:
        """`n` completions per prompt (outer list: prompts in order; inner: samples). temperature 0 = greedy."""
        checked = check_prompts(prompts)
        check_sampling(n, max_new_tokens, temperature)
        if not checked:
            return []
        out = self._generate(checked, n, max_new_tokens, temperature, seed)
        if len(out) != len(checked) or any(len(c) != n for c in out):
            raise RuntimeError(f"{self.name} returned a wrong number of completions (bug): expected {len(checked)}x{n}")
        return out

    def _generate(
        self, prompts: list[Messages], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[Completion]]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What produced the completions, for summary.json (model spec, settings)."""
        return {"generator": type(self).__name__, "name": self.name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def check_sampling(n: int, max_new_tokens: int, temperature: float) -> None:
    """Refuse settings that would silently give nothing or something other than asked."""
    if int(n) != n or n < 1:
        raise UserError(f"n (samples per prompt) must be an integer >= 1, got {n!r}")
    if int(max_new_tokens) != max_new_tokens or max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise UserError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")


def check_prompts(prompts: Sequence[Messages]) -> list[Messages]:
    """Each prompt is a non-empty list of {role, content} messages; content may be Nova's list of text parts."""
    if isinstance(prompts, (Mapping, str)):
        raise UserError("prompts must be a list of conversations (each a list of {role, content} messages)")
    out = []
    for i, prompt in enumerate(prompts):
        if isinstance(prompt, Mapping) and "messages" in prompt:
            raise UserError(f"prompt {i} is a data record: pass record['messages'], not the record")
        if not isinstance(prompt, Sequence) or isinstance(prompt, str) or not prompt:
            raise UserError(f"prompt {i} must be a non-empty list of {{role, content}} messages, got {prompt!r:.80}")
        messages = []
        for j, message in enumerate(prompt):
            if not isinstance(message, Mapping) or "role" not in message:
                raise UserError(f"prompt {i}, message {j} must be a dict with 'role' and 'content', got {message!r:.80}")
            messages.append({**message, "content": content_text(message.get("content"))})
        out.append(messages)
    return out


def without_answer(messages: Messages) -> Messages:
    """The prompt part of a conversation: a trailing assistant turn (the answer) removed."""
    if messages and messages[-1].get("role") in ("assistant", "nova_assistant"):
        return list(messages[:-1])
    return list(messages)


_WORDS = re.compile(r"\w+|[^\w\s]")


def approx_tokens(text: str) -> int:
    """Word-and-punctuation count, for outputs whose producer did not report a token count."""
    return len(_WORDS.findall(text))
