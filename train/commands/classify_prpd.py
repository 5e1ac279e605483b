"""`mad-train classify-prpd`: classify a folder of PRPD exports (instrument CSV count matrices, PNG/JPEG
screenshots) with the model's image branch alone; writes verdicts.csv, verdicts.md and contact_sheet.png.

Reading and validating one export is train/prpd_exports.py; this module batches the model, collects the
verdicts and writes them. A bad file becomes a row with its error and never stops the others.
"""

from __future__ import annotations

import argparse
import csv
import math
import textwrap
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mad.constants import IMAGE_SIZE
from train.prpd_exports import (
    AMPLITUDE_ORDERS,
    AMPLITUDE_SCALES,
    ORIENTATIONS,
    CsvLayout,
    ExportError,
    check_layout,
    collect_files,
    export_kind,
    read_export,
    write_examples,
)

DEFAULT_CHECKPOINT = "models/mad_small.safetensors"
MAX_EXAMPLES = 10_000
ERRORS_PRINTED = 20  # the rest are in verdicts.csv / verdicts.md
# Contact sheet: tiles at the model's own 256 x 256 pixels, two caption lines above each.
SHEET_COLUMNS = 8
SHEET_GAP = 8
CAPTION_FONT_PX = 13
CAPTION_PX = 2 * (CAPTION_FONT_PX + 4) + 4
TITLE_PX = 32
WRONG_RED = (200, 0, 0)

EPILOG = """\
CSV layout (docs/formats.md, "PRPD exports for `mad-train classify-prpd`"): a plain numeric matrix of
pulse counts, optionally preceded by `# key: value` lines (orientation, amplitude_scale, amplitude_order,
full_scale, floor, cycles, label) that override the options below for that file.

exit status: 0 every file classified; 1 some files refused (each listed with its error in the outputs,
the others classified); 2 nothing classified (bad option, input or checkpoint).
"""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in the help, and the epilog's line breaks kept. A None or False default (an option
    that is off unless given) is not shown: its help says what happens without it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # The shared front end builds the sub-parser; the formatter is an attribute read at help time.
    parser.formatter_class = _Formatter
    parser.epilog = EPILOG
    parser.add_argument("inputs", nargs="+", type=Path, metavar="PATH",
                        help="folders of exports (.csv, .png, .jpg, .jpeg) and/or single export files")
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                        help="<name>.safetensors (with its <name>.json sidecar); its image branch is used alone")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: <first folder>/classified)")
    parser.add_argument("--recursive", action="store_true", help="also read the sub-folders of each folder")
    parser.add_argument("--batch-size", type=int, default=32, help="exports per model call")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto")
    parser.add_argument("--sheet-max", type=int, default=100,
                        help="files drawn on the contact sheet (the first ones in sorted order; 0: no sheet)")
    layout = parser.add_argument_group("CSV layout", "for files whose header does not say it")
    defaults = CsvLayout()
    layout.add_argument("--orientation", choices=ORIENTATIONS, default=defaults.orientation,
                        help="phase-rows: one row per phase bin (columns are amplitude bins); amplitude-rows: "
                             "the transpose")
    layout.add_argument("--amplitude-scale", choices=AMPLITUDE_SCALES, default=defaults.amplitude_scale,
                        help="amplitude bins equally spaced in the unit (linear) or in dB (log; needs --floor)")
    layout.add_argument("--amplitude-order", choices=AMPLITUDE_ORDERS, default=defaults.amplitude_order,
                        help="ascending: the first amplitude bin is the smallest; descending: the largest (the "
                             "order a screen draws top to bottom)")
    layout.add_argument("--full-scale", type=float, default=defaults.full_scale,
                        help="upper edge of the highest amplitude bin, in the instrument's unit (only its ratio "
                             "to --floor matters)")
    layout.add_argument("--floor", type=float, default=defaults.floor,
                        help="lower edge of the lowest amplitude bin (required for log; 0 for linear if unset)")
    layout.add_argument("--cycles", type=float, default=defaults.cycles,
                        help="supply cycles the counts were accumulated over (colours are counts per 1,200 "
                             "cycles)")
    examples = parser.add_argument_group("examples")
    examples.add_argument("--make-examples", type=int, default=0, metavar="N",
                          help="first write N synthetic CSV exports in varied layouts, one PNG and two broken files "
                               "into PATH (a new or empty folder), then classify them")
    examples.add_argument("--examples-seed", type=int, default=0, help="generator seed for --make-examples")


