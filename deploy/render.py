"""Renders s3mesh's Kubernetes and Istio manifests: `python deploy/render.py --values FILE --out DIR`.

One source of truth: every Envoy setting here (the two filters and their configuration,
ext_authz in the per-request mode, the connection-manager settings, the route's timeouts and retries, the
`override_host` balancing) is taken from the product's `envoy/s3mesh.yaml`, rendered by the same
function that renders the local stack of `make run` (`devstack.stack.render_envoy`). Nothing is
restated here, so the cluster and the local stack cannot drift apart; tests/test_deploy.py
checks it.

Files written (one per mode, plus what every mode shares):
- `ext-authz.yaml`: namespace, ServiceAccount, RBAC, configuration, Deployment, Service, PDB,
  and who may reach it: a STRICT-mTLS PeerAuthentication (`mesh: istio`) or a NetworkPolicy that
  admits only the plain Envoy (`mesh: none`);
- `examples.yaml`: an `S3AccessPolicy` and a credential Secret to copy;
- `istio-sidecar.yaml`: EnvoyFilters for SIDECAR_OUTBOUND on the workloads that opt in;
- `istio-gateway.yaml`: a dedicated s3mesh gateway with EnvoyFilters on GATEWAY;
- `plain.yaml`: an Envoy Deployment with the same filters, for clusters without a mesh;
- `wasmplugin.yaml`: the `WasmPlugin` alternative for the two filters (sidecar mode; wasm only).
`filter` in the values chooses the shell: "wasm" (default; the module fetched through ECDS) or
"native" (the Envoy dynamic module, inline in the filter chain, its `.so` mounted into the proxy
from an image volume). The CRD is `deploy/crds/s3accesspolicy.yaml`, generated from the Rust type.
"""

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.stack import EXT_AUTHZ_FILTER, FILTER_SHELLS, connection_manager, filter_settings, render_envoy  # noqa: E402
from devstack.telemetry import span_settings  # noqa: E402

HCM = "envoy.filters.network.http_connection_manager"
HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ROUTER = "envoy.filters.http.router"
EXT_AUTHZ = EXT_AUTHZ_FILTER
AUTHZ_PORT, HEALTH_PORT = 9191, 9192
PLAIN_PORT = 8080
PLAIN_NAME = "s3mesh-envoy"
#: Where the plain-Kubernetes Envoy finds the module (an image volume of the wasm OCI artifact).
PLAIN_WASM = Path("/etc/s3mesh/wasm/plugin.wasm")
#: Where every proxy finds the native module (an image volume of the native OCI artifact, whose
#: one file is `libs3mesh_native.so`); Envoy looks there through ENVOY_DYNAMIC_MODULES_SEARCH_PATH.
NATIVE_DIR = Path("/etc/s3mesh/native")
#: Connection-manager settings s3mesh needs wherever it runs.
HCM_KEYS = ["use_remote_address", "normalize_path", "merge_slashes", "path_with_escaped_slashes_action", "proxy_100_continue",
            "stream_idle_timeout", "request_headers_timeout", "local_reply_config",
            # The audit record, to the proxy's stdout: merged, it joins the mesh's own access logs.
            "access_log"]
#: Route settings s3mesh needs: store-sized timeouts and retries of requests the store did not act on.
ROUTE_KEYS = ["timeout", "idle_timeout", "retry_policy"]
LABELS = {"app.kubernetes.io/part-of": "s3mesh"}
TRUST_DOMAIN = "cluster.local"


def pre_config(values: dict) -> dict:
    return {"role": "pre", "virtual_host_domains": values["store"]["virtual_host_domains"]}


def filter_shell(values: dict) -> str:
    """"wasm" (the proxy-wasm module, default) or "native" (the Envoy dynamic module)."""
    value = values.get("filter", "wasm")
    if value not in FILTER_SHELLS:
        raise ValueError(f"filter: {value!r} is neither of {FILTER_SHELLS}")
    return value


