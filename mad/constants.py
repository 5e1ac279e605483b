"""Facts about the data that every package shares (AI Hub format, see docs/formats.md)."""

from __future__ import annotations

# AI Hub `label.PD_type` order: the index of a name here is its class id.
CLASS_NAMES: tuple[str, ...] = ("Normal", "Noise", "Surface", "Corona", "Void")
NUM_CLASSES = len(CLASS_NAMES)
# Classes that mean a real insulation defect (Noise is interference, Normal is clean).
DEFECT_CLASSES: tuple[str, ...] = ("Surface", "Corona", "Void")

SAMPLE_RATE_HZ = 7_680  # PD series samples per second
WINDOW_SECONDS = 20  # one window = 20 s
WINDOW_ROWS = 20  # the CSV stores one 1 s row per second
ROW_SAMPLES = SAMPLE_RATE_HZ
WINDOW_SAMPLES = WINDOW_ROWS * ROW_SAMPLES  # 153,600
IMAGE_SIZE = 256  # PRPD image is IMAGE_SIZE x IMAGE_SIZE RGB
DEFAULT_POWER_FREQ_HZ = 60.0
