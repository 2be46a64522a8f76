"""'Why SignatureDoesNotMatch', through the full local stack: an endpoint that rewrites a header
s3mesh signed (a proxy of our own in front of the moto store, as a misconfigured load balancer
or WAF would) makes the store refuse the signature; the client gets the store's error
unchanged, and Envoy's log says what s3mesh signed, line by line, with the secret parts
redacted, and counts it.

moto does not return its own canonical request and string to sign (AWS S3 does), so here the
log says so; the comparison and the marked first difference are covered by the unit tests of
`filter/src/signature_diagnosis.rs` with AWS's error format."""

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


@pytest.mark.parametrize("shell", FILTER_SHELLS)
@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_a_signature_the_store_refuses_is_explained_in_envoys_log(tmp_path, mode, shell):
    endpoint = RewritingEndpoint()
    pinned = {"endpoints": [endpoint.address], "unhinted_share": 0}
    try:
        with Stack(tmp_path / "stack", extra_endpoints=[endpoint.address], post_overrides=pinned,
                   authorization=mode, shell=shell) as stack:
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
    assert "the store did not return its canonical request" in line, line
    # The signature and any key stay out.
    assert "Signature=" not in line and "secret" not in line.lower(), line