def product(values: dict, wasm: Path, authz_cluster: str, otlp: bool = False) -> dict:
    """The product's Envoy configuration for this deployment, as `make run` renders it, in the
    values' authorization mode and filter shell, with ext-authz reached through `authz_cluster`;
    with `otlp`, exporting spans, stats and audit records to the values' `otel_endpoint` (the
    plain Envoy: in Istio the mesh exports)."""
    otlp_endpoint = values.get("otel_endpoint") if otlp else None
    cache = {"cache": values["cache"]} if values.get("cache") else None
    rendered = render_envoy(f"0.0.0.0:{PLAIN_PORT}", wasm, values["store"]["endpoints"], "127.0.0.1:9191",
                            post_overrides=cache, pre_config=pre_config(values), authorization=authorization(values),
                            shell=filter_shell(values), otlp_endpoint=otlp_endpoint,
                            trace_object_keys=values.get("trace_object_keys", False),
                            span_tags=values.get("span_tags", False))
    config = yaml.safe_load(rendered)
    hcm = connection_manager(config)
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    filters = {f["name"]: f for f in hcm["http_filters"]}
    if EXT_AUTHZ in filters:
        filters[EXT_AUTHZ]["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = authz_cluster
    for name, f in filters.items():
        if not name.startswith("s3mesh"):
            continue
        value = filter_settings(f)
        filter_config = json.loads(value["value"])
        # Role "both" (the native shell in grant mode) nests the "post" settings.
        post = filter_config.get("post", filter_config)
        if "grants" in post:
            post["grants"].update(cluster=authz_cluster, authority=authz_host(values))
            value["value"] = json.dumps(filter_config)
    return {"config": config, "hcm": hcm, "filters": filters, "clusters": clusters,
            "vhost": hcm["route_config"]["virtual_hosts"][0]}


def authorization(values: dict) -> str:
    """"grant" (the filter signs with grants from ext-authz) or "ext_authz" (every request checked)."""
    return values.get("authorization", "grant")


def mesh(values: dict) -> str:
    """"istio" (ext-authz in the mesh, checking which sidecar asks) or "none" (the plain Envoy)."""
    value = values.get("mesh", "istio")
    if value not in ("istio", "none"):
        raise ValueError(f"mesh: {value!r} is neither istio nor none")
    return value


def spiffe_id(namespace: str, service_account: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/ns/{namespace}/sa/{service_account}"


def authz_host(values: dict) -> str:
    return f"s3mesh-ext-authz.{values['namespace']}.svc.cluster.local"


def authz_cluster_name(values: dict) -> str:
    """Istio's name for the outbound cluster of the ext-authz Service."""
    return f"outbound|{AUTHZ_PORT}||{authz_host(values)}"


def native_volume(values: dict) -> dict:
    """The native module's OCI artifact as an image volume (Kubernetes 1.33+)."""
    return {"name": "s3mesh-native", "image": {"reference": values["images"]["native_oci"], "pullPolicy": "IfNotPresent"}}


#: How a proxy container mounts the native module and tells Envoy where it is.
NATIVE_MOUNT = {"name": "s3mesh-native", "mountPath": str(NATIVE_DIR), "readOnly": True}
NATIVE_ENV = {"name": "ENVOY_DYNAMIC_MODULES_SEARCH_PATH", "value": str(NATIVE_DIR)}


def ecds_wasm(filter_def: dict, values: dict) -> dict:
    """A wasm filter as an ECDS extension config: the module fetched by URL, checked by sha256."""
    typed = copy.deepcopy(filter_def["typed_config"])
    typed["config"]["vm_config"]["code"] = {"remote": {
        "http_uri": {"uri": values["wasm"]["url"], "cluster": "s3mesh_wasm_fetch", "timeout": "30s"},
        "sha256": values["wasm"]["sha256"],
    }}
    return {"name": filter_def["typed_config"]["config"]["name"], "typed_config": typed}


def envoy_filter(name: str, namespace: str, selector: dict | None, priority: int, patches: list) -> dict:
    spec = {"priority": priority, "configPatches": patches}
    if selector:
        spec = {"workloadSelector": {"labels": selector}, **spec}
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": {"name": name, "namespace": namespace, "labels": LABELS}, "spec": spec}


def mesh_patches(values: dict, context: str, port: int, vhost_name: str | None) -> list:
    """The configPatches that put s3mesh into an Istio proxy's HTTP listener on `port`.

    The filters apply to the whole listener: a sidecar has one listener per port, so the store
    needs a port no other HTTP service of the opted-in workloads uses (Envoy's wasm filter
    cannot be enabled per virtual host). Route settings go to `vhost_name` only, when given."""
    p = product(values, Path("/unused"), authz_cluster_name(values))
    store = values["store"]
    listener = {"portNumber": port, "filterChain": {"filter": {"name": HCM, "subFilter": {"name": ROUTER}}}}
    patches, inserted = [], []
    # The product's chain before the router: s3mesh's filters and, in the per-request mode,
    # ext_authz between them (in grant mode the "post" role asks ext-authz for grants).
    for f in p["hcm"]["http_filters"]:
        if f["name"] == EXT_AUTHZ:
            inserted.append(copy.deepcopy(f))
        elif f["name"].startswith("s3mesh") and filter_shell(values) == "wasm":
            patches.append({"applyTo": "EXTENSION_CONFIG", "match": {"context": context},
                            "patch": {"operation": "ADD", "value": ecds_wasm(f, values)}})
            inserted.append({"name": f["typed_config"]["config"]["name"],
                             "config_discovery": {"config_source": {"ads": {}, "initial_fetch_timeout": "0s"},
                                                  "type_urls": [WASM_TYPE]}})
        elif f["name"].startswith("s3mesh"):
            # The dynamic module's configuration goes inline: nothing to fetch, the `.so` is on disk.
            inserted.append({"name": f["name"].replace(".", "-"), "typed_config": copy.deepcopy(f["typed_config"])})
    for value in inserted:
        patches.append({"applyTo": "HTTP_FILTER", "match": {"context": context, "listener": listener},
                        "patch": {"operation": "INSERT_BEFORE", "value": value}})
    hcm_settings = {k: p["hcm"][k] for k in HCM_KEYS}
    # s3mesh's span tags join the mesh's own tracing (Istio's provider, from meshConfig and the
    # Telemetry API, makes the spans).
    hcm_settings["tracing"] = span_settings(filter_shell(values), authorization(values),
                                            values.get("trace_object_keys", False),
                                            values.get("span_tags", False))
    patches.append({"applyTo": "NETWORK_FILTER",
                    "match": {"context": context, "listener": {"portNumber": port, "filterChain": {"filter": {"name": HCM}}}},
                    "patch": {"operation": "MERGE", "value": {"typed_config": {"@type": HCM_TYPE, **hcm_settings}}}})
    vhost = {"include_attempt_count_in_response": p["vhost"]["include_attempt_count_in_response"]}
    vhost_match = {"name": vhost_name} if vhost_name else {}
    patches.append({"applyTo": "VIRTUAL_HOST", "match": {"context": context, "routeConfiguration": {"vhost": vhost_match}},
                    "patch": {"operation": "MERGE", "value": vhost}})
    route = p["vhost"]["routes"][0]["route"]
    patches.append({"applyTo": "HTTP_ROUTE",
                    "match": {"context": context,
                              "routeConfiguration": {"vhost": {**vhost_match, "route": {"action": "ROUTE"}}}},
                    "patch": {"operation": "MERGE", "value": {"route": {k: route[k] for k in ROUTE_KEYS}}}})
    patches.append({"applyTo": "CLUSTER",
                    "match": {"context": context, "cluster": {"service": store["host"], "portNumber": store["port"]}},
                    "patch": {"operation": "MERGE",
                              "value": {"load_balancing_policy": p["clusters"]["s3"]["load_balancing_policy"]}}})
    return patches


def sts_profiles(values: dict) -> dict:
    """The STS profile of `values["sts"]`, if any: each caller a session of its own from the
    store's STS (AssumeRole signed with the base key in a Secret), the store's role bounding it
    and a session policy from the caller's rules narrowing it."""
    sts = values.get("sts")
    if not sts:
        return {}
    endpoint = sts.get("endpoint") or f"http://{values['store']['host']}:{values['store']['port']}"
    return {sts["profile"]: {"secret": sts["base_secret"], "sts": {
        "endpoint": endpoint, "role_arn": sts["role_arn"],
        "duration_seconds": sts.get("duration_seconds", 3600), "session_policy": True}}}


def ext_authz_manifests(values: dict) -> list:
    ns = values["namespace"]
    name = "s3mesh-ext-authz"
    labels = {"app.kubernetes.io/name": name, **LABELS}
    config = {
        "signing": {"region": values["store"]["region"]},
        # The mTLS principal where there is one (gateway mode), else the caller's pod IP.
        "identity": {"sources": ["principal", "kubernetes"], "trust_domain": TRUST_DOMAIN},
        # Who may ask for whom. In Istio, ext-authz's own sidecar names the sidecar that asks
        # (x-forwarded-client-cert), which may then ask only for its own workload; the s3mesh
        # gateway asks for anybody. Without a mesh, the NetworkPolicy below admits only the
        # s3mesh Envoy.
        "callers": ({"verify": "mesh_identity",
                     "gateways": [spiffe_id(ns, values["gateway"]["name"])]}
                    if mesh(values) == "istio" else {"verify": "any"}),
        "cluster": {"policies": True},
        # How long the filter may use a grant: the bound within which a policy, credential or
        # identity change reaches every Envoy in grant mode.
        "grants": {"ttl_seconds": 5},
        "profiles": {"team-a": {"secret": "s3-team-a"}, **sts_profiles(values)},
        "rules": [],
    }
    env = [{"name": "OTEL_SERVICE_NAME", "value": name}, {"name": "S3MESH_LOG_FORMAT", "value": "json"}]
    if values.get("otel_endpoint"):
        env.append({"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": values["otel_endpoint"]})
    probe = lambda path: {"httpGet": {"path": path, "port": "health"}, "periodSeconds": 5}  # noqa: E731
    container = {
        "name": "ext-authz", "image": values["images"]["ext_authz"],
        "args": ["--config", "/etc/s3mesh/ext-authz.yaml", "--listen", f"0.0.0.0:{AUTHZ_PORT}",
                 "--health-listen", f"0.0.0.0:{HEALTH_PORT}"],
        "ports": [{"name": "grpc", "containerPort": AUTHZ_PORT}, {"name": "health", "containerPort": HEALTH_PORT}],
        "env": env,
        "readinessProbe": probe("/readyz"), "livenessProbe": {**probe("/healthz"), "failureThreshold": 6},
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/s3mesh", "readOnly": True}],
    }
    meta = lambda kind_name, **extra: {"name": kind_name, "namespace": ns, "labels": labels, **extra}  # noqa: E731
    read = ["get", "list", "watch"]
    sidecar = {"sidecar.istio.io/inject": "true"} if mesh(values) == "istio" else {}
    # ext-authz lists pods, policies and Secrets at start: through its sidecar, once that is up.
    pod_annotations = ({"annotations": {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}}
                       if sidecar else {})
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": LABELS}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(name)},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": name, "labels": labels},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": read}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": name, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name),
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": read},
                   {"apiGroups": ["s3mesh.io"], "resources": ["s3accesspolicies"], "verbs": read}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name),
         "data": {"ext-authz.yaml": yaml.safe_dump(config, sort_keys=False)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name),
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                  "template": {"metadata": {"labels": {**labels, **sidecar}, **pod_annotations},
                               "spec": {"serviceAccountName": name, "containers": [container],
                                        "volumes": [{"name": "config", "configMap": {"name": name}}],
                                        "topologySpreadConstraints": [{
                                            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                            "whenUnsatisfiable": "ScheduleAnyway",
                                            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": name}}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta(name),
         "spec": {"selector": {"app.kubernetes.io/name": name},
                  "ports": [{"name": "grpc", "port": AUTHZ_PORT, "targetPort": "grpc", "appProtocol": "grpc"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta(name),
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}},
        *(ext_authz_in_mesh(ns, name, labels) if mesh(values) == "istio" else
          ext_authz_behind_network_policy(ns, name, labels)),
    ]


def ext_authz_in_mesh(ns: str, name: str, labels: dict) -> list:
    """Only mesh mTLS reaches ext-authz, so every call carries the x-forwarded-client-cert its
    sidecar appends: a plaintext caller could otherwise bring its own."""
    return [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
             "metadata": {"name": name, "namespace": ns, "labels": labels},
             "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": name}}, "mtls": {"mode": "STRICT"}}}]


