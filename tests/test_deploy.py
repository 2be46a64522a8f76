"""The deployment manifests (deploy/), validated without a cluster:

- they are what deploy/render.py renders from deploy/values.example.yaml, and every Envoy
  setting in them comes from the same source as the local stack's configuration;
- Istio objects validate against Istio's own CRD schemas (shared/schemas), unknown fields
  included; core Kubernetes objects against Kubernetes' schemas (kubernetes-validate, strict);
  the policy examples against the generated S3AccessPolicy CRD;
- each mode's Envoy configuration is accepted by real Envoy (`--mode validate`): for the Istio
  modes, the EnvoyFilter patches are applied to an Istio-shaped proxy configuration the way
  Istio applies them (see `apply_patches`);
- all of it again with `filter: native` (the Envoy dynamic module; Envoy loads the real module
  in validate mode).
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy import render  # noqa: E402
from devstack.stack import (  # noqa: E402
    AUTHORIZATION_MODES, FILTER_SHELLS, ENVOY_BIN, NATIVE_DIR, WASM, connection_manager, render_envoy)

MANIFESTS = ROOT / "deploy" / "manifests"
ISTIO_CRDS = ROOT.parent / "shared" / "schemas" / "istio-crd-all.gen.yaml"
POLICY_CRD = ROOT / "deploy" / "crds" / "s3accesspolicy.yaml"
KUBERNETES_VERSION = "1.33"
VALUES = yaml.safe_load((ROOT / "deploy" / "values.example.yaml").read_text())


def objects(file: str) -> list[dict]:
    return [o for o in yaml.safe_load_all((MANIFESTS / file).read_text()) if o]


def all_objects() -> list[tuple[str, dict]]:
    """The committed manifests' objects (wasm), and the same files rendered for the native shell."""
    native = {**VALUES, "filter": "native"}
    return [(f, o) for f in render.MODES for o in objects(f)] + [
        (f, o) for f, make in render.MODES.items() if f not in ("ext-authz.yaml", "examples.yaml") for o in make(native)]


def test_committed_manifests_are_what_the_render_script_writes():
    for file, text in render.render(VALUES).items():
        assert (MANIFESTS / file).read_text() == text, f"deploy/manifests/{file} is stale: run make deploy-render"


