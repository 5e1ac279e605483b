"""Soak: N sensors for an hour (default) through a real Mosquitto into a real agent process, with chaos.

    nice -n 10 .venv/bin/python bench/soak.py --sensors 8 --duration-s 3600 --out soak.json --plot soak.png

What runs (all on this machine, everything started by this script in a temporary folder):
- Mosquitto on a free port with persistence (`autosave_interval` --broker-autosave-s, default 1 s;
  mosquitto's own default of 1800 s loses every session and queued message since the last save on a
  SIGKILL, which would be the broker's loss, not the agent's).
- The agent as a process: `python -m agent.cli run --config <generated toml>` (MAD_ variables removed
  from its environment), `models/mad_small.safetensors`, default alarm settings (k-of-n 3 of 5,
  `clear_after` 3), `model.threads` 1. Killed with SIGKILL on a schedule and restarted on the same
  state dir; if it ever exits on its own it is restarted too (counted as a crash, like systemd would).
- Sensors: `agent.simulator.plan_messages` (what `mad-agent simulate` publishes), paced in real time by
  `run_simulation` in a thread of this process, QoS 1, preset `easy`, a fresh generated window per
  (sensor, window). Event time starts at a 20 s window boundary and follows the wall clock. The
  stream is --duration-s plus a 3 s tail, so its last full window closes on the watermark.
- Broker restarts: SIGKILL, --broker-down-s seconds (random in the range), start on the same port
  with the same persistence file.
- A trickle of hostile input (one message every --hostile-interval-s on average, exponential gaps)
  to `mad/sensors/hostile-<0..3>/{pd,prpd}`: random bytes, truncated headers, claimed rates of
  1e8 Hz / NaN / 0, a 1000 Hz power frequency, a timestamp 10 days ahead, a count that disagrees
  with the payload, a sensor id the contract refuses, and a well-formed 1-sample chunk at the highest
  rate the agent admits (2 MHz: accepted by contract, it makes the agent set a 120 MB window aside
  until the idle timer closes it; it is the one kind not expected to be rejected).
- An independent watcher: paho, MQTT 3.1.1, fixed client id, clean_session False, QoS 1 on
  `mad/alarms/#` and `mad/agent/soak/#`; it records every delivery with its arrival time.
- The agent's RSS (/proc/<pid>/status VmRSS, and the broker's) every --rss-interval-s.

Expected alarms (explicit, computed before the run from --seed):
- The run has W = floor(duration / 20) full windows, indexed from the stream start.
- With >= 3 sensors, the last one is a Noise control and the one before it a Normal control: they
  must raise nothing. Every other sensor is Normal except for fault episodes: episode e of sensor s
  shows one defect class (Void, Corona or Surface, intensity --intensity) for windows
  [a_e, b_e), with b_e - a_e drawn from --episode-windows and Normal gaps between episodes drawn
  from --gap-windows. The first episode starts at window >= 2 (the agent is up before the stream
  starts), and every episode ends at least `clear_after` + 1 windows before W, so its `end` is due
  inside the stream.
- Each episode must produce exactly one `new` (class = the episode's class) and one `end`; no
  `update` is expected (constant intensity, one class), but updates are counted, not failed.
- Events are attributed by their `window_start_ns`: an event of sensor s whose window index lies in
  [a_e, a_{e+1}) (or up to the end of the run for the last episode) belongs to episode e; any event
  of a control sensor, or before a sensor's first episode, is a false alarm.
- Why these windows reliably alarm: with the shipped model, easy-preset windows at intensity 0.7 and
  1.0 were classified 100 % correctly (Void, Corona, Surface, Normal, Noise; 6 sensors x 18 windows):
  `mad-train synth-recording --preset easy --sensors 6 --minutes 6 --schedule <episode schedule>`
  then `mad-agent replay` gave one `new` 3 windows after each episode started (k = 3) and one `end`
  3 windows after it stopped (`clear_after` = 3), no update, no false alarm. An episode of
  >= 8 windows leaves room for an agent restart (the window during the outage and the partial one
  after it are dropped by the gap policy, and an agent without durable alarm state needs k fresh
  votes) and a broker outage in the same episode.

Counted, not assumed:
- deliveries per kind; distinct event_ids; event_ids delivered more than once (a re-publish after an
  outage legitimately repeats the event_id with `historical` true; a QoS 1 redelivery may repeat it
  too): these are not duplicates of the alarm;
- per (sensor, episode): distinct `new` event_ids (more than one = a duplicated `new`: the alarm was
  raised again, e.g. by an agent that lost its alarm state in a SIGKILL), distinct `alarm_id`s where
  the events carry one (schema 2), `end`s, and the chaos actions that fell inside the episode;
- missing: episodes without a `new`, episodes without an `end`.
The agent's stats counters are read from its `mad/agent/soak/stats` messages (every 5 s): the last
message of each agent life, summed over lives (a SIGKILLed life loses up to 5 s of counts), plus the
last one before the final SIGTERM (rejected, outbox depth...) and the outbox rows left on disk after it.
"""

from __future__ import annotations

import argparse
import getpass
import itertools
import json
import math
import os
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tqdm import tqdm

from agent import wire
from agent.simulator import (
    BrokerUrl,
    SimulationConfig,
    WindowSource,
    connect_client,
    load_schedule,
    run_simulation,
)
from mad.constants import SAMPLE_RATE_HZ, WINDOW_SECONDS

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "mad_small.safetensors"
AGENT_ID = "soak"
WINDOW_NS = WINDOW_SECONDS * 1_000_000_000
DEFECTS = ("Void", "Corona", "Surface")
LEAD_IN_WINDOWS = 2  # Normal windows before a sensor's first episode can start
TAIL_S = 3.0  # past the last full window, so the watermark closes it
CLEAR_AFTER = 3  # the agent's default alarms.clear_after (the generated config keeps the defaults)
STATS_INTERVAL_S = 5.0
CHAOS_MARGIN_S = 60.0  # no chaos in the first and (after this many s) last seconds of the stream
CHAOS_SPACING_S = 40.0  # at least this apart, so each disruption can be told apart
HOSTILE_SENSORS = 4
ONLINE_TIMEOUT_S = 180.0  # agent start to `online` on this loaded box (torch import + model load)


