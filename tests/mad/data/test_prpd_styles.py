"""PRPD rendering families: same physics, other drawings; held-out families use values no training family draws."""

from __future__ import annotations

import numpy as np
import pytest

from mad.constants import IMAGE_SIZE
from mad.data.datasets import SyntheticDataset
from mad.data.prpd import amplitude_edges, render_prpd_from_events, render_prpd_from_matrix
from mad.data.prpd_styles import (
    FAMILIES,
    HELD_OUT_AMP_BINS,
    HELD_OUT_FAMILIES,
    HELD_OUT_LEVELS,
    HELD_OUT_MAPS,
    HELD_OUT_PHASE_BINS,
    TRAIN_AMP_BINS,
    TRAIN_FAMILIES,
    TRAIN_LEVELS,
    TRAIN_MAPS,
    TRAIN_PHASE_BINS,
    PrpdStyle,
    check_families,
    draw_style,
    event_matrix,
    render_styled,
)
from mad.data.synthetic import VOID, generate_window
from train.config import ConfigError, parse_config


def _drawn(image: np.ndarray, background: int) -> np.ndarray:
    """Pixels that differ from the background and are no grey line (sine or centre line)."""
    grey = (image[..., 0] == image[..., 1]) & (image[..., 1] == image[..., 2])
    return (image != background).any(axis=2) & ~grey


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_draws_the_same_window_only_differently(family):
    native = generate_window("standard", 3, 7, label=VOID)
    styled = generate_window("standard", 3, 7, label=VOID, prpd_family=family)
    assert styled.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and styled.image.dtype == np.uint8
    assert np.array_equal(styled.series, native.series) and styled.label == native.label
    assert styled.params.get("prpd_family", "native") == family
    again = generate_window("standard", 3, 7, label=VOID, prpd_family=family)
    assert np.array_equal(again.image, styled.image)  # a pure function of (preset, seed, index, family)
    assert (family == "native") == ("prpd_style" not in styled.params)


def test_held_out_families_never_draw_a_training_value():
    assert not set(HELD_OUT_PHASE_BINS) & set(TRAIN_PHASE_BINS)
    assert not set(HELD_OUT_AMP_BINS) & set(TRAIN_AMP_BINS)
    assert not set(HELD_OUT_LEVELS) & set(TRAIN_LEVELS)
    assert not set(HELD_OUT_MAPS) & set(TRAIN_MAPS)
    rng = np.random.default_rng(0)
    trained = {"phase_bins": set(), "amp_bins": set(), "amp_levels": set(), "colour_map": set()}
    for family in TRAIN_FAMILIES:
        for _ in range(200):
            style = draw_style(family, rng)
            for key, seen in trained.items():
                seen.add(getattr(style or PrpdStyle(), key))
    for family in HELD_OUT_FAMILIES:
        novel = 0
        for _ in range(200):
            style = draw_style(family, rng)
            novel += any(getattr(style, key) not in seen for key, seen in trained.items())
        assert novel == 200, f"{family}: {200 - novel} of 200 styles use only training values"


