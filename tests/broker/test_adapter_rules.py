"""Pure parts of the broker adapter: errors, interlock, order guards, backoff, pacing, states."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import pytest

from broker.backoff import backoff_delays
from broker.config import AdapterConfig
from broker.errors import (
    ERROR_TABLE,
    ErrorAction,
    InterlockError,
    OrderRefusedError,
    RoleError,
    classify,
)
from broker.guards import (
    Role,
    check_collar,
    check_notional,
    check_quantity,
    check_role,
    check_sell_covered,
    is_covered_sell,
    round_limit,
    tick_for,
)
from broker.interlock import trading_account
from broker.pacing import HistoryGuard, TokenBucket, bucket_for
from broker.state import (
    TRANSITIONS,
    ConnectionStateMachine,
    ConnState,
    IllegalTransition,
    StateChange,
)
from config.settings import LIVE_CONFIRM_PHRASE, load_settings


class FakeTime:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (1100, ErrorAction.RETRY),
        (1101, ErrorAction.INFO),
        (1102, ErrorAction.INFO),
        (326, ErrorAction.RETRY),
        (162, ErrorAction.RETRY),
        (100, ErrorAction.RETRY),
        (201, ErrorAction.SKIP_SYMBOL),
        (200, ErrorAction.SKIP_SYMBOL),
        (354, ErrorAction.SKIP_SYMBOL),
        (110, ErrorAction.SKIP_SYMBOL),
        (503, ErrorAction.STOP_TRADING),
        (202, ErrorAction.INFO),
        (10167, ErrorAction.INFO),
        (2104, ErrorAction.INFO),
    ],
)
def test_known_error_codes_are_classified_by_the_table(code: int, action: ErrorAction) -> None:
    assert classify(code) == action


def test_unlisted_farm_notice_is_info_and_unknown_code_stops_trading() -> None:
    assert 2199 not in ERROR_TABLE and classify(2199) == ErrorAction.INFO
    assert 99999 not in ERROR_TABLE and classify(99999) == ErrorAction.STOP_TRADING


def test_adapter_exceptions_carry_the_action_to_take() -> None:
    assert InterlockError("x").action == ErrorAction.STOP_TRADING
    assert RoleError("x").action == ErrorAction.STOP_TRADING
    refused = OrderRefusedError("price_collar", "too far")
    assert refused.action == ErrorAction.SKIP_SYMBOL
    assert "price_collar" in str(refused) and refused.rule == "price_collar"


# --------------------------------------------------------------------------- interlock


def test_paper_account_may_trade_in_paper_mode() -> None:
    assert trading_account(["DU1234567"], "", "paper", "") == "DU1234567"


def test_account_other_than_ib_account_is_refused() -> None:
    with pytest.raises(InterlockError, match="IB_ACCOUNT=DU7654321"):
        trading_account(["DU1234567"], "DU7654321", "paper", "")


def test_expected_account_among_several_is_chosen() -> None:
    assert trading_account(["DU1", "DU1234567"], "DU1234567", "paper", "") == "DU1234567"


def test_several_accounts_without_ib_account_are_refused() -> None:
    with pytest.raises(InterlockError, match="several accounts"):
        trading_account(["DU1", "DU2"], "", "paper", "")


def test_live_account_in_paper_mode_is_refused() -> None:
    with pytest.raises(InterlockError, match="not a paper account"):
        trading_account(["U1234567"], "", "paper", "")


def test_live_account_in_live_mode_without_the_phrase_is_refused() -> None:
    with pytest.raises(InterlockError, match="LIVE_TRADING_CONFIRM"):
        trading_account(["U1234567"], "U1234567", "live", "yes please")


def test_live_account_in_live_mode_with_the_phrase_may_trade() -> None:
    assert trading_account(["U1234567"], "U1234567", "live", LIVE_CONFIRM_PHRASE) == "U1234567"


def test_no_managed_account_is_refused() -> None:
    with pytest.raises(InterlockError, match="no managed account"):
        trading_account(["", " "], "", "paper", "")


# --------------------------------------------------------------------------- guards


def test_roles_own_one_side_each() -> None:
    check_role(Role.DAY_TRADER, "BUY")
    check_role(Role.EXIT_MANAGER, "SELL")
    check_role(Role.TOOL, "SELL")
    with pytest.raises(RoleError, match="day_trader may send BUY orders, not SELL"):
        check_role(Role.DAY_TRADER, "SELL")
    with pytest.raises(RoleError):
        check_role(Role.EXIT_MANAGER, "BUY")
    with pytest.raises(RoleError):
        check_role(Role.PHASES, "BUY")


def test_action_other_than_buy_or_sell_is_refused() -> None:
    with pytest.raises(OrderRefusedError, match="action"):
        check_role(Role.TOOL, "SSHORT")


@pytest.mark.parametrize("bad", [0, -5, 1.5, float("nan"), float("inf")])
def test_quantity_must_be_positive_whole_shares(bad: float) -> None:
    with pytest.raises(OrderRefusedError, match="quantity"):
        check_quantity(bad)


def test_whole_float_quantity_is_accepted_as_int() -> None:
    assert check_quantity(100.0) == 100


def test_tick_is_sub_penny_below_one_dollar_and_penny_above() -> None:
    assert tick_for(0.9999) == 0.0001
    assert tick_for(1.0) == 0.01
    assert tick_for(250.0, 0.05) == 0.05


def test_limits_round_towards_the_order_side_on_the_tick_grid() -> None:
    assert round_limit("BUY", 10.001) == 10.01
    assert round_limit("SELL", 10.009) == 10.0
    assert round_limit("BUY", 0.12345) == 0.1235
    assert round_limit("SELL", 0.12345) == 0.1234
    assert round_limit("BUY", 0.1 + 0.2) == 0.3  # float noise is not a whole tick


def test_non_positive_limit_is_refused() -> None:
    with pytest.raises(OrderRefusedError, match="limit_price"):
        round_limit("BUY", 0.0)


def test_notional_above_the_cap_is_refused_naming_the_rule() -> None:
    check_notional(100, 250.0, 25_000.0)
    with pytest.raises(OrderRefusedError, match="notional_cap"):
        check_notional(101, 250.0, 25_000.0)


def test_only_the_exit_managers_sells_are_covered_and_exempt_from_the_notional_cap() -> None:
    assert is_covered_sell(Role.EXIT_MANAGER, "SELL")
    assert not is_covered_sell(Role.EXIT_MANAGER, "BUY")
    assert not is_covered_sell(Role.DAY_TRADER, "BUY")
    assert not is_covered_sell(Role.TOOL, "SELL")  # not checked against the position


def test_limit_outside_the_collar_is_refused_and_inside_passes() -> None:
    check_collar(103.0, 100.0, 3.0)
    check_collar(97.0, 100.0, 3.0)
    with pytest.raises(OrderRefusedError, match="price_collar"):
        check_collar(103.01, 100.0, 3.0)
    with pytest.raises(OrderRefusedError, match="no reference price"):
        check_collar(100.0, None, 3.0)


def test_sell_beyond_holdings_minus_pending_sells_is_refused() -> None:
    check_sell_covered(50, 100, 50)
    with pytest.raises(OrderRefusedError, match="sell_exceeds_position"):
        check_sell_covered(51, 100, 50)


# --------------------------------------------------------------------------- backoff


def test_backoff_doubles_up_to_the_cap_without_jitter() -> None:
    delays = backoff_delays(0.5, 4.0, 0.0, random.Random(1))
    assert [next(delays) for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_jitter_stays_within_its_fraction_below_the_nominal_delay() -> None:
    delays = backoff_delays(1.0, 8.0, 0.25, random.Random(7))
    nominal = [1.0, 2.0, 4.0, 8.0] + [8.0] * 96
    drawn = [next(delays) for _ in nominal]
    assert all(n * 0.75 <= d <= n for d, n in zip(drawn, nominal, strict=True))
    assert len({round(d, 9) for d in drawn[4:]}) > 50  # jittered, not constant


def test_backoff_runs_for_a_long_outage_without_overflow() -> None:
    delays = backoff_delays(0.1, 30.0, 0.5, random.Random(3))
    last = [next(delays) for _ in range(5000)][-1]
    assert 15.0 <= last <= 30.0


@pytest.mark.parametrize(("base", "cap", "jitter"), [(0, 1, 0), (2, 1, 0), (1, 2, 1.5)])
def test_backoff_rejects_bad_parameters(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        next(backoff_delays(base, cap, jitter))


# --------------------------------------------------------------------------- pacing


def test_token_bucket_allows_a_burst_then_paces_at_the_rate() -> None:
    now = FakeTime()
    bucket = TokenBucket(rate=45.0, capacity=45.0, clock=now)
    assert all(bucket.take() == 0.0 for _ in range(45))
    wait = bucket.take()
    assert wait == pytest.approx(1 / 45)
    now.now += wait
    assert bucket.take() == 0.0


def test_adapter_bucket_never_lets_more_than_45_messages_into_any_second() -> None:
    now = FakeTime()
    bucket = bucket_for(45.0)
    bucket.clock = now
    bucket.__post_init__()
    sent: list[float] = []
    while now.now < 1010.0:
        wait = bucket.take()
        if wait == 0.0:
            sent.append(now.now)
        else:
            now.now += wait
    windows = [sum(1 for u in sent[i:] if u < t + 1.0) for i, t in enumerate(sent)]
    assert max(windows) == 45
    assert len(sent) >= 40 * 10  # and it still sustains 40 messages a second


def test_a_plain_bucket_of_45_would_let_about_90_through_in_the_first_second() -> None:
    # Why ``bucket_for`` splits 45 into rate 40 + burst 5: the burst adds to the rate.
    now = FakeTime()
    bucket = TokenBucket(rate=45.0, capacity=45.0, clock=now)
    sent = 0
    while now.now < 1000.999:
        wait = bucket.take()
        sent += wait == 0.0
        now.now += wait
    assert sent >= 89  # 45 at once, then 44 more refilled within the same second


def test_token_bucket_acquire_waits_without_blocking_the_loop() -> None:
    async def scenario() -> tuple[int, float]:
        bucket = TokenBucket(rate=100.0, capacity=5.0)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(15):
            await bucket.acquire()
        elapsed = loop.time() - start
        task.cancel()
        return ticks, elapsed

    ticks, elapsed = asyncio.run(scenario())
    assert 0.08 <= elapsed <= 1.0  # 10 tokens beyond the burst at 100/s
    assert ticks > 10


def test_identical_history_request_within_15s_is_answered_from_the_cache() -> None:
    async def scenario() -> tuple[list[str], int]:
        now = FakeTime()
        guard = HistoryGuard(window=15.0, clock=now)
        calls = 0

        async def request() -> str:
            nonlocal calls
            calls += 1
            return f"bars#{calls}"

        answers = [await guard.fetch(("AAPL", "1 D"), request)]
        now.now += 14.9
        answers.append(await guard.fetch(("AAPL", "1 D"), request))
        answers.append(await guard.fetch(("MSFT", "1 D"), request))
        now.now += 0.2
        answers.append(await guard.fetch(("AAPL", "1 D"), request))
        return answers, calls

    answers, calls = asyncio.run(scenario())
    assert answers == ["bars#1", "bars#1", "bars#2", "bars#3"]
    assert calls == 3


def test_concurrent_identical_history_requests_share_one_flight() -> None:
    async def scenario() -> tuple[list[str], int]:
        guard = HistoryGuard(window=15.0)
        calls = 0

        async def request() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return "bars"

        answers = await asyncio.gather(*(guard.fetch("k", request) for _ in range(3)))
        return list(answers), calls

    answers, calls = asyncio.run(scenario())
    assert answers == ["bars"] * 3 and calls == 1


def test_failed_history_request_is_not_cached() -> None:
    async def scenario() -> int:
        guard = HistoryGuard(window=15.0)
        calls = 0

        async def request() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise TimeoutError("hmds")
            return "bars"

        with pytest.raises(TimeoutError):
            await guard.fetch("k", request)
        assert await guard.fetch("k", request) == "bars"
        return calls

    assert asyncio.run(scenario()) == 2


# --------------------------------------------------------------------------- states


def _machine() -> tuple[ConnectionStateMachine, list[StateChange]]:
    seen: list[StateChange] = []
    return ConnectionStateMachine(seen.append, lambda: datetime(2025, 11, 26, tzinfo=UTC)), seen


def test_state_changes_emit_old_and_new_with_the_reason() -> None:
    machine, seen = _machine()
    for state in (ConnState.CONNECTING, ConnState.SYNCING, ConnState.READY, ConnState.PAUSED):
        machine.change(state, f"to {state}")
    assert [(c.old, c.new) for c in seen] == [
        (ConnState.DISCONNECTED, ConnState.CONNECTING),
        (ConnState.CONNECTING, ConnState.SYNCING),
        (ConnState.SYNCING, ConnState.READY),
        (ConnState.READY, ConnState.PAUSED),
    ]
    assert seen[-1].reason == "to PAUSED"


def test_transition_outside_the_table_raises_and_keeps_the_state() -> None:
    machine, seen = _machine()
    with pytest.raises(IllegalTransition):
        machine.change(ConnState.READY, "skipping the sync")
    assert machine.state == ConnState.DISCONNECTED and seen == []


def test_same_state_is_no_change_and_no_event() -> None:
    machine, seen = _machine()
    machine.change(ConnState.CONNECTING, "a")
    assert machine.change(ConnState.CONNECTING, "again") is None
    assert len(seen) == 1


def test_every_state_can_reach_disconnected_and_ready_needs_a_sync() -> None:
    assert all(ConnState.DISCONNECTED in TRANSITIONS[s] for s in ConnState if s != "DISCONNECTED")
    into_ready = {s for s, targets in TRANSITIONS.items() if ConnState.READY in targets}
    assert into_ready == {ConnState.SYNCING, ConnState.PAUSED}


# --------------------------------------------------------------------------- config


def test_adapter_config_is_built_from_settings_and_hides_the_live_phrase() -> None:
    settings = load_settings(
        {
            "BROKER": "ibkr",
            "IB_PORT": "4001",
            "IB_ACCOUNT": "U1234567",
            "TRADING_MODE": "live",
            "LIVE_TRADING_CONFIRM": LIVE_CONFIRM_PHRASE,
            "MAX_ORDER_NOTIONAL": "5000",
        },
        env_file=None,
    )
    config = AdapterConfig.coerce(settings)
    assert (config.port, config.account, config.trading_mode) == (4001, "U1234567", "live")
    assert config.max_order_notional == 5000.0 and config.live_trading_confirm
    assert LIVE_CONFIRM_PHRASE not in repr(config)
    assert AdapterConfig.coerce(config) is config
    sim = AdapterConfig.from_settings(load_settings({}, env_file=None), ack_timeout_s=1.0)
    assert (sim.host, sim.port, sim.ack_timeout_s) == ("127.0.0.1", 7499, 1.0)
