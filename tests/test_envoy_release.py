"""What the product does on an Envoy release that cannot run all of it. Every other test runs on
whichever Envoy `S3MESH_ENVOY` names (the default one otherwise); `make test-envoy-matrix` runs
the representative set on each supported release, and on a release older than
`NATIVE_MIN_ENVOY` the native shell's tests are skipped and these check the refusals instead."""

import pytest
import yaml

from conftest import ENVOY_RELEASE
from devstack.processes import Supervisor
from devstack.stack import (NATIVE_MIN_ENVOY, WASM, Stack, StackError, dotted, render_envoy,
                            start_envoy)

too_old_for_native = pytest.mark.skipif(ENVOY_RELEASE >= NATIVE_MIN_ENVOY, reason="this Envoy loads the native shell")


@pytest.mark.envoy_matrix
@too_old_for_native
def test_the_stack_refuses_the_native_shell_on_an_older_envoy_naming_the_minimum(tmp_path):
    with pytest.raises(StackError) as refused:
        Stack(tmp_path, shell="native").start()
    message = str(refused.value)
    assert f"needs Envoy {dotted(NATIVE_MIN_ENVOY)} or later" in message, message
    assert f"is Envoy {dotted(ENVOY_RELEASE)}" in message, message


@pytest.mark.envoy_matrix
@too_old_for_native
def test_an_older_envoy_refuses_the_native_module_at_start_and_does_not_crash(tmp_path):
    """As deployed, without the stack's check: Envoy refuses the configuration before it
    listens (an unknown field of the module's configuration, or a callback the module needs
    that this Envoy lacks), exiting with an error rather than a signal, never serving a chain
    without the filter."""
    config = tmp_path / "envoy.yaml"
    config.write_text(yaml.safe_dump(yaml.safe_load(render_envoy("127.0.0.1:0", WASM, ["127.0.0.1:9"], "127.0.0.1:9",
                                                                 shell="native"))))
    processes = Supervisor(tmp_path / "logs")
    try:
        with pytest.raises(StackError) as refused:
            start_envoy(processes, config, tmp_path, concurrency=1)
    finally:
        processes.stop()
    message = str(refused.value)
    assert "envoy exited with 1;" in message, f"Envoy must exit with an error, not crash:\n{message}"
    assert "DynamicModuleConfig" in message or "Failed to load dynamic module" in message, message
