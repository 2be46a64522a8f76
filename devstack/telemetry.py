"""What Envoy reports about each S3 request through s3mesh, from one table of attributes: the
audit record (a JSON access-log line per request; README, "Audit log") and the tags of the
request's OpenTelemetry span (README, "Traces"); and where its metrics go over OTLP.

Envoy's own fields (time, source, status, bytes, endpoint, request id) go beside what s3mesh
knows (operation, bucket, key, identity, decision, reason). The `pre` filter names the request;
whoever decides names the caller and the decision: the `post` filter in grant mode, ext-authz in
the per-request mode; `post` names the endpoint it chose first. The filter keeps its attributes
in filter state (native shell: `s3mesh.<name>`; wasm shell: `wasm.s3mesh.<name>`, proxy-wasm's
prefix), ext-authz in ext_authz's dynamic metadata; the names are those of
`s3-request/src/audit.rs`. Only named keys are read:
ext_authz's namespace also carries the chunk re-signing key, which must never reach a log or a
span.
"""

from urllib.parse import urlsplit

AUDIT_NAMESPACE = "s3mesh"
EXT_AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz"
#: Named by the `pre` filter (both modes).
REQUEST_FIELDS = ("operation", "bucket", "key", "copy_source")
#: Named by whoever decides.
DECISION_FIELDS = ("identity", "identity_source", "decision", "reason", "error")
#: `pre` also writes these when it refuses a malformed request before any decision.
PRE_REFUSAL_FIELDS = ("decision", "reason", "error")
#: Named by `post` when it routes the request, or its read cache answers it (`cache`: `hit`, or
#: `miss` when the store answered a request the cache may answer).
ROUTING_FIELDS = ("endpoint_first", "cache")

ENVOY_FIELDS = {
    "time": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "source": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "principal": "%DOWNSTREAM_PEER_URI_SAN%",
    "method": "%REQ(:METHOD)%",
}
OUTCOME_FIELDS = {
    "status": "%RESPONSE_CODE%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "duration_ms": "%DURATION%",
    "endpoint": "%UPSTREAM_HOST%",
    "attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "response_flags": "%RESPONSE_FLAGS%",
}
#: Span tags of the attributes, by field; the object key and a copy's source only when asked.
SPAN_TAGS = {
    "operation": "s3.operation", "bucket": "s3.bucket", "key": "s3.key", "copy_source": "s3.copy_source",
    "identity": "s3mesh.identity", "identity_source": "s3mesh.identity_source",
    "decision": "s3mesh.decision", "reason": "s3mesh.reason", "error": "s3mesh.error",
    "endpoint_first": "s3mesh.endpoint.first", "cache": "s3mesh.cache",
}
OBJECT_KEY_FIELDS = ("key", "copy_source")
#: Span tags Envoy knows itself, beyond its standard ones.
ENVOY_SPAN_TAGS = {
    "s3mesh.endpoint": "%UPSTREAM_HOST%",
    "s3mesh.attempts": "%UPSTREAM_REQUEST_ATTEMPT_COUNT%",
    "s3mesh.ttfb_ms": "%RESPONSE_DURATION%",
}
#: The cluster Envoy exports spans, stats and audit records to.
COLLECTOR_CLUSTER = "s3mesh_otel_collector"
#: What Envoy can send to an OTLP collector: spans, stats, the audit record as log records.
OTLP_SIGNALS = ("traces", "metrics", "logs")


def filter_state_key(shell: str, name: str) -> str:
    """The filter state key of the filter's attribute `name`."""
    return f"{AUDIT_NAMESPACE}.{name}" if shell == "native" else f"wasm.{AUDIT_NAMESPACE}.{name}"


def filter_field(shell: str, name: str) -> str:
    """The format operator of the filter's attribute `name`."""
    return f"%FILTER_STATE({filter_state_key(shell, name)}:PLAIN)%"


def filter_expression(shell: str, name: str) -> tuple[str, str]:
    """A CEL test for the filter's attribute `name`, and the expression of its value."""
    key = f"'{filter_state_key(shell, name)}'"
    return f"{key} in filter_state", f"filter_state[{key}]"