@dataclass
class Verdict:
    """One row of the output table."""

    file: str
    kind: str
    shape: str = ""
    verdict: str = ""
    confidence: float | None = None
    probs: np.ndarray | None = None
    truth: str | None = None
    error: str = ""


@dataclass
class Tile:
    """One contact-sheet cell: the image the model saw (None for a refused file) and its verdict."""

    row: Verdict
    image: np.ndarray | None


class UsageError(Exception):
    """Nothing can be classified: a bad option, input or checkpoint (exit status 2)."""


def run(args: argparse.Namespace) -> int:
    try:
        layout = _check_options(args)
        if args.make_examples:
            _make_examples(args)
        started = time.perf_counter()  # the summary times loading the model, reading and classifying
        out = args.out if args.out is not None else _default_out(args.inputs)
        files, skipped = collect_files(args.inputs, recursive=args.recursive, exclude=out)
        if not files:
            raise UsageError(f"no .csv, .png, .jpg or .jpeg files in {', '.join(map(str, args.inputs))}")
        model, device = _load_image_model(args.checkpoint, args.device)
        out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails now, not after the work is done
    except (UsageError, OSError, ValueError) as exc:  # CheckpointError is a ValueError
        print(f"mad-train classify-prpd: {exc}")
        return 2
    class_names = list(model.mad_meta["class_names"])
    rows, tiles = classify_files(model, device, files, layout, class_names, args.batch_size, args.sheet_max,
                                 display=lambda path: _display(path, args.inputs))
    elapsed = time.perf_counter() - started
    summary = summarise(rows, class_names, skipped, model.mad_meta.get("name", "model"), elapsed)
    written = write_outputs(out, rows, tiles, class_names, summary)
    print("\n".join([*summary, f"wrote: {', '.join(str(path) for path in written)}"]))
    return 1 if any(row.error for row in rows) else 0


def _check_options(args: argparse.Namespace) -> CsvLayout:
    """The command's options as the default CSV layout; UsageError names the option and its value."""
    for name, value, low in (("--batch-size", args.batch_size, 1), ("--sheet-max", args.sheet_max, 0),
                             ("--make-examples", args.make_examples, 0)):
        if value < low:
            raise UsageError(f"{name} must be >= {low}, got {value}")
    if args.make_examples > MAX_EXAMPLES:
        raise UsageError(f"--make-examples must be <= {MAX_EXAMPLES}, got {args.make_examples}")
    layout = CsvLayout(orientation=args.orientation, amplitude_scale=args.amplitude_scale,
                       amplitude_order=args.amplitude_order, full_scale=args.full_scale, floor=args.floor,
                       cycles=args.cycles)
    try:
        return check_layout("options", layout, whole=False)
    except ExportError as exc:
        raise UsageError(f"--{exc.field.replace('_', '-')} {exc.value}: {exc.reason}") from None


def _make_examples(args: argparse.Namespace) -> None:
    if len(args.inputs) != 1:
        raise UsageError(f"--make-examples writes into one folder, got {len(args.inputs)} paths")
    folder = args.inputs[0]
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UsageError(f"--make-examples needs a new or empty folder (it would mix with what is there): {folder}")
    write_examples(folder, args.make_examples, seed=args.examples_seed)


def _default_out(inputs: Sequence[Path]) -> Path:
    first = inputs[0]
    return (first if first.is_dir() else first.parent) / "classified"


def _display(path: Path, inputs: Sequence[Path]) -> str:
    """A file's name in the outputs: relative to the folder it was found in, else as given."""
    for item in inputs:
        if item.is_dir() and path.is_relative_to(item):
            return path.relative_to(item).as_posix()
    return str(path)


def _load_image_model(checkpoint: str, requested_device: str):
    from mad.runtime import load_model
    from train.distributed import resolve_device

    device = resolve_device(requested_device)
    model = load_model(checkpoint, device=device)
    if not model.config.use_image:
        raise UsageError(f"{checkpoint}: this model has no image branch (model_config.use_image is false); "
                         "classify-prpd needs one")
    return model, device


# ------------------------------------------------------------------ classifying


