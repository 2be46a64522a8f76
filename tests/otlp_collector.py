"""An OTLP/gRPC collector run by the tests: receives the spans and metrics Envoy and ext-authz
export, on a free port, and keeps them with their attributes as plain Python values."""

import threading
import time
from concurrent import futures

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


def value_of(any_value):
    """An OTLP `AnyValue` as a Python value."""
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


def data_points(metric) -> list[tuple[dict, float]]:
    """A metric's points as (attributes, value): a sum's or gauge's value, a histogram's count."""
    kind = metric.WhichOneof("data")
    if kind is None:
        return []
    points = getattr(metric, kind).data_points
    attributes = lambda p: {a.key: value_of(a.value) for a in p.attributes}  # noqa: E731
    if kind == "histogram":
        return [(attributes(p), float(p.count)) for p in points]
    return [(attributes(p), float(getattr(p, p.WhichOneof("value")))) for p in points]


class Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    """The metrics part: the latest value of each (name, attributes)."""

    def __init__(self, collector):
        self.collector = collector

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        with self.collector.lock:
            for resource_metrics in request.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        for attributes, value in data_points(metric):
                            key = (metric.name, tuple(sorted(attributes.items())))
                            self.collector.metrics[key] = value
        return metrics_service_pb2.ExportMetricsServiceResponse()


class Logs(logs_service_pb2_grpc.LogsServiceServicer):
    """The logs part: each record's body and attributes."""

    def __init__(self, collector):
        self.collector = collector

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        with self.collector.lock:
            for resource_logs in request.resource_logs:
                for scope_logs in resource_logs.scope_logs:
                    for record in scope_logs.log_records:
                        self.collector.logs.append({
                            "body": value_of(record.body),
                            "attributes": {a.key: value_of(a.value) for a in record.attributes},
                        })
        return logs_service_pb2.ExportLogsServiceResponse()


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Spans received, each a dict: service, name, trace_id, span_id, parent_span_id (hex) and
    attributes; metrics, the latest value by (name, sorted attribute pairs); log records."""

    def __init__(self):
        self.spans: list[dict] = []
        self.metrics: dict[tuple, float] = {}
        self.logs: list[dict] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(Metrics(self), self.server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(self), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        #: Where to export, as `OTEL_EXPORTER_OTLP_ENDPOINT` names it.
        self.endpoint = f"http://127.0.0.1:{port}"

    def Export(self, request, context):  # noqa: N802 (the gRPC method's name)
        with self.lock:
            for resource_spans in request.resource_spans:
                service = next((value_of(a.value) for a in resource_spans.resource.attributes
                                if a.key == "service.name"), None)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({
                            "service": service, "name": span.name, "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(), "parent_span_id": span.parent_span_id.hex(),
                            "attributes": {a.key: value_of(a.value) for a in span.attributes},
                        })
        return trace_service_pb2.ExportTraceServiceResponse()

    def wait_for(self, predicate, timeout: float = 15.0, kind: str = "spans") -> list[dict]:
        """The spans (or `kind` "logs": log records) that satisfy `predicate`, once there is one
        (Envoy exports spans every 5 s)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [s for s in getattr(self, kind) if predicate(s)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def metric(self, name_suffix: str, timeout: float = 15.0, **attributes) -> float | None:
        """The latest value of the metric whose name ends with `name_suffix` and whose
        attributes include `attributes`, once one arrived."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                found = [v for (name, attrs), v in self.metrics.items()
                         if name.endswith(name_suffix) and attributes.items() <= dict(attrs).items()]
            if found or time.monotonic() > deadline:
                return found[0] if found else None
            time.sleep(0.2)

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.server.stop(grace=None)