def attribute_operators(shell: str, authorization: str) -> dict:
    """The format operator of every s3mesh attribute for a filter `shell` in `authorization`
    mode."""
    fields = {name: filter_field(shell, name) for name in REQUEST_FIELDS}
    for name in DECISION_FIELDS:
        if authorization == "grant":
            fields[name] = filter_field(shell, name)
        elif name in PRE_REFUSAL_FIELDS:
            # `pre`'s refusal where there is one, else ext-authz's decision.
            test, value = filter_expression(shell, name)
            fields[name] = f"%CEL({test} ? {value} : metadata.filter_metadata['{EXT_AUTHZ_NAMESPACE}'].{name})%"
        else:
            fields[name] = f"%DYNAMIC_METADATA({EXT_AUTHZ_NAMESPACE}:{name})%"
    fields.update({name: filter_field(shell, name) for name in ROUTING_FIELDS})
    return fields


def audit_format(shell: str, authorization: str) -> dict:
    """The JSON record's fields for a filter `shell` in `authorization` mode."""
    return {**ENVOY_FIELDS, **attribute_operators(shell, authorization), **OUTCOME_FIELDS}


def audit_log(path: str, shell: str, authorization: str) -> dict:
    """The connection manager's `access_log` entry writing the audit record to `path`."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"json_format": audit_format(shell, authorization)},
        },
    }


def audit_otlp_log(shell: str, authorization: str) -> dict:
    """An `access_log` entry sending the audit record as an OTLP log record (log name
    `s3mesh.audit`) to `COLLECTOR_CLUSTER`, its fields as attributes."""
    fields = audit_format(shell, authorization)
    return {
        "name": "envoy.access_loggers.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
            "common_config": {
                "log_name": "s3mesh.audit",
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "2s"},
            },
            "body": {"string_value": f"{fields['operation']} {fields['status']}"},
            "attributes": {"values": [{"key": name, "value": {"string_value": operator}}
                                      for name, operator in fields.items()]},
        },
    }


def span_tags(shell: str, authorization: str, object_keys: bool = False) -> list[dict]:
    """The custom tags of every request's span; object keys are data, left out unless asked."""
    operators = attribute_operators(shell, authorization)
    tags = [{"tag": SPAN_TAGS[name], "value": operator} for name, operator in operators.items()
            if object_keys or name not in OBJECT_KEY_FIELDS]
    return tags + [{"tag": tag, "value": operator} for tag, operator in ENVOY_SPAN_TAGS.items()]


def span_settings(shell: str, authorization: str, object_keys: bool = False, tags: bool = True) -> dict:
    """What s3mesh adds to the connection manager's `tracing`, whichever tracer makes the spans
    (its own below, or a mesh's): its tags (format-valued custom tags, which Envoy accepts from
    1.37 on; `tags` False leaves them out for older releases), and no object key in any tag
    unless `object_keys`."""
    return {
        **({"custom_tags": span_tags(shell, authorization, object_keys)} if tags else {}),
        # Envoy's own `http.url` tag carries the path, and with it the object key: cut to the
        # scheme and host unless keys are asked for (Envoy's default keeps 256 bytes).
        **({} if object_keys else {"max_path_tag_length": 0}),
    }


def tracing(shell: str, authorization: str, service_name: str, object_keys: bool = False,
            tags: bool = True) -> dict:
    """The connection manager's `tracing`: [`span_settings`] and Envoy's OpenTelemetry tracer
    exporting OTLP/gRPC to `COLLECTOR_CLUSTER`, every request sampled unless its `traceparent`
    says otherwise."""
    return {
        **span_settings(shell, authorization, object_keys, tags),
        "provider": {
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "2s"},
                "service_name": service_name,
            },
        },
    }


def stats_sink() -> dict:
    """Envoy's OpenTelemetry stat sink: every stat, s3mesh's included (labels as attributes, the
    tag-extracted names), exported to `COLLECTOR_CLUSTER` at each stats flush (5 s)."""
    return {
        "name": "envoy.stat_sinks.open_telemetry",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.stat_sinks.open_telemetry.v3.SinkConfig",
            "grpc_service": {"envoy_grpc": {"cluster_name": COLLECTOR_CLUSTER}, "timeout": "2s"},
        },
    }


def collector_cluster(endpoint: str) -> dict:
    """The cluster of the OTLP/gRPC collector at `endpoint` (`http://host:port`, as
    `OTEL_EXPORTER_OTLP_ENDPOINT` names it)."""
    url = urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    address = {"socket_address": {"address": url.hostname, "port_value": url.port or 4317}}
    return {
        "name": COLLECTOR_CLUSTER,
        "type": "STRICT_DNS",
        "connect_timeout": "2s",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }},
        "load_assignment": {"cluster_name": COLLECTOR_CLUSTER,
                            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}]},
    }
