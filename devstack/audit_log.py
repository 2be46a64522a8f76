"""The audit record: Envoy's JSON access log, one line per request (README, "Audit log").

Envoy's own fields (time, source, status, bytes, endpoint, request id) beside what s3mesh knows
(operation, bucket, key, identity, decision, reason). The `pre` filter names the request; whoever
decides names the caller and the decision: the `post` filter in grant mode, ext-authz in the
per-request mode. The native shell keeps its attributes in dynamic metadata (namespace
`s3mesh`), the wasm shell in filter state (`wasm.s3mesh.<name>`: proxy-wasm cannot write dynamic
metadata), ext-authz in ext_authz's dynamic metadata; the names are those of
`s3-request/src/audit.rs`. Only named keys are read: ext_authz's namespace also carries the
chunk re-signing key, which must never reach a log.
"""

AUDIT_NAMESPACE = "s3mesh"
EXT_AUTHZ_NAMESPACE = "envoy.filters.http.ext_authz"
#: Named by the `pre` filter (both modes).
REQUEST_FIELDS = ("operation", "bucket", "key", "copy_source")
#: Named by whoever decides.
DECISION_FIELDS = ("identity", "identity_source", "decision", "reason")
#: `pre` also writes these two when it refuses a malformed request before any decision.
PRE_REFUSAL_FIELDS = ("decision", "reason")

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


def filter_field(shell: str, name: str) -> str:
    """The access-log operator of the filter's attribute `name`."""
    if shell == "native":
        return f"%DYNAMIC_METADATA({AUDIT_NAMESPACE}:{name})%"
    return f"%FILTER_STATE(wasm.{AUDIT_NAMESPACE}.{name}:PLAIN)%"


def filter_expression(shell: str, name: str) -> tuple[str, str]:
    """A CEL test for the filter's attribute `name`, and the expression of its value."""
    if shell == "native":
        ns = f"metadata.filter_metadata['{AUDIT_NAMESPACE}']"
        return f"'{AUDIT_NAMESPACE}' in metadata.filter_metadata && has({ns}.{name})", f"{ns}.{name}"
    key = f"'wasm.{AUDIT_NAMESPACE}.{name}'"
    return f"{key} in filter_state", f"filter_state[{key}]"


def audit_format(shell: str, authorization: str) -> dict:
    """The JSON record's fields for a filter `shell` in `authorization` mode."""
    fields = dict(ENVOY_FIELDS)
    fields.update({name: filter_field(shell, name) for name in REQUEST_FIELDS})
    for name in DECISION_FIELDS:
        if authorization == "grant":
            fields[name] = filter_field(shell, name)
        elif name in PRE_REFUSAL_FIELDS:
            # `pre`'s refusal where there is one, else ext-authz's decision.
            test, value = filter_expression(shell, name)
            fields[name] = f"%CEL({test} ? {value} : metadata.filter_metadata['{EXT_AUTHZ_NAMESPACE}'].{name})%"
        else:
            fields[name] = f"%DYNAMIC_METADATA({EXT_AUTHZ_NAMESPACE}:{name})%"
    fields.update(OUTCOME_FIELDS)
    return fields


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
