"""Role `both` (pre and post in one filter instance, grant mode) in the wasm shell, which ships
two instances but runs the same logic: the round trip, pre's refusal and pre's metrics. (The
native shell runs this way in grant mode, so every native grant-mode test covers it there.)"""

import uuid

import yaml

from conftest import raw_request, s3_client
from devstack.stack import COMBINED_FILTER, Stack, combine_roles, connection_manager


def as_one_filter(config):
    hcm = connection_manager(config)
    hcm["http_filters"] = combine_roles(hcm["http_filters"])


def test_the_wasm_shell_runs_both_roles_in_one_instance(tmp_path):
    with Stack(tmp_path, shell="wasm", envoy_patch=as_one_filter) as stack:
        running = yaml.safe_load((stack.workdir / "envoy.yaml").read_text())
        names = [f["name"] for f in connection_manager(running)["http_filters"]]
        assert names[0] == COMBINED_FILTER and "s3mesh.pre" not in names
        s3 = s3_client(stack.url)
        key = f"both/{uuid.uuid4().hex[:8]} with space"
        s3.put_object(Bucket="demo", Key=key, Body=b"one instance")
        assert s3.get_object(Bucket="demo", Key=key)["Body"].read() == b"one instance"
        assert key in [o["Key"] for o in s3.list_objects_v2(Bucket="demo", Prefix="both/")["Contents"]]
        before = stack.filter_stat("s3mesh_pre_rejected_total")
        status, _, body = raw_request(stack.url, "GET", "/demo/%zz")
        assert status == 400 and b"<Code>InvalidURI</Code>" in body
        assert stack.filter_stat("s3mesh_pre_rejected_total") == before + 1
