"""`mad-train classify-prpd`: end to end on generated exports, and the reader's layout handling and refusals."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mad.constants import CLASS_NAMES, IMAGE_SIZE
from mad.data.prpd import amplitude_edges, render_prpd_from_matrix
from mad.data.synthetic import generate_window
from train.cli import main
from train.prpd_exports import (
    MAX_FILE_BYTES,
    MAX_IMAGE_PIXELS,
    CsvLayout,
    ExportError,
    collect_files,
    read_export,
)

DEFAULTS = CsvLayout()


def _write_csv(path: Path, matrix: np.ndarray, header: dict[str, object] | None = None) -> Path:
    lines = [f"# {key}: {value}" for key, value in (header or {}).items()]
    lines += [",".join(f"{v:g}" for v in row) for row in matrix]
    path.write_text("\n".join(lines) + "\n")
    return path


def _counts(n_phase: int = 64, n_amp: int = 32, seed: int = 0) -> np.ndarray:
    """A sparse count matrix with its mass off-centre, so a transposed or flipped read draws a different image."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(0.3, (n_phase, n_amp)).astype(float)
    counts[: n_phase // 4, : n_amp // 3] += rng.poisson(5.0, (n_phase // 4, n_amp // 3))
    return counts


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width x height RGB, then IEND: what a decompression bomb's header says."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


# ------------------------------------------------------------------ end to end


def test_cli_classifies_a_generated_folder_and_lists_the_broken_files(tmp_path, capsys):
    folder, out = tmp_path / "exports", tmp_path / "out"
    code = main(["classify-prpd", str(folder), "--make-examples", "5", "--out", str(out), "--batch-size", "3"])
    printed = capsys.readouterr().out
    assert code == 1  # two example files are broken on purpose: listed, not fatal
    files, _ = collect_files([folder])
    assert len(files) == 8  # 5 CSV matrices, one PNG, two broken files
    with open(out / "verdicts.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["file"] for row in rows] == [path.name for path in files]
    by_name = {row["file"]: row for row in rows}
    assert "line 5, column 6='nan'" in by_name["broken_cell.csv"]["error"]
    assert "not a PNG or JPEG" in by_name["not_an_image.png"]["error"]
    assert not by_name["broken_cell.csv"]["verdict"]
    good = [row for row in rows if not row["error"]]
    assert len(good) == 6
    for row in good:
        probs = np.array([float(row[f"p_{name}"]) for name in CLASS_NAMES])
        assert row["verdict"] in CLASS_NAMES
        assert abs(probs.sum() - 1.0) < 1e-3
        assert float(row["confidence"]) == pytest.approx(probs.max(), abs=1e-4)
        assert row["verdict"] == CLASS_NAMES[int(probs.argmax())]
    # Every CSV with a header carries its truth (the fifth example has none: it is read with the defaults).
    truths = [row["truth"] for row in good if row["kind"] == "csv"]
    assert sum(bool(t) for t in truths) == 4 and all(t in CLASS_NAMES for t in truths if t)
    assert by_name["screenshot_void.png"]["kind"] == "png" and by_name["screenshot_void.png"]["shape"] == "512x512 px"
    assert "8 files (6 csv, 2 png)" in printed and "refused: 2 files" in printed and "accuracy: " in printed
    markdown = (out / "verdicts.md").read_text()
    assert sum(line.startswith("| ") for line in markdown.splitlines()) == 2 + len(files)  # head, rule, 1 per file
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.width >= 3 * IMAGE_SIZE and sheet.height >= 3 * IMAGE_SIZE  # 8 tiles: a 3 x 3 grid


def test_cli_refuses_usage_errors_before_any_work(tmp_path, capsys):
    assert main(["classify-prpd", str(tmp_path / "missing")]) == 2
    assert "no such file or folder" in capsys.readouterr().out
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.csv").write_text("1\n")
    assert main(["classify-prpd", str(tmp_path / "full"), "--make-examples", "2"]) == 2
    assert "new or empty folder" in capsys.readouterr().out
    assert main(["classify-prpd", str(tmp_path / "full"), "--cycles", "-3"]) == 2
    assert "--cycles -3.0" in capsys.readouterr().out
    assert not (tmp_path / "full" / "classified").exists()


def test_collect_files_skips_other_suffixes_and_the_output_folder(tmp_path):
    (tmp_path / "a.csv").write_text("0\n")
    (tmp_path / "notes.txt").write_text("x\n")
    (tmp_path / "classified").mkdir()
    (tmp_path / "classified" / "contact_sheet.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.PNG").write_bytes(b"")
    files, skipped = collect_files([tmp_path], recursive=True, exclude=tmp_path / "classified")
    assert files == [tmp_path / "a.csv", tmp_path / "sub" / "b.PNG"]
    assert skipped == [tmp_path / "notes.txt"]
    assert collect_files([tmp_path])[0] == [tmp_path / "a.csv"]  # not recursive: sub-folders stay out


# ------------------------------------------------------------------ CSV layout


def test_orientation_and_amplitude_order_are_honoured(tmp_path):
    counts = _counts()
    header = {"amplitude_scale": "log", "full_scale": 100, "floor": 1, "cycles": 600}
    expected = render_prpd_from_matrix(counts, 600, amplitude_edges=amplitude_edges(32, 100, "log", 1))
    variants = {
        "phase_rows.csv": (counts, {"orientation": "phase-rows"}),
        "amplitude_rows.csv": (counts.T, {"orientation": "amplitude-rows"}),
        "descending.csv": (counts[:, ::-1], {"amplitude_order": "descending"}),
        "both.csv": (counts[:, ::-1].T, {"orientation": "Amplitude-Rows", "amplitude-order": "descending"}),
    }
    for name, (matrix, extra) in variants.items():
        export = read_export(_write_csv(tmp_path / name, matrix, {**header, **extra}), DEFAULTS)
        assert np.array_equal(export.image, expected), name
        assert export.shape == "64x32 (phase x amplitude)"
    # Read with the wrong orientation, the same file draws something else: the header is what made it right.
    wrong = read_export(_write_csv(tmp_path / "wrong.csv", counts.T, header), DEFAULTS)
    assert not np.array_equal(wrong.image, expected)


def test_command_options_apply_where_the_header_is_silent(tmp_path):
    counts = _counts(40, 20)
    path = _write_csv(tmp_path / "bare.csv", counts.T)
    layout = CsvLayout(orientation="amplitude-rows", amplitude_scale="log", full_scale=10.0, floor=0.01, cycles=300)
    expected = render_prpd_from_matrix(counts, 300, amplitude_edges=amplitude_edges(20, 10.0, "log", 0.01))
    assert np.array_equal(read_export(path, layout).image, expected)
    # A header value wins over the option; "dB" names the log scale as instruments do.
    _write_csv(path, counts.T, {"orientation": "amplitude-rows", "amplitude_scale": "dB", "floor": 0.1})
    expected = render_prpd_from_matrix(counts, 300, amplitude_edges=amplitude_edges(20, 10.0, "log", 0.1))
    assert np.array_equal(read_export(path, layout).image, expected)


def test_header_comments_delimiters_bom_and_label(tmp_path):
    counts = _counts(16, 8)
    body = "\n".join(";".join(f"{v:g}" for v in row) for row in counts)
    text = "\ufeff# exported by some instrument\n# label: void\n\n" + body + "\n\n"
    path = tmp_path / "semicolons.csv"
    path.write_text(text, encoding="utf-8")
    export = read_export(path, DEFAULTS)
    assert export.truth == "Void" and export.kind == "csv"
    expected = render_prpd_from_matrix(counts, DEFAULTS.cycles, amplitude_edges=amplitude_edges(8, 1.0))
    assert np.array_equal(export.image, expected)


@pytest.mark.parametrize(("lines", "field", "value"), [
    (["1,2,3"] * 7 + ["1,nan,3"], "line 8, column 2", "nan"),
    (["1,2,3"] * 8 + ["0,-1,0"], "line 9, column 2", "-1"),
    (["1,2,3"] * 8 + ["0,x,0"], "line 9, column 2", "x"),
    (["1,2,3"] * 8 + ["0,,0"], "line 9, column 2", ""),
    (["1,2,3"] * 8 + ["1,2"], "line 9", "2 cells"),
    (["1,2,3"] * 8, "n_amp", 3),
    (["1,2,3,4,5,6,7,8"] * 4, "n_phase", 4),
    ([",".join(["0"] * 1025)] * 8, "n_amp", 1025),
    (["0"] * 1025, "rows", 1025),
    ([], "rows", 0),
    (["# orientaton: phase-rows"] + ["1"] * 8, "header line 1", "orientaton"),
    (["# orientation: sideways"] + ["1"] * 8, "orientation", "sideways"),
    (["# cycles: many"] + ["1"] * 8, "cycles", "many"),
    (["# cycles: 0"] + ["1"] * 8, "cycles", 0.0),
    (["# full_scale: inf"] + ["1"] * 8, "full_scale", float("inf")),
    (["# label: arcing"] + [",".join(["1"] * 8)] * 8, "label", "arcing"),
    (["# amplitude_scale: log"] + [",".join(["1"] * 8)] * 8, "floor", None),
    (["# full_scale: 5", "# floor: 5"] + [",".join(["1"] * 8)] * 8, "floor", 5.0),
    (["# cycles: 1", "# cycles: 2"] + ["1"] * 8, "cycles", "2"),
])
def test_bad_csv_names_the_field_and_the_value(tmp_path, lines, field, value):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportError) as caught:
        read_export(path, DEFAULTS)
    assert (caught.value.field, caught.value.value) == (field, value)
    assert str(caught.value).startswith(f"{path}: {field}=")


def test_oversized_and_non_utf8_files_are_refused_before_parsing(tmp_path):
    big = tmp_path / "big.csv"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: no 16 MiB written
    with pytest.raises(ExportError) as caught:
        read_export(big, DEFAULTS)
    assert (caught.value.field, caught.value.value) == ("file_size", MAX_FILE_BYTES + 1)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"# label: caf\xe9\n1\n")
    with pytest.raises(ExportError, match="not UTF-8"):
        read_export(latin, DEFAULTS)


