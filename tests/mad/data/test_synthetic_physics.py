"""Behaviour of the synthetic generator: determinism, format, physics of each class, shortcuts."""

import json

import numpy as np
import pytest

from mad.constants import IMAGE_SIZE, WINDOW_ROWS, WINDOW_SAMPLES
from mad.data.datasets import SyntheticDataset
from mad.data.prpd import detect_pulses
from mad.data.synthetic import CORONA, NOISE, NORMAL, VOID, balanced_label, generate_window, generate_window_events


def test_same_triple_same_bytes_and_other_seed_differs():
    a, b = generate_window("standard", 3, 7), generate_window("standard", 3, 7)
    assert a.series.tobytes() == b.series.tobytes() and a.image.tobytes() == b.image.tobytes()
    c = generate_window("standard", 4, 7, label=a.label)
    assert a.series.tobytes() != c.series.tobytes()


def test_window_format_and_json_params():
    w = generate_window("hard", 0, 2)
    assert w.series.shape == (WINDOW_ROWS, WINDOW_SAMPLES // WINDOW_ROWS) and w.series.dtype == np.int16
    assert w.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and w.image.dtype == np.uint8
    assert json.loads(json.dumps(w.params))["label"] == w.label


def test_labels_balanced_per_block_of_five():
    labels = [balanced_label("standard", 0, i) for i in range(50)]
    for block in range(10):
        assert sorted(labels[5 * block: 5 * block + 5]) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("bad", [dict(preset="nope"), dict(seed=-1), dict(label=7), dict(power_freq_hz=400.0)])
def test_bad_arguments_raise_naming_the_field(bad):
    kwargs = dict(preset="easy", seed=0, index=0) | bad
    with pytest.raises(ValueError, match=next(iter(bad)).split("_")[0]):
        generate_window(kwargs.pop("preset"), kwargs.pop("seed"), kwargs.pop("index"), **kwargs)


def test_corona_pulses_sit_around_the_negative_peak():
    for i in range(3):
        w, ev = generate_window_events("easy", 0, i, label=CORONA)
        if w.params["defect"]["grounded"]:
            continue
        phase = ev.true_phase_deg[ev.is_pd]
        assert np.mean((phase > 225) & (phase < 315)) > 0.85


def test_void_clusters_in_the_rising_quadrants():
    _, ev = generate_window_events("easy", 0, 1, label=VOID)
    phase = ev.true_phase_deg[ev.is_pd]
    rising = (phase >= 320) | (phase < 100) | ((phase >= 140) & (phase < 280))
    assert phase.size > 100 and np.mean(rising) > 0.9
    assert 0.35 < np.mean((phase >= 140) & (phase < 280)) < 0.65  # both half-cycles, roughly symmetric


def test_normal_has_no_discharge_and_no_pulse_above_the_floor():
    for i in range(3):
        w = generate_window("easy", 0, i, label=NORMAL)
        assert w.params["n_pd_events"] == 0
        assert detect_pulses(w.series)[0].size <= 1  # a Gaussian floor gives ~0.04 false pulses per window


def test_noise_pulses_are_not_phase_locked_when_from_a_drifting_train():
    found = 0
    for i in range(12):
        w, ev = generate_window_events("standard", 5, i, label=NOISE)
        kinds = {s["kind"] for s in w.params["interference"]}
        if kinds != {"train"}:
            continue
        hist = np.bincount((ev.true_phase_deg // 30).astype(int), minlength=12)
        assert hist.min() > 0.5 * hist.mean()  # near uniform over the cycle
        found += 1
    assert found >= 1


def test_fifty_hz_option_moves_the_pattern_with_the_supply():
    w, ev = generate_window_events("easy", 0, 0, label=CORONA, power_freq_hz=50.0)
    observed = np.mod(ev.time_s[ev.is_pd] * 50.0 * 360.0, 360.0)
    assert w.params["power_freq_hz"] == 50.0
    assert np.mean(np.abs(((observed - 270 + 180) % 360) - 180) < 60) > 0.8


def test_synthetic_dataset_items_follow_the_item_format():
    item = SyntheticDataset("easy", 0, 3)[1]
    assert item["image"].dtype.is_floating_point is False and tuple(item["image"].shape) == (256, 256, 3)
    assert tuple(item["series"].shape) == (20, 7680) and item["label"].ndim == 0


def test_preset_variant_oversamples_a_nuisance_and_keeps_everything_else():
    from mad.data.synthetic import preset_variant

    variant = preset_variant("standard", {"multi_source_prob": 0.5})
    plain = [generate_window("standard", 4, i) for i in range(40)]
    more = [generate_window(variant, 4, i) for i in range(40)]
    assert [w.label for w in plain] == [w.label for w in more]  # same seeds, same labels
    assert sum(w.params["multi_source"] for w in more) > sum(w.params["multi_source"] for w in plain)
    for a, b in zip(plain, more, strict=True):
        if not a.params["multi_source"] and not b.params["multi_source"]:
            np.testing.assert_array_equal(a.series, b.series)  # only the windows whose draw changed differ
    assert more[0].params["preset"] == "standard"
    dataset = SyntheticDataset(variant, 4, 3)
    np.testing.assert_array_equal(dataset[2]["series"].numpy(), more[2].series)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"gain": 0.5}, "'gain': not one of"),
    ({"multi_source_prob": 1.5}, "multi_source_prob=1.5: must be a probability"),
    ({"glitch_prob": True}, "glitch_prob=True"),
])
def test_preset_variant_names_the_bad_override(overrides, message):
    from mad.data.synthetic import preset_variant

    with pytest.raises(ValueError, match=message):
        preset_variant("standard", overrides)