# ----------------------------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def matmul_peak() -> tuple[float, int]:
    """fp32 GFLOP/s of a 2048^3 torch matmul (best of 5, ~1-2 s), the helper bench/model_latency.py uses."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from model_latency import matmul_peak_gflops

    return matmul_peak_gflops(), torch.get_num_threads()


def code_version() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        rev = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "agent", "mad")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not rev:
        return f"unknown ({REPO} is not a git checkout)"
    return rev + (" + uncommitted changes in agent/ or mad/" if dirty else "")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


# ----------------------------------------------------------------------------------------------- the plan


@dataclass
class Episode:
    sensor: int
    index: int  # within the sensor
    label: str
    first: int  # first window of the defect
    stop: int  # first Normal window after it
    region_end: int  # events with window index in [first, region_end) belong to this episode


def parse_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    lo_i, hi_i = int(lo), int(hi or lo)
    if not 1 <= lo_i <= hi_i:
        raise argparse.ArgumentTypeError(f"{text!r}: expected LO-HI with 1 <= LO <= HI")
    return lo_i, hi_i


def plan_faults(rng: random.Random, sensors: int, windows: int, controls: int, episode_windows: tuple[int, int],
                gap_windows: tuple[int, int], intensity: float) -> tuple[dict, list[Episode], dict[int, str]]:
    """-> (schedule JSON for the simulator, episodes, role per sensor)."""
    roles: dict[int, str] = {}
    for s in range(sensors):
        roles[s] = "defect"
    if controls >= 1 and sensors >= 3:
        roles[sensors - 1] = "control Noise"
    if controls >= 2 and sensors >= 3:
        roles[sensors - 2] = "control Normal"
    schedule: dict[str, list[dict]] = {}
    episodes: list[Episode] = []
    last_stop = windows - CLEAR_AFTER - 1  # the `end` (3rd clean window) lands inside the stream
    for s in range(sensors):
        if roles[s] == "control Noise":
            schedule[str(s)] = [{"from_min": 0, "label": "Noise", "intensity": intensity}]
            continue
        steps: list[dict] = [{"from_min": 0, "label": "Normal"}]
        room = last_stop - episode_windows[0] - LEAD_IN_WINDOWS  # latest feasible stagger
        w = LEAD_IN_WINDOWS + rng.randint(0, max(0, min(gap_windows[0], room)))
        mine: list[Episode] = []
        while roles[s] == "defect":
            length = rng.randint(*episode_windows)
            if w + length > last_stop:
                length = last_stop - w  # shorten the last one rather than drop it, down to the minimum
                if length < episode_windows[0]:
                    break
            label = rng.choice(DEFECTS)
            mine.append(Episode(s, len(mine), label, w, w + length, windows + 1))
            steps.append({"from_min": w * WINDOW_SECONDS / 60, "label": label, "intensity": intensity})
            steps.append({"from_min": (w + length) * WINDOW_SECONDS / 60, "label": "Normal"})
            w += length + rng.randint(*gap_windows)
        for before, after in itertools.pairwise(mine):
            before.region_end = after.first
        episodes += mine
        schedule[str(s)] = steps
    return schedule, episodes, roles


@dataclass
class ChaosAction:
    at_s: float  # planned, seconds after the stream start
    kind: str  # "broker" | "agent"
    down_s: float
    done_at_s: float | None = None  # when the kill happened
    up_at_s: float | None = None  # broker: accepting again; agent: process started again
    online_at_s: float | None = None  # agent: first `online` status after the restart


def plan_chaos(rng: random.Random, duration_s: float, broker_restarts: int, agent_kills: int,
               broker_down: tuple[float, float], agent_down: tuple[float, float]) -> list[ChaosAction]:
    lo, hi = CHAOS_MARGIN_S, duration_s - CHAOS_MARGIN_S
    kinds = ["broker"] * broker_restarts + ["agent"] * agent_kills
    rng.shuffle(kinds)
    capacity = int((hi - lo) // CHAOS_SPACING_S) + 1 if hi >= lo else 0
    if len(kinds) > capacity:
        print(f"warning: {len(kinds)} chaos actions do not fit {CHAOS_SPACING_S:g} s apart in "
              f"{lo:g}..{hi:g} s; keeping {capacity}", file=sys.stderr)
        kinds = kinds[:capacity]
    times: list[float] = []
    for _ in range(10_000):
        if len(times) == len(kinds):
            break
        t = rng.uniform(lo, hi)
        if all(abs(t - u) >= CHAOS_SPACING_S for u in times):
            times.append(t)
    else:  # crowded: fall back to an even spread
        step = (hi - lo) / max(len(kinds) - 1, 1)
        times = [lo + i * step for i in range(len(kinds))]
    times.sort()
    return [ChaosAction(t, kind, rng.uniform(*(broker_down if kind == "broker" else agent_down)))
            for t, kind in zip(times, kinds, strict=True)]


# ----------------------------------------------------------------------------------------------- processes


class Broker:
    """Mosquitto with persistence on a fixed port; `kill` is SIGKILL, `start` reuses port and database."""

    def __init__(self, workdir: Path, autosave_s: int) -> None:
        self.executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = free_port()
        self.log = workdir / "mosquitto.log"
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join([
            f"user {getpass.getuser()}",  # as root, mosquitto would drop to `mosquitto` and lose the temp dir
            f"listener {self.port} 127.0.0.1", "allow_anonymous true",
            "persistence true", f"persistence_location {workdir}/", "persistence_file mosquitto.db",
            f"autosave_interval {autosave_s}", "max_queued_messages 100000",
            "log_dest stderr", "log_type error", "log_type warning",
        ]) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def start(self, timeout_s: float = 15.0) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([self.executable, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.05)  # polling for the listener

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self.process = None


def write_agent_config(workdir: Path, port: int, model: Path, threads: int) -> Path:
    path = workdir / "agent.toml"
    path.write_text(f"""
