"""Metadata of an exported graph (ONNX file or TensorRT engine): parsed and checked before use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mad.runtime.graph_io import GRAPH_META_KEY, graph_input_names
from mad.runtime.loading import check_json_object, parse_json_object

REQUIRED_KEYS = ("name", "version", "class_names", "model_config", "signal_preprocess")


def parse_graph_meta(raw: str | dict[str, Any] | None, source: Path, error: type[Exception]) -> dict[str, Any]:
    """The `mad_meta` JSON of an export -> dict; raises `error` naming the file and the missing key."""
    if raw is None:
        raise error(f"{source}: no {GRAPH_META_KEY} metadata (export it with mad-train export)")
    check = parse_json_object if isinstance(raw, str) else check_json_object
    return check(raw, source=source, what=GRAPH_META_KEY, required=REQUIRED_KEYS, error=error)


def expected_inputs(meta: dict[str, Any]) -> tuple[str, ...]:
    config = meta["model_config"]
    return graph_input_names(bool(config.get("use_image", True)), bool(config.get("use_signal", True)))
