"""Sampling from Bedrock through the Converse API: Nova base models and custom (RFT-tuned) model ARNs.

Converse has no seed and returns one answer per call, so `n` samples are `n` calls (run on a few threads).
Throttling and other transient errors are retried with exponential backoff and jitter; when the retries run
out the sample is kept as an `error` completion (the evaluation records it, nothing is dropped). Errors that
a retry cannot fix (no credentials, no access to the model, a bad request) stop at once with what to do.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from nbkit.errors import UserError
from nbkit.policy.base import Completion, Generator, Messages

TRANSIENT = {
    "ThrottlingException", "TooManyRequestsException", "ServiceUnavailableException", "InternalServerException",
    "ModelNotReadyException", "ModelTimeoutException", "RequestTimeout", "RequestTimeoutException",
}
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length"}


class BedrockGenerator(Generator):
    """Generator over `bedrock-runtime` Converse for one model id or ARN."""

    def __init__(
        self,
        model_id: str,
        *,
        client: Any = None,
        region: str | None = None,
        max_retries: int = 8,
        base_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        workers: int = 4,
        top_p: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
        progress: bool = True,
    ) -> None:
        if not model_id:
            raise UserError("bedrock: needs a model id or ARN, e.g. bedrock:amazon.nova-2-lite-v1:0 or bedrock:arn:aws:bedrock:...")
        if workers < 1 or max_retries < 0:
            raise UserError(f"workers must be >= 1 and max_retries >= 0, got workers={workers}, max_retries={max_retries}")
        self.model_id = model_id
        self.name = f"bedrock:{model_id}"
        self.client = client if client is not None else _client(region)
        self.max_retries, self.base_delay_s, self.max_delay_s = max_retries, base_delay_s, max_delay_s
        self.workers, self.top_p, self.sleep, self.progress = workers, top_p, sleep, progress
        self.retries_used = 0
        self.failures: list[str] = []  # the last error of each sample whose retries ran out

    def describe(self) -> dict[str, Any]:
        return super().describe() | {"model_id": self.model_id, "max_retries": self.max_retries,
                                     "workers": self.workers, "top_p": self.top_p,
                                     "retries_used": self.retries_used, "failed_samples": len(self.failures)}

    def request(self, prompt: Messages, max_new_tokens: int, temperature: float) -> dict[str, Any]:
        """The Converse request for one prompt: system turns go to `system`, the rest to `messages`."""
        system = [{"text": m["content"]} for m in prompt if m["role"] in ("system", "developer")]
        turns = [
            {"role": "assistant" if m["role"] in ("assistant", "nova_assistant") else "user",
             "content": [{"text": m["content"]}]}
            for m in prompt if m["role"] not in ("system", "developer")
        ]
        if not turns or turns[0]["role"] != "user":
            raise UserError("a Converse conversation must start with a user message after the system prompt")
        inference: dict[str, Any] = {"maxTokens": int(max_new_tokens), "temperature": float(temperature)}
        if self.top_p is not None:
            inference["topP"] = float(self.top_p)
        request: dict[str, Any] = {"modelId": self.model_id, "messages": turns, "inferenceConfig": inference}
        if system:
            request["system"] = system
        return request

    def _generate(
        self, prompts: list[Messages], n: int, max_new_tokens: int, temperature: float, seed: int
    ) -> list[list[Completion]]:
        import threading

        from nbkit.progress import Task

        jobs = [(i, s) for i in range(len(prompts)) for s in range(n)]
        requests = [self.request(p, max_new_tokens, temperature) for p in prompts]
        rng = random.Random(seed)
        jitters = [rng.random() for _ in jobs]
        out: list[list[Completion | None]] = [[None] * n for _ in prompts]
        task = Task(f"{self.name} ({len(jobs)} calls)", total=len(jobs), unit="call", bar=self.progress)
        counted = threading.Lock()

        def run(k: int) -> None:
            i, s = jobs[k]
            out[i][s] = self.call(requests[i], jitters[k])
            with counted:
                task.update(1)

        try:
            if self.workers == 1:
                for k in range(len(jobs)):
                    run(k)
            else:
                with ThreadPoolExecutor(self.workers) as pool:
                    list(pool.map(run, range(len(jobs))))
        finally:
            task.close()
        return cast("list[list[Completion]]", out)  # every slot is filled by now

    def call(self, request: dict[str, Any], jitter: float = 0.5) -> Completion:
        """One Converse call with retries on transient errors; an `error` completion when they run out."""
        from botocore.exceptions import (
            ClientError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                return completion_from_response(self.client.converse(**request))
            except NoCredentialsError:
                raise UserError(
                    "no AWS credentials for Bedrock: configure the standard credential chain (aws configure, "
                    "AWS_PROFILE, or an instance role) with bedrock:InvokeModel on the model"
                ) from None
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                message = exc.response.get("Error", {}).get("Message", "")
                if code not in TRANSIENT:
                    raise UserError(_advice(code, message, request["modelId"])) from None
                last = f"{code}: {message}"
            except (EndpointConnectionError, ReadTimeoutError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if attempt < self.max_retries:
                self.retries_used += 1
                self.sleep(min(self.max_delay_s, self.base_delay_s * 2**attempt) * (0.5 + jitter))
        # The answer never came: an empty `error` completion, so the reward scores it and the summary counts it.
        self.failures.append(last)
        return Completion(text="", num_tokens=0, finish_reason="error")


def completion_from_response(response: dict[str, Any]) -> Completion:
    """Text of the output message, output token count and finish reason of a Converse response."""
    content = response.get("output", {}).get("message", {}).get("content", [])
    text = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    reason = STOP_REASONS.get(response.get("stopReason", ""), "error")
    tokens = int(response.get("usage", {}).get("outputTokens", 0))
    return Completion(text=text, num_tokens=tokens, finish_reason=reason)


def _advice(code: str, message: str, model_id: str) -> str:
    """Plain-words next step for errors a retry cannot fix."""
    hints = {
        "AccessDeniedException": "grant bedrock:InvokeModel on it and enable model access in the Bedrock console",
        "ResourceNotFoundException": "check the model id / ARN and the region (custom models live in one region)",
        "ValidationException": "check the request: model id, maxTokens within the model's limit, message roles",
        "UnrecognizedClientException": "your AWS credentials are invalid or expired: refresh them",
        "ExpiredTokenException": "your AWS session expired: refresh your credentials",
    }
    hint = hints.get(code, "see the message above")
    return f"Bedrock Converse on {model_id} failed with {code}: {message} -> {hint}"


def _client(region: str | None) -> Any:
    """A bedrock-runtime client whose own retries are off: this module retries and counts them itself."""
    import boto3
    from botocore.config import Config

    return boto3.client("bedrock-runtime", region_name=region,
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
