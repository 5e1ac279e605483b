"""PRPD exports from instruments (CSV count matrices, PNG/JPEG screenshots) -> the model's 256x256x3 image.

CSV matrices are redrawn with `mad.data.prpd.render_prpd_from_matrix`, so the model sees the project's own
drawing whatever the instrument's binning; screenshots are resized and fed as they are. The CSV layout is
documented in docs/formats.md ("PRPD exports for `mad-train classify-prpd`"). Every problem with one file is
an `ExportError` naming the file, the field and the value, so a caller can list it and go on with the others.

`write_examples` makes a folder of such exports from the synthetic generator (tests and docs).
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mad.constants import CLASS_NAMES, IMAGE_SIZE, NUM_CLASSES, SAMPLE_RATE_HZ, WINDOW_SECONDS
from mad.data.prpd import (
    DETECT_THRESHOLD_SIGMA,
    REFERENCE_CYCLES,
    amplitude_edges,
    detect_pulses,
    noise_floor,
    render_prpd_from_matrix,
)

MAX_FILE_BYTES = 16 * 1024 * 1024  # a 1024 x 1024 matrix of 6-digit counts is ~7 MiB; anything bigger is not a PRPD
MIN_BINS, MAX_BINS = 8, 1024  # per axis: instruments use 32..400 phase and 32..256 amplitude bins
# Decoded pixels allowed in a screenshot (a 4K screen is 8.3 MP). Checked from the header, before decoding,
# and far below Pillow's own bomb limit (89 MP warns, 179 MP refuses), so a tiny file that claims
# 50,000 x 50,000 pixels is refused without allocating them.
MAX_IMAGE_PIXELS = 4096 * 4096

CSV_SUFFIXES = frozenset({".csv"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
ORIENTATIONS = ("phase-rows", "amplitude-rows")
AMPLITUDE_SCALES = ("linear", "log")
AMPLITUDE_ORDERS = ("ascending", "descending")
_SCALE_ALIASES = {"db": "log"}  # instruments call a log axis "dB"

# `# key: value`; a comment line that does not look like this (free text) is ignored.
_HEADER_LINE = re.compile(r"#\s*([A-Za-z][A-Za-z0-9_-]*)\s*:\s*(.*?)\s*$")


class ExportError(ValueError):
    """One export that cannot be classified: which file, which field, which value and why."""

    def __init__(self, path: Path | str, field: str, value: Any, reason: str) -> None:
        self.path, self.field, self.value, self.reason = Path(path), field, value, reason
        self.detail = f"{field}={value!r}: {reason}"
        super().__init__(f"{path}: {self.detail}")


@dataclass(frozen=True)
class CsvLayout:
    """How to read a CSV matrix: the command's options, overridden per file by its `# key: value` lines."""

    orientation: str = "phase-rows"
    amplitude_scale: str = "linear"
    amplitude_order: str = "ascending"
    full_scale: float = 1.0
    floor: float | None = None
    cycles: float = float(REFERENCE_CYCLES)
    label: str | None = None


HEADER_KEYS = tuple(field.name for field in dataclasses.fields(CsvLayout))


@dataclass
class PrpdExport:
    """One export read and drawn: `image` is what the model sees."""

    path: Path
    kind: str  # "csv", "png" or "jpeg"
    image: np.ndarray  # (256, 256, 3) uint8
    shape: str  # what the file held: "128x64 (phase x amplitude)" or "1024x768 px"
    truth: str | None = None


def export_kind(path: Path) -> str | None:
    """"csv" or "png"/"jpeg" by suffix; None for a file this command does not read."""
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in IMAGE_SUFFIXES:
        return "png" if suffix == ".png" else "jpeg"
    return None


def read_export(path: Path, defaults: CsvLayout, class_names: Sequence[str] = CLASS_NAMES) -> PrpdExport:
    """Read one export by its suffix; raises ExportError for anything that is not a usable PRPD."""
    kind = export_kind(path)
    if kind is None:
        raise ExportError(path, "suffix", path.suffix, f"expected one of {sorted(CSV_SUFFIXES | IMAGE_SUFFIXES)}")
    data = _read_bounded(path)
    if kind == "csv":
        return read_csv_export(path, data, defaults, class_names)
    return read_image_export(path, data)


