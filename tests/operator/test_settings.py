import os
import subprocess
import sys

import pytest
from sluice_operator.settings import OperatorSettings, SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, OperatorSettings()),
        ({"SLUICE_RUNTIME_IMAGE": "registry.example/sluice-runtime:1.2"},
         OperatorSettings(runtime_image="registry.example/sluice-runtime:1.2")),
        ({"SLUICE_NAMESPACES": " b, a ,,a"}, OperatorSettings(namespaces=("a", "b"))),
        ({"SLUICE_NAMESPACES": ""}, OperatorSettings()),
        ({"SLUICE_LOG_LEVEL": "debug"}, OperatorSettings(log_level="DEBUG")),
        ({"SLUICE_HEALTH_PORT": "0"}, OperatorSettings(health_port=0)),
        ({"SLUICE_RUNTIME_IMAGE_PULL_POLICY": "Always"},
         OperatorSettings(runtime_image_pull_policy="Always")),
        ({"SLUICE_ROUTER_CPU": "250m", "UNRELATED": "x"}, OperatorSettings(router_cpu="250m")),
    ],
)
def test_settings_from_environment(env, expected):
    assert load_settings(env) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SLUICE_HEALTH_PORT": "http"}, "SLUICE_HEALTH_PORT"),
        ({"SLUICE_HEALTH_PORT": "70000"}, "SLUICE_HEALTH_PORT"),
        ({"SLUICE_LOG_LEVEL": "LOUD"}, "SLUICE_LOG_LEVEL"),
        ({"SLUICE_RUNTIME_IMAGE_PULL_POLICY": "Sometimes"}, "SLUICE_RUNTIME_IMAGE_PULL_POLICY"),
    ],
)
def test_bad_settings_name_the_variable(env, named):
    with pytest.raises(SettingsError, match=named):
        load_settings(env)


@pytest.mark.parametrize(
    ("settings", "endpoint", "clusterwide"),
    [
        (OperatorSettings(), "http://0.0.0.0:8080/healthz", True),
        (OperatorSettings(health_host="127.0.0.1", health_port=9000, namespaces=("ml",)),
         "http://127.0.0.1:9000/healthz", False),
        (OperatorSettings(health_port=0), None, True),
    ],
)
def test_derived_settings(settings, endpoint, clusterwide):
    assert settings.liveness_endpoint == endpoint
    assert settings.clusterwide is clusterwide


def test_operator_refuses_to_start_with_bad_settings():
    env = {**os.environ, "SLUICE_HEALTH_PORT": "http"}
    result = subprocess.run([sys.executable, "-m", "sluice_operator"], env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "SLUICE_HEALTH_PORT='http': expected a TCP port number" in result.stderr
