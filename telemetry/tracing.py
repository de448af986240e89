"""OpenTelemetry spans for every process: a local SQLite span store, and OTLP when asked.

Call ``setup_tracing(process, settings, clock=clock)`` once at start-up, then wrap the
work worth timing::

    with span("order.place", symbol="AAPL", order_ref=ref, side="BUY"):
        await adapter.place_limit(...)

Names in use: ``phase.<name>`` (each phase), ``signal.evaluate``, ``order.place``,
``exit.<reason>``, ``llm.call``, ``broker.<request>``, and the supervisor's
``child.start`` and ``child.exit``. ``span()`` works before (or without)
``setup_tracing``: the spans then go nowhere, so library code may always call it.

Exporters (``choose_exporters``):

- the local span store (``shared_state.spans``, file ``SPANS_DB_PATH``, default
  ``data/spans.db``) unless that setting is empty;
- OTLP when the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set *and* ``opentelemetry-exporter-otlp``
  is importable (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` picks gRPC, anything else
  http/protobuf); the exporter reads the endpoint and headers from the environment
  itself. Set but not installed: one warning line says so and the local store carries on.

Secrets: attribute values pass ``telemetry.logs.scrub`` (registered secrets become
``[redacted]``), and attributes whose *name* says secret (``api_key``, ``token``,
``password``...) are dropped. Exception messages on failed spans are scrubbed too.
Span times are the SDK's real time; ``market.time`` carries the trading clock's instant.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Span, Status, StatusCode

from market.clock import ET, Clock
from shared_state.spans import SpanRecord, SpanStore
from telemetry.logs import scrub

log = logging.getLogger("telemetry.tracing")

SERVICE_NAME = "daytrader"
OTLP_ENDPOINT_ENVS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OTLP_MODULES = {
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
}
_SECRET_NAME = re.compile(r"(api_?key|secret|passw|token|authorization|credential)", re.I)
_PRIMITIVES = (str, bool, int, float)

Importer = Callable[[str], ModuleType]


# --------------------------------------------------------------------------- exporter


class SqliteSpanExporter(SpanExporter):
    """An OpenTelemetry exporter into the local span store (``shared_state.spans``)."""

    def __init__(self, path: Path | str, process: str) -> None:
        self.path = Path(path)
        self.process = process
        self._store: SpanStore | None = None
        self._lock = threading.Lock()

    def _open(self) -> SpanStore:
        with self._lock:
            if self._store is None:
                self._store = SpanStore(self.path)
            return self._store

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write ``spans``; a failure is logged and reported, never raised into the app."""
        try:
            self._open().add([self.record(s) for s in spans])
        except Exception as exc:  # noqa: BLE001 - telemetry must never take a process down
            log.warning("span store %s: %d spans not written: %s", self.path, len(spans), exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def record(self, span: ReadableSpan) -> SpanRecord:
        """Return the store's record of a finished SDK span."""
        context = span.get_span_context()
        resource = span.resource.attributes if span.resource is not None else {}
        return SpanRecord(
            trace_id=format(context.trace_id, "032x"),
            span_id=format(context.span_id, "016x"),
            parent_id=format(span.parent.span_id, "016x") if span.parent else None,
            name=span.name,
            kind=span.kind.name,
            process=str(resource.get("process", self.process)),
            start_ns=int(span.start_time or 0),
            end_ns=int(span.end_time or span.start_time or 0),
            status=span.status.status_code.name,
            status_message=span.status.description,
            attributes=dict(span.attributes or {}),
            events=[
                {"name": e.name, "time_ns": e.timestamp, "attributes": dict(e.attributes or {})}
                for e in span.events
            ],
        )

    def shutdown(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # every export is committed before it returns


# --------------------------------------------------------------------------- choosing


def otlp_endpoint(environ: Mapping[str, str]) -> str | None:
    """Return the OTLP endpoint the standard environment variables ask for, if any."""
    for name in OTLP_ENDPOINT_ENVS:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def _shown_endpoint(endpoint: str) -> str:
    # Only scheme, host and port: a URL may carry user:password.
    parts = urlsplit(endpoint)
    host = parts.hostname or endpoint.split("@")[-1]
    return f"{parts.scheme + '://' if parts.scheme else ''}{host}" + (
        f":{parts.port}" if parts.port else ""
    )


def otlp_exporter(
    environ: Mapping[str, str], importer: Importer = importlib.import_module
) -> SpanExporter | None:
    """Return an OTLP exporter when the endpoint is set and the package is importable."""
    endpoint = otlp_endpoint(environ)
    if endpoint is None:
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip() or "http/protobuf"
    module_name = OTLP_MODULES.get(protocol, OTLP_MODULES["http/protobuf"])
    try:
        module = importer(module_name)
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set (%s) but %s cannot be imported: install "
            "opentelemetry-exporter-otlp to export spans over OTLP; until then they go to "
            "the local span store only",
            _shown_endpoint(endpoint),
            module_name,
        )
        return None
    log.info("spans are exported over OTLP (%s) to %s", protocol, _shown_endpoint(endpoint))
    return module.OTLPSpanExporter()


def choose_exporters(
    process: str,
    spans_db_path: Path | None,
    environ: Mapping[str, str] | None = None,
    importer: Importer = importlib.import_module,
) -> list[tuple[str, SpanExporter]]:
    """Return the (kind, exporter) pairs this configuration asks for: 'sqlite', 'otlp'."""
    env = os.environ if environ is None else environ
    chosen: list[tuple[str, SpanExporter]] = []
    if spans_db_path is not None:
        chosen.append(("sqlite", SqliteSpanExporter(spans_db_path, process)))
    exporter = otlp_exporter(env, importer)
    if exporter is not None:
        chosen.append(("otlp", exporter))
    return chosen


# --------------------------------------------------------------------------- set-up


@dataclass
class Tracing:
    """The tracing of this process: which exporters, and how to flush them."""

    process: str
    provider: TracerProvider
    exporters: tuple[str, ...]
    clock: Clock | None

    def flush(self, timeout_ms: int = 5000) -> bool:
        """Export every finished span now; return False when the timeout passed first."""
        return self.provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flush and stop the exporters (also done at interpreter exit)."""
        self.provider.shutdown()


_current: Tracing | None = None
_global_set = False


def setup_tracing(
    process: str,
    settings: Any,
    *,
    clock: Clock | None = None,
    environ: Mapping[str, str] | None = None,
    importer: Importer = importlib.import_module,
    batch: bool = True,
) -> Tracing:
    """Configure this process's spans (see the module docstring) and return the handle.

    ``settings`` needs ``spans_db_path``. ``batch=False`` exports each span as it ends
    (tests, short scripts); the default batches them on a background thread so a hot
    loop never waits for a disk write.
    """
    global _current, _global_set
    resource = Resource.create(
        {"service.name": SERVICE_NAME, "process": process, "process.pid": os.getpid()}
    )
    provider = TracerProvider(resource=resource)
    chosen = choose_exporters(process, settings.spans_db_path, environ, importer)
    for _kind, exporter in chosen:
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        provider.add_span_processor(processor)
    if _current is not None:
        _current.shutdown()  # a second set-up (tests) replaces the first
    _current = Tracing(process, provider, tuple(kind for kind, _ in chosen), clock)
    if not _global_set:
        # Once per process (the API refuses a second time): library spans join ours.
        trace.set_tracer_provider(provider)
        _global_set = True
    log.info("tracing: %s", ", ".join(_current.exporters) or "no exporter")
    return _current


def current() -> Tracing | None:
    """Return this process's tracing, or None before ``setup_tracing``."""
    return _current


# --------------------------------------------------------------------------- spans


def clean_attributes(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Return span attributes without None values, secret names or registered secrets."""
    clean: dict[str, Any] = {}
    for key, value in attrs.items():
        if value is None or _SECRET_NAME.search(key):
            continue
        clean[key] = _attribute_value(value)
    return clean


def _attribute_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, _PRIMITIVES) for v in value):
        return [scrub(v) if isinstance(v, str) else v for v in value]
    return scrub(str(value))


def _tracer() -> trace.Tracer:
    provider = _current.provider if _current is not None else trace.get_tracer_provider()
    return provider.get_tracer("daytrader")


@contextmanager
def span(name: str, **attrs: Any) -> Iterator[Span]:
    """Time the block as span ``name`` with ``attrs``; an exception marks it ERROR and goes on.

    Add facts found inside the block with ``set_attributes(s, ...)`` on the yielded span.
    """
    attributes = clean_attributes(attrs)
    if _current is not None and _current.clock is not None:
        attributes["market.time"] = _current.clock.now().astimezone(ET).isoformat()
    with _tracer().start_as_current_span(
        name, attributes=attributes, record_exception=False, set_status_on_exception=False
    ) as current_span:
        try:
            yield current_span
        except BaseException as exc:
            current_span.set_attribute("error.type", type(exc).__name__)
            current_span.set_status(Status(StatusCode.ERROR, scrub(str(exc))[:500]))
            raise


def set_attributes(target: Span, **attrs: Any) -> None:
    """Add ``attrs`` (cleaned like ``span``'s) to an open span."""
    target.set_attributes(clean_attributes(attrs))
