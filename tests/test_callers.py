"""Which proxy asks ext-authz, as Istio tells it: ext-authz with `callers.verify: mesh_identity`
behind a real Envoy that plays its sidecar (mTLS with client certificates carrying SPIFFE IDs,
`x-forwarded-client-cert` appended as Istio's sidecars do, `APPEND_FORWARD`). This checks what
the unit tests cannot: that ext-authz reads the header exactly as Envoy writes it, and that a
header the caller forges stays in front of the one its sidecar appends."""

import http.client
import json
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from devstack.processes import Supervisor
from devstack.credentials import write_secret
from devstack.stack import start_envoy, start_ext_authz

GATEWAY = "spiffe://cluster.local/ns/s3mesh-system/sa/s3mesh-gateway"
TEAM_A = "spiffe://cluster.local/ns/team-a/sa/app"
TEAM_B = "spiffe://cluster.local/ns/team-b/sa/app"
SECRET = "callers-test-secret-0123456789abcdef"


#: A fresh P-256 key, unencrypted, for `openssl req`.
NEW_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def openssl(*args, cwd: Path):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(pki: Path, name: str, san: str):
    """A key and a certificate for `san`, signed by the test CA."""
    (pki / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("req", *NEW_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=pki)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "1", "-extfile", f"{name}.ext", cwd=pki)


def sidecar_config(pki: Path, authz: str) -> dict:
    """An Envoy in front of ext-authz, as Istio's sidecar is: mTLS required, the client's URI
    SAN appended to x-forwarded-client-cert, HTTP/2 to ext-authz."""
    host, port = authz.rsplit(":", 1)
    tls = {"name": "envoy.transport_sockets.tls", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "require_client_certificate": True,
        "common_tls_context": {
            "tls_certificates": [{"certificate_chain": {"filename": str(pki / "server.crt")},
                                  "private_key": {"filename": str(pki / "server.key")}}],
            "validation_context": {"trusted_ca": {"filename": str(pki / "ca.crt")}}}}}
    hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "sidecar",
        "forward_client_cert_details": "APPEND_FORWARD",
        "set_current_client_cert_details": {"subject": True, "uri": True, "dns": True},
        "route_config": {"virtual_hosts": [{"name": "authz", "domains": ["*"],
                                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "authz"}}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {
        "listeners": [{"name": "s3mesh",
                       "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                       "filter_chains": [{"transport_socket": tls, "filters": [hcm]}]}],
        "clusters": [{"name": "authz", "type": "STATIC", "connect_timeout": "1s",
                      "typed_extension_protocol_options": {
                          "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                              "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                              "explicit_http_config": {"http2_protocol_options": {}}}},
                      "load_assignment": {"cluster_name": "authz", "endpoints": [{"lb_endpoints": [{"endpoint": {
                          "address": {"socket_address": {"address": host, "port_value": int(port)}}}}]}]}}]}}


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    """ext-authz in the mesh (its sidecar's listener `host:port`) and the test PKI directory."""
    work = tmp_path_factory.mktemp("callers")
    pki = work / "pki"
    pki.mkdir()
    openssl("req", "-x509", *NEW_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=s3mesh-test-ca",
            "-days", "1", cwd=pki)
    issue(pki, "server", "IP:127.0.0.1")
    for name, uri in (("team-a", TEAM_A), ("team-b", TEAM_B), ("gateway", GATEWAY)):
        issue(pki, name, f"URI:{uri}")
    write_secret(work / "credentials" / "pa", "AKIDCALLERS", SECRET)
    config = work / "ext-authz.yaml"
    config.write_text(yaml.safe_dump({
        "callers": {"verify": "mesh_identity", "gateways": [GATEWAY]},
        "identity": {"sources": ["principal"]},
        "profiles": {"pa": {"credentials_dir": "credentials/pa"}},
        "rules": [{"match": {"namespaces": ["team-a"]}, "buckets": ["team-a"], "operations": ["read"],
                   "profile": "pa"}],
    }))
    processes = Supervisor(work / "logs")
    try:
        authz, _ = start_ext_authz(processes, config)
        envoy = work / "sidecar.json"
        envoy.write_text(json.dumps(sidecar_config(pki, authz)))
        _, listener = start_envoy(processes, envoy, work, concurrency=1, name="sidecar")
        yield listener, pki, processes
    finally:
        processes.stop()


def ask_grant(sidecar, client: str, headers=None) -> dict:
    """Asks for TEAM_A's grant over mTLS as the workload with `client`'s certificate."""
    listener, pki, _ = sidecar
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(pki / f"{client}.crt", pki / f"{client}.key")
    host, port = listener.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=10)
    date = time.strftime("%Y%m%d", time.gmtime())
    try:
        conn.request("POST", "/s3mesh.grant.v1/issue", json.dumps({"principal": TEAM_A, "date": date}),
                     {"content-type": "application/json", **(headers or {})})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, body
    assert SECRET not in body
    return json.loads(body)


def test_a_sidecar_gets_a_grant_for_its_own_workload(sidecar):
    answer = ask_grant(sidecar, "team-a")
    assert answer["granted"]["identity"] == "team-a/app"


def test_another_workloads_sidecar_is_refused_even_with_a_forged_header(sidecar):
    for headers in (None, {"x-forwarded-client-cert": f"URI={TEAM_A}"}):
        refusal = ask_grant(sidecar, "team-b", headers)["refused"]
        assert refusal["status"] == 403
        assert "the proxy of team-b/app may ask only for its own workload, not for team-a/app" in refusal["message"]


def test_the_listed_gateway_asks_for_anybody(sidecar):
    assert ask_grant(sidecar, "gateway")["granted"]["identity"] == "team-a/app"


def test_the_sidecar_log_shows_no_secret(sidecar):
    _, _, processes = sidecar
    for name in ("ext-authz", "sidecar"):
        assert SECRET not in processes.log(name).read_text(errors="replace")
