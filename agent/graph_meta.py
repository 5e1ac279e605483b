"""Metadata of an exported graph (ONNX file or TensorRT engine): parsed and checked before use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mad.runtime.graph_io import GRAPH_META_KEY, graph_input_names

REQUIRED_KEYS = ("name", "version", "class_names", "model_config", "signal_preprocess")


def parse_graph_meta(raw: str | dict[str, Any] | None, source: Path, error: type[Exception]) -> dict[str, Any]:
    """The `mad_meta` JSON of an export -> dict; raises `error` naming the file and the missing key."""
    if raw is None:
        raise error(f"{source}: no {GRAPH_META_KEY} metadata (export it with mad-train export)")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise error(f"{source}: {GRAPH_META_KEY} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise error(f"{source}: {GRAPH_META_KEY} must be a JSON object, got {type(raw).__name__}")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise error(f"{source}: {GRAPH_META_KEY} lacks {missing}")
    return raw


def expected_inputs(meta: dict[str, Any]) -> tuple[str, ...]:
    config = meta["model_config"]
    return graph_input_names(bool(config.get("use_image", True)), bool(config.get("use_signal", True)))
