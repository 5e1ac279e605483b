"""Off-rate sensors: the generator's Corona windows recorded at 76.8 kHz and 1 MHz (pulses at their true
sub-sample times, `mad.data.highrate`) replay through the agent with the shipped model and raise the same
Corona alarm as the same windows at the model's 7,680 Hz.

No PRPD frames are recorded, so the agent renders each window's PRPD from its own resampled series (the
default `pairing.missing_policy = "render"`): both of the model's inputs depend on the pulses surviving
the rate conversion. With the former `np.interp` conversion neither rate raised an alarm."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.commands import replay as replay_command
from agent.core.windowing import WINDOW_NS
from agent.inference import load_classifier
from agent.replay import replay
from agent.settings import load_settings
from mad.constants import SAMPLE_RATE_HZ
from mad.data.highrate import series_at_rate
from mad.data.recording import RecordingWriter, read_recording
from mad.data.synthetic import CORONA, generate_window_events

SHIPPED_MODEL = replay_command.REPO_MODELS_DIR / "mad_small.safetensors"
START = 88_000 * WINDOW_NS  # on a window boundary: every recorded window is complete
N_WINDOWS = 3  # the default k = 3 of n = 5 raises on the third Corona window
PRESET, SEED = "standard", 0

pytestmark = pytest.mark.skipif(not SHIPPED_MODEL.is_file(), reason=f"shipped model {SHIPPED_MODEL} absent")


def corona_recording(path: Path, rate: float) -> Path:
    """One sensor, N_WINDOWS of the generator's Corona windows back to back at `rate`, truth included."""
    with RecordingWriter(path, overwrite=True) as writer:
        writer.add_sensor("s", sample_rate_hz=rate, start_time_ns=START, power_freq_hz=60.0)
        for index in range(N_WINDOWS):
            window, events = generate_window_events(PRESET, SEED, index, label=CORONA)
            series = window.series.reshape(-1) if rate == SAMPLE_RATE_HZ else series_at_rate(window, events, rate)
            writer.append_samples("s", series)
            t0 = START + index * WINDOW_NS
            writer.add_truth("s", t0, t0 + WINDOW_NS, CORONA)
    return path


def alarms(path: Path) -> list[tuple[str, str, int]]:
    """(kind, class, window number) of every alarm event the replay raised."""
    with read_recording(path) as recording:
        outcome = replay(recording, load_settings(), load_classifier(SHIPPED_MODEL, threads=1))
    assert outcome.windows_per_sensor == {"s": N_WINDOWS} and outcome.counters["chunks_rejected"] == 0
    return [(e.kind, e.class_name, (e.window_start_ns - START) // WINDOW_NS) for e in outcome.events]


@pytest.fixture(scope="module")
def alarms_at_model_rate(tmp_path_factory) -> list[tuple[str, str, int]]:
    events = alarms(corona_recording(tmp_path_factory.mktemp("native") / "rec.h5", SAMPLE_RATE_HZ))
    assert events == [("new", "Corona", N_WINDOWS - 1)]  # the reference the off-rate sensors must match
    return events


@pytest.mark.parametrize("rate", [76_800, 1_000_000])
def test_corona_at_high_rate_raises_the_same_alarm_as_at_7680(tmp_path: Path, rate: int, alarms_at_model_rate):
    path = corona_recording(tmp_path / "rec.h5", float(rate))
    with read_recording(path) as recording:
        assert recording.sensors["s"].n_samples == N_WINDOWS * 20 * rate
    assert alarms(path) == alarms_at_model_rate
    path.unlink()  # 1 MHz: ~110 MB on disk

