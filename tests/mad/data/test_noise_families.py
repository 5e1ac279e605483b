"""Named noise and nuisance families: the default windows stay byte-identical, each family shows its
documented signature, and data sets, configs and streams select families by name."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mad.constants import SAMPLE_RATE_HZ, WINDOW_SAMPLES
from mad.data.datasets import SyntheticDataset
from mad.data.synthetic import (
    CHANNEL_FAMILIES,
    DEFAULT_NOISE_FAMILIES,
    NOISE,
    NOISE_FAMILIES,
    NORMAL,
    SOURCE_FAMILIES,
    VOID,
    check_noise_families,
    generate_stream_segment,
    generate_window,
    generate_window_events,
    resolve_noise_families,
)
from train.config import ConfigError, parse_config

DOCS = Path(__file__).resolve().parents[3] / "docs" / "data.md"


def _digest(window) -> str:
    h = hashlib.sha256()
    h.update(window.series.tobytes())
    h.update(window.image.tobytes())
    return h.hexdigest()[:16]


# Computed with the generator BEFORE the noise families existed (generator version 2): the shipped model's
# evaluation sets and every default data set depend on these bytes.
BEFORE = {
    ("easy", 0): "25b32e0698d9bb51", ("easy", 4): "f550aac3e842e96b",
    ("standard", 0): "71566e1bd5345d34", ("standard", 1): "9878711fa1bec7ee", ("standard", 2): "09b9af2a2595d6d8",
    ("standard", 3): "755f4dbda6598817", ("standard", 4): "783f3b7b60c7f7d7", ("standard", 9): "138d30ad9723d84f",
    ("hard", 1): "d253da69106dd7e1", ("hard", 6): "fa79a437b1a687ab",
}
BEFORE_STREAM = {  # (preset, seed, sensor, window, label, intensity)
    ("standard", 0, 1, 0, 1, 0.7): "d6d6731ad1c771ef", ("standard", 0, 1, 1, 1, 0.7): "4d61ebfea65968e8",
    ("standard", 0, 1, 1, 4, 0.7): "2cb8a217e5619d3c", ("hard", 2, 3, 5, 1, 0.5): "b1b01b80f5fae77b",
}
BEFORE_MANY = {("standard", 200): "88d943697532951d", ("hard", 150): "0aa4c41224f1ec7b"}  # seed 11, 0..n-1


def test_default_windows_are_byte_identical_to_before_the_families():
    for (preset, index), digest in BEFORE.items():
        assert _digest(generate_window(preset, 3, index)) == digest, (preset, index)
        assert _digest(generate_window(preset, 3, index, noise_families=())) == digest
    assert _digest(generate_window("standard", 0, 1, prpd_family="binning")) == "640ecf0cdae6fe47"
    for key, digest in BEFORE_STREAM.items():
        assert _digest(generate_stream_segment(*key)) == digest, key


def test_many_default_windows_are_byte_identical_to_before_the_families():
    """Hundreds of windows, so every legacy branch (weak, strong, two sources, converter, glitches) is covered."""
    for (preset, n), digest in BEFORE_MANY.items():
        h = hashlib.sha256()
        for i in range(n):
            w = generate_window(preset, 11, i)
            h.update(w.series.tobytes())
            h.update(w.image.tobytes())
        assert h.hexdigest()[:16] == digest, preset


def test_registry_names_roles_sources_and_the_default_mixture():
    assert DEFAULT_NOISE_FAMILIES == ("train", "random", "converter")
    assert set(SOURCE_FAMILIES) | set(CHANNEL_FAMILIES) == set(NOISE_FAMILIES)
    for name in ("burst", "thyristor", "carrier", "mains_hum", "neighbour_corona", "quantised_floor", "ringing",
                 "gain_drift"):
        assert name in NOISE_FAMILIES and not NOISE_FAMILIES[name].default
    text = DOCS.read_text(encoding="utf-8")
    for name, family in NOISE_FAMILIES.items():
        assert family.physical_source and family.series and family.prpd
        assert f"`{name}`" in text, f"docs/data.md does not document the noise family {name}"


def _noise(family: str, index: int, preset: str = "easy", **kw):
    return generate_window_events(preset, 7, index, label=NOISE, noise_families=(family,), **kw)


def test_a_noise_window_takes_its_sources_from_its_family():
    for family in SOURCE_FAMILIES:
        for i in range(3):
            w, _ = _noise(family, i)
            assert w.params["noise_family"] == family and w.label == NOISE
            assert {s["kind"] for s in w.params["interference"]} == {family}
            assert all(s["scaled_by_gain"] for s in w.params["interference"])  # strong
    for family in CHANNEL_FAMILIES:
        w, _ = _noise(family, 0)
        assert w.params["noise_channel"]["kind"] == family
        assert {s["kind"] for s in w.params["interference"]} <= set(DEFAULT_NOISE_FAMILIES)
        assert json.loads(json.dumps(w.params))["noise_family"] == family  # params stay plain JSON


def test_a_family_window_keeps_the_default_windows_sensor_label_and_defect():
    for i in range(10):
        plain = generate_window("standard", 2, i)
        other = generate_window("standard", 2, i, noise_families=("thyristor",))
        assert other.label == plain.label and other.params["sensor"] == plain.params["sensor"]
        assert other.params["defect"] == plain.params["defect"]
        assert bool(other.params["interference"]) == bool(plain.params["interference"])
        if plain.params["interference"]:
            assert {s["kind"] for s in other.params["interference"]} == {"thyristor"}


def test_a_channel_window_is_the_default_window_with_the_channel_changed():
    plain = generate_window("easy", 1, 3, label=NOISE)
    drift = generate_window("easy", 1, 3, label=NOISE, noise_families=("gain_drift",))
    assert drift.params["interference"] == plain.params["interference"]  # the default sources
    assert drift.params["noise_channel"]["kind"] == "gain_drift"
    assert not np.array_equal(drift.series, plain.series)


def _circular_r(phase_deg: np.ndarray, harmonic: int = 1) -> float:
    return float(np.abs(np.mean(np.exp(1j * harmonic * np.deg2rad(phase_deg)))))


def test_converter_pulses_sit_at_fixed_phases():
    for i in range(6):
        w, ev = _noise("converter", i)
        if len(w.params["interference"]) > 1:
            continue
        src = w.params["interference"][0]
        phase = ev.true_phase_deg[~ev.is_pd] - src["phase_deg"]
        assert phase.size > 500 and _circular_r(phase, src["lines_per_cycle"]) > 0.9  # lines 360/lines apart
        return
    pytest.fail("no single-source converter window in 6")


def test_thyristor_fires_twice_per_cycle_180_deg_apart():
    for i in range(4):
        w, ev = _noise("thyristor", i)
        if len(w.params["interference"]) > 1:
            continue
        src = w.params["interference"][0]
        phase = ev.true_phase_deg[~ev.is_pd]
        assert phase.size > 1000
        assert _circular_r(phase, 2) > 0.9  # two lines, half a cycle apart
        centre = np.rad2deg(np.angle(np.mean(np.exp(2j * np.deg2rad(phase))))) / 2
        expected = src["reference_deg"] + src["firing_deg"]
        assert abs(((centre - expected + 90) % 180) - 90) < 5
        return
    pytest.fail("no single-source thyristor window in 4")


def test_neighbour_corona_is_a_corona_band_shifted_by_120_deg():
    w, ev = _noise("neighbour_corona", 1)
    src = w.params["interference"][0]
    assert abs(abs(src["centre_deg"] - 270) - 120) <= 15  # 255-285 shifted by +-120
    phase = ev.true_phase_deg[~ev.is_pd]
    mean = np.rad2deg(np.angle(np.mean(np.exp(1j * np.deg2rad(phase))))) % 360
    if len(w.params["interference"]) == 1:
        assert abs(((mean - src["centre_deg"]) + 180) % 360 - 180) < 10
    assert w.label == NOISE  # a healthy asset: the discharge is on another phase


def test_burst_pulses_come_in_clusters():
    _, ev = _noise("burst", 2)
    times = np.sort(ev.time_s[~ev.is_pd])
    counts = np.bincount((times / 0.05).astype(int), minlength=400)
    assert counts.std() > 2 * np.sqrt(max(counts.mean(), 1e-9))  # far burstier than Poisson


def test_carrier_is_a_spectral_peak_at_its_frequency():
    for i in range(3):
        w, _ = _noise("carrier", i)
        carriers = [s for s in w.params["interference"] if s["kind"] == "carrier"]
        if len(w.params["interference"]) > 1:
            continue
        x = w.series.reshape(-1).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(x - x.mean()))
        freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE_HZ)
        assert abs(freqs[spectrum.argmax()] - carriers[0]["freq_hz"]) < 1.0
        return
    pytest.fail("no single-carrier window in 3")


def test_mains_hum_is_locked_to_the_supply():
    w, ev = _noise("mains_hum", 0)
    sensor = w.params["sensor"]
    x = w.series.reshape(-1).astype(np.float64) - sensor["baseline"]
    phase = np.mod(sensor["phase_offset_deg"] + 360.0 * 60.0 * np.arange(x.size) / SAMPLE_RATE_HZ, 360.0)
    bins = (phase // 10).astype(int)
    profile = np.bincount(bins, x, 36) / np.bincount(bins, None, 36)
    assert profile.max() - profile.min() > 4 * sensor["noise_sigma"]  # the floor rises and falls with the supply
    crossings = ev.true_phase_deg[~ev.is_pd]
    assert crossings.size > 50 and _circular_r(crossings) > 0.3  # crossings bunch at the crests


def test_ringing_follows_every_pulse_with_a_damped_oscillation():
    plain, _ = generate_window_events("easy", 4, 0, label=NOISE)
    ringing, ev = generate_window_events("easy", 4, 0, label=NOISE, noise_families=("ringing",))
    channel = ringing.params["noise_channel"]
    diff = ringing.series.reshape(-1).astype(np.float64) - plain.series.reshape(-1)  # same floor, same events
    index = np.sort((ev.time_s[ev.magnitude > 20 * plain.params["sensor"]["noise_sigma"]] * SAMPLE_RATE_HZ)
                    .astype(int))
    isolated = index[(np.diff(index, prepend=-100) > 12) & (np.diff(index, append=10**9) > 12)]
    isolated = isolated[isolated < WINDOW_SAMPLES - 10]
    assert isolated.size > 10
    ratio = diff[isolated[:, None] + np.arange(1, 7)] / plain.series.reshape(-1)[isolated, None].astype(float)
    k = np.arange(1, 7)
    kernel = channel["first_lobe"] * channel["decay"] ** (k - 1) * np.cos(2 * np.pi * (k - 1)
                                                                         / channel["period_samples"] + np.pi)
    assert np.mean(ratio[:, 0] < 0) > 0.9  # the first sample after a pulse undershoots
    assert np.corrcoef(np.median(ratio, axis=0), kernel)[0, 1] > 0.9


def test_quantised_floor_is_integer_steps_with_a_small_sigma_on_a_baseline():
    steps = set()
    for i in range(8):
        w = generate_window("standard", 9, i, label=NORMAL, noise_families=("quantised_floor",))
        channel, sensor = w.params["noise_channel"], w.params["sensor"]
        x = w.series.reshape(-1).astype(np.int64)
        step = channel["step"]
        steps.add(step)
        assert np.all(x % step == 0) and sensor["noise_sigma"] == channel["noise_sigma"] <= 2.0
        floor = x[x > 12]  # leave out ADC dropouts
        assert abs(np.median(floor) - sensor["baseline"]) <= step
        expected = np.hypot(channel["noise_sigma"], step / np.sqrt(12))
        assert 0.5 * expected < floor.std() < 2.0 * expected + 0.5
        assert 10 <= sensor["baseline"] <= 60  # tens of counts, from the preset
    assert len(steps) >= 2


def test_gain_drift_scales_the_floor_over_the_window():
    checked = 0
    for i in range(8):
        w = generate_window("easy", 5, i, label=NORMAL, noise_families=("gain_drift",))
        channel = w.params["noise_channel"]
        t = np.arange(WINDOW_SAMPLES) / SAMPLE_RATE_HZ
        gain = np.exp(channel["depth"] * np.sin(2 * np.pi * t / channel["period_s"] + channel["phase_rad"]))
        row_gain = gain.reshape(20, -1).mean(axis=1)
        if row_gain.max() / row_gain.min() < 1.4:  # a slow drift may barely move within one window
            continue
        x = w.series.astype(np.float64)
        row_spread = np.percentile(x, 84, axis=1) - np.percentile(x, 16, axis=1)
        assert np.corrcoef(row_spread, row_gain)[0, 1] > 0.8
        checked += 1
    assert checked >= 2


def test_weak_family_sources_stay_mostly_under_the_threshold():
    for family in ("carrier", "mains_hum", "neighbour_corona", "burst", "thyristor"):
        visible = [generate_window("standard", 8, i, label=NORMAL, noise_families=(family,)).params["n_visible_events"]
                   for i in range(10)]
        assert np.median(visible) < 30, (family, visible)


def test_selection_include_exclude_and_bad_names():
    assert resolve_noise_families([]) == ()
    assert resolve_noise_families(["default"]) == DEFAULT_NOISE_FAMILIES
    held = resolve_noise_families(["all", "-carrier", "-mains_hum"])
    assert "carrier" not in held and "mains_hum" not in held and len(held) == len(NOISE_FAMILIES) - 2
    assert resolve_noise_families(["train", "train", "ringing"]) == ("train", "train", "ringing")
    new = resolve_noise_families(["all", "-default"])
    assert set(new) == set(NOISE_FAMILIES) - set(DEFAULT_NOISE_FAMILIES)
    for bad in (["trian"], ["all", "-trian"], ["ringing", "-ringing"]):
        with pytest.raises(ValueError, match=r"trian|select no family"):
            resolve_noise_families(bad)
    with pytest.raises(ValueError, match="'lightning'"):
        check_noise_families(["train", "lightning"])
    with pytest.raises(ValueError, match="'lightning'"):
        generate_window("easy", 0, 0, noise_families=("lightning",))
    with pytest.raises(ValueError, match="string"):
        resolve_noise_families("train")


def test_a_dataset_mixes_noise_families_per_index_reproducibly():
    families = ("carrier", "ringing")
    data = SyntheticDataset("standard", 5, 20, noise_families=families)
    plain = SyntheticDataset("standard", 5, 20)
    assert [int(data[i]["label"]) for i in range(20)] == [int(plain[i]["label"]) for i in range(20)]
    picked = [generate_window("standard", 5, i, noise_families=families).params["noise_family"] for i in range(20)]
    assert set(picked) == set(families)
    assert np.array_equal(data[3]["series"], SyntheticDataset("standard", 5, 20, noise_families=families)[3]["series"])
    with pytest.raises(ValueError, match="'hum'"):
        SyntheticDataset("standard", 5, 20, noise_families=("hum",))


def test_training_config_takes_and_checks_noise_families():
    from train.data_spec import DataSpecError, open_datasets

    config = parse_config({"data": {"spec": "synth:easy", "synth_train": 20, "synth_test": 10,
                                    "synth_noise_families": ["all", "-carrier"]}})
    assert config.data.synth_noise_families == ("all", "-carrier")
    splits = open_datasets("synth:easy", config.data)
    assert "carrier" not in splits.train.dataset.noise_families and splits.test.noise_families == ()
    assert any("noise families" in note for note in splits.notes)
    with pytest.raises(ConfigError, match=r"synth_noise_families.*'carrierr'"):
        parse_config({"data": {"spec": "synth:easy", "synth_noise_families": ["carrierr"]}})
    with pytest.raises(ConfigError, match="synth: specs only"):
        parse_config({"data": {"spec": "x.h5", "synth_noise_families": ["carrier"]}})
    with pytest.raises(DataSpecError, match="synth: specs only"):
        open_datasets("x.h5", config.data)


def test_stream_sensors_carry_their_family_and_run_on_across_windows():
    families = ("carrier", "gain_drift", "thyristor")
    for s in range(3):
        w = generate_stream_segment("standard", 0, s, 2, NOISE, 0.7, noise_families=families)
        assert w.params["noise_family"] == families[s]
    a = generate_stream_segment("standard", 0, 0, 4, NOISE, 0.7, noise_families=("carrier",))
    b = generate_stream_segment("standard", 0, 0, 5, NOISE, 0.7, noise_families=("carrier",))
    assert a.params["interference"] == b.params["interference"]  # drawn once per sensor
    void = generate_stream_segment("standard", 0, 0, 5, VOID, 0.7, noise_families=("carrier",))
    assert all(s["kind"] == "carrier" and not s["scaled_by_gain"] for s in void.params["interference"])


def test_synth_recording_writes_a_noise_only_recording_of_chosen_families(tmp_path, capsys):
    from mad.data.recording import read_recording
    from train.cli import main

    path = tmp_path / "rec.h5"
    assert main(["synth-recording", "--out", str(path), "--sensors", "2", "--minutes", "0.7", "--all-noise",
                 "--noise-families", "carrier,thyristor", "--start-time-ns", "0"]) == 0
    assert "sensor-1 thyristor" in capsys.readouterr().out
    with read_recording(path) as recording:
        for sensor in recording.sensors.values():
            assert sensor.n_frames == 2 and sensor.label_at(10 * 10**9) == NOISE
    with pytest.raises(SystemExit, match="'hum'"):
        main(["synth-recording", "--out", str(tmp_path / "x.h5"), "--noise-families", "hum"])