[agent]
id = "{AGENT_ID}"
state_dir = "{workdir / 'state'}"
stats_interval_s = {STATS_INTERVAL_S}
[model]
path = "{model}"
threads = {threads}
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.2
reconnect_max_s = 2.0
[metrics]
port = 0
[logging]
format = "json"
""")
    return path


class Agent:
    """The agent process; `life` counts starts (1 = the first)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.life = 0
        self.starts: list[float] = []  # wall time of every start
        self.crashes: list[tuple[float, int]] = []  # (wall time, exit code) of exits nobody asked for
        self._killed = False  # SIGKILLed on purpose, restart pending: not a crash

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAD_")}
        self.starts.append(time.time())
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(self.config)],
                                            cwd=REPO, env=env, stdout=out, stderr=out)
        self.life += 1
        self._killed = False

    def kill(self) -> None:
        with self.lock:
            self._killed = True
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
                self.process.wait(30)

    def restart(self) -> None:
        with self.lock:
            self.start()

    def check(self) -> bool:
        """Restart an agent that exited on its own (not killed by the soak); True if it did."""
        with self.lock:
            if self.process is None or self._killed or self.process.poll() is None:
                return False
            self.crashes.append((time.time(), self.process.returncode))
            self.start()
            return True

    def terminate(self, timeout_s: float = 60.0) -> int | None:
        with self.lock:
            if self.process is None:
                return None
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                return None


# ----------------------------------------------------------------------------------------------- MQTT clients


@dataclass
class Delivery:
    t: float  # wall time received
    topic: str
    payload: bytes


