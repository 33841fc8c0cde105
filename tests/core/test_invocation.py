"""The runtime's command line, built once: what is rendered is what the runtime parses."""

import pytest
from sluice_core.invocation import InvocationError, RuntimeInvocation, parse_invocation

CASES = [
    RuntimeInvocation(),
    RuntimeInvocation(host="0.0.0.0", models=(("a", "/m/a.onnx"), ("b", "https://x/b.onnx")),
                      model_sha256=(("a", "0" * 64),), max_batch_size=16, max_delay_ms=2.5,
                      default_slo_ms=100.0),
    RuntimeInvocation(pipeline_file="/etc/sluice/pipeline.yaml",
                      remotes=(("intent", ("h1:80", "h2:80")), ("policy", ("h3:80",))),
                      executors=2, max_threads_per_batch=1, cgroup_root="/sys/fs/cgroup/x",
                      request_log="-", admin_token_file="/t", log_level="WARNING",
                      drain_timeout_s=5.0, cpu_poll_interval_s=0.25),
]


@pytest.mark.parametrize("invocation", CASES)
def test_argv_parses_back_to_the_same_invocation(invocation):
    assert parse_invocation(invocation.argv()) == invocation


def test_defaults_are_left_out_of_argv():
    assert RuntimeInvocation(port=9000).argv() == [
        "serve", "--host", "127.0.0.1", "--port", "9000", "--metrics-port", "8002"]


@pytest.mark.parametrize(("argv", "says"), [
    (["serve", "--model", "a"], "--model expects NAME=VALUE"),
    (["serve", "--model", "a=x", "--model", "a=y"], "names 'a' twice"),
    (["serve", "--pipeline", "p", "--remote", "s=h:1,h:1"], "distinct HOST:PORT"),
])
def test_malformed_pairs_say_what_to_fix(argv, says):
    with pytest.raises(InvocationError, match=says):
        parse_invocation(argv)