def ext_authz_behind_network_policy(ns: str, name: str, labels: dict) -> list:
    """Without a mesh ext-authz cannot tell its callers apart: only the s3mesh Envoy may reach
    its gRPC port (the health port stays open to the kubelet's probes)."""
    envoy = {"app.kubernetes.io/name": PLAIN_NAME}
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": name, "namespace": ns, "labels": labels},
             "spec": {"podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                      "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"podSelector": {"matchLabels": envoy}}],
                                   "ports": [{"port": AUTHZ_PORT, "protocol": "TCP"}]},
                                  {"ports": [{"port": HEALTH_PORT, "protocol": "TCP"}]}]}}]


def examples(values: dict) -> list:
    ns = values["namespace"]
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": {"name": "s3-team-a", "namespace": ns, "labels": LABELS},
         "stringData": {"access_key_id": "REPLACE_WITH_ACCESS_KEY_ID",
                        "secret_access_key": "REPLACE_WITH_SECRET_ACCESS_KEY"}},
        {"apiVersion": "s3mesh.io/v1alpha1", "kind": "S3AccessPolicy",
         "metadata": {"name": "team-a", "namespace": ns, "labels": LABELS},
         "spec": {"rules": [
             {"match": {"namespaces": ["team-a"]}, "buckets": ["team-a"],
              "operations": ["read", "write", "list", "delete", "multipart"], "profile": "team-a"},
             {"match": {"service_accounts": ["analytics/reader"]}, "buckets": ["shared"],
              "prefixes": ["exports/team-a/"], "operations": ["read", "list"], "profile": "team-a"},
         ]}},
    ]


