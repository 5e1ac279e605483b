"""MQTT load: K simulated sensors at full rate -> local Mosquitto -> the live agent (MAD_small).

Steps K up until the agent no longer keeps up, and prints per step: windows classified vs produced,
whether the agent "held" (every full window classified, the backlog drained within a few seconds of
the stream ending, no drops), result delay p50/p99 (sensor's window end UTC -> the agent decided the
window, wall clock; includes the 2 s reorder tolerance and the 1 s chunk), alarm delay (window end ->
alarm received by a subscriber), and the agent's RSS. The agent runs in this process (its RSS is
this process's), the simulator (`mad-agent simulate --pool`, cycling pre-generated windows) and
Mosquitto as child processes on the same cores. Bounded: at most len(--steps) steps of
~(20 x (--windows + 1) + 3) s each, and it stops at the first step that does not hold.

    .venv/bin/python bench/agent_load.py --steps 10,30,50 --windows 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tqdm import tqdm

from agent.core.pipeline import WindowResult
from agent.inference import Classifier, load_classifier
from agent.service import AgentService
from agent.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "models" / "mad_small.safetensors"
DRAIN_TIMEOUT_S = 20.0
MAX_DELAY_HELD_S = 15.0  # a window decided later than this after its end means a backlog


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen, int]:
    executable = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    process = subprocess.Popen([executable, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("mosquitto did not start")


def classifier_for(model: Path | None, workdir: Path) -> tuple[Classifier, str]:
    if model is None and SHIPPED.exists():
        model = SHIPPED
    if model is not None:
        return load_classifier(model), str(model)
    import mad
    from train.checkpoint import save_checkpoint

    path = save_checkpoint(workdir / "mad_small_untrained.safetensors", mad.build_model("mad_small", seed=0),
                           name="mad_small_untrained")
    return load_classifier(path), f"{path} (untrained mad_small: same cost, no meaningful alarms)"


def rss_mb() -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class AlarmWatch:
    def __init__(self, port: int) -> None:
        self.delays: list[float] = []
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="bench-watch")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("mad/alarms/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        event = json.loads(message.payload)
        self.delays.append(time.time_ns() / 1e9 - event["window_end_ns"] / 1e9)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_step(k: int, windows: int, port: int, classifier: Classifier, workdir: Path, model_section: dict) -> dict:
    state = workdir / f"state-{k}"
    schedule = workdir / f"schedule-{k}.json"  # every sensor has a defect, so alarms flow
    schedule.write_text(json.dumps({str(s): [{"from_min": 0, "label": "Void", "intensity": 1.0}] for s in range(k)}))
    settings = load_settings(None, agent={"id": f"bench-{k}", "state_dir": str(state), "stats_interval_s": 5.0},
                             mqtt={"host": "127.0.0.1", "port": port}, metrics={"port": 0},
                             limits={"intake_queue": 100_000}, model=model_section)
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    def on_result(result: WindowResult) -> None:
        with lock:
            delay_s = time.time_ns() / 1e9 - result.window_end_ns / 1e9
            results.append((result.sensor_id, result.window_start_ns, delay_s))

    service = AgentService(settings, classifier, on_result=on_result)
    service.start()
    if not service.transport.wait_subscribed(10):
        raise RuntimeError("agent did not subscribe")
    watch = AlarmWatch(port)
    duration = 20 * (windows + 1) + 3  # one window spare: the stream starts mid-window
    started_ns = time.time_ns()
    sim = subprocess.Popen([sys.executable, "-m", "agent.cli", "simulate", "--broker", f"mqtt://127.0.0.1:{port}",
                            "--sensors", str(k), "--duration", str(duration), "--pool", "4", "--qos", "0",
                            "--schedule", str(schedule), "--prefix", f"k{k}-"],
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    max_intake, max_batch = 0, 0
    with tqdm(total=duration + 5, desc=f"K={k}", unit="s", leave=False) as bar:
        while sim.poll() is None:
            time.sleep(1.0)  # sampling queue depths once a second
            max_intake = max(max_intake, service.intake.depth)
            max_batch = max(max_batch, service.pipeline.batcher.pending_count())
            bar.update(1)
    sim_log = sim.stderr.read() if sim.stderr else ""
    if sim.returncode != 0:
        service.stop(ack_timeout_s=0.0)
        watch.close()
        raise RuntimeError(f"simulator failed ({sim.returncode}): {sim_log[-2000:]}")
    stream_end_ns = time.time_ns()
    # Every window whose end (+3 s for the watermark) lies inside the stream should be decided.
    first_full = -(-(started_ns + 5_000_000_000) // 20_000_000_000) * 20_000_000_000  # 5 s: simulator start-up
    full_windows = max(0, (stream_end_ns - 3_000_000_000 - first_full) // 20_000_000_000)
    expected = k * full_windows
    deadline = time.monotonic() + DRAIN_TIMEOUT_S

    def decided_full() -> int:
        with lock:
            return sum(1 for _, start, _ in results if start >= first_full and
                       start + 20_000_000_000 <= stream_end_ns - 3_000_000_000)

    while decided_full() < expected and time.monotonic() < deadline:
        time.sleep(0.2)  # waiting (bounded) for the backlog to drain
    drained_s = (time.time_ns() - stream_end_ns) / 1e9
    counters = service.pipeline.counters()
    rss, peak = rss_mb()
    intake_dropped = service.intake.dropped
    service.stop(ack_timeout_s=2.0)
    watch.close()
    with lock:
        delays = np.array([d for _, start, d in results if start >= first_full]) if results else np.zeros(0)
    held = (decided_full() >= expected and intake_dropped == 0 and counters["inference_dropped_windows"] == 0
            and delays.size > 0 and float(np.percentile(delays, 99)) < MAX_DELAY_HELD_S)
    return {
        "k": k, "expected": expected, "decided": decided_full(), "held": held, "drain_s": drained_s,
        "p50": float(np.percentile(delays, 50)) if delays.size else float("nan"),
        "p99": float(np.percentile(delays, 99)) if delays.size else float("nan"),
        "alarm_p50": float(np.percentile(watch.delays, 50)) if watch.delays else float("nan"),
        "alarms": len(watch.delays), "max_intake": max_intake, "max_batch_pending": max_batch,
        "intake_dropped": intake_dropped, "inference_dropped": counters["inference_dropped_windows"],
        "infer_ms_per_window": 1000 * counters["inference_seconds_total"] / max(counters["inference_windows"], 1),
        "rss_mb": rss, "peak_rss_mb": peak, "sim": sim_log.strip().splitlines()[-1:] or [""],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="10,30,50", help="sensor counts to try, ascending")
    parser.add_argument("--windows", type=int, default=3, help="full 20 s windows per step")
    parser.add_argument("--queue-batches", type=int, help="model.queue_batches (default: the agent's default)")
    parser.add_argument("--batch-max", type=int, help="model.batch_max (default: the agent's default)")
    parser.add_argument("--model", type=Path, help="default: models/mad_small.safetensors, else untrained mad_small")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    if not steps or min(steps) < 1 or args.windows < 1:
        parser.error("--steps must be positive integers and --windows >= 1")
    workdir = Path(tempfile.mkdtemp(prefix="mad-agent-load-"))
    broker, port = start_mosquitto(workdir)
    try:
        classifier, model_desc = classifier_for(args.model, workdir)
        load = os.getloadavg()
        print(f"model: {model_desc}; torch threads: {__import__('torch').get_num_threads()}; "
              f"cpus: {os.cpu_count()}; load average before: {load[0]:.1f}")
        model_section = {key: value for key, value in (("queue_batches", args.queue_batches),
                                                       ("batch_max", args.batch_max)) if value is not None}
        print(f"model settings: {load_settings(None, model=model_section).model}")
        rows = []
        for k in steps:
            row = run_step(k, args.windows, port, classifier, workdir, model_section)
            row["load"] = os.getloadavg()[0]
            rows.append(row)
            print(f"K={k:>4}  windows {row['decided']}/{row['expected']}  held={'yes' if row['held'] else 'NO '}  "
                  f"result delay p50 {row['p50']:.2f} s p99 {row['p99']:.2f} s  alarms {row['alarms']} "
                  f"(delay p50 {row['alarm_p50']:.2f} s)  max intake {row['max_intake']}  "
                  f"max batch pending {row['max_batch_pending']}  drops {row['intake_dropped']}/"
                  f"{row['inference_dropped']}  infer {row['infer_ms_per_window']:.0f} ms/window  "
                  f"RSS {row['rss_mb']:.0f} MB (peak {row['peak_rss_mb']:.0f})  load {row['load']:.1f}", flush=True)
            if not row["held"]:
                break
        held = [r["k"] for r in rows if r["held"]]
        print(f"largest K held in real time: {max(held) if held else 'none of the steps'}")
    finally:
        broker.terminate()
        broker.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