def _read_bounded(path: Path) -> bytes:
    """The file's bytes, refusing one over MAX_FILE_BYTES before reading it."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ExportError(path, "file_size", size, f"over the {MAX_FILE_BYTES} byte limit for one export")
        return path.read_bytes()
    except OSError as exc:
        raise ExportError(path, "file", str(path), f"cannot be read ({exc.strerror or exc})") from None


# ------------------------------------------------------------------ CSV count matrices


def read_csv_export(path: Path, data: bytes, defaults: CsvLayout,
                    class_names: Sequence[str] = CLASS_NAMES) -> PrpdExport:
    """CSV bytes -> the matrix redrawn in the project's convention (see the module docstring)."""
    try:
        text = data.decode("utf-8-sig")  # spreadsheet exports often start with a BOM
    except UnicodeDecodeError as exc:
        raise ExportError(path, "encoding", data[exc.start:exc.start + 4], "not UTF-8 text") from None
    lines = text.splitlines()
    overrides, first_data = parse_header(path, lines)
    layout = check_layout(path, dataclasses.replace(defaults, **overrides))
    truth = _canonical_label(path, layout.label, class_names)
    rows, line_numbers = _data_rows(path, lines, first_data)
    matrix = _parse_cells(path, rows, line_numbers)
    matrix = _to_phase_amplitude(path, matrix, layout)
    edges = _amplitude_axis(path, layout, matrix.shape[1])
    image = render_prpd_from_matrix(matrix, layout.cycles, amplitude_edges=edges)
    return PrpdExport(path, "csv", image, f"{matrix.shape[0]}x{matrix.shape[1]} (phase x amplitude)", truth)


def parse_header(path: Path, lines: Sequence[str]) -> tuple[dict[str, Any], int]:
    """Leading `# key: value` lines -> (typed overrides, index of the first data line).

    Blank lines and free-text comments are skipped; an unknown key is an error, so that a misspelt
    `orientaton` is not silently ignored (it would draw the matrix on its side).
    """
    overrides: dict[str, Any] = {}
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            return overrides, index
        match = _HEADER_LINE.fullmatch(stripped)
        if match is None:
            continue  # free text, e.g. "# exported by the instrument"
        key, raw = match.group(1).lower().replace("-", "_"), match.group(2)
        if key not in HEADER_KEYS:
            raise ExportError(path, f"header line {index + 1}", key,
                              f"unknown key; known keys: {', '.join(HEADER_KEYS)}")
        if key in overrides:
            raise ExportError(path, key, raw, f"given twice (again on line {index + 1})")
        overrides[key] = _header_value(path, key, raw)
    return overrides, len(lines)


def _header_value(path: Path, key: str, raw: str) -> Any:
    """Text of one header value -> its type; choices are matched case-insensitively."""
    if key in ("full_scale", "floor", "cycles"):
        try:
            return float(raw)
        except ValueError:
            raise ExportError(path, key, raw, "expected a number") from None
    if key == "label":
        return raw
    choices = {"orientation": ORIENTATIONS, "amplitude_scale": AMPLITUDE_SCALES,
               "amplitude_order": AMPLITUDE_ORDERS}[key]
    value = raw.lower()
    value = _SCALE_ALIASES.get(value, value) if key == "amplitude_scale" else value
    if value not in choices:
        raise ExportError(path, key, raw, f"expected one of {', '.join(choices)}")
    return value


def check_layout(path: Path | str, layout: CsvLayout, *, whole: bool = True) -> CsvLayout:
    """Range checks on a layout. `whole=False` checks each value alone: the command's defaults, where a
    file's header may still supply the full_scale that a --floor is compared with."""
    if layout.orientation not in ORIENTATIONS:
        raise ExportError(path, "orientation", layout.orientation, f"expected one of {', '.join(ORIENTATIONS)}")
    if layout.amplitude_scale not in AMPLITUDE_SCALES:
        raise ExportError(path, "amplitude_scale", layout.amplitude_scale,
                          f"expected one of {', '.join(AMPLITUDE_SCALES)}")
    if layout.amplitude_order not in AMPLITUDE_ORDERS:
        raise ExportError(path, "amplitude_order", layout.amplitude_order,
                          f"expected one of {', '.join(AMPLITUDE_ORDERS)}")
    if not (math.isfinite(layout.full_scale) and layout.full_scale > 0):
        raise ExportError(path, "full_scale", layout.full_scale, "must be finite and > 0")
    if layout.floor is not None and not (math.isfinite(layout.floor) and layout.floor >= 0):
        raise ExportError(path, "floor", layout.floor, "must be finite and >= 0")
    if whole and layout.floor is not None and layout.floor >= layout.full_scale:
        raise ExportError(path, "floor", layout.floor, f"must be below full_scale={layout.full_scale:g}")
    if not (math.isfinite(layout.cycles) and layout.cycles > 0):
        raise ExportError(path, "cycles", layout.cycles, "must be finite and > 0 (supply cycles in the acquisition)")
    return layout


