"""The profile format: read, written, interpolated, and re-expressed per request."""

import json

import pytest
from sluice_core.profiles import (
    FORMAT,
    LatencyPoint,
    ModelProfile,
    PipelineProfile,
    ProfileError,
    StageProfile,
    load_profile,
    parse_profile,
    point_from_samples,
    save_profile,
)


def point(cores, batch, p50, spread=1.0):
    return LatencyPoint(cores, batch, max(1, int(cores)), 50, p50 * 0.8, p50,
                        p50 * (1 + 0.5 * spread), p50 * (1 + spread), p50 * (1 + 2 * spread))


MODEL = ModelProfile("m.onnx", "ab" * 32, 0.9, 0.3, 0.1, 42.0, (
    point(0.5, 1, 4.0), point(0.5, 8, 20.0),
    point(1.0, 1, 2.0), point(1.0, 8, 10.0),
    point(2.0, 1, 1.2), point(2.0, 8, 6.0),
))
PROFILE = PipelineProfile("p", {"cores": 2}, {"s": StageProfile("s", {"default": MODEL})},
                          hop_ms={1: (5.0, 9.0), 257: (13.0, 25.0)})


@pytest.mark.parametrize(("batch", "cores", "q", "ms"), [
    (1, 1.0, 0.5, 2.0),                 # a measured point
    (8, 2.0, 0.99, 12.0),               # its p99
    (4, 1.0, 0.5, 2.0 + 3 / 7 * 8.0),   # linear in batch
    (16, 1.0, 0.5, 10.0 + 8 * 8 / 7),   # beyond the largest batch: the last slope
    (1, 0.25, 0.5, 8.0),                # below the fewest cores: in proportion
    (1, 4.0, 0.5, 1.2),                 # above the most: no faster
    (1, 1.0, 0.75, 2.0 + (0.25 / 0.45) * 1.0),  # between p50 and p95
    (1, 1.0, 1.0, 6.0),                 # the max
])
def test_latency_is_interpolated_as_documented(batch, cores, q, ms):
    assert MODEL.latency_ms(batch, cores, q) == pytest.approx(ms)


def test_between_allocations_latency_is_linear_in_the_inverse_of_the_cores():
    # 1/1.5 is 2/3 of the way from 1/1 to 1/2.
    assert MODEL.latency_ms(1, 1.5, 0.5) == pytest.approx(2.0 + (2 / 3) * (1.2 - 2.0))
    values = [MODEL.latency_ms(8, c / 4, 0.99) for c in range(2, 9)]
    assert values == sorted(values, reverse=True), "more cores never slower"


def test_a_profile_round_trips_through_its_file(tmp_path):
    path = tmp_path / "p.json"
    save_profile(PROFILE, path)
    document = json.loads(path.read_text())
    assert document["format"] == FORMAT
    again = load_profile(path)
    assert again.stage("s").variant("default").points == MODEL.points
    assert again.hop_ms == PROFILE.hop_ms
    assert again.stage("s").variant().cold_start_s == pytest.approx(0.4)


@pytest.mark.parametrize(("change", "says"), [
    (lambda d: d.update(format="sluice.profile/v0"), "not a Sluice profile"),
    (lambda d: d["stages"]["s"]["variants"]["default"].pop("points"), "malformed profile"),
    (lambda d: d["stages"]["s"]["variants"]["default"]["points"][0].update(p99_ms=0.1),
     "must not decrease"),
    (lambda d: d["stages"]["s"]["variants"]["default"]["points"][0].update(cores=0),
     "cores > 0"),
])
def test_malformed_profiles_say_what_is_wrong(change, says):
    document = PROFILE.to_json()
    change(document)
    with pytest.raises(ProfileError, match=says):
        parse_profile(document)


def test_missing_stage_and_variant_name_what_exists(tmp_path):
    with pytest.raises(ProfileError, match=r"no stage 'x'.*\['s'\]"):
        PROFILE.stage("x")
    with pytest.raises(ProfileError, match=r"no profile for variant 'small'"):
        PROFILE.stage("s").variant("small")
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "absent.json")


def test_hop_latency_between_measured_request_sizes():
    assert PROFILE.hop_latency_ms(1, 0.5) == 5.0
    assert PROFILE.hop_latency_ms(129, 0.5) == pytest.approx(9.0)
    assert PROFILE.hop_latency_ms(1, 0.99) == pytest.approx(9.0)
    assert PROFILE.hop_latency_ms(1000, 0.99) == pytest.approx(25.0)


def test_per_request_profiles_count_batches_in_requests_of_several_rows():
    per_request = PROFILE.per_request(4)
    model = per_request.stage("s").variant()
    assert model.batches_measured == (1, 2)
    for cores in (0.5, 1.0, 2.0):
        for q in (0.5, 0.99):
            assert model.latency_ms(2, cores, q) == pytest.approx(MODEL.latency_ms(8, cores, q))
            assert model.latency_ms(1, cores, q) == pytest.approx(MODEL.latency_ms(4, cores, q))
    assert per_request.hop_latency_ms(1, 0.5) == pytest.approx(PROFILE.hop_latency_ms(4, 0.5))
    assert PROFILE.per_request(1) is PROFILE


def test_a_point_from_samples_takes_nearest_rank_quantiles():
    made = point_from_samples(1.0, 4, 1, [float(v) for v in range(100, 0, -1)])
    assert (made.min_ms, made.p50_ms, made.p95_ms, made.p99_ms, made.max_ms) == (
        1.0, 51.0, 96.0, 100.0, 100.0)
    assert made.mean_ms == 50.5
    assert made.samples == 100


def test_capacity_follows_the_mean_which_throttled_batches_raise_above_the_median():
    # Under a fractional quota most batches run at full speed and a few wait out the
    # CFS period: the median barely moves, the mean doubles.
    throttled = point_from_samples(0.5, 8, 1, [0.4] * 90 + [5.0] * 10)
    model = ModelProfile("m", None, 1.0, 0.1, 0.0, 1.0, (throttled,))
    assert model.latency_ms(8, 0.5, 0.5) == pytest.approx(0.4)
    assert model.throughput_rps(8, 0.5) == pytest.approx(8 * 1000 / 0.86)


def test_files_without_a_mean_take_the_median_and_a_mean_out_of_range_is_refused():
    document = PROFILE.to_json()
    for raw in document["stages"]["s"]["variants"]["default"]["points"]:
        del raw["mean_ms"]
    old = parse_profile(document).stage("s").variant()
    assert all(p.mean_ms == p.p50_ms for p in old.points)
    document["stages"]["s"]["variants"]["default"]["points"][0]["mean_ms"] = 1e9
    with pytest.raises(ProfileError, match="mean_ms"):
        parse_profile(document)
