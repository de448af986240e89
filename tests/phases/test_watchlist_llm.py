"""The watchlist phase against a local server speaking DeepSeek's chat-completions API.

No test reaches the internet: DEEPSEEK_BASE_URL points at ``fake_deepseek`` on
127.0.0.1. The candidates are seeded straight into the phase tables (the universe and
data phases have their own tests against the simulator).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_deepseek import FakeDeepSeek
from phase_fixtures import DAY, context, run, settings_for

from config.settings import Settings
from market.clock import VirtualClock
from phases import post_close, watchlist
from phases.llm import LlmClient
from phases.metrics import compute
from phases.regime import classify
from shared_state import Store, WatchlistSource
from shared_state.phase_data import Candidate, PhaseData, SymbolSnapshot

KEY = "sk-FAKE-deepseek-0123456789abcdef"
SYMBOLS = ("AAPL", "AMD", "NVDA", "TSLA", "SNAP", "F", "COIN", "MSTR", "PLTR", "SOFI")
CLOCK_START = "2025-11-26T07:30:00-05:00"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeDeepSeek]:
    fake = FakeDeepSeek()
    yield fake
    fake.close()


@dataclass
class Seeded:
    tmp: Path
    store: Store
    clock: VirtualClock

    def settings(self, server: FakeDeepSeek, **overrides: object) -> Settings:
        return settings_for(
            self.tmp, DEEPSEEK_API_KEY=KEY, DEEPSEEK_BASE_URL=server.url, **overrides
        )


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    store = Store(tmp_path / "state.db", process="test")
    data = PhaseData(tmp_path / "state.db")
    data.replace_candidates(
        DAY,
        [
            Candidate(s, i, (f"scan:TOP_PERC_GAIN#{i + 1}",), 50.0 + i, 5e6, True, "passed")
            for i, s in enumerate(SYMBOLS)
        ],
    )
    data.replace_snapshots(
        DAY,
        [
            SymbolSnapshot(s, True, 30, 50.0 + i, 5e6 + i, 2.0 + i / 10, "up", 3.0, "test")
            for i, s in enumerate(SYMBOLS)
        ],
    )
    data.close()
    yield Seeded(tmp_path, store, _clock())
    store.close()


def _clock() -> VirtualClock:
    from datetime import datetime

    return VirtualClock(datetime.fromisoformat(CLOCK_START), 1.0)


def _pick(symbol: str, score: float) -> dict[str, object]:
    return {"symbol": symbol, "score": score, "reason": f"{symbol} looks strong"}


def _secrets_kept(tmp: Path) -> None:
    """The key appears in no file the run wrote (database, logs, span store)."""
    for path in tmp.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_a_valid_answer_becomes_the_watchlist_with_source_llm(
    server: FakeDeepSeek, seeded: Seeded
) -> None:
    server.reset("picks", [_pick("nvda", 80), _pick("AMD", 95), _pick("TSLA", 60)])
    settings = seeded.settings(server)

    result = run("watchlist", settings, seeded.clock, seeded.store)

    assert result.outcome.status == "done"
    rows = seeded.store.watchlist(DAY)
    assert [(r.symbol, r.rank, r.score) for r in rows] == [
        ("AMD", 1, 95.0),
        ("NVDA", 2, 80.0),
        ("TSLA", 3, 60.0),
    ]
    assert all(r.source is WatchlistSource.LLM for r in rows)
    assert rows[0].reason == "llm: AMD looks strong" and "fallback_reason" not in rows[0].extra
    (request,) = server.requests
    body = request["body"]
    assert request["path"] == "/chat/completions"
    assert body["tool_choice"]["function"]["name"] == "WatchlistAnswer"
    assert body["tools"][0]["function"]["parameters"]["required"] == ["picks"]
    system, user = body["messages"]
    assert "Never invent a symbol" in system["content"] and "At most 8 picks" in system["content"]
    assert all(f"| {s} |" in user["content"] for s in SYMBOLS)
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    data = PhaseData(settings.db_path)
    (call,) = data.llm_calls(DAY)
    assert (call.purpose, call.outcome) == ("watchlist", "ok")
    data.close()
    _secrets_kept(seeded.tmp)


FALLBACKS = [
    pytest.param("text", [], "no structured output", "invalid", id="plain-text"),
    pytest.param("bad_args", [], "arguments are not valid JSON", "invalid", id="garbage-arguments"),
    pytest.param("not_json", [], "invalid answer", "invalid", id="garbage-body"),
    pytest.param(
        "picks", [_pick("AMD", 90), _pick("ZZZZ", 80)], "not candidates: ZZZZ", "invalid",
        id="unknown-symbol",
    ),
    pytest.param(
        "picks", [_pick("AMD", 90), _pick("amd", 80)], "listed twice: AMD", "invalid",
        id="duplicate",
    ),
    pytest.param(
        "picks", [_pick(s, 50) for s in SYMBOLS[:9]], "9 picks, more than MAX_POSITIONS=8",
        "invalid", id="too-many",
    ),
    pytest.param("slow", [], "timeout", "timeout", id="timeout"),
    pytest.param("401", [], "unauthorized (HTTP 401)", "unauthorized", id="401"),
    pytest.param("429", [], "rate limited (HTTP 429)", "rate_limited", id="429"),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "picks", "why", "outcome"), FALLBACKS)
def test_a_bad_or_failed_answer_falls_back_to_the_rules_with_the_reason(
    server: FakeDeepSeek,
    seeded: Seeded,
    mode: str,
    picks: list[dict[str, object]],
    why: str,
    outcome: str,
) -> None:
    server.reset(mode, picks)
    settings = seeded.settings(server)
    started = time.monotonic()

    result = run("watchlist", settings, seeded.clock, seeded.store)

    assert time.monotonic() - started < 10.0  # a timeout costs LLM_TIMEOUT_S, not minutes
    assert result.outcome.status == "done"  # the LLM never fails the phase
    rows = seeded.store.watchlist(DAY)
    assert 1 <= len(rows) <= settings.max_positions
    assert all(r.source is WatchlistSource.RULES for r in rows)
    assert all(why in r.extra["fallback_reason"] for r in rows), rows[0].extra
    assert all(r.reason.startswith("rules ") for r in rows)
    (event,) = seeded.store.events(kind="watchlist_decided")
    assert event.detail["source"] == "rules" and why in event.detail["fallback_reason"]
    assert len(server.requests) == 1  # LLM_MAX_RETRIES=0: one attempt
    data = PhaseData(settings.db_path)
    (call,) = data.llm_calls(DAY)
    assert call.outcome == outcome and why in (call.reason or "")
    data.close()
    _secrets_kept(seeded.tmp)


def test_the_daily_llm_cap_holds_and_then_the_rules_are_used(
    server: FakeDeepSeek, seeded: Seeded
) -> None:
    server.reset("picks", [_pick("AMD", 90)])
    settings = seeded.settings(server, LLM_MAX_CALLS_PER_DAY=2)
    ctx = context("watchlist", settings, seeded.clock, seeded.store)
    views = watchlist.candidate_views(
        ctx.data.snapshots(DAY, ok_only=True), ctx.data.candidates(DAY)
    )
    llm = LlmClient(settings, ctx.data, seeded.clock)

    async def three() -> list[watchlist.Choice]:
        return [await watchlist.choose(ctx, views, llm) for _ in range(3)]

    choices = asyncio.run(three())
    ctx.data.close()

    assert [c.source for c in choices] == [
        WatchlistSource.LLM,
        WatchlistSource.LLM,
        WatchlistSource.RULES,
    ]
    assert "daily LLM cap reached (2 calls per trading day" in (choices[2].fallback_reason or "")
    assert len(server.requests) == 2  # the third question was never sent


def test_post_close_insights_come_from_the_llm_or_from_the_rules_with_the_reason(
    server: FakeDeepSeek, seeded: Seeded
) -> None:
    settings = seeded.settings(server)
    ctx = context("post_close", settings, seeded.clock, seeded.store)
    metrics = compute([], 100_000.0)
    regime = classify([400.0] * 30)

    server.reset("picks", arguments={"insights": ["Stops were hit early.", "  "]})
    from_llm = asyncio.run(post_close.insights(ctx, metrics, regime, []))
    body = server.requests[0]["body"]
    server.reset("401")
    from_rules = asyncio.run(post_close.insights(ctx, metrics, regime, []))
    ctx.data.close()

    assert from_llm == (["Stops were hit early."], "llm")
    assert body["tool_choice"]["function"]["name"] == "Insights"
    assert '"trades": 0' in body["messages"][1]["content"]
    lines, source = from_rules
    assert source == "rules (LLM not used: unauthorized (HTTP 401): check DEEPSEEK_API_KEY)"
    assert lines == ["No trade today; the market was low_volatility."]
