"""`mad-agent run --config /etc/mad/agent.toml`: the live agent (MQTT in, alarms out) until SIGTERM/SIGINT.

Exit 0: stopped by a signal (in-flight windows flushed, `stopped` published). 1: the core thread
died (systemd restarts the unit; unacknowledged alarms are re-sent from the outbox). 2: the config,
model or state directory cannot be used (one line naming the problem).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch

from agent.commands.replay import resolve_model_path
from agent.inference import Classifier, ClassifierError, load_classifier
from agent.logging import configure_logging, get_logger
from agent.service import AgentService
from agent.settings import DEFAULT_CONFIG_PATH, ConfigError, load_settings
from mad.constants import IMAGE_SIZE, ROW_SAMPLES, WINDOW_ROWS
from mad.runtime.loading import CheckpointError

HEALTH_CHECK_S = 1.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help=f"agent TOML (default {DEFAULT_CONFIG_PATH} if it exists, else defaults + MAD_ env)")
    parser.add_argument("--model", type=Path, help="model file; overrides model.path")


def first_inference(classifier: Classifier) -> None:
    """One blank window through the model at start-up, so a backend that loads but cannot run (a
    kernel the sandbox forbids, a GPU fault) stops the start with its reason, not every batch later."""
    images = np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    classifier.predict(images, np.zeros((1, WINDOW_ROWS, ROW_SAMPLES), np.float32))


def _fail(message: str) -> int:
    print(f"mad-agent run: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    config = args.config
    if config is None and DEFAULT_CONFIG_PATH.exists():
        config = DEFAULT_CONFIG_PATH
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        return _fail(f"{exc.source}: " + "; ".join(exc.problems))
    configure_logging(settings.logging.format, settings.logging.level)  # stderr, as it is when a line is written
    model_path = resolve_model_path(settings, args.model)
    try:
        classifier = load_classifier(model_path, settings.model.device, settings.model.threads)
    except (ClassifierError, CheckpointError, OSError) as exc:
        return _fail(f"model {model_path}: {exc}")
    try:
        first_inference(classifier)
    except Exception as exc:  # any backend failure here must stop the start, with its message
        return _fail(f"model {model_path}: loaded, but its first inference failed ({exc!r})")
    get_logger("agent.run").info("model_ready", path=str(model_path), backend=type(classifier).__name__,
                                 device=settings.model.device, onednn=torch.backends.mkldnn.enabled)

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        service = AgentService(settings, classifier)
        service.start()
    except (OSError, ValueError, ConfigError) as exc:  # state dir, metrics port, password file
        return _fail(str(exc))
    while not stop.wait(HEALTH_CHECK_S):
        if not service.alive:
            break
    service.stop()
    if service.failure is not None:
        print(f"mad-agent run: core thread failed: {service.failure!r}", file=sys.stderr)
        return 1
    return 0