# ------------------------------------------------------------------ images


def test_screenshots_are_resized_by_area_and_fed_as_they_are(tmp_path):
    image = generate_window("standard", 0, 0, label=4).image
    Image.fromarray(image).save(tmp_path / "native.png")
    assert np.array_equal(read_export(tmp_path / "native.png", DEFAULTS).image, image)
    # A 2x screen grab (each pixel a 2 x 2 block): area averaging gives the original back exactly.
    Image.fromarray(image).resize((512, 512), Image.Resampling.NEAREST).save(tmp_path / "grab.jpg", quality=100)
    Image.fromarray(image).resize((512, 512), Image.Resampling.NEAREST).save(tmp_path / "grab.png")
    grab = read_export(tmp_path / "grab.png", DEFAULTS)
    assert np.array_equal(grab.image, image) and grab.shape == "512x512 px"
    jpeg = read_export(tmp_path / "grab.jpg", DEFAULTS)
    assert jpeg.kind == "jpeg" and jpeg.image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    # Transparent pixels become the PRPD background (black), whatever colour hides under them.
    rgba = np.zeros((100, 300, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, :150, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    wide = read_export(tmp_path / "alpha.png", DEFAULTS).image
    assert wide.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    assert wide[:, :120].min() == 255 and wide[:, -120:].max() == 0


@pytest.mark.parametrize(("width", "height"), [(5000, 5000), (50_000, 50_000)])
def test_a_decompression_bomb_header_is_refused(tmp_path, width, height):
    # 5000 x 5000 is over this reader's limit but under Pillow's; 50,000^2 trips Pillow's own guard first.
    assert width * height > MAX_IMAGE_PIXELS
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(width, height))
    with pytest.raises(ExportError) as caught:
        read_export(path, DEFAULTS)
    assert caught.value.field == "pixels"
    assert "bomb" in str(caught.value)


def test_non_images_and_damaged_images_are_refused(tmp_path):
    (tmp_path / "text.png").write_text("hello\n")
    with pytest.raises(ExportError) as caught:
        read_export(tmp_path / "text.png", DEFAULTS)
    assert caught.value.field == "content" and "not a PNG or JPEG" in str(caught.value)
    Image.fromarray(np.full((64, 64, 3), 9, np.uint8)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match="damaged image"):
        read_export(tmp_path / "cut.png", DEFAULTS)
    with pytest.raises(ExportError) as caught:
        read_export(tmp_path / "whole.bmp", DEFAULTS)
    assert caught.value.field == "suffix"
