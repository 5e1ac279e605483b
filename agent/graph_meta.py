"""Metadata of an exported graph (ONNX file or TensorRT engine): parsed and checked before use."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mad.runtime.graph_io import GRAPH_META_KEY, graph_input_names, graph_output_names
from mad.runtime.loading import check_json_object, parse_json_object

REQUIRED_KEYS = ("name", "version", "class_names", "model_config", "signal_preprocess")


def parse_graph_meta(raw: str | dict[str, Any] | None, source: Path, error: type[Exception]) -> dict[str, Any]:
    """The `mad_meta` JSON of an export -> dict; raises `error` naming the file and the missing key.

    A `calibration` block (exports of a calibrated checkpoint) must carry a finite familiarity threshold and
    say that its temperature is applied in the graph: a runtime must neither skip nor repeat it."""
    if raw is None:
        raise error(f"{source}: no {GRAPH_META_KEY} metadata (export it with mad-train export)")
    check = parse_json_object if isinstance(raw, str) else check_json_object
    meta = check(raw, source=source, what=GRAPH_META_KEY, required=REQUIRED_KEYS, error=error)
    familiarity_threshold(meta, source, error)
    return meta


def familiarity_threshold(meta: dict[str, Any], source: Path | str = "<meta>",
                          error: type[Exception] = ValueError) -> float | None:
    """The threshold below which a window is `unfamiliar`; None for an export without calibration (gate off)."""
    block = meta.get("calibration")
    if block is None:
        return None
    block = check_json_object(block, source=source, what="calibration", required=("familiarity", "applied_in_graph"),
                              error=error)
    if block["applied_in_graph"] is not True:
        raise error(f"{source}: calibration.applied_in_graph must be true (this runtime applies no temperature)")
    familiarity = check_json_object(block["familiarity"], source=source, what="calibration.familiarity",
                                    required=("threshold",), error=error)
    threshold = familiarity["threshold"]
    if not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise error(f"{source}: calibration.familiarity.threshold must be a finite number, got {threshold!r}")
    return float(threshold)


def expected_inputs(meta: dict[str, Any]) -> tuple[str, ...]:
    config = meta["model_config"]
    return graph_input_names(bool(config.get("use_image", True)), bool(config.get("use_signal", True)))


def expected_outputs(meta: dict[str, Any]) -> tuple[str, ...]:
    return graph_output_names(meta.get("calibration") is not None)
