"""The Grafana dashboard in deploy/dashboards/ queries only metrics s3mesh really exports: each
metric a query names is in Envoy's Prometheus output after some traffic, on both shells in both
modes (the queries match the wasm shell's `s3mesh_…` and the native shell's `envoy_s3mesh_…`)."""

import json
import re
from pathlib import Path

from conftest import STRANGER, TEAM_A, raw_request, s3_client

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "dashboards" / "s3mesh.json"


def queried_metrics() -> set[str]:
    """Every metric name the dashboard's queries select."""
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    names = {name for e in exprs for name in re.findall(r'__name__=~"\(envoy_\)\?(\w+)"', e)}
    assert names and all("__name__" not in re.sub(r'\{__name__=~"[^"]*"\}', "", e) for e in exprs)
    return names


def test_every_query_names_a_metric_s3mesh_exports(stack):
    s3_client(stack.url, TEAM_A).put_object(Bucket="team-a", Key="dashboard", Body=b"d")
    raw_request(stack.url, "GET", "/team-a/dashboard", TEAM_A)
    raw_request(stack.url, "GET", "/team-a/dashboard", STRANGER)
    raw_request(stack.url, "GET", "/team-a/%zz", TEAM_A)
    exported = set(re.findall(r"^(?:envoy_)?(s3mesh_\w+?)(?:\{| )", stack.prometheus(), re.M))
    missing = sorted(queried_metrics() - exported)
    assert not missing, f"the dashboard queries metrics Envoy does not export: {missing}"