class Watcher:
    """Independent subscriber with a persistent session: records every delivery on alarms and agent topics."""

    def __init__(self, port: int, client_id: str) -> None:
        self.deliveries: list[Delivery] = []
        self.connects = 0
        self.sessions_lost = 0  # CONNACKs without a session (the broker forgot it: SIGKILL before autosave)
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1.0)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("watcher: no SUBACK")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connects += 1
        if self.connects > 1 and not flags.session_present:
            self.sessions_lost += 1
        client.subscribe([("mad/alarms/#", 1), (f"mad/agent/{AGENT_ID}/#", 1)])

    def _on_message(self, client, userdata, message) -> None:
        self.deliveries.append(Delivery(time.time(), message.topic, bytes(message.payload)))

    def alarms(self) -> list[tuple[float, dict]]:
        out = []
        for d in list(self.deliveries):
            if d.topic.startswith("mad/alarms/"):
                try:
                    out.append((d.t, json.loads(d.payload)))
                except ValueError:
                    out.append((d.t, {"malformed": d.payload[:200].decode("utf-8", "replace")}))
        return out

    def on(self, topic: str) -> list[Delivery]:
        return [d for d in list(self.deliveries) if d.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


HOSTILE_KINDS = ("random_bytes", "random_prpd", "truncated_header", "rate_1e8", "rate_nan", "rate_zero",
                 "power_1000hz", "future_time", "count_mismatch", "bad_sensor_id", "rate_2mhz_admitted")


def hostile_message(rng: random.Random, seq: int) -> tuple[str, str, bytes]:
    """(kind, topic, payload): one message the agent must survive; all but the last kind must be refused."""
    kind = rng.choice(HOSTILE_KINDS)
    sensor = f"hostile-{rng.randrange(HOSTILE_SENSORS)}"
    now_ns = time.time_ns()

    def chunk(rate: float = float(SAMPLE_RATE_HZ), power: float = 60.0, t0_ns: int = now_ns, count: int = 1,
              samples: bytes = b"\x01\x00") -> bytes:
        return wire.PD_HEADER.pack(wire.PD_MAGIC, 1, 1, 0, seq, t0_ns, rate, power, count) + samples

    topic = f"mad/sensors/{sensor}/pd"
    if kind == "random_bytes":
        payload = rng.randbytes(rng.randrange(0, 300))
    elif kind == "random_prpd":
        topic, payload = f"mad/sensors/{sensor}/prpd", rng.randbytes(rng.randrange(0, 300))
    elif kind == "truncated_header":
        payload = chunk()[: rng.randrange(1, wire.PD_HEADER.size)]
    elif kind == "rate_1e8":  # the brief's example: struct.pack("<4sBBHQqffI", b"MADP", 1, 1, 0, 1, now, 1e8, 60, 1)
        payload = chunk(rate=1e8)
    elif kind == "rate_nan":
        payload = chunk(rate=math.nan)
    elif kind == "rate_zero":
        payload = chunk(rate=0.0)
    elif kind == "power_1000hz":
        payload = chunk(power=1000.0)
    elif kind == "future_time":
        payload = chunk(t0_ns=now_ns + 10 * 86_400 * 10**9)
    elif kind == "count_mismatch":
        payload = chunk(count=1000)
    elif kind == "bad_sensor_id":
        topic, payload = "mad/sensors/bad id!/pd", chunk()
    else:  # rate_2mhz_admitted: within the contract and the agent's limits; costs a window slot until idle close
        payload = chunk(rate=2_000_000.0)
    return kind, topic, payload


# ----------------------------------------------------------------------------------------------- analysis


def window_index(event: dict, start_ns: int) -> int:
    return (int(event["window_start_ns"]) - start_ns) // WINDOW_NS


def analyse(alarms: list[tuple[float, dict]], episodes: list[Episode], roles: dict[int, str], prefix: str,
            start_ns: int, chaos: list[ChaosAction]) -> dict:
    kinds = Counter(e.get("kind", "malformed") for _, e in alarms)
    by_id: dict[str, list[tuple[float, dict]]] = defaultdict(list)
    for t, e in alarms:
        by_id[e.get("event_id", f"malformed-{t}")].append((t, e))
    repeated = {i: d for i, d in by_id.items() if len(d) > 1}
    repeat_historical = sum(1 for d in repeated.values() for _, e in d[1:] if e.get("historical"))
    distinct = {i: d[0][1] for i, d in by_id.items()}
    distinct_kinds = Counter(e.get("kind", "malformed") for e in distinct.values())
    sensor_index = {f"{prefix}{s}": s for s in roles}

    attributed: dict[tuple[int, int], list[dict]] = defaultdict(list)
    false_alarms: list[dict] = []
    for e in distinct.values():
        s = sensor_index.get(e.get("sensor_id", ""))
        if s is None or "window_start_ns" not in e:
            false_alarms.append(e)
            continue
        w = window_index(e, start_ns)
        home = [ep for ep in episodes if ep.sensor == s and ep.first <= w < ep.region_end]
        if home:
            attributed[(s, home[0].index)].append(e)
        else:
            false_alarms.append(e)

    def chaos_in(ep: Episode) -> list[str]:
        lo, hi = ep.first * WINDOW_SECONDS, ep.region_end * WINDOW_SECONDS
        return [f"{c.kind}@{c.done_at_s:.0f}s" for c in chaos if c.done_at_s is not None and lo <= c.done_at_s < hi]

    rows = []
    for ep in episodes:
        events = sorted(attributed.get((ep.sensor, ep.index), []),
                        key=lambda e: (e["window_start_ns"], e.get("seq", -1)))
        new = [e for e in events if e["kind"] == "new"]
        ends = [e for e in events if e["kind"] == "end"]
        alarm_ids = {e["alarm_id"] for e in events if e.get("alarm_id")}
        problems = []
        if not new:
            problems.append("missing new")
        if len(new) > 1:
            problems.append(f"duplicated new x{len(new)}")
        if not ends:
            problems.append("missing end")
        if len(ends) > 1:
            problems.append(f"{len(ends)} ends")
        if new and new[0].get("class") != ep.label:
            problems.append(f"class {new[0].get('class')} != {ep.label}")
        if len(alarm_ids) > 1:
            problems.append(f"{len(alarm_ids)} alarm_ids")
        rows.append({
            "sensor": f"{prefix}{ep.sensor}", "episode": ep.index, "label": ep.label,
            "windows": [ep.first, ep.stop], "region_end": ep.region_end,
            "new": len(new), "update": sum(e["kind"] == "update" for e in events), "end": len(ends),
            "alarm_ids": len(alarm_ids), "resumed": sum(bool(e.get("resumed")) for e in events),
            "events": [f"{e['kind']} w{window_index(e, start_ns)} seq {e.get('seq')}"
                       + (" resumed" if e.get("resumed") else "") + (" historical" if e.get("historical") else "")
                       for e in events],
            "chaos": chaos_in(ep), "problems": problems,
        })

    per_sensor = []
    for s, role in roles.items():
        mine = [r for r in rows if r["sensor"] == f"{prefix}{s}"]
        per_sensor.append({
            "sensor": f"{prefix}{s}", "role": role, "episodes": [r["label"] for r in mine],
            "expected_new": len(mine), "expected_end": len(mine),
            "new": sum(r["new"] for r in mine), "update": sum(r["update"] for r in mine),
            "end": sum(r["end"] for r in mine),
            "false": sum(1 for e in false_alarms if e.get("sensor_id") == f"{prefix}{s}"),
        })
    delays = [t - e["window_end_ns"] / 1e9 for t, e in alarms
              if not e.get("historical") and "window_end_ns" in e]
    return {
        "deliveries": len(alarms), "deliveries_by_kind": dict(kinds),
        "distinct_event_ids": len(distinct), "distinct_by_kind": dict(distinct_kinds),
        "event_ids_delivered_more_than_once": len(repeated), "repeat_deliveries_marked_historical": repeat_historical,
        "repeat_deliveries": sum(len(d) - 1 for d in repeated.values()),
        "expected_new": len(episodes), "expected_end": len(episodes),
        "episodes_ok": sum(1 for r in rows if not r["problems"]),
        "episodes_duplicated_new": sum(1 for r in rows if r["new"] > 1),
        "episodes_missing_new": sum(1 for r in rows if r["new"] == 0),
        "episodes_missing_end": sum(1 for r in rows if r["end"] == 0),
        "episodes_wrong_class": sum(1 for r in rows if any(p.startswith("class") for p in r["problems"])),
        "extra_new": sum(max(0, r["new"] - 1) for r in rows),
        "false_alarms": len(false_alarms),
        "false_alarm_events": [{k: e.get(k) for k in ("sensor_id", "kind", "class", "seq", "window_start_ns")}
                               for e in false_alarms],
        "alarm_delay_s": {"n": len(delays), "p50": float(np.median(delays)) if delays else None,
                          "max": max(delays) if delays else None},
        "per_sensor": per_sensor, "episodes": rows,
    }


def stats_by_life(watcher: Watcher, life_starts: list[float]) -> list[dict]:
    """The last stats message of each agent life (a life: from one start to the next)."""
    last: dict[int, dict] = {}
    for d in watcher.on(f"mad/agent/{AGENT_ID}/stats"):
        life = sum(1 for t in life_starts if t <= d.t)
        try:
            last[life] = json.loads(d.payload)
        except ValueError:
            continue
    return [last[k] for k in sorted(last)]


SUMMED = ("chunks_received", "frames_received", "windows_classified", "windows_dropped", "windows_forced",
          "late_samples", "rejected", "events_emitted", "intake_dropped", "inference_dropped_windows",
          "broker_connects")
SHOWN = ("rejected", "outbox_depth", "intake_depth", "intake_dropped", "windows_classified", "windows_dropped",
         "inference_dropped_windows", "events_emitted", "broker_connects", "sensors", "uptime_s")


def outbox_rows(state_dir: Path) -> int | None:
    total = None
    for path in sorted(state_dir.glob("*.sqlite3")):
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
                total = (total or 0) + int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        except sqlite3.Error:
            continue
    return total


def rss_table(samples: list[tuple[float, int, float | None, float | None]], rows: int = 12) -> list[str]:
    """(t, life, agent MB, broker MB) samples -> a few lines, one per time slice (min..max of the slice)."""
    if not samples:
        return []
    end = samples[-1][0]
    step = max(end / rows, 1e-9)
    lines = [f"  {'t (min)':>9}  {'agent life':>10}  {'agent RSS MB':>14}  {'broker RSS MB':>13}"]
    for i in range(rows):
        chunk = [s for s in samples if i * step <= s[0] < (i + 1) * step or (i == rows - 1 and s[0] == end)]
        agent = [s[2] for s in chunk if s[2] is not None]
        broker = [s[3] for s in chunk if s[3] is not None]
        if not chunk:
            continue
        lives = sorted({s[1] for s in chunk})
        life = str(lives[0]) if len(lives) == 1 else f"{lives[0]}-{lives[-1]}"
        agent_text = f"{min(agent):.0f}-{max(agent):.0f}" if agent else "-"
        broker_text = f"{max(broker):.1f}" if broker else "-"
        lines.append(f"  {i * step / 60:>4.1f}-{(i + 1) * step / 60:<4.1f}  {life:>10}  {agent_text:>14}  "
                     f"{broker_text:>13}")
    return lines


def plot(path: Path, samples, alarms, episodes, roles, prefix, start_ns, chaos, t0: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, height_ratios=(1, 1.4))
    minutes = [s[0] / 60 for s in samples]
    top.plot(minutes, [s[2] if s[2] is not None else np.nan for s in samples], label="agent RSS")
    top.plot(minutes, [s[3] if s[3] is not None else np.nan for s in samples], label="mosquitto RSS")
    top.set_ylabel("RSS (MB)")
    for ax in (top, bottom):
        for c in chaos:
            if c.done_at_s is not None:
                ax.axvline(c.done_at_s / 60, color="red" if c.kind == "agent" else "orange",
                           ls="--" if c.kind == "agent" else ":", lw=1)
    top.plot([], [], color="red", ls="--", label="agent SIGKILL")
    top.plot([], [], color="orange", ls=":", label="broker SIGKILL")
    top.legend(loc="upper left", fontsize=8)
    offset_s = start_ns / 1e9 - t0  # event time -> seconds after the stream start (0 by construction)
    for ep in episodes:
        bottom.barh(ep.sensor, (ep.stop - ep.first) * WINDOW_SECONDS / 60, left=(ep.first * WINDOW_SECONDS
                    + offset_s) / 60, height=0.6, color="0.85")
        bottom.text((ep.first * WINDOW_SECONDS + offset_s) / 60, ep.sensor + 0.35, ep.label, fontsize=6)
    styles = {"new": ("^", "green"), "update": ("o", "blue"), "end": ("v", "black")}
    index = {f"{prefix}{s}": s for s in roles}
    for kind, (marker, color) in styles.items():
        pts = [((t - t0) / 60, index[e["sensor_id"]], e.get("historical")) for t, e in alarms
               if e.get("kind") == kind and e.get("sensor_id") in index]
        for hist in (False, True):
            xs = [p[0] for p in pts if bool(p[2]) == hist]
            ys = [p[1] for p in pts if bool(p[2]) == hist]
            bottom.scatter(xs, ys, marker=marker, facecolors="none" if hist else color, edgecolors=color,
                           label=f"{kind}{' (historical)' if hist else ''}", zorder=3)
    bottom.set_yticks(list(roles), [f"{prefix}{s} ({roles[s].replace('control ', 'ctl ')})" for s in roles],
                      fontsize=7)
    bottom.set_xlabel("minutes since the stream started (alarms at arrival; grey: scheduled fault episodes)")
    bottom.legend(loc="upper right", fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- the run


@dataclass
class Run:
    sensors_published: dict = field(default_factory=dict)
    hostile_sent: Counter = field(default_factory=Counter)
    rss: list = field(default_factory=list)  # (t since stream start, life, agent MB, broker MB)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--duration-s", type=float, default=3600.0, help="seconds of sensor stream (event time)")
    parser.add_argument("--seed", type=int, default=0, help="fault episodes, chaos times, hostile input")
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--agent-threads", type=int, default=1, help="model.threads of the agent")
    parser.add_argument("--controls", type=int, default=2, choices=(0, 1, 2),
                        help="control sensors (last: Noise, then Normal) that must never alarm; needs >= 3 sensors")
    parser.add_argument("--episode-windows", type=parse_range, default=(8, 14), help="fault episode length, windows")
    parser.add_argument("--gap-windows", type=parse_range, default=(6, 12), help="Normal windows between episodes")
    parser.add_argument("--intensity", type=float, default=1.0, help="defect intensity of every episode (0..1)")
    parser.add_argument("--broker-restarts", type=int, help="default: one per 10 min of stream, at least 1")
    parser.add_argument("--agent-kills", type=int, help="default: one per 10 min of stream, at least 1")
    parser.add_argument("--broker-down-s", type=parse_range, default=(1, 8), help="broker outage, seconds")
    parser.add_argument("--agent-down-s", type=parse_range, default=(1, 5),
                        help="seconds between the SIGKILL and the restart (the agent's own start-up comes on top)")
    parser.add_argument("--broker-autosave-s", type=int, default=1, help="mosquitto autosave_interval")
    parser.add_argument("--hostile-interval-s", type=float, default=2.0, help="mean gap; 0 = no hostile input")
    parser.add_argument("--rss-interval-s", type=float, default=5.0)
    parser.add_argument("--drain-s", type=float, default=60.0, help="at most this long for the last alarms")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG of RSS and alarms over time here")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the temp dir (logs, broker db, state)")
    args = parser.parse_args()
    if args.sensors < 1 or args.duration_s < 120 or not 0 <= args.intensity <= 1:
        parser.error("--sensors >= 1, --duration-s >= 120 and --intensity within 0..1")
    if not args.model.exists():
        parser.error(f"--model {args.model}: not found")

    per_10_min = max(1, round(args.duration_s / 600))
    broker_restarts = per_10_min if args.broker_restarts is None else args.broker_restarts
    agent_kills = per_10_min if args.agent_kills is None else args.agent_kills
    rng = random.Random(args.seed)
    windows = int(args.duration_s // WINDOW_SECONDS)
    schedule, episodes, roles = plan_faults(rng, args.sensors, windows, args.controls, args.episode_windows,
                                            args.gap_windows, args.intensity)
    chaos = plan_chaos(rng, windows * WINDOW_SECONDS, broker_restarts, agent_kills, args.broker_down_s,
                       args.agent_down_s)
    hostile_rng = random.Random(args.seed + 1)

    machine = {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    machine["matmul_fp32_gflops"], machine["torch_threads"] = matmul_peak()
    machine["code"] = code_version()
    print(f"machine: {machine['cpu_model']}, {machine['cpus']} CPUs, torch fp32 matmul peak "
          f"{machine['matmul_fp32_gflops']:.1f} GFLOP/s ({machine['torch_threads']} threads), load average "
          f"{machine['load_before']:.2f}; code {machine['code']}", flush=True)
    print(f"plan: {args.sensors} sensors x {windows} windows ({windows * WINDOW_SECONDS} s), seed {args.seed}; "
          f"{len(episodes)} fault episodes; chaos: "
          + ", ".join(f"{c.kind} at {c.at_s:.0f} s (down {c.down_s:.1f} s)" for c in chaos), flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="mad-soak-"))
    (workdir / "schedule.json").write_text(json.dumps(schedule, indent=1))
    broker = Broker(workdir, args.broker_autosave_s)
    broker.start()
    agent = Agent(write_agent_config(workdir, broker.port, args.model.resolve(), args.agent_threads),
                  workdir / "agent.log")
    run = Run()
    status_topic = f"mad/agent/{AGENT_ID}/status"
    stop = threading.Event()
    ok = False
    sensors_client = hostile_client = None
    watcher = None
    threads: list[threading.Thread] = []
    try:
        watcher = Watcher(broker.port, f"mad-soak-watcher-{broker.port}")
        agent.start()
        startup = wait_online(watcher, status_topic, agent.starts[0], agent)
        print(f"agent online after {startup:.1f} s (log {agent.log})", flush=True)

        url = BrokerUrl("127.0.0.1", broker.port, False)
        sensors_client = connect_client(url, f"mad-soak-sensors-{broker.port}")
        sensors_client.reconnect_delay_set(min_delay=0.2, max_delay=2.0)
        hostile_client = connect_client(url, f"mad-soak-hostile-{broker.port}")
        hostile_client.reconnect_delay_set(min_delay=0.2, max_delay=2.0)

        # Event time starts at the next window boundary, when the stream starts (so it follows the wall clock).
        start_ns = (time.time_ns() // WINDOW_NS + 1) * WINDOW_NS
        time.sleep(max(0.0, start_ns / 1e9 - time.time()))  # waiting for the window boundary
        t0 = time.time()
        mono0 = time.monotonic()
        config = SimulationConfig(sensors=args.sensors, duration_s=windows * WINDOW_SECONDS + TAIL_S,
                                  schedule=load_schedule(schedule, args.sensors, args.duration_s), start_ns=start_ns,
                                  seed=args.seed, preset="easy", power_freq_hz=60.0)
        source = WindowSource("easy", args.seed, 60.0)
        published = Counter()

        def publish(topic: str, payload: bytes) -> None:
            sensors_client.publish(topic, payload, qos=1)
            published["pd" if payload[:4] == wire.PD_MAGIC else "prpd"] += 1

        sim_report: dict = {}

        def sensors() -> None:
            sim_report.update(asdict(run_simulation(config, source, publish, stop)))

        def hostile() -> None:
            seq = 0
            while args.hostile_interval_s > 0:
                if stop.wait(hostile_rng.expovariate(1 / args.hostile_interval_s)):  # pacing the trickle
                    return
                if time.monotonic() - mono0 > windows * WINDOW_SECONDS:
                    return
                kind, topic, payload = hostile_message(hostile_rng, seq)
                hostile_client.publish(topic, payload, qos=1)
                run.hostile_sent[kind] += 1
                seq += 1

        def chaos_loop() -> None:
            for action in chaos:
                if stop.wait(max(0.0, mono0 + action.at_s - time.monotonic())):  # the planned moment
                    return
                action.done_at_s = time.time() - t0
                if action.kind == "broker":
                    broker.kill()
                    if stop.wait(action.down_s):  # the outage
                        broker.start()
                        return
                    broker.start()
                    action.up_at_s = time.time() - t0
                else:
                    agent.kill()
                    if stop.wait(action.down_s):
                        agent.restart()
                        return
                    agent.restart()
                    action.up_at_s = time.time() - t0

        threads = [threading.Thread(target=f, name=f.__name__, daemon=True) for f in (sensors, hostile, chaos_loop)]
        for thread in threads:
            thread.start()
        total_s = windows * WINDOW_SECONDS + TAIL_S
        next_rss = 0.0
        with tqdm(total=round(total_s), unit="s", desc="soak", mininterval=5) as bar:
            while threads[0].is_alive():
                time.sleep(1.0)  # the sampling tick
                elapsed = time.monotonic() - mono0
                if agent.check():
                    tqdm.write(f"agent exited on its own (code {agent.crashes[-1][1]}) at {elapsed:.0f} s: restarted")
                if elapsed >= next_rss:
                    next_rss = elapsed + args.rss_interval_s
                    run.rss.append((elapsed, agent.life, rss_mb(agent.pid), rss_mb(broker.pid)))
                bar.set_postfix(alarms=len(watcher.alarms()), lives=agent.life, rss=f"{run.rss[-1][2] or 0:.0f}MB",
                                refresh=False)
                bar.update(min(round(elapsed), bar.total) - bar.n)
        stream_end = time.monotonic()
        threads[2].join(120)  # a chaos action in progress finishes (broker/agent back up)
        # Drain: until 15 s without a new alarm delivery (at least 15 s, at most --drain-s).
        while time.monotonic() - stream_end < args.drain_s:
            time.sleep(1.0)  # polling for quiet
            agent.check()
            alarms_now = watcher.alarms()
            quiet = time.time() - (alarms_now[-1][0] if alarms_now else 0)
            elapsed = time.monotonic() - mono0
            if elapsed >= next_rss:
                next_rss = elapsed + args.rss_interval_s
                run.rss.append((elapsed, agent.life, rss_mb(agent.pid), rss_mb(broker.pid)))
            if time.monotonic() - stream_end >= 15 and quiet >= 15:
                break
        final_stats_at = time.time()
        deadline = time.monotonic() + 2 * STATS_INTERVAL_S + 2
        while time.monotonic() < deadline and not any(d.t >= final_stats_at for d in
                                                      watcher.on(f"mad/agent/{AGENT_ID}/stats")):
            time.sleep(0.2)  # waiting for one stats message after the drain
        stats_lives = stats_by_life(watcher, agent.starts)
        final_stats = stats_lives[-1] if stats_lives else {}
        exit_code = agent.terminate()
        time.sleep(2.0)  # the `stopped` status and anything flushed at shutdown reach the watcher
        stop.set()
        alarms = watcher.alarms()
        result = analyse(alarms, episodes, roles, config.sensor_prefix, start_ns, chaos)
        rss_values = [s[2] for s in run.rss if s[2] is not None]
        restart_online = []
        for action in chaos:
            if action.kind == "agent" and action.up_at_s is not None:
                online = [d.t - t0 for d in watcher.on(status_topic)
                          if d.payload == b"online" and d.t - t0 >= action.up_at_s]
                action.online_at_s = online[0] if online else None
                if online:
                    restart_online.append(online[0] - action.up_at_s)
        summed = {k: sum(s.get(k, 0) or 0 for s in stats_lives) for k in SUMMED}
        report = {
            "machine": machine, "load_after": os.getloadavg()[0],
            "command": " ".join(sys.argv),
            "sensors": args.sensors, "duration_s": args.duration_s, "windows": windows, "seed": args.seed,
            "model": str(args.model), "agent_threads": args.agent_threads, "agent_startup_s": startup,
            "roles": {f"{config.sensor_prefix}{s}": r for s, r in roles.items()},
            "published": dict(published), "simulator": sim_report,
            "broker_restarts": sum(1 for c in chaos if c.kind == "broker" and c.done_at_s is not None),
            "agent_kills": sum(1 for c in chaos if c.kind == "agent" and c.done_at_s is not None),
            "agent_crashes": [{"t": t - t0, "exit_code": rc} for t, rc in agent.crashes],
            "agent_lives": agent.life, "agent_restart_to_online_s": restart_online,
            "agent_exit_code_on_sigterm": exit_code,
            "chaos": [asdict(c) for c in chaos],
            "watcher_reconnects": watcher.connects - 1, "watcher_sessions_lost": watcher.sessions_lost,
            "hostile_sent": sum(run.hostile_sent.values()), "hostile_by_kind": dict(run.hostile_sent),
            "alarms": result,
            "rss_mb": {"min": min(rss_values, default=None), "median": statistics.median(rss_values)
                       if rss_values else None, "max": max(rss_values, default=None), "samples": run.rss},
            "stats_final": final_stats, "stats_summed_over_lives": summed,
            "outbox_rows_after_stop": outbox_rows(workdir / "state"),
            "workdir": str(workdir),
        }
        print_report(report, chaos)
        if args.out:
            args.out.write_text(json.dumps(report, indent=1, default=str))
            print(f"wrote {args.out}")
        if args.plot:
            plot(args.plot, run.rss, alarms, episodes, roles, config.sensor_prefix, start_ns, chaos, t0)
            print(f"wrote {args.plot}")
        (workdir / "alarms.jsonl").write_text("".join(json.dumps({"t": t, **e}) + "\n" for t, e in alarms))
        ok = True
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for client in (sensors_client, hostile_client):
            if client is not None:
                client.disconnect()
                client.loop_stop()
        if watcher is not None:
            watcher.close()
        agent.kill()
        broker.kill()
        if ok and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir} (agent.log, mosquitto.log, state/, alarms.jsonl)", file=sys.stderr)
            if not ok and agent.log.exists():
                print(agent.log.read_text()[-3000:], file=sys.stderr)
    return 0


def wait_online(watcher: Watcher, topic: str, since: float, agent: Agent) -> float:
    deadline = time.monotonic() + ONLINE_TIMEOUT_S
    while time.monotonic() < deadline:
        online = [d.t for d in watcher.on(topic) if d.payload == b"online" and d.t >= since]
        if online:
            return online[0] - since
        if agent.process is not None and agent.process.poll() is not None:
            raise RuntimeError(f"agent exited ({agent.process.returncode}) before going online")
        time.sleep(0.2)  # polling the watcher
    raise RuntimeError(f"agent not online after {ONLINE_TIMEOUT_S:g} s")


def print_report(r: dict, chaos: list[ChaosAction]) -> None:
    a = r["alarms"]
    m = r["machine"]
    print()
    print(f"== MAD soak: {r['sensors']} sensors x {r['duration_s']:g} s ({r['windows']} windows), seed {r['seed']}")
    print(f"machine: {m['cpu_model']}, {m['cpus']} CPUs, torch fp32 matmul peak {m['matmul_fp32_gflops']:.1f} "
          f"GFLOP/s; load average {m['load_before']:.2f} before, {r['load_after']:.2f} after; code {m['code']}")
    print(f"agent: {r['model']}, model.threads {r['agent_threads']}, first start to online "
          f"{r['agent_startup_s']:.1f} s")
    broker = [c for c in chaos if c.kind == "broker" and c.done_at_s is not None]
    kills = [c for c in chaos if c.kind == "agent" and c.done_at_s is not None]
    print(f"broker restarts: {len(broker)} (SIGKILL at " + (", ".join(f"{c.done_at_s:.0f} s, down {c.down_s:.1f} s"
                                                                    for c in broker) or "-") + ")")
    online = r["agent_restart_to_online_s"]
    print(f"agent kills: {len(kills)} (SIGKILL at " + (", ".join(f"{c.done_at_s:.0f} s" for c in kills) or "-")
          + f"), restarts to online {', '.join(f'{x:.1f}' for x in online) or '-'} s; crashes "
          f"{len(r['agent_crashes'])}; lives {r['agent_lives']}; exit code on the final SIGTERM "
          f"{r['agent_exit_code_on_sigterm']}")
    print(f"watcher: {r['watcher_reconnects']} reconnects, {r['watcher_sessions_lost']} without its session")
    print(f"published: {r['published'].get('pd', 0)} PD chunks, {r['published'].get('prpd', 0)} PRPD frames; "
          f"simulator max lag {r['simulator'].get('max_lag_s', 0):.2f} s")
    print(f"hostile messages sent: {r['hostile_sent']} (" + ", ".join(f"{k} {v}" for k, v in
                                                                  sorted(r['hostile_by_kind'].items())) + ")")
    print(f"alarms expected: {a['expected_new']} new, {a['expected_end']} end ({a['expected_new']} fault episodes)")
    by_kind = ", ".join(f"{k} {v}" for k, v in a["deliveries_by_kind"].items()) or "none"
    print(f"alarms received: {a['deliveries']} deliveries ({by_kind}); {a['distinct_event_ids']} distinct event ids ("
          + ", ".join(f"{k} {v}" for k, v in a["distinct_by_kind"].items()) + ")")
    print(f"re-deliveries: {a['event_ids_delivered_more_than_once']} event ids delivered more than once "
          f"({a['repeat_deliveries']} extra deliveries, {a['repeat_deliveries_marked_historical']} marked historical)")
    print(f"episodes: {a['episodes_ok']} ok, {a['episodes_duplicated_new']} with a duplicated new "
          f"({a['extra_new']} extra), {a['episodes_missing_new']} missing new, {a['episodes_missing_end']} missing "
          f"end, {a['episodes_wrong_class']} wrong class; false alarms {a['false_alarms']}")
    d = a["alarm_delay_s"]
    if d["n"]:
        print(f"alarm delay (window end -> watcher, live events): p50 {d['p50']:.1f} s, max {d['max']:.1f} s")
    print(f"  {'sensor':<10} {'role':<15} {'exp new/end':>11} {'new':>4} {'upd':>4} {'end':>4} {'false':>5}  episodes")
    for s in a["per_sensor"]:
        print(f"  {s['sensor']:<10} {s['role']:<15} {s['expected_new']:>5}/{s['expected_end']:<5} {s['new']:>4} "
              f"{s['update']:>4} {s['end']:>4} {s['false']:>5}  {' '.join(s['episodes']) or '-'}")
    problems = [e for e in a["episodes"] if e["problems"]]
    if problems or a["false_alarms"]:
        print("findings:")
    for e in problems:
        first, stop = e["windows"]
        print(f"  {e['sensor']} episode {e['episode']} ({e['label']}, windows {first}-{stop - 1}): "
              f"{'; '.join(e['problems'])}; events: {', '.join(e['events']) or 'none'}; chaos in it: "
              f"{', '.join(e['chaos']) or 'none'}")
    for e in a["false_alarm_events"]:
        print(f"  false alarm: {e}")
    rss = r["rss_mb"]
    if rss["min"] is not None:
        print(f"agent RSS MB: min {rss['min']:.0f}, median {rss['median']:.0f}, max {rss['max']:.0f} "
              f"({len(rss['samples'])} samples)")
        for line in rss_table(rss["samples"]):
            print(line)
    final = r["stats_final"]
    print("agent stats, last message before the final SIGTERM: "
          + ", ".join(f"{k} {final.get(k)}" for k in SHOWN if k in final))
    print("agent stats summed over lives (last message of each): "
          + ", ".join(f"{k} {v}" for k, v in r["stats_summed_over_lives"].items()))
    print(f"outbox rows on disk after the final stop: {r['outbox_rows_after_stop']}")


if __name__ == "__main__":
    sys.exit(main())
