"""What `write` must not grant, through the whole stack in both authorization modes and both
shells: every request form that changes who else can read data (ACLs, grant headers, bucket
policies and the like: class `sharing`) or keeps it from deletion (object lock, retention, legal
hold, bypassing governance: class `retention`) is refused to a caller whose rule grants only
read, write, list, delete and multipart, before anything reaches the store; so is a
state-changing request with a sub-resource s3mesh does not know."""

import pytest

from conftest import raw_request

PUBLIC = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'
ACL_XML = (b'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><AccessControlList>'
           b'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="Group">'
           b'<URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission>'
           b'</Grant></AccessControlList></AccessControlPolicy>')
LOCK = {"x-amz-object-lock-mode": "GOVERNANCE", "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00Z"}

#: (method, path, headers, body, what the refusal names)
FORMS = {
    "canned-acl-on-put": ("PUT", "/demo/shared", {"x-amz-acl": "public-read"}, b"x", "sharing"),
    "grant-header-on-put": ("PUT", "/demo/shared", {"x-amz-grant-read": PUBLIC}, b"x", "sharing"),
    "canned-acl-on-copy": ("PUT", "/demo/shared-copy", {"x-amz-copy-source": "/demo/plain",
                                                        "x-amz-acl": "public-read"}, b"", "sharing"),
    "canned-acl-on-multipart": ("POST", "/demo/shared-mp?uploads", {"x-amz-acl": "public-read"}, b"", "sharing"),
    "website-redirect-on-put": ("PUT", "/demo/shared", {"x-amz-website-redirect-location": "https://x.example/"},
                                b"x", "sharing"),
    "object-acl": ("PUT", "/demo/plain?acl", {}, ACL_XML, "sharing"),
    "bucket-acl": ("PUT", "/demo?acl", {"x-amz-acl": "public-read"}, b"", "sharing"),
    "bucket-policy": ("PUT", "/demo?policy", {}, b'{"Statement":[]}', "sharing"),
    "bucket-policy-delete": ("DELETE", "/demo?policy", {}, b"", "sharing"),
    "public-access-block": ("PUT", "/demo?publicAccessBlock", {}, b"<x/>", "sharing"),
    "ownership-controls": ("PUT", "/demo?ownershipControls", {}, b"<x/>", "sharing"),
    "website": ("PUT", "/demo?website", {}, b"<x/>", "sharing"),
    "object-lock-headers-on-put": ("PUT", "/demo/locked", LOCK, b"x", "retention"),
    "legal-hold-header-on-put": ("PUT", "/demo/locked", {"x-amz-object-lock-legal-hold": "ON"}, b"x", "retention"),
    "retention": ("PUT", "/demo/plain?retention", {}, b"<x/>", "retention"),
    "legal-hold": ("PUT", "/demo/plain?legal-hold", {}, b"<x/>", "retention"),
    "bucket-object-lock": ("PUT", "/demo?object-lock", {}, b"<x/>", "retention"),
    "bypass-governance-on-delete": ("DELETE", "/demo/plain", {"x-amz-bypass-governance-retention": "true"}, b"",
                                    "retention"),
    "unknown-sub-resource": ("PUT", "/demo/plain?some-future-setting", {}, b"x", "does not recognise"),
}


@pytest.mark.parametrize("form", FORMS)
def test_write_alone_cannot_share_or_lock_data(stack, form):
    method, path, headers, body, names = FORMS[form]
    assert raw_request(stack.url, "PUT", "/demo/plain", body=b"plain")[0] == 200
    before = stack.upstream_requests()
    status, response_headers, answer = raw_request(stack.url, method, path, headers=headers, body=body)
    text = answer.decode()
    assert status == 403, text
    assert response_headers["content-type"] == "application/xml"
    assert "<Code>AccessDenied</Code>" in text, text
    if names == "does not recognise":
        assert "does not recognise this S3 operation" in text, text
    else:
        assert f"is not granted {names} on" in text.replace("&quot;", '"'), text
    assert stack.upstream_requests() == before, "a refused request reached the store"


def test_the_same_requests_without_the_sharing_parts_are_written(stack):
    """The control: what `write` does grant still works, tags and the canned ACL `private` (the
    owner alone, which rclone sends with every upload) included."""
    assert raw_request(stack.url, "PUT", "/demo/shared", body=b"x", headers={"x-amz-tagging": "k=v"})[0] == 200
    assert raw_request(stack.url, "PUT", "/demo/private", body=b"p", headers={"x-amz-acl": "private"})[0] == 200
    assert raw_request(stack.url, "PUT", "/demo/shared-copy", headers={"x-amz-copy-source": "/demo/shared"},
                       body=b"")[0] == 200
    assert raw_request(stack.url, "GET", "/demo/shared-copy")[2] == b"x"
