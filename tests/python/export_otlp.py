"""Exports one log record and one span with the OpenTelemetry Python SDK's OTLP/HTTP exporters,
configured only through the standard environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
OTEL_EXPORTER_OTLP_CERTIFICATE, OTEL_EXPORTER_OTLP_HEADERS), as a deployed service would be.

Usage: python3 export_otlp.py MARKER
Prints "exported" when both exports succeeded, "refused" when either failed; exits 0 either way
so the caller decides what was expected.
"""

import sys

from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult

results = []


class Recording:
    """Wraps an exporter and remembers whether each export succeeded."""

    def __init__(self, inner, ok):
        self.inner = inner
        self.ok = ok

    def export(self, batch):
        result = self.inner.export(batch)
        results.append(result == self.ok)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    marker = sys.argv[1]
    resource = Resource.create({"service.name": "python-checkout"})

    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        SimpleSpanProcessor(Recording(OTLPSpanExporter(), SpanExportResult.SUCCESS))
    )
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(Recording(OTLPLogExporter(), LogRecordExportResult.SUCCESS))
    )

    tracer = tracer_provider.get_tracer("python-test")
    logger = logger_provider.get_logger("python-test")
    with tracer.start_as_current_span(f"checkout {marker}"):
        logger.emit(body=f"python over tls {marker}", severity_text="ERROR")

    logger_provider.shutdown()
    tracer_provider.shutdown()
    print("exported" if results and all(results) else "refused")


if __name__ == "__main__":
    main()