def _data_rows(path: Path, lines: Sequence[str], first: int) -> tuple[list[list[str]], list[int]]:
    """Split the data lines into cells; checks row count and rectangularity before any number is parsed."""
    body = [(number + 1, line.strip()) for number, line in enumerate(lines[first:], start=first) if line.strip()]
    if not body:
        raise ExportError(path, "rows", 0, "no data rows (a CSV export needs a count matrix)")
    if len(body) > MAX_BINS:
        raise ExportError(path, "rows", len(body), f"more than {MAX_BINS} rows (bins per axis: {MIN_BINS}..{MAX_BINS})")
    delimiter = _delimiter(body[0][1])
    rows = [line.split(delimiter) for _, line in body]
    width = len(rows[0])
    for (number, _), cells in zip(body, rows, strict=True):
        if len(cells) != width:
            raise ExportError(path, f"line {number}", f"{len(cells)} cells",
                              f"rows must all have the same length ({width} cells on line {body[0][0]})")
    return rows, [number for number, _ in body]


def _delimiter(line: str) -> str:
    """Comma, or a semicolon or tab where the instrument uses one (one delimiter per file)."""
    for candidate in (";", "\t"):
        if candidate in line and "," not in line:
            return candidate
    return ","


def _parse_cells(path: Path, rows: list[list[str]], line_numbers: list[int]) -> np.ndarray:
    """Cells -> float64 matrix; every cell finite and >= 0, the first bad one named by line and column."""
    try:
        matrix = np.array(rows, dtype=np.float64)  # numpy parses the strings in C: fast for 1024 x 1024
    except ValueError:
        matrix = None
    if matrix is None:
        for r, cells in enumerate(rows):
            for c, cell in enumerate(cells):
                try:
                    float(cell)
                except ValueError:
                    raise ExportError(path, f"line {line_numbers[r]}, column {c + 1}", cell.strip(),
                                      "not a number (counts only: no header row or label column)") from None
        raise AssertionError("numpy refused a matrix whose cells all parse")  # pragma: no cover
    bad = ~np.isfinite(matrix) | (matrix < 0)
    if bad.any():
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise ExportError(path, f"line {line_numbers[r]}, column {c + 1}", rows[r][c].strip(),
                          "counts must be finite and >= 0")
    return matrix


def _to_phase_amplitude(path: Path, matrix: np.ndarray, layout: CsvLayout) -> np.ndarray:
    """File matrix -> (n_phase, n_amp) with amplitude bin 0 the smallest, bins per axis checked."""
    if layout.orientation == "amplitude-rows":
        matrix = matrix.T
    if layout.amplitude_order == "descending":
        matrix = matrix[:, ::-1]
    where = {"phase-rows": ("rows", "columns"), "amplitude-rows": ("columns", "rows")}[layout.orientation]
    for axis, name in enumerate(("n_phase", "n_amp")):
        if not MIN_BINS <= matrix.shape[axis] <= MAX_BINS:
            raise ExportError(path, name, matrix.shape[axis], f"bins per axis must be {MIN_BINS}..{MAX_BINS} (the "
                                                             f"{where[axis]} of a {layout.orientation} file)")
    return np.ascontiguousarray(matrix)


def _amplitude_axis(path: Path, layout: CsvLayout, n_amp: int) -> np.ndarray:
    """The n_amp + 1 edges of the amplitude bins. Only the ratios matter (the image has a per-window scale)."""
    if layout.amplitude_scale == "log":
        if layout.floor is None or layout.floor <= 0:
            raise ExportError(path, "floor", layout.floor, "a log (dB) amplitude axis needs 0 < floor < full_scale "
                                                           "(for an axis spanning R dB: full_scale x 10^(-R/20))")
        return amplitude_edges(n_amp, layout.full_scale, "log", layout.floor)
    floor = layout.floor or 0.0  # a linear axis may start at the detector's threshold
    return floor + amplitude_edges(n_amp, layout.full_scale - floor, "linear")


