"""Spans: the local SQLite span store, the OTLP choice, and secrets kept out of spans."""

from __future__ import annotations

import logging
import types
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from shared_state.spans import SpanStore
from telemetry.logs import redact
from telemetry.tracing import (
    OTLP_MODULES,
    SqliteSpanExporter,
    choose_exporters,
    setup_tracing,
    span,
)

SECRET = "sk-TRACE-SENTINEL-4b1d-never-in-a-span"


def _settings(path: Path | None) -> SimpleNamespace:
    return SimpleNamespace(spans_db_path=path)


def test_order_placement_span_is_found_in_the_store_with_its_symbol_and_order_ref(
    tmp_path: Path,
) -> None:
    db = tmp_path / "spans.db"
    tracing = setup_tracing("day_trader", _settings(db), environ={})
    try:
        with span("order.place", symbol="AAPL", order_ref="dt-20251126-AAPL-1", side="BUY"):
            with span("broker.place_limit", quantity=10):
                pass
        with span("order.place", symbol="MSFT", order_ref="dt-20251126-MSFT-1", side="BUY"):
            pass
        assert tracing.flush()
    finally:
        tracing.shutdown()

    store = SpanStore(db)
    found = store.find("order.place", attributes={"order_ref": "dt-20251126-AAPL-1"})
    assert len(found) == 1
    placed = found[0]
    assert placed.attributes["symbol"] == "AAPL" and placed.attributes["side"] == "BUY"
    assert placed.process == "day_trader" and placed.status == "UNSET"
    assert placed.end_ns >= placed.start_ns > 0 and placed.parent_id is None
    child = store.find("broker.place_limit")[0]
    assert child.parent_id == placed.span_id and child.trace_id == placed.trace_id
    assert store.count() == 3
    store.close()


def test_a_failed_block_is_an_error_span_without_the_secret(tmp_path: Path) -> None:
    redact(SECRET)
    db = tmp_path / "spans.db"
    tracing = setup_tracing("phase_watchlist", _settings(db), environ={}, batch=False)
    try:
        with (
            pytest.raises(RuntimeError),
            span("llm.call", api_key=SECRET, purpose="watchlist", note=f"sent with {SECRET}"),
        ):
            raise RuntimeError(f"401 for key {SECRET}")
    finally:
        tracing.shutdown()

    (record,) = SpanStore(db).find("llm.call")
    assert record.status == "ERROR" and record.attributes["error.type"] == "RuntimeError"
    assert "api_key" not in record.attributes
    assert record.attributes["purpose"] == "watchlist"
    assert SECRET not in db.read_bytes().decode("latin-1")
    assert "[redacted]" in (record.status_message or "")


class _FakeOtlpExporter(SpanExporter):
    def export(self, spans: Sequence[object]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _importer(calls: list[str]) -> types.FunctionType:
    def load(name: str) -> types.ModuleType:
        calls.append(name)
        return types.SimpleNamespace(OTLPSpanExporter=_FakeOtlpExporter)  # type: ignore[return-value]

    return load  # type: ignore[return-value]


def test_otlp_is_chosen_only_when_the_standard_endpoint_variable_is_set(tmp_path: Path) -> None:
    calls: list[str] = []
    db = tmp_path / "spans.db"

    without = choose_exporters("x", db, environ={}, importer=_importer(calls))
    http = choose_exporters(
        "x", db, environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
        importer=_importer(calls),
    )  # fmt: skip
    grpc_env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    grpc = choose_exporters("x", None, environ=grpc_env, importer=_importer(calls))

    assert [kind for kind, _ in without] == ["sqlite"]
    assert [kind for kind, _ in http] == ["sqlite", "otlp"]
    assert isinstance(http[1][1], _FakeOtlpExporter)
    assert [kind for kind, _ in grpc] == ["otlp"]  # an empty SPANS_DB_PATH: no local store
    assert calls == [OTLP_MODULES["http/protobuf"], OTLP_MODULES["grpc"]]


def test_endpoint_set_without_the_exporter_package_says_so_and_keeps_the_local_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(name: str) -> types.ModuleType:
        raise ImportError(f"No module named {name!r}")

    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:pw@collector.example:4318"}
    with caplog.at_level(logging.WARNING, logger="telemetry.tracing"):
        chosen = choose_exporters("x", tmp_path / "s.db", environ=environ, importer=missing)

    assert [kind for kind, _ in chosen] == ["sqlite"]
    (line,) = [r.getMessage() for r in caplog.records]
    assert "opentelemetry-exporter-otlp" in line and "collector.example:4318" in line
    assert "pw" not in line  # credentials in the URL are never logged


def test_a_span_store_that_cannot_be_written_fails_the_export_without_raising(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    tracing = setup_tracing("x", _settings(tmp_path / "s.db"), environ={}, batch=False)
    exporter = SqliteSpanExporter(blocker / "spans.db", "x")
    try:
        with span("order.place", symbol="AAPL"):
            pass
        tracing.flush()
    finally:
        tracing.shutdown()
    (record,) = SpanStore(tmp_path / "s.db").find("order.place")
    assert exporter.export([]) is SpanExportResult.FAILURE
    assert record.attributes == {"symbol": "AAPL"}
