"""Timeline plot of a replay: per sensor, stacked class probabilities, alarms, and the truth band.

Windows the familiarity gate flagged `unfamiliar` are hatched over their probabilities, which the
alarm logic did not use ("unfamiliar (no vote)" in the legend)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.patches import Patch

from agent.core.clock import NS_PER_S
from agent.core.events import AlarmEvent
from agent.core.pipeline import WindowResult
from mad.constants import CLASS_NAMES
from mad.plotting import plt, save_figure

CLASS_COLOURS = {"Normal": "#9ecae1", "Noise": "#bdbdbd", "Surface": "#fdae6b", "Corona": "#a1d99b", "Void": "#e6550d"}
EVENT_STYLE = {"new": ("#b30000", "^", "raise"), "update": ("#ff7f00", "D", "update"), "end": ("#006d2c", "v", "clear")}
_TRUTH_BAND = (1.03, 1.13)  # y-range of the truth strip above the probability stack
UNFAMILIAR_STYLE = {"facecolor": "none", "edgecolor": "#4d4d4d", "hatch": "///", "linewidth": 0}
MAX_PANELS = 12  # beyond this a figure is unreadable (and huge): plot the first ones, say so in the title


def plot_timeline(
    results: Sequence[WindowResult],
    events: Sequence[AlarmEvent],
    truth_by_sensor: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    sensors: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Write the PNG to `path` and return it. Time axis: minutes from the first window."""
    path = Path(path)
    sensors = list(sensors) if sensors is not None else sorted({r.sensor_id for r in results})
    if not sensors:
        raise ValueError("plot_timeline: nothing to plot (no sensors, no results)")
    note = ""
    if len(sensors) > MAX_PANELS:
        note = f" (first {MAX_PANELS} of {len(sensors)} sensors; choose with --sensors)"
    sensors = sensors[:MAX_PANELS]
    starts = [r.window_start_ns for r in results] + [int(t[:, 0].min()) for t in truth_by_sensor.values() if len(t)]
    origin_ns = min(starts) if starts else 0

    def minutes(ns: np.ndarray | int) -> np.ndarray:
        return (np.asarray(ns, np.float64) - origin_ns) / NS_PER_S / 60

    fig, axes = plt.subplots(len(sensors), 1, figsize=(11, 2.6 * len(sensors) + 0.8), sharex=True, squeeze=False)
    for ax, sensor_id in zip(axes[:, 0], sensors, strict=True):
        rows = sorted((r for r in results if r.sensor_id == sensor_id), key=lambda r: r.window_start_ns)
        if rows:
            # Step edges at window bounds: each window's probabilities hold over its 20 s.
            edges = np.array([[r.window_start_ns, r.window_end_ns] for r in rows]).reshape(-1)
            stack = np.array([[r.probabilities[c] for c in CLASS_NAMES] for r in rows]).repeat(2, axis=0).T
            ax.stackplot(minutes(edges), stack, colors=[CLASS_COLOURS[c] for c in CLASS_NAMES], linewidth=0)
            for r in (r for r in rows if r.unfamiliar):  # probabilities the alarm logic did not use
                ax.axvspan(minutes(r.window_start_ns), minutes(r.window_end_ns), ymin=0, ymax=1 / 1.2,
                           **UNFAMILIAR_STYLE)
            degraded = [r for r in rows if r.degraded]
            if degraded:
                ax.plot(minutes([(r.window_start_ns + r.window_end_ns) // 2 for r in degraded]),
                        [0.03] * len(degraded), "k.", markersize=3, label="degraded window")
        truth = np.asarray(truth_by_sensor.get(sensor_id, np.zeros((0, 3), np.int64)))
        for start, end, label in truth:
            ax.axvspan(minutes(start), minutes(end), ymin=_TRUTH_BAND[0] / 1.2, ymax=_TRUTH_BAND[1] / 1.2,
                       color=CLASS_COLOURS[CLASS_NAMES[int(label)]], linewidth=0)
        for event in (e for e in events if e.sensor_id == sensor_id):
            colour, marker, _ = EVENT_STYLE[event.kind]
            x = float(minutes(event.window_end_ns))
            ax.axvline(x, color=colour, linewidth=1.2, linestyle="--")
            ax.plot([x], [0.97], marker=marker, color=colour, markersize=9, markeredgecolor="black")
            ax.annotate(event.class_name, (x, 0.9), xytext=(3, 0), textcoords="offset points", fontsize=8,
                        color=colour)
        ax.set_ylim(0, 1.2)
        ax.set_yticks([0, 0.5, 1.0, sum(_TRUTH_BAND) / 2], ["0", "0.5", "1", "truth"])
        ax.set_ylabel(sensor_id)
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("minutes from start of recording (event time)")
    handles = [Patch(color=CLASS_COLOURS[c], label=c) for c in CLASS_NAMES]
    if any(r.unfamiliar for r in results):
        handles.append(Patch(label="unfamiliar (no vote)", **UNFAMILIAR_STYLE))
    handles += [
        plt.Line2D([], [], color=c, marker=m, linestyle="--", label=label) for c, m, label in EVENT_STYLE.values()
    ]
    fig.suptitle((title or "Replay: class probabilities per window, alarms, truth") + note, fontsize=10)
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    save_figure(fig, path, dpi=110, rect=(0, 0.05, 1, 1))
    return path