def _canonical_label(path: Path, label: str | None, class_names: Sequence[str]) -> str | None:
    if label is None:
        return None
    by_lower = {name.lower(): name for name in class_names}
    if label.lower() not in by_lower:
        raise ExportError(path, "label", label, f"not a class of this model ({', '.join(class_names)})")
    return by_lower[label.lower()]


# ------------------------------------------------------------------ PNG / JPEG screenshots


def read_image_export(path: Path, data: bytes) -> PrpdExport:
    """PNG/JPEG bytes -> (256, 256, 3) uint8, refusing non-images and decompression bombs before decoding.

    Resized with Pillow's BOX filter (area averaging): each output pixel is the mean of exactly the source
    pixels it covers, the rule render_prpd_from_matrix uses for a cell. A one-pixel pulse dot lands only in
    the output pixels it overlaps (dimmed), where Pillow's bilinear, a triangle filter twice as wide, also
    smears it into their neighbours and blurs the edges of the lobes; a screenshot scaled up by a whole
    factor comes back pixel for pixel, and a smaller image is upscaled into even blocks. Not cropped: axes
    and labels reach the model as drawn.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=["PNG", "JPEG"]) as opened:
                kind = "jpeg" if opened.format == "JPEG" else "png"
                width, height = opened.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ExportError(path, "pixels", f"{width}x{height}",
                                      f"over the {MAX_IMAGE_PIXELS} pixel limit (decompression bomb guard)")
                image = _to_rgb(ImageOps.exif_transpose(opened))
        except ExportError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ExportError(path, "pixels", "header", f"refused as a decompression bomb ({exc})") from None
        except UnidentifiedImageError:
            raise ExportError(path, "content", data[:8], "not a PNG or JPEG image") from None
        except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on damaged data
            raise ExportError(path, "content", f"{len(data)} bytes", f"damaged image ({exc})") from None
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return PrpdExport(path, kind, np.asarray(image, dtype=np.uint8).copy(), f"{width}x{height} px")


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any mode -> RGB; transparent pixels become black, the background of the project's PRPDs."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image.convert("RGB")


# ------------------------------------------------------------------ finding the files


def collect_files(inputs: Iterable[Path], *, recursive: bool = False, exclude: Path | None = None
                  ) -> tuple[list[Path], list[Path]]:
    """(exports to read, other files skipped) from folders and files, in sorted order.

    A folder contributes its .csv/.png/.jpg/.jpeg files (others are skipped and counted); a file named
    explicitly is always read, so a wrong suffix becomes an error row rather than vanishing. Files under
    `exclude` (the output folder) are left out, so a second run does not classify its own contact sheet.
    Raises FileNotFoundError for an input that does not exist.
    """
    files: list[Path] = []
    skipped: list[Path] = []
    excluded = exclude.resolve() if exclude is not None else None
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in (item.rglob("*") if recursive else item.iterdir()) if p.is_file())
            for path in found:
                if excluded is not None and path.resolve().is_relative_to(excluded):
                    continue
                (files if export_kind(path) is not None else skipped).append(path)
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return files, skipped


# ------------------------------------------------------------------ example exports (tests and docs)

# Instrument-like layouts the examples cycle through: phase bins, amplitude bins, orientation, scale, order.
# The last one writes no header at all, so the command's own options (the defaults) must read it.
EXAMPLE_LAYOUTS: tuple[dict[str, Any], ...] = (
    dict(n_phase=128, n_amp=64, orientation="phase-rows", amplitude_scale="linear", amplitude_order="ascending"),
    dict(n_phase=360, n_amp=100, orientation="amplitude-rows", amplitude_scale="log", amplitude_order="ascending"),
    dict(n_phase=64, n_amp=32, orientation="phase-rows", amplitude_scale="log", amplitude_order="descending"),
    dict(n_phase=256, n_amp=128, orientation="amplitude-rows", amplitude_scale="linear", amplitude_order="descending"),
    dict(n_phase=100, n_amp=256, orientation="phase-rows", amplitude_scale="linear", amplitude_order="ascending",
         header=False),
)


def pulse_matrix(phase_deg: np.ndarray, amplitude: np.ndarray, n_phase: int, edges: np.ndarray) -> np.ndarray:
    """(n_phase, n_amp) counts of pulses: below the lowest edge not counted (under the instrument's floor),
    above the highest in the top bin (saturated at its range)."""
    phase_bin = np.clip((np.mod(phase_deg, 360.0) / 360.0 * n_phase).astype(np.int64), 0, n_phase - 1)
    amp_bin = np.searchsorted(edges, amplitude, side="right") - 1
    keep = amp_bin >= 0
    amp_bin = np.minimum(amp_bin[keep], len(edges) - 2)
    flat = phase_bin[keep] * (len(edges) - 1) + amp_bin
    return np.bincount(flat, minlength=n_phase * (len(edges) - 1)).reshape(n_phase, len(edges) - 1)


def window_pulses(series: np.ndarray, power_freq_hz: float) -> tuple[np.ndarray, np.ndarray, float]:
    """(phase deg, magnitude, noise sigma) of a window's detected pulses, phase from the sample's centre
    with the renderer's reference (phase 0 at the first sample)."""
    index, magnitude = detect_pulses(series)
    phase = np.mod((index + 0.5) * power_freq_hz / SAMPLE_RATE_HZ * 360.0, 360.0)
    return phase, magnitude.astype(np.float64), noise_floor(series)[1]


def _example_csv(path: Path, series: np.ndarray, label: int, power_freq_hz: float, spec: dict[str, Any]) -> None:
    phase, magnitude, sigma = window_pulses(series, power_freq_hz)
    top = max(float(magnitude.max()) if magnitude.size else 0.0, 50.0 * sigma)
    if spec["amplitude_scale"] == "log":
        # A dB axis from the detection threshold up: what a log-amplifier detector shows.
        full_scale, floor = round(1.2 * top, 1), round(DETECT_THRESHOLD_SIGMA * sigma * 0.9, 2)
        edges = amplitude_edges(spec["n_amp"], full_scale, "log", floor)
    else:
        full_scale, floor = round(1.2 * top, 1), None
        edges = amplitude_edges(spec["n_amp"], full_scale, "linear")
    counts = pulse_matrix(phase, magnitude, spec["n_phase"], edges)
    if spec["amplitude_order"] == "descending":
        counts = counts[:, ::-1]
    if spec["orientation"] == "amplitude-rows":
        counts = counts.T
    header = []
    if spec.get("header", True):
        header = [f"# orientation: {spec['orientation']}", f"# amplitude_scale: {spec['amplitude_scale']}",
                  f"# amplitude_order: {spec['amplitude_order']}", f"# full_scale: {full_scale:g}",
                  *([f"# floor: {floor:g}"] if floor is not None else []),
                  f"# cycles: {WINDOW_SECONDS * power_freq_hz:g}", f"# label: {CLASS_NAMES[label]}"]
    body = "\n".join(",".join(str(int(v)) for v in row) for row in counts)
    path.write_text("# synthetic PRPD export (mad.data.synthetic, binned by train.prpd_exports)\n"
                    + "".join(line + "\n" for line in header) + body + "\n")


def write_examples(folder: Path, n: int, *, seed: int = 0, preset: str = "standard",
                   power_freq_hz: float = 60.0) -> list[Path]:
    """n CSV matrices of synthetic windows (classes balanced, layouts from EXAMPLE_LAYOUTS), plus one PNG
    screenshot (a window's image upscaled 2x, as a screen grab would be) and two broken files (a CSV with
    a NaN cell, a .png that is not an image). Returns the paths written, in that order."""
    from mad.data.synthetic import generate_window_events

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(n):
        window, _ = generate_window_events(preset, seed, i, label=i % NUM_CLASSES, power_freq_hz=power_freq_hz)
        path = folder / f"prpd_{i:03d}_{CLASS_NAMES[window.label].lower()}.csv"
        # Shifted by one layout per round of classes, so every class is written in every layout.
        layout = EXAMPLE_LAYOUTS[(i + i // NUM_CLASSES) % len(EXAMPLE_LAYOUTS)]
        _example_csv(path, window.series, window.label, power_freq_hz, layout)
        written.append(path)
    window, _ = generate_window_events(preset, seed, n, label=NUM_CLASSES - 1, power_freq_hz=power_freq_hz)
    screenshot = folder / "screenshot_void.png"
    Image.fromarray(window.image).resize((2 * IMAGE_SIZE, 2 * IMAGE_SIZE), Image.Resampling.NEAREST).save(screenshot)
    broken_csv = folder / "broken_cell.csv"
    broken_csv.write_text("# orientation: phase-rows\n" + "\n".join(
        ",".join("nan" if (r, c) == (3, 5) else "0" for c in range(16)) for r in range(16)) + "\n")
    not_image = folder / "not_an_image.png"
    not_image.write_bytes(b"this is a text file saved with a .png name\n")
    return [*written, screenshot, broken_csv, not_image]
