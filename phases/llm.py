"""DeepSeek through langchain-deepseek: one bounded, counted, recorded call per question.

``LlmClient.ask`` never raises for a service failure: it returns an ``LlmAnswer`` whose
``outcome`` says what happened (``ok``, ``no_key``, ``cap_reached``, ``timeout``,
``unauthorized``, ``rate_limited``, ``invalid``, ``unreachable``, ``error``) and whose
``reason`` is the sentence the caller records when it falls back to its rules.

- Structured output: ``ChatDeepSeek.with_structured_output(schema)`` in its default
  function-calling mode (the request carries the schema as a tool and forces the call;
  the answer's tool-call arguments are validated by pydantic). ``include_raw`` turns a
  parse failure into data instead of an exception.
- Time: ``LLM_TIMEOUT_S`` per HTTP attempt, ``LLM_MAX_RETRIES`` retries by the client
  (timeouts, 429, connection errors), and an outer guard over all of them.
- Cap: every attempt is reserved in ``llm_calls`` first (count and insert in one
  transaction); at ``LLM_MAX_CALLS_PER_DAY`` calls for the trading date no request is sent.
- Secrets: the key goes to the client object only; reasons are scrubbed of it.
"""

from __future__ import annotations

import asyncio
import logging
import string
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Any

import openai
from pydantic import BaseModel, ValidationError

from config.settings import Settings
from market.clock import Clock
from shared_state.phase_data import PhaseData
from telemetry.logs import redact, scrub
from telemetry.tracing import set_attributes, span

log = logging.getLogger("phases.llm")

#: Seconds the outer guard allows beyond the client's own attempts.
GUARD_SLACK_S = 5.0
REASON_MAX = 400

Messages = list[tuple[str, str]]


class Outcome(StrEnum):
    OK = "ok"
    NO_KEY = "no_key"
    CAP_REACHED = "cap_reached"
    TIMEOUT = "timeout"
    UNAUTHORIZED = "unauthorized"
    RATE_LIMITED = "rate_limited"
    INVALID = "invalid"
    UNREACHABLE = "unreachable"
    ERROR = "error"


@dataclass(frozen=True)
class LlmAnswer:
    """The parsed answer, or why there is none."""

    outcome: Outcome
    parsed: Any | None = None
    reason: str = ""
    call_id: int | None = None
    latency_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class Prompt:
    """A prompt file: a ``# System`` section and a ``# User`` section with ``$name`` fields."""

    system: str
    user: str

    @classmethod
    def load(cls, path: Path) -> Prompt:
        """Read ``path``; raise ValueError when a section is missing."""
        sections: dict[str, list[str]] = {}
        current: list[str] | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            heading = line.strip().lower()
            if heading in ("# system", "# user"):
                current = sections.setdefault(heading[2:], [])
            elif current is not None:
                current.append(line)
        if set(sections) != {"system", "user"}:
            raise ValueError(f"{path}: needs a '# System' and a '# User' section")
        return cls("\n".join(sections["system"]).strip(), "\n".join(sections["user"]).strip())

    def render(self, values: Mapping[str, object]) -> Messages:
        """Return the chat messages with every ``$name`` filled (KeyError if one is missing)."""
        fill = {k: str(v) for k, v in values.items()}
        return [
            ("system", string.Template(self.system).substitute(fill)),
            ("user", string.Template(self.user).substitute(fill)),
        ]


# --------------------------------------------------------------------------- client