def istio_sidecar(values: dict) -> list:
    ns = values["namespace"]
    port = values["store"]["port"]
    return [envoy_filter("s3mesh-sidecar", ns, values["sidecar"]["selector"], 10,
                         mesh_patches(values, "SIDECAR_OUTBOUND", port,
                                      f"{values['store']['host']}:{port}"))]


def istio_gateway(values: dict) -> list:
    ns = values["namespace"]
    gw = values["gateway"]
    name, port = gw["name"], gw["port"]
    selector = {"istio": name}
    labels = {**selector, **LABELS}
    store = values["store"]
    proxy = {"name": "istio-proxy", "image": "auto", "ports": [{"containerPort": port, "name": "https-s3"}],
             "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False}}
    pod = {"serviceAccountName": name, "containers": [proxy]}
    if filter_shell(values) == "native":
        # Istio's gateway injection merges these into the proxy container it injects.
        proxy.update(env=[NATIVE_ENV], volumeMounts=[NATIVE_MOUNT])
        pod["volumes"] = [native_volume(values)]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": ns, "labels": labels}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"replicas": 2, "selector": {"matchLabels": selector},
                  "template": {"metadata": {"labels": {**labels, "sidecar.istio.io/inject": "true"},
                                            "annotations": {"inject.istio.io/templates": "gateway"}},
                               "spec": pod}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"selector": selector, "ports": [{"name": "https-s3", "port": port, "targetPort": port}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}},
        # Callers reach the gateway over mesh mTLS, so ext-authz identifies them by principal.
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": {"name": name, "namespace": ns, "labels": LABELS},
         "spec": {"selector": selector, "servers": [{"port": {"number": port, "name": "https-s3", "protocol": "HTTPS"},
                                                     "tls": {"mode": "ISTIO_MUTUAL"}, "hosts": ["*"]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": name, "namespace": ns, "labels": LABELS},
         "spec": {"hosts": ["*"], "gateways": [name],
                  "http": [{"route": [{"destination": {"host": store["host"], "port": {"number": store["port"]}}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": name, "namespace": ns, "labels": LABELS},
         "spec": {"host": f"{name}.{ns}.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}},
        envoy_filter("s3mesh-gateway", ns, selector, 10, mesh_patches(values, "GATEWAY", port, None)),
    ]


def plain_envoy_config(values: dict) -> dict:
    """The product's Envoy configuration for a standalone Envoy in the cluster."""
    authz = "s3mesh_ext_authz"
    config = copy.deepcopy(product(values, PLAIN_WASM, authz, otlp=True)["config"])
    config["admin"]["address"]["socket_address"]["port_value"] = 9901
    for cluster in config["static_resources"]["clusters"]:
        if cluster["name"] == authz:
            cluster["type"] = "STRICT_DNS"
            address = {"address": authz_host(values), "port_value": AUTHZ_PORT}
            cluster["load_assignment"]["endpoints"] = [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": address}}}]}]
    return config


def plain(values: dict) -> list:
    ns = values["namespace"]
    name = PLAIN_NAME
    labels = {"app.kubernetes.io/name": name, **LABELS}
    config = plain_envoy_config(values)
    if filter_shell(values) == "native":
        module_mounts, module_volume, env = [NATIVE_MOUNT], native_volume(values), [NATIVE_ENV]
    else:
        module_mounts = [{"name": "wasm", "mountPath": str(PLAIN_WASM.parent), "readOnly": True}]
        # The wasm OCI artifact as an image volume (Kubernetes 1.33+).
        module_volume = {"name": "wasm", "image": {"reference": values["images"]["wasm_oci"], "pullPolicy": "IfNotPresent"}}
        env = []
    container = {
        "name": "envoy", "image": values["images"]["envoy"],
        "args": ["-c", "/etc/s3mesh/envoy/envoy.json", "--concurrency", "2"],
        "ports": [{"name": "s3", "containerPort": PLAIN_PORT}],
        "readinessProbe": {"tcpSocket": {"port": "s3"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 101, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        **({"env": env} if env else {}),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/s3mesh/envoy", "readOnly": True}, *module_mounts]}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "data": {"envoy.json": json.dumps(config, indent=1)}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "containers": [container],
                      "volumes": [{"name": "config", "configMap": {"name": name}}, module_volume]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"selector": {"app.kubernetes.io/name": name},
                  "ports": [{"name": "http-s3", "port": 80, "targetPort": "s3"}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
         "metadata": {"name": name, "namespace": ns, "labels": labels},
         "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": name}}}},
    ]


def wasmplugin(values: dict) -> list:
    """The two filters as WasmPlugins (sidecar mode): Istio pulls the OCI artifact itself.
    The cluster and connection-manager settings (and ext_authz, in the per-request mode) still
    come from the EnvoyFilter. None for the native shell: a WasmPlugin loads wasm only."""
    if filter_shell(values) == "native":
        return []
    p = product(values, Path("/unused"), authz_cluster_name(values))
    plugins = []
    for role, phase, priority in (("pre", "AUTHN", 10), ("post", "AUTHZ", -10)):
        config = p["filters"][f"s3mesh.{role}"]["typed_config"]["config"]
        plugins.append({
            "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
            "metadata": {"name": f"s3mesh-{role}", "namespace": values["namespace"], "labels": LABELS},
            "spec": {"selector": {"matchLabels": values["sidecar"]["selector"]},
                     "url": f"oci://{values['images']['wasm_oci']}", "sha256": values["wasm"]["sha256"],
                     "phase": phase, "priority": priority, "failStrategy": "FAIL_CLOSE",
                     "pluginName": config["root_id"], "vmConfig": {},
                     "pluginConfig": json.loads(config["configuration"]["value"]),
                     "match": [{"mode": "CLIENT", "ports": [{"number": values["store"]["port"]}]}]},
        })
    return plugins


MODES = {
    "ext-authz.yaml": ext_authz_manifests,
    "examples.yaml": examples,
    "istio-sidecar.yaml": istio_sidecar,
    "istio-gateway.yaml": istio_gateway,
    "plain.yaml": plain,
    "wasmplugin.yaml": wasmplugin,
}


class _Dumper(yaml.SafeDumper):
    """Writes shared values out in full: manifests are read by people, not by YAML tools only."""

    def ignore_aliases(self, data):
        return True


def render(values: dict) -> dict[str, str]:
    """Every manifest file's text, by file name."""
    header = "# Generated by deploy/render.py from deploy/values.example.yaml; do not edit.\n"
    return {file: header + yaml.dump_all(make(values), Dumper=_Dumper, sort_keys=False)
            for file, make in MODES.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=Path, default=ROOT / "deploy" / "values.example.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "deploy" / "manifests")
    args = parser.parse_args()
    values = yaml.safe_load(args.values.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    for file, text in render(values).items():
        (args.out / file).write_text(text)
        print(args.out / file)


if __name__ == "__main__":
    main()
