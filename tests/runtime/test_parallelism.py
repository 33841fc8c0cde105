"""Parallelism that follows the cores: intra-op threads for a lone batch, concurrent batches
under load, chosen from measured latencies, with one copy of the weights.

The choice is a pure function tested on given latencies; the sessions are real
onnxruntime sessions (outputs equal whatever the threads, weights mapped from one file);
the resize is a real runtime in a real CPU cgroup whose quota is rewritten while it serves.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from sluice_runtime.model import OnnxModel
from sluice_runtime.parallelism import arriving_batches, choose_threads

from tests.runtime.cgroups import in_cgroup, set_cpu_limit
from tests.runtime.harness import Runtime, budget, infer, wait_until
from tests.runtime.models import slow

# Measured mean seconds by (threads, rows) of a model that gains from a second thread.
CNN_LIKE = {(1, 1): 4.8e-3, (2, 1): 3.0e-3, (1, 4): 19e-3, (2, 4): 11e-3}


def measured(table: dict[tuple[int, int], float]):
    return lambda threads, rows: table.get((threads, rows))


def test_a_lone_batch_takes_the_free_cores_when_threads_make_it_faster():
    assert choose_threads(free_cores=2, ready_batches=1, rows=1,
                          predict=measured(CNN_LIKE)) == 2


def test_a_model_that_threads_slow_down_keeps_one_thread():
    tiny = {(1, 1): 20e-6, (2, 1): 35e-6}
    assert choose_threads(free_cores=2, ready_batches=1, rows=1, predict=measured(tiny)) == 1


def test_several_ready_batches_run_side_by_side_when_that_ends_them_sooner():
    # Two batches: one thread each ends both at 4.8 ms; two threads each, one after the
    # other, at 6.0 ms.
    assert choose_threads(free_cores=2, ready_batches=2, rows=1,
                          predict=measured(CNN_LIKE)) == 1
    # A model whose second thread nearly halves the time is better run wide even then.
    scaling = {(1, 1): 4.0e-3, (2, 1): 1.9e-3}
    assert choose_threads(free_cores=2, ready_batches=2, rows=1,
                          predict=measured(scaling)) == 2


def test_never_more_threads_than_free_cores():
    assert choose_threads(free_cores=1, ready_batches=1, rows=1,
                          predict=measured(CNN_LIKE)) == 1


def test_a_thread_count_never_measured_is_tried_on_a_lone_batch_only():
    only_one = {(1, 1): 4.8e-3}
    assert choose_threads(free_cores=2, ready_batches=1, rows=1,
                          predict=measured(only_one)) == 2
    assert choose_threads(free_cores=2, ready_batches=3, rows=1,
                          predict=measured(only_one)) == 1


def test_arrivals_during_a_run_count_as_batches_that_will_want_a_core():
    # At saturation (260 images/s, a 1-thread batch of 8 takes 39 ms) another full batch
    # arrives before this one would end: the second core will be wanted, so one thread.
    assert arriving_batches(rate_per_s=260, one_thread_s=39e-3, max_rows=8) == 1
    assert choose_threads(free_cores=2, ready_batches=1 + 1, rows=8,
                          predict=measured({(1, 8): 39e-3, (2, 8): 22e-3})) == 1
    # At 100 requests/s of 5 ms each, most runs end before the next arrival: go wide.
    assert arriving_batches(rate_per_s=100, one_thread_s=4.8e-3, max_rows=8) == 0
    assert arriving_batches(rate_per_s=0, one_thread_s=None, max_rows=8) == 0


def rss_anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no RssAnon")


def test_sessions_for_every_thread_count_agree_and_map_one_copy_of_the_weights(tmp_path):
    # 64 MiB of weights: a copy per session would show in anonymous memory at once.
    path = slow(tmp_path / "wide.onnx", width=4096, layers=1)
    model = OnnxModel("wide", path, tmp_path / "cache")
    x = {"x": np.random.default_rng(0).standard_normal((4, 4096)).astype(np.float32)}
    one = model.run(x, threads=1)["y"]
    before = rss_anon_mib()
    model.ensure_threads(2)
    two = model.run(x, threads=2)["y"]
    grown_mib = rss_anon_mib() - before
    assert model.threads_available == (1, 2)
    np.testing.assert_allclose(one, two, rtol=1e-4, atol=1e-4)
    assert grown_mib < 16, f"a second session added {grown_mib:.0f} MiB of anonymous memory"
    maps = Path("/proc/self/maps").read_text()
    assert str(model.weights_file) in maps
    # A second model (another replica's view) reuses the prepared file, not a new one.
    again = OnnxModel("wide-again", path, tmp_path / "cache")
    assert again.weights_file == model.weights_file
    np.testing.assert_allclose(again.run(x, threads=1)["y"], one, rtol=1e-4, atol=1e-4)


def test_a_model_whose_weights_cannot_be_prepared_is_served_with_one_thread(tmp_path):
    path = slow(tmp_path / "small.onnx", width=16, layers=1)
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    model = OnnxModel("small", path, not_a_folder)
    model.ensure_threads(2)
    assert model.threads_available == (1,)
    assert model.weights_file is None
    x = {"x": np.ones((2, 16), np.float32)}
    assert model.run(x, threads=1)["y"].shape == (2, 16)


def test_threads_follow_an_in_place_resize_both_ways_without_failing_a_request(
        cpu_cgroup, example_models, tmp_path):
    cgroup, version = cpu_cgroup
    set_cpu_limit(cgroup, version, 1.0)
    runtime = Runtime(["--model", f"cnn={example_models / 'cnn.onnx'}",
                       "--max-batch-size", "1", "--cpu-poll-interval-s", "0.2"],
                      tmp_path, wrap=lambda command: in_cgroup(cgroup, command))
    runtime.start()
    failures: list[BaseException] = []
    answered = [0]
    stop = threading.Event()
    image = np.zeros((1, 3, 224, 224), np.float32)

    def steady_load() -> None:
        client = runtime.client()
        while not stop.is_set():
            try:
                infer(client, "cnn", {"images": image}, parameters=budget(60_000))
                answered[0] += 1
            except BaseException as exc:  # every failure is reported, whatever it is
                failures.append(exc)

    def batches(threads: int) -> float:
        return runtime.metric("sluice_batches_total", model="cnn", threads=str(threads))

    load = threading.Thread(target=steady_load)
    try:
        assert runtime.metric("sluice_executors") == 1
        load.start()
        wait_until(lambda: answered[0] > 20 or failures, what="load at one core")
        assert not failures, failures[:3]
        assert batches(2) == 0

        set_cpu_limit(cgroup, version, 2.0)
        wait_until(lambda: runtime.metric("sluice_executors") == 2, what="resize to 2")
        # A lone request at a time on the new cores: two threads are tried and measured.
        # (Whether they answer sooner depends on the machine's other load: bench/cores.py
        # measures it; a test asserting it fails on a busy CI machine.)
        wait_until(lambda: batches(2) >= 1, what="a two-thread batch")
        wait_until(lambda: "2" in runtime.admin("GET", "/v1/profile")[1]["models"]["cnn"]
                   ["threads"], what="two threads measured")

        # Many waiting: one thread each, side by side, ends them sooner.
        single_before = batches(1)
        client = runtime.client()
        bursts = [threading.Thread(target=lambda: [infer(client, "cnn", {"images": image})
                                                   for _ in range(10)]) for _ in range(6)]
        for burst in bursts:
            burst.start()
        for burst in bursts:
            burst.join()
        assert batches(1) > single_before

        set_cpu_limit(cgroup, version, 1.0)
        wait_until(lambda: runtime.metric("sluice_executors") == 1, what="resize to 1")
        wait_until(lambda: runtime.metric("sluice_executors_busy") <= 1, what="wide to end")
        wide = batches(2)
        answered_then = answered[0]
        wait_until(lambda: answered[0] > answered_then + 30, what="load at one core again")
        assert batches(2) == wide
    finally:
        stop.set()
        if load.is_alive():
            load.join()
        runtime.stop()
    assert not failures, failures[:3]



def test_threads_per_batch_can_be_capped(start_runtime, example_models):
    server = start_runtime("--model", f"cnn={example_models / 'cnn.onnx'}",
                           "--executors", "2", "--max-threads-per-batch", "1")
    image = np.zeros((1, 3, 224, 224), np.float32)
    for _ in range(5):
        infer(server.client(), "cnn", {"images": image})
    _, profile = server.admin("GET", "/v1/profile")
    assert profile["models"]["cnn"]["threads_available"] == [1]
    assert server.metric("sluice_batches_total", model="cnn", threads="1") == 5