def crd_schemas(path: Path) -> dict:
    """(apiVersion, kind) → openAPIV3Schema of every CRD in `path`."""
    schemas = {}
    for crd in yaml.safe_load_all(path.read_text()):
        if not crd or crd.get("kind") != "CustomResourceDefinition":
            continue
        spec = crd["spec"]
        for version in spec["versions"]:
            schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(obj, schema: dict, path: str = "") -> list[str]:
    """Fields the structural schema does not declare (the API server would drop or refuse them)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found = []
    if isinstance(obj, dict) and "properties" in schema:
        for key, value in obj.items():
            if key in schema["properties"]:
                found += unknown_fields(value, schema["properties"][key], f"{path}.{key}")
            elif path == "" and key in ("apiVersion", "kind", "metadata"):
                continue
            else:
                found.append(f"{path}.{key}")
    elif isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, value in obj.items():
            found += unknown_fields(value, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(obj, list) and "items" in schema:
        for i, item in enumerate(obj):
            found += unknown_fields(item, schema["items"], f"{path}[{i}]")
    return found


def check_against(schemas: dict, obj: dict):
    key = (obj["apiVersion"], obj["kind"])
    assert key in schemas, f"no CRD schema for {key}"
    jsonschema.validate(obj, schemas[key])
    assert unknown_fields(obj, schemas[key]) == [], f"{key} {obj['metadata']['name']}"


@pytest.fixture(scope="module")
def istio_schemas():
    assert ISTIO_CRDS.exists(), f"{ISTIO_CRDS} is missing (CI provides shared/ beside the clone)"
    return crd_schemas(ISTIO_CRDS)


def test_istio_objects_validate_against_istio_crds(istio_schemas):
    istio = [o for _, o in all_objects() if ".istio.io/" in o["apiVersion"]]
    assert {o["kind"] for o in istio} >= {"EnvoyFilter", "Gateway", "VirtualService", "DestinationRule", "WasmPlugin",
                                          "PeerAuthentication"}
    for obj in istio:
        check_against(istio_schemas, obj)


def test_the_istio_check_catches_a_misspelt_field(istio_schemas):
    bad = copy.deepcopy(objects("istio-sidecar.yaml")[0])
    bad["spec"]["configPatches"][0]["patch"]["operashun"] = "ADD"
    with pytest.raises(AssertionError, match="operashun"):
        check_against(istio_schemas, bad)


def test_core_objects_validate_against_kubernetes_schemas():
    core = [o for _, o in all_objects() if ".istio.io/" not in o["apiVersion"] and o["apiVersion"] != "s3mesh.io/v1alpha1"]
    assert {o["kind"] for o in core} >= {"Deployment", "Service", "ServiceAccount", "ClusterRole", "Role",
                                          "PodDisruptionBudget", "ConfigMap", "Secret"}
    for obj in core:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_policy_examples_validate_against_the_generated_crd():
    schemas = crd_schemas(POLICY_CRD)
    policies = [o for _, o in all_objects() if o["kind"] == "S3AccessPolicy"]
    assert policies
    for obj in policies:
        check_against(schemas, obj)
    bad = copy.deepcopy(policies[0])
    del bad["spec"]["rules"][0]["profile"]
    with pytest.raises(jsonschema.ValidationError):
        check_against(schemas, bad)


def test_ext_authz_runs_locked_down_with_least_privilege():
    by_kind = {o["kind"]: o for o in objects("ext-authz.yaml")}
    deployment = by_kind["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    container = deployment["template"]["spec"]["containers"][0]
    security = container["securityContext"]
    assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "limits" in container["resources"]
    assert by_kind["ClusterRole"]["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    role = by_kind["Role"]
    assert role["metadata"]["namespace"] == VALUES["namespace"], "Secrets only in its own namespace"
    assert {r for rule in role["rules"] for r in rule["resources"]} == {"secrets", "s3accesspolicies"}
    assert all(set(rule["verbs"]) == {"get", "list", "watch"} for rule in role["rules"])


def test_in_the_mesh_ext_authz_learns_from_its_sidecar_which_proxy_asks():
    by_kind = {o["kind"]: o for o in objects("ext-authz.yaml")}
    pod_labels = by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["sidecar.istio.io/inject"] == "true"
    annotations = by_kind["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert json.loads(annotations["proxy.istio.io/config"]) == {"holdApplicationUntilProxyStarts": True}
    peer = by_kind["PeerAuthentication"]["spec"]
    assert peer["mtls"] == {"mode": "STRICT"}, "a plaintext caller could bring its own x-forwarded-client-cert"
    assert peer["selector"]["matchLabels"].items() <= pod_labels.items()
    gateway = next(o for o in objects("istio-gateway.yaml") if o["kind"] == "Deployment")
    config = yaml.safe_load(by_kind["ConfigMap"]["data"]["ext-authz.yaml"])
    account = gateway["spec"]["template"]["spec"]["serviceAccountName"]
    assert config["callers"] == {
        "verify": "mesh_identity",
        "gateways": [f"spiffe://{config['identity']['trust_domain']}/ns/{gateway['metadata']['namespace']}/sa/{account}"]}
    assert "NetworkPolicy" not in by_kind


def test_without_a_mesh_only_the_plain_envoy_reaches_ext_authz():
    values = {**VALUES, "mesh": "none"}
    by_kind = {o["kind"]: o for o in render.MODES["ext-authz.yaml"](values)}
    assert "PeerAuthentication" not in by_kind
    assert "sidecar.istio.io/inject" not in by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert yaml.safe_load(by_kind["ConfigMap"]["data"]["ext-authz.yaml"])["callers"] == {"verify": "any"}
    policy = by_kind["NetworkPolicy"]
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    envoy = next(o for o in render.MODES["plain.yaml"](values) if o["kind"] == "Deployment")
    grpc, health = policy["spec"]["ingress"]
    assert grpc["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": envoy["metadata"]["name"]}}}]
    assert grpc["from"][0]["podSelector"]["matchLabels"].items() <= envoy["spec"]["template"]["metadata"]["labels"].items()
    assert grpc["ports"] == [{"port": render.AUTHZ_PORT, "protocol": "TCP"}]
    assert "from" not in health and health["ports"] == [{"port": render.HEALTH_PORT, "protocol": "TCP"}]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= by_kind["Deployment"]["spec"]["template"]["metadata"]["labels"].items()
    with pytest.raises(ValueError, match="neither istio nor none"):
        render.MODES["ext-authz.yaml"]({**VALUES, "mesh": "linkerd"})


def manifests(file: str, mode: str, shell: str = "wasm") -> list[dict]:
    """The objects of `file` rendered in authorization `mode` and filter `shell` (the committed
    ones are the example values', checked above to be what the render script writes)."""
    return render.MODES[file]({**VALUES, "authorization": mode, "filter": shell})


def chain(mode: str, sep: str, shell: str) -> list[str]:
    """The HTTP filters s3mesh puts in a listener, in order: the native shell in grant mode runs
    both roles in one filter."""
    if (shell, mode) == ("native", "grant"):
        return ["s3mesh", render.ROUTER]
    authz = [render.EXT_AUTHZ] if mode == "ext_authz" else []
    return [f"s3mesh{sep}pre", *authz, f"s3mesh{sep}post", render.ROUTER]


def test_the_example_values_ship_grant_mode():
    assert render.authorization(VALUES) == "grant"


@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_one_source_of_truth_the_filters_in_the_cluster_are_the_local_stacks(mode):
    local = yaml.safe_load(render_envoy("127.0.0.1:0", WASM, VALUES["store"]["endpoints"], "127.0.0.1:9191",
                                        post_overrides={"cache": VALUES["cache"]},
                                        pre_config=render.pre_config(VALUES), authorization=mode))
    hcm = connection_manager(local)
    local_filters = {f["name"]: f for f in hcm["http_filters"]}
    patches = manifests("istio-sidecar.yaml", mode)[0]["spec"]["configPatches"]
    ecds = {p["patch"]["value"]["name"]: p["patch"]["value"]["typed_config"]
            for p in patches if p["applyTo"] == "EXTENSION_CONFIG"}
    for role in ("pre", "post"):
        mine, theirs = copy.deepcopy(ecds[f"s3mesh-{role}"]), copy.deepcopy(local_filters[f"s3mesh.{role}"]["typed_config"])
        for config in (mine, theirs):
            del config["config"]["vm_config"]["code"]  # a file locally, a URL and digest in the mesh
        settings = json.loads(theirs["config"]["configuration"]["value"])
        if "grants" in settings:  # ext-authz by its mesh name
            settings["grants"].update(cluster=render.authz_cluster_name(VALUES), authority=render.authz_host(VALUES))
            theirs["config"]["configuration"]["value"] = json.dumps(settings)
        assert mine == theirs
        if role == "post":
            assert ("grants" in settings) == (mode == "grant")
    inserted = [p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"]
    authz = [f for f in inserted if f["name"] == render.EXT_AUTHZ]
    if mode == "ext_authz":
        expected = copy.deepcopy(local_filters[render.EXT_AUTHZ])
        expected["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = render.authz_cluster_name(VALUES)
        assert authz == [expected]
    else:
        assert authz == [] and render.EXT_AUTHZ not in local_filters
    merged = next(p for p in patches if p["applyTo"] == "NETWORK_FILTER")["patch"]["value"]["typed_config"]
    assert {k: merged[k] for k in render.HCM_KEYS} == {k: hcm[k] for k in render.HCM_KEYS}
    cluster = next(p for p in patches if p["applyTo"] == "CLUSTER")["patch"]["value"]
    assert cluster["load_balancing_policy"] == local["static_resources"]["clusters"][0]["load_balancing_policy"]
    plain = json.loads(next(o for o in manifests("plain.yaml", mode) if o["kind"] == "ConfigMap")["data"]["envoy.json"])
    plain_hcm = connection_manager(plain)
    assert [f["name"] for f in plain_hcm["http_filters"]] == [f["name"] for f in hcm["http_filters"]]


# Istio-shaped proxy configuration, and the patches applied to it ---------------------------------

def merge(into: dict, patch: dict):
    """Protobuf merge semantics, as Istio's MERGE: messages merge, lists append, scalars replace."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key].extend(copy.deepcopy(value))
        else:
            into[key] = copy.deepcopy(value)


def socket(address: str) -> dict:
    host, port = address.rsplit(":", 1)
    return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": int(port)}}}}


def istio_proxy(port: int, vhosts: list[str], authz_cluster: str) -> dict:
    """What istiod generates for a proxy with an HTTP listener on `port` (outbound sidecar or
    gateway): one HCM whose only filter is the router, Istio's default path normalization,
    EDS-like clusters (static here) with Istio's default LEAST_REQUEST."""
    store = VALUES["store"]
    route = lambda host: {"name": "default", "match": {"prefix": "/"},  # noqa: E731
                          "route": {"cluster": f"outbound|{port}||{host}", "timeout": "0s"}}
    hcm = {"@type": render.HCM_TYPE, "stat_prefix": f"outbound_0.0.0.0_{port}", "normalize_path": True,
           "route_config": {"name": str(port), "virtual_hosts": [
               {"name": vhost, "domains": [vhost], "routes": [route(vhost.rsplit(":", 1)[0])]} for vhost in vhosts]},
           "http_filters": [{"name": render.ROUTER, "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}
    clusters = [{"name": f"outbound|{port}||{v.rsplit(':', 1)[0]}", "type": "STATIC", "lb_policy": "LEAST_REQUEST",
                 "connect_timeout": "10s",
                 "load_assignment": {"cluster_name": v, "endpoints": [{"lb_endpoints": [socket(e) for e in store["endpoints"]]}]}}
                for v in vhosts]
    clusters.append({"name": authz_cluster, "type": "STATIC", "connect_timeout": "1s",
                     "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                         "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                         "explicit_http_config": {"http2_protocol_options": {}}}},
                     "load_assignment": {"cluster_name": authz_cluster,
                                         "endpoints": [{"lb_endpoints": [socket("10.30.0.5:9191")]}]}})
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
            "static_resources": {"listeners": [{
                "name": f"0.0.0.0_{port}", "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
                "filter_chains": [{"filters": [{"name": render.HCM, "typed_config": hcm}]}]}],
                "clusters": clusters}}


def apply_patches(config: dict, envoy_filter: dict, context: str) -> dict:
    """Applies an EnvoyFilter's patches as Istio does, for the patch kinds s3mesh uses. ECDS is
    the one substitution: Envoy cannot fetch extension configs in validate mode, so a filter's
    `config_discovery` is replaced by the EXTENSION_CONFIG it names, with the module read from
    the locally built file instead of the URL."""
    config = copy.deepcopy(config)
    listener = config["static_resources"]["listeners"][0]
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    ecds = {}
    for patch in envoy_filter["spec"]["configPatches"]:
        match, op, value = patch["match"], patch["patch"]["operation"], copy.deepcopy(patch["patch"]["value"])
        assert match["context"] == context
        applies_to = patch["applyTo"]
        if applies_to == "EXTENSION_CONFIG":
            assert op == "ADD"
            value["typed_config"]["config"]["vm_config"]["code"] = {"local": {"filename": str(WASM)}}
            ecds[value["name"]] = value["typed_config"]
        elif applies_to == "HTTP_FILTER":
            assert op == "INSERT_BEFORE" and match["listener"]["portNumber"] == listener["address"]["socket_address"]["port_value"]
            assert match["listener"]["filterChain"]["filter"]["subFilter"]["name"] == render.ROUTER
            if "config_discovery" in value:
                assert value["name"] in ecds, "EXTENSION_CONFIG must come first"
                del value["config_discovery"]
                value["typed_config"] = ecds[value["name"]]
            router = [f["name"] for f in hcm["http_filters"]].index(render.ROUTER)
            hcm["http_filters"].insert(router, value)
        elif applies_to == "NETWORK_FILTER":
            assert op == "MERGE" and match["listener"]["filterChain"]["filter"]["name"] == render.HCM
            merge(hcm, {k: v for k, v in value["typed_config"].items() if k != "@type"})
        elif applies_to in ("VIRTUAL_HOST", "HTTP_ROUTE"):
            assert op == "MERGE"
            vhost_match = match.get("routeConfiguration", {}).get("vhost", {})
            wanted = vhost_match.get("name")
            for vhost in hcm["route_config"]["virtual_hosts"]:
                if wanted in (None, vhost["name"]):
                    for target in ([vhost] if applies_to == "VIRTUAL_HOST" else vhost["routes"]):
                        merge(target, value)
        elif applies_to == "CLUSTER":
            assert op == "MERGE"
            name = f"outbound|{match['cluster']['portNumber']}||{match['cluster']['service']}"
            cluster = next(c for c in config["static_resources"]["clusters"] if c["name"] == name)
            merge(cluster, value)
        else:
            raise AssertionError(f"unexpected patch {applies_to}")
    return config


def envoy_validates(config: dict, tmp_path: Path, name: str) -> list[str]:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    # The native shell's filters load the locally built module from where the stack's Envoy finds it.
    env = {**os.environ, "ENVOY_DYNAMIC_MODULES_SEARCH_PATH": str(NATIVE_DIR)}
    done = subprocess.run([str(ENVOY_BIN), "--mode", "validate", "-c", str(path), "-l", "error"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, f"{name}: Envoy refused the configuration:\n{done.stdout}\n{done.stderr}"
    return [f["name"] for f in connection_manager(config)["http_filters"]]


@pytest.mark.envoy_matrix
@pytest.mark.parametrize("shell", FILTER_SHELLS)
@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_envoy_accepts_the_sidecar_mode_as_istio_would_patch_it(tmp_path, mode, shell):
    store = VALUES["store"]
    vhosts = [f"{store['host']}:{store['port']}", f"other.team-b.svc.cluster.local:{store['port']}"]
    base = istio_proxy(store["port"], vhosts, render.authz_cluster_name(VALUES))
    patched = apply_patches(base, manifests("istio-sidecar.yaml", mode, shell)[0], "SIDECAR_OUTBOUND")
    assert envoy_validates(patched, tmp_path, "sidecar") == chain(mode, "-", shell)
    hcm = connection_manager(patched)
    s3_vhost, other = hcm["route_config"]["virtual_hosts"]
    assert s3_vhost["include_attempt_count_in_response"] and s3_vhost["routes"][0]["route"]["retry_policy"]
    assert "retry_policy" not in other["routes"][0]["route"], "route settings only on the store's host"
    assert hcm["normalize_path"] is False and hcm["proxy_100_continue"] is True
    assert hcm["use_remote_address"] is True, "the caller's address must be the connection's, not a header's"


@pytest.mark.envoy_matrix
@pytest.mark.parametrize("shell", FILTER_SHELLS)
@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_envoy_accepts_the_gateway_mode_as_istio_would_patch_it(tmp_path, mode, shell):
    store = VALUES["store"]
    gateway = next(o for o in manifests("istio-gateway.yaml", mode, shell) if o["kind"] == "EnvoyFilter")
    base = istio_proxy(VALUES["gateway"]["port"], [f"{store['host']}:{store['port']}"], render.authz_cluster_name(VALUES))
    # A gateway routes to the store's cluster by its service port, not the listener's.
    base["static_resources"]["clusters"][0]["name"] = f"outbound|{store['port']}||{store['host']}"
    route = connection_manager(base)["route_config"]
    route["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = f"outbound|{store['port']}||{store['host']}"
    patched = apply_patches(base, gateway, "GATEWAY")
    assert envoy_validates(patched, tmp_path, "gateway") == chain(mode, "-", shell)


@pytest.mark.envoy_matrix
@pytest.mark.parametrize("shell", FILTER_SHELLS)
@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_envoy_accepts_the_plain_kubernetes_envoy(tmp_path, mode, shell):
    config = json.loads(next(o for o in manifests("plain.yaml", mode, shell) if o["kind"] == "ConfigMap")["data"]["envoy.json"])
    for f in connection_manager(config)["http_filters"]:
        code = f["typed_config"].get("config", {}).get("vm_config", {}).get("code")
        if code:
            assert code == {"local": {"filename": str(render.PLAIN_WASM)}}
            code["local"]["filename"] = str(WASM)  # the image volume's file, here the local build
    assert envoy_validates(config, tmp_path, "plain") == chain(mode, ".", shell)


@pytest.mark.parametrize("mode", AUTHORIZATION_MODES)
def test_the_native_shell_deploys_the_local_stacks_filters_and_mounts_its_module(mode):
    local = yaml.safe_load(render_envoy("127.0.0.1:0", WASM, VALUES["store"]["endpoints"], "127.0.0.1:9191",
                                        post_overrides={"cache": VALUES["cache"]},
                                        pre_config=render.pre_config(VALUES), authorization=mode, shell="native"))
    local_filters = {f["name"]: f["typed_config"] for f in connection_manager(local)["http_filters"]}
    patches = manifests("istio-sidecar.yaml", mode, "native")[0]["spec"]["configPatches"]
    assert not [p for p in patches if p["applyTo"] == "EXTENSION_CONFIG"], "nothing to fetch: the module is on disk"
    inserted = {p["patch"]["value"]["name"]: p["patch"]["value"] for p in patches if p["applyTo"] == "HTTP_FILTER"}
    ours = [name for name in local_filters if name.startswith("s3mesh")]
    assert ours == (["s3mesh"] if mode == "grant" else ["s3mesh.pre", "s3mesh.post"])
    for name in ours:
        mine, theirs = inserted[name.replace(".", "-")]["typed_config"], copy.deepcopy(local_filters[name])
        settings = json.loads(theirs["filter_config"]["value"])
        post = settings.get("post", settings)  # nested in role "both"
        if "grants" in post:
            post["grants"].update(cluster=render.authz_cluster_name(VALUES), authority=render.authz_host(VALUES))
            theirs["filter_config"]["value"] = json.dumps(settings)
        assert mine == theirs
    mount = {"name": "s3mesh-native", "mountPath": str(render.NATIVE_DIR), "readOnly": True}
    search = {"name": "ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "value": str(render.NATIVE_DIR)}
    native = {**VALUES, "authorization": mode, "filter": "native"}
    for file in ("istio-gateway.yaml", "plain.yaml"):
        pod = next(o for o in render.MODES[file](native) if o["kind"] == "Deployment")["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert mount in container["volumeMounts"] and search in container["env"], file
        assert {"name": "s3mesh-native", "image": {"reference": VALUES["images"]["native_oci"],
                                                   "pullPolicy": "IfNotPresent"}} in pod["volumes"], file
    assert render.MODES["wasmplugin.yaml"](native) == []


def test_container_builds_name_what_the_build_produces():
    wasm = (ROOT / "deploy" / "images" / "wasm.Containerfile").read_text()
    assert f"COPY {WASM.relative_to(ROOT)} /plugin.wasm" in wasm
    assert render.PLAIN_WASM.name == "plugin.wasm"
    native = (ROOT / "deploy" / "images" / "native.Containerfile").read_text()
    assert "COPY target/release/libs3mesh_native.so /libs3mesh_native.so" in native
    assert "cargo build --release -p s3mesh-native-filter" in native
    authz = (ROOT / "deploy" / "images" / "ext-authz.Containerfile").read_text()
    assert "cargo build --release --locked -p s3mesh-ext-authz" in authz
    assert "target/release/s3mesh-ext-authz" in authz


def test_the_guide_names_what_the_manifests_contain():
    import re

    guide = (ROOT / "deploy" / "README.md").read_text()
    for file in set(re.findall(r"my-manifests/([\w.-]+\.yaml)", guide)) | set(re.findall(r"`manifests/([\w.-]+\.yaml)`", guide)):
        assert file in render.MODES, f"the guide names {file}, which render.py does not write"
    (label, value), = VALUES["sidecar"]["selector"].items()
    assert f"{label}={value}" in guide and f'{label}: "{value}"' in guide
    services = {f"{o['metadata']['name']}.{o['metadata']['namespace']}.svc.cluster.local"
                for _, o in all_objects() if o["kind"] == "Service"}
    for host in re.findall(r"http://([\w.-]+\.svc\.cluster\.local)", guide):
        assert host in services, f"the guide sends clients to {host}, which no manifest defines"
    secret = next(o for _, o in all_objects() if o["kind"] == "Secret")["metadata"]["name"]
    assert f"create secret generic {secret}" in guide
