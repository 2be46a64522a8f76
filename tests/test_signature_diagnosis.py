"""'Why SignatureDoesNotMatch', through the full local stack: an endpoint that rewrites a header
s3mesh signed (a proxy of our own in front of the store, as a misconfigured load balancer or WAF
would) makes the store refuse the signature; the client gets the store's error unchanged, and
Envoy's log says what s3mesh signed, line by line, with the secret parts redacted, and counts it.

s3s-fs (`tests/fs-store`) returns its own canonical request and string to sign in the error, as
AWS S3 does, so there the log shows both sides and marks the line the rewrite changed. moto
returns neither, and the log says so."""

import re
import socket
import threading

import pytest
from botocore.exceptions import ClientError

from conftest import s3_client
from devstack.stack import AUTHORIZATION_MODES, FILTER_SHELLS, Stack

SENT, FORWARDED = b"x-amz-meta-color: blue", b"x-amz-meta-color: gray"


class RewritingEndpoint:
    """Relays every connection to `target`, replacing SENT by FORWARDED on the way in."""

    def __init__(self):
        self.target = ""
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.closed = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            host, port = self.target.split(":")
            upstream = socket.create_connection((host, int(port)))
            threading.Thread(target=self.pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self.pipe, args=(upstream, client, False), daemon=True).start()

    @staticmethod
    def pipe(source: socket.socket, sink: socket.socket, rewrite: bool):
        try:
            while data := source.recv(65536):
                sink.sendall(data.replace(SENT, FORWARDED) if rewrite else data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.closed.set()
        self.server.close()


# Every shell and mode against the store that explains itself; moto's silence once.
CASES = [("s3s-fs", mode, shell) for mode in AUTHORIZATION_MODES for shell in FILTER_SHELLS] + [("moto", "grant", "wasm")]


@pytest.mark.parametrize("store,mode,shell", CASES)
def test_a_signature_the_store_refuses_is_explained_in_envoys_log(tmp_path, store, mode, shell):
    endpoint = RewritingEndpoint()
    pinned = {"endpoints": [endpoint.address], "unhinted_share": 0}
    try:
        with Stack(tmp_path / "stack", extra_endpoints=[endpoint.address], post_overrides=pinned,
                   authorization=mode, shell=shell, backend=store) as stack:
            endpoint.target = stack.endpoints[0]
            client = s3_client(stack.url)
            client.put_object(Bucket="demo", Key="plain", Body=b"v")  # nothing rewritten: fine
            with pytest.raises(ClientError) as refused:
                client.put_object(Bucket="demo", Key="k", Body=b"v", Metadata={"color": "blue"})
            error = refused.value.response
            assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
            assert error["Error"]["Code"] == "SignatureDoesNotMatch", error
            assert stack.filter_stat("s3mesh_store_refused_signature_total") == 1
            log = stack.log("envoy").read_text()
    finally:
        endpoint.close()
    lines = [line for line in log.splitlines() if "the store refused a request s3mesh signed" in line]
    assert len(lines) == 1, lines
    line = lines[0]
    assert f"to {endpoint.address}: the store refused a request s3mesh signed: SignatureDoesNotMatch" in line, line
    assert "canonical request (s3mesh): PUT\\n/demo/k\\n\\n" in line, line
    assert "\\nx-amz-meta-color:blue\\n" in line, line
    assert "string to sign (s3mesh): AWS4-HMAC-SHA256\\n" in line, line
    if store == "moto":
        assert "the store did not return its canonical request" in line, line
    else:
        assert "canonical request (store): PUT\\n/demo/k\\n\\n" in line, line
        assert "\\nx-amz-meta-color:gray\\n" in line, line
        assert re.search(r'first difference at line \d+ >>> s3mesh "x-amz-meta-color:blue" \| '
                         r'store "x-amz-meta-color:gray"', line), line
        # The canonical requests differ, so do the strings to sign, in their last line (the hash).
        assert "string to sign (store): AWS4-HMAC-SHA256\\n" in line, line
        assert "first difference at line 4 >>> s3mesh" in line, line
    # The signature and any key stay out; the store's error carries the signature it was given.
    assert "Signature=" not in line and "secret" not in line.lower(), line
    assert "SignatureProvided" not in line, line
    if store == "s3s-fs":
        # The client got the store's error as the store wrote it, the signature it was given included.
        provided = error["Error"]["SignatureProvided"]
        assert len(provided) == 64 and provided not in log