def test_bipolar_draws_positive_half_cycle_up_and_negative_down():
    style = PrpdStyle(bipolar=True, background="white", draw_sine=False, phase_bins=360)
    image = render_styled(np.array([45.0, 225.0]), np.array([30.0, 30.0]), 1200, 1.0, style,
                          np.random.default_rng(0))
    rows, cols = np.nonzero(_drawn(image, 255))
    up, down = rows[cols < IMAGE_SIZE // 2], rows[cols >= IMAGE_SIZE // 2]
    assert up.size and down.size
    assert up.max() < IMAGE_SIZE // 2 < down.min()
    assert abs((IMAGE_SIZE // 2 - up.mean()) - (down.mean() - IMAGE_SIZE // 2)) <= 1  # same distance out


def test_fine_bins_are_all_drawn_on_a_coarser_screen():
    """400 phase bins on 256 columns: every bin lands somewhere (none skipped by nearest sampling)."""
    phases = (np.arange(400) + 0.5) * 360 / 400
    style = PrpdStyle(phase_bins=400, amp_bins=256, draw_sine=False)
    image = render_styled(phases, np.full(400, 40.0), 1200, 1.0, style, np.random.default_rng(0))
    assert _drawn(image, 0).any(axis=0).all()


def test_log_axis_places_a_pulse_by_its_decibels():
    # full scale 1.1 x 100 (the largest pulse); a 40 dB axis; a pulse 20 dB under full scale sits mid-height
    style = PrpdStyle(amp_scale="log", log_range_db=40.0, amp_bins=256)
    counts, edges = event_matrix(np.array([90.0, 90.0]), np.array([100.0, 11.0]), 1200, 0.1, style,
                                 np.random.default_rng(0))
    assert edges[-1] == pytest.approx(110.0)
    small = np.flatnonzero(counts.sum(axis=0))[0]
    assert small == pytest.approx(128, abs=2)


def test_noise_band_fills_every_phase_at_low_amplitude_only():
    style = PrpdStyle(noise_band=5.0)
    counts, _ = event_matrix(np.zeros(0), np.zeros(0), 1200, 1.0, style, np.random.default_rng(0))
    filled = counts.sum(axis=0) > 0
    assert (counts[:, filled].sum(axis=1) > 0).mean() > 0.9  # across (nearly) all phases
    assert np.flatnonzero(filled).max() < 0.2 * counts.shape[1]  # near the threshold only


def test_matrix_redraw_keeps_totals_and_places_the_largest_pulse_near_the_top():
    counts = np.zeros((64, 64))
    counts[48, 60] = 10  # phase ~270 deg, the largest amplitude
    counts[16, 10] = 10  # phase ~90 deg, small
    image = render_prpd_from_matrix(counts, draw_sine=False)
    big = _drawn(image, 0)[:, 190:200]
    small = _drawn(image, 0)[:, 62:70]
    assert np.nonzero(big)[0].max() < np.nonzero(small)[0].min()  # the larger pulse is drawn higher
    assert np.nonzero(big)[0].min() > IMAGE_SIZE * (1 - 1 / 1.1) - 3  # 1.1 headroom above the largest
    with pytest.raises(ValueError, match="2-D"):
        render_prpd_from_matrix(np.zeros(5))
    with pytest.raises(ValueError, match="amplitude_edges"):
        render_prpd_from_matrix(counts, amplitude_edges=np.arange(10.0))


def test_matrix_redraw_at_full_resolution_matches_the_native_drawing():
    style = PrpdStyle(redraw=True, draw_sine=False)
    rng = np.random.default_rng(0)
    phases = np.random.default_rng(1).uniform(0, 360, 3000)
    amps = np.random.default_rng(2).uniform(10, 200, 3000)
    redrawn = render_styled(phases, amps, 1200, 2.0, style, rng)
    native = render_prpd_from_events(phases, amps, 1200, noise_sigma=2.0, draw_sine=False)
    # The redraw's full scale comes from the top bin's edge, not the largest pulse, so a bin straddles two
    # pixel rows: compare where the pulses are per phase column, and their mean height.
    a, b = _drawn(redrawn, 0), _drawn(native, 0)
    assert np.corrcoef(a.sum(axis=0), b.sum(axis=0))[0, 1] > 0.95
    rows = np.arange(IMAGE_SIZE)
    assert abs(rows @ a.sum(axis=1) / a.sum() - rows @ b.sum(axis=1) / b.sum()) < 2


def test_amplitude_edges_are_checked():
    assert amplitude_edges(4, 8.0).tolist() == [0, 2, 4, 6, 8]
    assert amplitude_edges(2, 100.0, "log", 1.0).tolist() == pytest.approx([1, 10, 100])
    with pytest.raises(ValueError, match="floor"):
        amplitude_edges(4, 8.0, "log")
    with pytest.raises(ValueError, match="scale"):
        amplitude_edges(4, 8.0, "dB")


def test_unknown_and_held_out_families_are_refused_for_training():
    with pytest.raises(ValueError, match="unknown PRPD rendering families"):
        check_families(["native", "sepia"])
    with pytest.raises(ConfigError, match="held-out"):
        parse_config({"data": {"spec": "synth:standard", "synth_prpd_families": ["native", "ho_binning"]}})
    with pytest.raises(ConfigError, match="synth: specs only"):
        parse_config({"data": {"spec": "x.h5", "synth_prpd_families": ["native"]}})


def test_a_dataset_mixes_families_per_index_reproducibly():
    families = ("native", "colour_map", "bipolar")
    data = SyntheticDataset("standard", 5, 30, prpd_families=families)
    again = SyntheticDataset("standard", 5, 30, prpd_families=families)
    plain = SyntheticDataset("standard", 5, 30)
    differ = sum(not np.array_equal(data[i]["image"], plain[i]["image"]) for i in range(30))
    assert all(np.array_equal(data[i]["image"], again[i]["image"]) for i in range(0, 30, 7))
    assert all(np.array_equal(data[i]["series"], plain[i]["series"]) for i in range(0, 30, 7))
    assert 10 <= differ <= 29  # about two thirds drawn by another family