def classify_files(model, device, files: Sequence[Path], layout: CsvLayout, class_names: Sequence[str],
                   batch_size: int, sheet_max: int, display) -> tuple[list[Verdict], list[Tile]]:
    """Read and classify `files` batch by batch (one model call per batch): rows in file order, and tiles
    for the first `sheet_max` files. Only a batch's images are held, so a large folder fits in memory."""
    from tqdm.auto import tqdm

    rows: list[Verdict] = []
    tiles: list[Tile] = []
    with tqdm(total=len(files), desc="classify-prpd", unit="file", leave=False, disable=None) as progress:
        for start in range(0, len(files), batch_size):
            chunk = files[start:start + batch_size]
            batch_rows, images = _read_chunk(chunk, layout, class_names, display)
            good = [k for k, row in enumerate(batch_rows) if not row.error]
            if good:
                probs = predict_images(model, device, [images[k] for k in good])
                for k, p in zip(good, probs, strict=True):
                    _fill_verdict(batch_rows[k], p, class_names)
            for row, image in zip(batch_rows, images, strict=True):
                if len(tiles) < sheet_max:
                    tiles.append(Tile(row, image))
            rows.extend(batch_rows)
            progress.update(len(chunk))
    return rows, tiles


def _read_chunk(chunk: Sequence[Path], layout: CsvLayout, class_names: Sequence[str], display
                ) -> tuple[list[Verdict], list[np.ndarray | None]]:
    rows: list[Verdict] = []
    images: list[np.ndarray | None] = []
    for path in chunk:
        try:
            export = read_export(path, layout, class_names)
        except ExportError as exc:
            rows.append(Verdict(display(path), export_kind(path) or path.suffix.lstrip(".").lower(), error=exc.detail))
            images.append(None)
            continue
        rows.append(Verdict(display(path), export.kind, export.shape, truth=export.truth))
        images.append(export.image)
    return rows, images


def predict_images(model, device, images: Sequence[np.ndarray]) -> np.ndarray:
    """(B, 256, 256, 3) uint8 -> softmax probabilities (B, C), image branch only: the signal is passed as
    None, as `mad-train eval --single-modality` scores image-only inputs (train.predict)."""
    import torch

    from train.predict import autocast_for, modality_inputs

    model.eval()
    batch = {"image": torch.from_numpy(np.stack(images))}
    with torch.inference_mode():
        image_tensor, signals = modality_inputs(model, batch, device, modalities="image")
        with autocast_for(device):
            logits = model(image_tensor, signals)
        return torch.softmax(logits.float(), dim=-1).cpu().double().numpy()


def _fill_verdict(row: Verdict, probs: np.ndarray, class_names: Sequence[str]) -> None:
    best = int(np.argmax(probs))
    row.verdict, row.confidence, row.probs = class_names[best], float(probs[best]), probs


# ------------------------------------------------------------------ outputs


def summarise(rows: Sequence[Verdict], class_names: Sequence[str], skipped: Sequence[Path], model_name: str,
              elapsed_s: float) -> list[str]:
    """The printed summary (also the head of verdicts.md): counts per kind and verdict, accuracy where
    truths were given, the refused files."""
    kinds = Counter(row.kind for row in rows)
    done = [row for row in rows if not row.error]
    per_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    rate = len(rows) / max(elapsed_s, 1e-9)
    lines = [f"classify-prpd: {len(rows)} files ({per_kind}) with {model_name} (image only), read and classified "
             f"in {elapsed_s:.1f} s ({rate:.1f} files/s)"]
    verdicts = Counter(row.verdict for row in done)
    lines.append(f"verdicts ({len(done)} classified): " + ", ".join(f"{name} {verdicts[name]}" for name in class_names))
    lines.extend(_accuracy_lines(done, class_names))
    refused = [row for row in rows if row.error]
    if refused:
        lines.append(f"refused: {len(refused)} files (each with its error in verdicts.csv)")
        lines.extend(f"  {row.file}: {row.error}" for row in refused[:ERRORS_PRINTED])
        if len(refused) > ERRORS_PRINTED:
            lines.append(f"  ... and {len(refused) - ERRORS_PRINTED} more")
    if skipped:
        lines.append(f"skipped: {len(skipped)} files with other suffixes (e.g. {skipped[0].name})")
    return lines


def _accuracy_lines(done: Sequence[Verdict], class_names: Sequence[str]) -> list[str]:
    known = [row for row in done if row.truth is not None]
    if not known:
        return ["accuracy: no truth labels given (`# label: <class>` in a CSV header)"]
    right = sum(row.verdict == row.truth for row in known)
    per_class = []
    for name in class_names:
        of_class = [row for row in known if row.truth == name]
        if of_class:
            per_class.append(f"{name} {sum(row.verdict == name for row in of_class)}/{len(of_class)}")
    return [f"accuracy: {right}/{len(known)} = {right / len(known):.3f} on the files with a truth label",
            f"  correct per truth: {', '.join(per_class)}"]


