"""Invalid InferencePipelines, each with what the API server says about it.

One table for both validators: the API server with the CRD's schema and CEL rules
(tests/operator/test_cp_validation.py) and the core's parser that local mode and the planner
use on files no API server has seen (tests/core/test_spec.py).
"""

import copy

from tests.operator.crd import setter


def stage(i, **fields):
    def change(m):
        m["spec"]["stages"][i].update(copy.deepcopy(fields))
    return change


def spec(**fields):
    def change(m):
        m["spec"].update(copy.deepcopy(fields))
    return change


def drop(*path):
    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


S0 = ("spec", "stages", 0)
INVALID = [
    ("no-slo", drop("spec", "slo"), "spec.slo: Required value"),
    ("latency-zero", setter("spec", "slo", "latencyMs", value=0), "spec.slo.latencyMs"),
    ("percentile-zero", setter("spec", "slo", "percentile", value=0), "spec.slo.percentile"),
    ("percentile-over-100", setter("spec", "slo", "percentile", value=101),
     "spec.slo.percentile"),
    ("unknown-composition", spec(composition="sharded"), "spec.composition: Unsupported value"),
    ("unknown-scaling-mode", spec(scaling={"mode": "diagonal"}), "spec.scaling.mode"),
    ("no-stages", spec(stages=[]), "spec.stages"),
    ("stage-name-uppercase", stage(0, name="Intent"), "spec.stages[0].name"),
    ("duplicate-stage-names", stage(1, name="intent"), "spec.stages[1]: Duplicate value"),
    ("reserved-stage-name", stage(2, name="router"), "reserved for the pipeline's own services"),
    ("no-model", drop(*S0, "model"), "spec.stages[0].model: Required value"),
    ("uri-without-scheme", stage(0, model={"uri": "models/intent.onnx"}),
     "spec.stages[0].model.uri"),
    ("pvc-without-path", stage(0, model={"uri": "pvc://claim"}),
     "spec.stages[0].model.uri: Invalid value"),
    ("file-uri-with-host", stage(0, model={"uri": "file://models/intent.onnx"}),
     "must name an absolute path"),
    ("short-sha256", stage(0, model={"uri": "file:///m.onnx", "sha256": "abc"}),
     "spec.stages[0].model.sha256"),
    ("batch-size-zero", setter(*S0, "batching", "maxBatchSize", value=0),
     "spec.stages[0].batching.maxBatchSize"),
    ("negative-delay", setter(*S0, "batching", "maxDelayMs", value=-1),
     "spec.stages[0].batching.maxDelayMs"),
    ("cpu-min-over-initial", setter(*S0, "resources", "cpu", "min", value="1500m"),
     "spec.stages[0].resources.cpu.min: Invalid value: cpu.min (1500m) must not exceed "
     "cpu.initial (1)"),
    ("cpu-initial-over-max", setter(*S0, "resources", "cpu", "initial", value="3"),
     "cpu.initial (3) must not exceed cpu.max (2)"),
    ("memory-not-a-quantity", setter(*S0, "resources", "memory", "initial", value="lots"),
     "spec.stages[0].resources.memory.initial"),
    ("memory-min-zero", setter(*S0, "resources", "memory", "min", value="0"),
     "memory.min must be greater than zero"),
    ("replicas-min-over-max", setter(*S0, "replicas", value={"min": 5, "max": 4}),
     "spec.stages[0].replicas.min: Invalid value: replicas.min must not exceed replicas.max"),
    ("replicas-max-zero", setter(*S0, "replicas", value={"min": 0, "max": 0}),
     "spec.stages[0].replicas.max"),
    ("fused-unequal-replicas", lambda m: (spec(composition="fused")(m),
                                          setter(*S0, "replicas", value={"min": 2, "max": 4})(m)),
     "composition fused runs every stage in one Knative Service"),
    ("vertical-with-replica-range", spec(scaling={"mode": "vertical"}),
     "spec.stages: Invalid value: scaling.mode vertical or none keeps the replica count fixed"),
    ("bad-pull-policy", spec(runtime={"imagePullPolicy": "Sometimes"}),
     "spec.runtime.imagePullPolicy"),
    ("name-too-long", setter("metadata", "name", value="p" * 57), "metadata.name: Too long"),
    ("stage-service-name-too-long", lambda m: (setter("metadata", "name", value="p" * 50)(m),
                                               stage(0, name="s" * 13)(m)),
     "spec.stages: Invalid value: every stage's Knative Service name"),
    ("name-not-dns-1035", setter("metadata", "name", value="9lives"),
     'metadata.name: Invalid value: "9lives"'),
    ("unknown-field", stage(0, modle={"uri": "file:///m.onnx"}),
     'unknown field "spec.stages[0].modle"'),
    ("duplicate-variants", stage(0, variants=[{"name": "a", "model": {"uri": "file:///a"}},
                                              {"name": "a", "model": {"uri": "file:///b"}}]),
     "spec.stages[0].variants[1]: Duplicate value"),
    ("variant-named-default", stage(0, variants=[{"name": "default",
                                                  "model": {"uri": "file:///a.onnx"}}]),
     "the variant name 'default' is the stage's own model"),
    ("accuracy-above-one", stage(0, accuracy=1.5), "spec.stages[0].accuracy"),
    ("min-accuracy-above-one", setter("spec", "slo", "minAccuracy", value=2),
     "spec.slo.minAccuracy"),
]
