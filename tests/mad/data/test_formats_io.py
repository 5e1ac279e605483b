"""Readers and writers: PRPD rendering, AI Hub folder (real fixture + bad files), training .h5, recordings."""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from torch.utils.data import DataLoader

from mad.data.aihub import AIHubDataset, AIHubFormatError, read_aihub_sample, scan_aihub
from mad.data.h5dataset import H5Dataset, write_training_h5
from mad.data.prpd import detect_pulses, render_prpd_from_series
from mad.data.recording import RecordingFormatError, RecordingWriter, read_recording
from mad.data.synthetic import CORONA, generate_window
from train.commands.synth import write_aihub_folder

FIXTURE = Path(__file__).resolve().parents[3] / ".." / "shared" / "fixtures" / "aihub-sample"


def test_detect_pulses_finds_placed_peaks_once():
    rng = np.random.default_rng(0)
    series = np.rint(30 + 5 * rng.standard_normal(153600)).astype(np.int16)
    where = np.arange(1000, 150000, 7919)
    series[where] += 60
    series[where + 1] += 5  # tail sample must not count twice
    index, amplitude = detect_pulses(series)
    assert set(where) <= set(index) and len(index) <= len(where) + 1
    assert np.all(amplitude[np.isin(index, where)] > 40)  # 60 counts +- the 5-count floor


def test_series_rendering_agrees_with_the_generator_image():
    w = generate_window("easy", 0, 0, label=CORONA)
    rendered = render_prpd_from_series(w.series)
    own = w.image.any(axis=2).sum(axis=0) > 0
    again = rendered.any(axis=2).sum(axis=0) > 0
    assert rendered.shape == (256, 256, 3) and (own & again).sum() > 0.8 * own.sum()


@pytest.mark.skipif(not FIXTURE.is_dir(), reason="../shared/fixtures/aihub-sample not present beside the repo")
def test_real_fixture_reads_with_a_rendered_image_and_no_leaking_fields():
    manifest = scan_aihub(FIXTURE, require_image=False)
    image, series, label, metadata = read_aihub_sample(manifest.entries[0], require_image=False)
    assert series.shape == (20, 7680) and label == 1 and metadata["image_rendered"]
    assert "discharge_information" not in metadata and "discharge_evaluation_factors" not in metadata
    assert image.shape == (256, 256, 3)
    with pytest.raises(AIHubFormatError, match="png"):
        scan_aihub(FIXTURE)


def test_synthetic_aihub_folder_round_trips(tmp_path):
    write_aihub_folder(tmp_path, "easy", 0, 5, 60.0)
    dataset = AIHubDataset(tmp_path)
    labels = sorted(int(dataset[i]["label"]) for i in range(len(dataset)))
    assert labels == [0, 1, 2, 3, 4] and not bool(dataset[0]["image_rendered"])


@pytest.mark.parametrize("problem", ["shape", "nonint", "nolabel", "nopartner", "badpng"])
def test_bad_aihub_files_are_named_or_skipped(tmp_path, problem):
    write_aihub_folder(tmp_path, "easy", 0, 2, 60.0)
    csv = sorted(tmp_path.rglob("*.csv"))[0]
    if problem == "shape":
        csv.write_text("1,2,3\n")
    elif problem == "nonint":
        csv.write_text(csv.read_text().replace(",", ",1.5,", 1))
    elif problem == "nolabel":
        json_path = next(tmp_path.rglob(csv.stem + ".json"))
        json_path.write_text(json.dumps({"label": {}}))
    elif problem == "nopartner":
        next(tmp_path.rglob(csv.stem + ".json")).unlink()
    else:
        next(tmp_path.rglob(csv.stem + ".png")).write_bytes(b"not a png")
    with pytest.raises(AIHubFormatError, match=csv.stem):
        manifest = scan_aihub(tmp_path)
        for entry in manifest.entries:
            read_aihub_sample(entry)
    if problem == "nopartner":
        assert len(scan_aihub(tmp_path, skip_bad=True).skipped) == 1


def test_training_h5_round_trips_with_workers(tmp_path):
    path = write_training_h5(tmp_path / "t.h5", "easy", 2, 50, progress=False)
    whole, train = H5Dataset(path), H5Dataset(path, split="train")
    assert len(whole) == 50 and len(train) == 40
    item = whole[3]
    assert item["series"].numpy().tobytes() == generate_window("easy", 2, 3).series.tobytes()
    assert whole.params(3)["index"] == 3
    batch = next(iter(DataLoader(train, batch_size=4, num_workers=2)))
    assert tuple(batch["image"].shape) == (4, 256, 256, 3)


def _recording(path, n_windows=2):
    with RecordingWriter(path) as writer:
        for sensor in ("a", "b"):
            writer.add_sensor(sensor, sample_rate_hz=7680, start_time_ns=0, power_freq_hz=60.0)
            for w in range(n_windows):
                window = generate_window("easy", 0, w)
                writer.append_samples(sensor, window.series)
                writer.append_prpd_frame(sensor, w * 20_000_000_000, window.image)
                writer.add_truth(sensor, w * 20_000_000_000, (w + 1) * 20_000_000_000, window.label)


def test_recording_round_trips_lazily(tmp_path):
    _recording(tmp_path / "r.h5")
    with read_recording(tmp_path / "r.h5") as rec:
        stream = rec.sensors["a"]
        chunks = list(stream.iter_chunks())
        assert len(chunks) == 2 and chunks[1][0] == 20_000_000_000
        assert chunks[0][1].tobytes() == generate_window("easy", 0, 0).series.tobytes()
        assert stream.label_at(25_000_000_000) == generate_window("easy", 0, 1).label
        assert stream.n_frames == 2 and not rec.errors


def test_broken_sensor_is_reported_and_others_stay_readable(tmp_path):
    path = tmp_path / "r.h5"
    _recording(path, 1)
    with h5py.File(path, "a") as f:
        del f["sensors/b"].attrs["sample_rate_hz"]
    with read_recording(path) as rec:
        assert "a" in rec.sensors and "sample_rate_hz" in rec.errors["b"]
    broken = tmp_path / "x.h5"
    shutil.copy(path, broken)
    with h5py.File(broken, "a") as f:
        f.attrs["format"] = "other"
    with pytest.raises(RecordingFormatError, match="format"):
        read_recording(broken)