class LlmClient:
    """DeepSeek for one process, counted against the day's cap in ``llm_calls``."""

    def __init__(self, settings: Settings, data: PhaseData, clock: Clock) -> None:
        self.settings = settings
        self.data = data
        self.clock = clock
        redact(settings.deepseek_api_key.reveal())

    @property
    def configured(self) -> bool:
        return bool(self.settings.deepseek_api_key)

    async def ask(
        self, trading_date: date, purpose: str, messages: Messages, schema: type[BaseModel]
    ) -> LlmAnswer:
        """Ask for an answer shaped like ``schema``; see the module docstring."""
        if not self.configured:
            return LlmAnswer(Outcome.NO_KEY, reason="no DEEPSEEK_API_KEY set")
        cap = self.settings.llm_max_calls_per_day
        call_id = self.data.reserve_llm_call(trading_date, purpose, cap, self.clock.now())
        if call_id is None:
            reason = f"daily LLM cap reached ({cap} calls per trading day, LLM_MAX_CALLS_PER_DAY)"
            return LlmAnswer(Outcome.CAP_REACHED, reason=reason)
        with span("llm.call", purpose=purpose, model=self.settings.deepseek_model) as current:
            started = time.monotonic()
            answer = await self._call(messages, schema)
            latency = round((time.monotonic() - started) * 1000.0, 1)
            set_attributes(current, outcome=str(answer.outcome), latency_ms=latency)
        self.data.finish_llm_call(
            call_id, answer.outcome, now=self.clock.now(), latency_ms=latency, reason=answer.reason
        )
        if not answer.ok:
            log.warning("LLM %s: %s", purpose, answer.reason)
        return LlmAnswer(answer.outcome, answer.parsed, answer.reason, call_id, latency)

    def _model(self, schema: type[BaseModel]) -> Any:
        # Imported here: langchain costs a second of start-up the other phases never need.
        from langchain_deepseek import ChatDeepSeek

        s = self.settings
        model = ChatDeepSeek(
            model=s.deepseek_model,
            api_key=s.deepseek_api_key.reveal(),
            base_url=s.deepseek_base_url,
            timeout=s.llm_timeout_s,
            max_retries=s.llm_max_retries,
            temperature=0.0,
        )
        return model.with_structured_output(schema, include_raw=True)

    async def _call(self, messages: Messages, schema: type[BaseModel]) -> LlmAnswer:
        s = self.settings
        guard = s.llm_timeout_s * (s.llm_max_retries + 1) + GUARD_SLACK_S
        try:
            result = await asyncio.wait_for(self._model(schema).ainvoke(messages), guard)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a recorded fallback
            outcome, reason = classify(exc, s.llm_timeout_s)
            return LlmAnswer(outcome, reason=self._clean(reason))
        if result.get("parsing_error") is not None:
            reason = f"invalid answer: {result['parsing_error']}"
            return LlmAnswer(Outcome.INVALID, reason=self._clean(reason))
        parsed = result.get("parsed")
        if parsed is None:
            unreadable = getattr(result.get("raw"), "invalid_tool_calls", None)
            if unreadable:
                reason = "invalid answer: the tool-call arguments are not valid JSON"
            else:
                reason = "invalid answer: no structured output (the model answered in plain text)"
            return LlmAnswer(Outcome.INVALID, reason=reason)
        return LlmAnswer(Outcome.OK, parsed)

    def _clean(self, text: str) -> str:
        text = scrub(" ".join(text.split()))
        key = self.settings.deepseek_api_key.reveal()
        if key:
            text = text.replace(key, "[redacted]")
        return text[:REASON_MAX]


def classify(exc: BaseException, timeout_s: float) -> tuple[Outcome, str]:
    """Return the outcome and the reason of a failed call."""
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return (
            Outcome.UNAUTHORIZED,
            f"unauthorized (HTTP {exc.status_code}): check DEEPSEEK_API_KEY",
        )
    if isinstance(exc, openai.RateLimitError):
        return Outcome.RATE_LIMITED, "rate limited (HTTP 429)"
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return Outcome.TIMEOUT, f"timeout: no answer within {timeout_s:g} s (LLM_TIMEOUT_S)"
    if isinstance(exc, openai.APIConnectionError):
        return Outcome.UNREACHABLE, f"unreachable: {exc}"
    if isinstance(exc, openai.APIStatusError):
        return Outcome.ERROR, f"HTTP {exc.status_code}: {exc.message}"
    if isinstance(exc, openai.APIResponseValidationError | ValidationError | ValueError):
        return Outcome.INVALID, f"invalid answer: {type(exc).__name__}: {exc}"
    return Outcome.ERROR, f"{type(exc).__name__}: {exc}"


def table(rows: Sequence[Mapping[str, object]]) -> str:
    """Return ``rows`` as a Markdown table (for prompts: compact and model-friendly)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
