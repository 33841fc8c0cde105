"""The admin API takes a bearer token; /metrics stays open; off-loopback it needs one."""

from __future__ import annotations

import urllib.request

import pytest

from tests.runtime.test_startup import serve

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "admin-token"
    path.write_text(TOKEN + "\n")  # as a Secret mounts it: trailing newline and all
    return path


@pytest.fixture
def guarded(start_runtime, example_models, token_file):
    return start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}",
                         "--admin-token-file", token_file)


def metrics_status(runtime) -> int:
    url = f"http://127.0.0.1:{runtime.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status


def test_changes_need_the_token_and_wrong_ones_change_nothing(guarded):
    before = guarded.admin("GET", "/v1/batching", token=TOKEN)
    assert before[0] == 200
    status, body = guarded.admin("PUT", "/v1/batching/mlp", {"max_batch_size": 3})
    assert status == 401
    assert "bearer token" in body["error"]
    assert guarded.last_headers["WWW-Authenticate"].startswith("Bearer")
    status, body = guarded.admin("PUT", "/v1/batching/mlp", {"max_batch_size": 3},
                                 token="not-" + TOKEN)
    assert status == 403
    assert "token" in body["error"]
    assert guarded.admin("GET", "/v1/batching", token=TOKEN) == before
    assert guarded.admin("PUT", "/v1/batching/mlp", {"max_batch_size": 3}, token=TOKEN)[0] == 200
    assert guarded.admin("GET", "/v1/batching", token=TOKEN)[1]["mlp"]["max_batch_size"] == 3


def test_reading_the_configuration_needs_the_token_but_metrics_do_not(guarded):
    assert guarded.admin("GET", "/v1/batching")[0] == 401
    assert metrics_status(guarded) == 200


def test_a_rotated_token_takes_effect_without_a_restart(guarded, token_file):
    token_file.write_text("rotated\n")
    assert guarded.admin("GET", "/v1/batching", token=TOKEN)[0] == 403
    assert guarded.admin("GET", "/v1/batching", token="rotated")[0] == 200


def test_off_loopback_without_a_token_the_admin_api_is_off(start_runtime, example_models):
    runtime = start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}",
                            "--host", "0.0.0.0")
    status, body = runtime.admin("PUT", "/v1/batching/mlp", {"max_batch_size": 3})
    assert status == 403
    assert "--admin-token-file" in body["error"]
    assert runtime.admin("GET", "/v1/batching")[0] == 403
    assert metrics_status(runtime) == 200
    assert "admin API is off" in runtime.log_path.read_text()


def test_on_loopback_without_a_token_the_admin_api_stays_open(start_runtime, example_models):
    runtime = start_runtime("--model", f"mlp={example_models / 'mlp.onnx'}")
    assert runtime.admin("GET", "/v1/batching")[0] == 200


@pytest.mark.parametrize(("content", "mentions"), [(None, "cannot read"), ("  \n", "empty")])
def test_an_unusable_token_file_is_a_startup_error(tmp_path, example_models, content, mentions):
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    done = serve("--port", "0", "--model", f"mlp={example_models / 'mlp.onnx'}",
                 "--admin-token-file", path)
    assert done.returncode == 2, done.stderr
    assert mentions in done.stderr.strip().splitlines()[-1]


def test_the_token_is_not_exposed_in_errors(guarded):
    _, body = guarded.admin("PUT", "/v1/batching/mlp", {"max_batch_size": 3}, token="x")
    assert TOKEN not in str(body)
    assert TOKEN not in guarded.log_path.read_text()