def write_outputs(out: Path, rows: Sequence[Verdict], tiles: Sequence[Tile], class_names: Sequence[str],
                  summary: Sequence[str]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [write_table_csv(out / "verdicts.csv", rows, class_names),
               write_table_md(out / "verdicts.md", rows, summary)]
    if tiles:
        written.append(write_contact_sheet(out / "contact_sheet.png", tiles, len(rows)))
    return written


def write_table_csv(path: Path, rows: Sequence[Verdict], class_names: Sequence[str]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "kind", "shape", "verdict", "confidence", *(f"p_{n}" for n in class_names),
                         "truth", "error"])
        for row in rows:
            probs = [f"{p:.4f}" for p in row.probs] if row.probs is not None else [""] * len(class_names)
            confidence = f"{row.confidence:.4f}" if row.confidence is not None else ""
            writer.writerow([row.file, row.kind, row.shape, row.verdict, confidence, *probs, row.truth or "",
                             row.error])
    return path


def write_table_md(path: Path, rows: Sequence[Verdict], summary: Sequence[str]) -> Path:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["# PRPD export verdicts (`mad-train classify-prpd`)", "", "```", *summary, "```", "",
             "| file | kind | shape | verdict | confidence | truth | error |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        confidence = f"{row.confidence:.3f}" if row.confidence is not None else ""
        lines.append(f"| {cell(row.file)} | {row.kind} | {row.shape} | {row.verdict} | {confidence} | "
                     f"{row.truth or ''} | {cell(row.error)} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_contact_sheet(path: Path, tiles: Sequence[Tile], total: int) -> Path:
    """A grid of the images at the model's own 256 x 256 pixels, each captioned with file, verdict and
    confidence (red, with the truth, when it disagrees with a given truth; a refused file is a dark tile
    with its error). Drawn with Pillow: matplotlib took ~7 s for 50 tiles on a busy 2-core machine."""
    from PIL import Image, ImageDraw

    font = _font(CAPTION_FONT_PX)
    cols = min(SHEET_COLUMNS, max(1, math.ceil(math.sqrt(len(tiles)))))
    rows = math.ceil(len(tiles) / cols)
    cell_w, cell_h = IMAGE_SIZE + SHEET_GAP, IMAGE_SIZE + CAPTION_PX + SHEET_GAP
    sheet = Image.new("RGB", (cols * cell_w + SHEET_GAP, TITLE_PX + rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    shown = f"first {len(tiles)} of {total} files" if len(tiles) < total else f"{total} files"
    draw.text((SHEET_GAP, 6), f"classify-prpd: {shown} as the model saw them (image only)", fill="black",
              font=_font(CAPTION_FONT_PX + 4))
    for k, tile in enumerate(tiles):
        x = SHEET_GAP + (k % cols) * cell_w
        y = TITLE_PX + (k // cols) * cell_h
        _draw_tile(sheet, draw, font, tile, x, y)
    sheet.save(path)
    return path


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()


def _fit(draw, font, text: str, width: int) -> str:
    """`text` cut from the left ("...tail") until it fits `width` pixels: a file name's end says most."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def _draw_tile(sheet, draw, font, tile: Tile, x: int, y: int) -> None:
    from PIL import Image

    row = tile.row
    line = CAPTION_FONT_PX + 4
    draw.text((x, y + 2), _fit(draw, font, row.file, IMAGE_SIZE), fill="black", font=font)
    top = y + CAPTION_PX
    if tile.image is None:
        draw.rectangle((x, top, x + IMAGE_SIZE - 1, top + IMAGE_SIZE - 1), fill=(40, 40, 40))
        draw.text((x, y + 2 + line), "refused", fill=WRONG_RED, font=font)
        for k, part in enumerate(_wrap(row.error, 34)[:12]):
            draw.text((x + 6, top + 8 + k * line), part, fill=(255, 120, 120), font=font)
        return
    sheet.paste(Image.fromarray(tile.image), (x, top))
    wrong = row.truth is not None and row.truth != row.verdict
    caption = f"{row.verdict} {row.confidence:.2f}" + (f" (truth {row.truth})" if wrong else "")
    draw.text((x, y + 2 + line), caption, fill=WRONG_RED if wrong else "black", font=font)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True) or [""]
