"""The audit record: one JSON line per request in Envoy's access log, with who (identity and how
it was established), what (operation, bucket, key, copy source), the decision and its reason,
and how it went (status, bytes, endpoint), on both filter shells in both authorization modes.

A scripted session of allowed, denied, malformed, multipart and copy requests must leave exactly
its records, in order, and nothing secret."""

import uuid

from conftest import STRANGER, TEAM_A, TEAM_B, raw_request, s3_client

#: Fields every record has (null where a request did not get that far).
FIELDS = {
    "time", "request_id", "source", "principal", "method", "operation", "bucket", "key",
    "copy_source", "identity", "identity_source", "decision", "reason", "error", "status",
    "bytes_received", "bytes_sent", "duration_ms", "endpoint", "endpoint_first", "cache", "attempts",
    "response_flags",
}


def scripted_session(stack, prefix: str) -> list[dict]:
    """Runs the session; returns the expected records (their s3mesh fields and status)."""
    team_a = s3_client(stack.url, TEAM_A)
    key = f"{prefix}/report.csv"
    body = b"a,b\n1,2\n"
    expected = []

    def allowed(operation, status=200, bucket="team-a", k=key, **more):
        expected.append(dict(operation=operation, bucket=bucket, key=k, identity="team-a",
                             identity_source="local_file", decision="allow", reason=None,
                             error=None, status=status, source=TEAM_A, **more))

    team_a.put_object(Bucket="team-a", Key=key, Body=body)
    allowed("PutObject", bytes_received=len(body))
    assert team_a.get_object(Bucket="team-a", Key=key)["Body"].read() == body
    allowed("GetObject", method="GET", bytes_sent=len(body))

    status, _, _ = raw_request(stack.url, "GET", f"/team-b/{key}", TEAM_A)
    assert status == 403
    expected.append(dict(operation="GetObject", bucket="team-b", key=key, identity="team-a",
                         identity_source="local_file", decision="deny", error="AccessDenied",
                         status=403, source=TEAM_A, endpoint=None))

    status, _, _ = raw_request(stack.url, "GET", f"/team-a/{key}", STRANGER)
    assert status == 403
    expected.append(dict(operation="GetObject", bucket="team-a", key=key, identity=None,
                         identity_source=None, decision="deny", error="AccessDenied", status=403,
                         source=STRANGER, endpoint=None))

    status, _, _ = raw_request(stack.url, "GET", f"/team-a/{prefix}/%zz", TEAM_A)
    assert status == 400
    expected.append(dict(operation=None, bucket=None, key=None, identity=None, decision="invalid",
                         error="InvalidURI", status=400, source=TEAM_A, endpoint=None))

    parts_key = f"{prefix}/parts.bin"
    upload = team_a.create_multipart_upload(Bucket="team-a", Key=parts_key)["UploadId"]
    allowed("CreateMultipartUpload", k=parts_key)
    etag = team_a.upload_part(Bucket="team-a", Key=parts_key, UploadId=upload, PartNumber=1,
                              Body=b"p" * 1024)["ETag"]
    allowed("UploadPart", k=parts_key, bytes_received=1024)
    team_a.complete_multipart_upload(Bucket="team-a", Key=parts_key, UploadId=upload,
                                     MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]})
    allowed("CompleteMultipartUpload", k=parts_key)

    copy_key = f"{prefix}/copy.csv"
    team_a.copy_object(Bucket="team-a", Key=copy_key, CopySource={"Bucket": "team-a", "Key": key})
    allowed("CopyObject", k=copy_key, copy_source=f"team-a/{key}")
    return expected


def test_a_scripted_session_leaves_exactly_its_audit_records(stack):
    since = stack.audit_log_size()
    expected = scripted_session(stack, f"audit-{uuid.uuid4().hex[:8]}")
    records = stack.audit_records(since, count=len(expected))
    assert len(records) == len(expected), records
    for record, want in zip(records, expected):
        assert set(record) == FIELDS, record
        got = {name: record[name] for name in want}
        assert got == want, record
        assert record["request_id"] and record["time"]
        if record["decision"] == "allow":
            assert record["endpoint"] in stack.endpoints, record
            # None when the request was left to the fallback policy (unhinted_share: 0.5%).
            assert record["endpoint_first"] in (*stack.endpoints, None), record
            assert record["attempts"] == 1
        if record["decision"] == "deny":
            assert record["reason"], record
    assert any(r["endpoint_first"] for r in records), "post names the endpoint it chose first"
    denied = [r for r in records if r["decision"] == "deny"]
    assert "not granted read on bucket \"team-b\"" in denied[0]["reason"]
    assert "no s3mesh identity" in denied[1]["reason"]
    invalid = [r for r in records if r["decision"] == "invalid"]
    assert "percent-encoding" in invalid[0]["reason"]


def test_the_audit_log_holds_nothing_secret(stack):
    since = stack.audit_log_size()
    team_b = s3_client(stack.url, TEAM_B)
    team_b.put_object(Bucket="team-b", Key="audit-secret-check", Body=b"x")
    raw_request(stack.url, "GET", "/team-b/audit-secret-check", TEAM_B,
                headers={"authorization": "AWS4-HMAC-SHA256 Credential=AKIDCLIENT/x, Signature=feed",
                         "x-amz-security-token": "client-token-must-not-appear"})
    stack.audit_records(since, count=2)
    text = stack.audit_log.read_text()
    secrets = [stack.credentials(i["name"])[1] for i in stack.stack["identities"]]
    for secret in [*secrets, "client-token-must-not-appear", "Signature=", "AKIDCLIENT",
                   "s3mesh_chunk", "AWS4-HMAC-SHA256"]:
        assert secret not in text, secret
