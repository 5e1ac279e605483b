#!/usr/bin/env python3
"""Reference PD sensor publisher for the MAD agent's MQTT contract, wire version 1 (docs/mqtt.md).

Standalone on purpose: needs only paho-mqtt 2.x and numpy, so a sensor vendor can read it top to
bottom and port it. It sends synthetic 1 s PD chunks in real time to `mad/sensors/<id>/pd` and,
every 20 s, a PRPD image of the finished window to `mad/sensors/<id>/prpd`.

    python reference_publisher.py --host localhost --sensor bay3 --seconds 60
"""

from __future__ import annotations

import argparse
import struct
import time
import zlib

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

# ---- the wire format: everything a vendor must reproduce ------------------------------------------------
PD_HEADER = struct.Struct("<4sBBHQqffI")  # magic, version, dtype, flags, seq, t0_ns, rate, power freq, count
PRPD_HEADER = struct.Struct("<4sBBHqI")  # magic, version, image format, flags, window_start_ns, image bytes
WIRE_VERSION = 1
DTYPE_INT16 = 1
FORMAT_PNG = 1
WINDOW_S = 20
IMAGE_SIZE = 256


def pd_chunk(seq: int, t0_ns: int, samples: np.ndarray, rate_hz: float, power_hz: float) -> bytes:
    """36-byte header + little-endian int16 samples."""
    body = np.asarray(samples, dtype="<i2").tobytes()
    return PD_HEADER.pack(b"MADP", WIRE_VERSION, DTYPE_INT16, 0, seq, t0_ns, rate_hz, power_hz, len(samples)) + body


def prpd_frame(window_start_ns: int, png: bytes) -> bytes:
    """20-byte header + PNG bytes."""
    return PRPD_HEADER.pack(b"MADI", WIRE_VERSION, FORMAT_PNG, 0, window_start_ns, len(png)) + png


def png_rgb(image: np.ndarray) -> bytes:
    """(H, W, 3) uint8 -> PNG, with the standard library only."""
    height, width, _ = image.shape
    raw = b"".join(b"\x00" + image[row].tobytes() for row in range(height))  # filter byte 0 per scanline

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# ---- a synthetic sensor ----------------------------------------------------------------------------------
def synthetic_second(rng: np.random.Generator, t0_s: float, rate_hz: float, power_hz: float) -> np.ndarray:
    """One second of ADC counts: noise plus discharge pulses near the voltage peaks (corona-like)."""
    n = int(rate_hz)
    phase = 2 * np.pi * power_hz * (t0_s + np.arange(n) / rate_hz)
    signal = rng.normal(0, 20, n)
    pulses = (rng.random(n) < 0.01) & (np.sin(phase) > 0.9)
    signal[pulses] += rng.normal(800, 150, pulses.sum())
    return np.clip(signal, -32768, 32767).astype(np.int16)


def prpd_image(window: np.ndarray, t0_s: float, rate_hz: float, power_hz: float) -> np.ndarray:
    """Phase (x) vs amplitude (y) histogram of a window, as a 256x256 RGB image."""
    phase = (power_hz * (t0_s + np.arange(window.size) / rate_hz)) % 1.0
    amplitude = (window.astype(np.float64) - window.min()) / max(1.0, float(np.ptp(window)))
    counts, _, _ = np.histogram2d(amplitude, phase, bins=IMAGE_SIZE, range=[[0, 1], [0, 1]])
    level = (255 * np.log1p(counts) / max(1.0, np.log1p(counts).max())).astype(np.uint8)[::-1]
    return np.stack([level, level // 2, 255 - level], axis=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--sensor", default="sensor-1", help="sensor id: [A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
    parser.add_argument("--seconds", type=int, default=60, help="how long to publish")
    parser.add_argument("--rate", type=float, default=7680.0, help="samples per second")
    parser.add_argument("--power", type=float, default=60.0, help="power frequency, Hz")
    parser.add_argument("--username")
    parser.add_argument("--password-file", help="first line is the broker password")
    parser.add_argument("--tls-ca", help="CA file: enables TLS")
    parser.add_argument("--fast", action="store_true", help="do not wait for real time (tests, demos)")
    args = parser.parse_args()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"mad-sensor-{args.sensor}", protocol=mqtt.MQTTv5)
    if args.username:
        password = None
        if args.password_file:
            with open(args.password_file, encoding="utf-8") as handle:
                password = handle.readline().strip()
        client.username_pw_set(args.username, password)
    if args.tls_ca:
        client.tls_set(ca_certs=args.tls_ca)
    client.connect(args.host, args.port, keepalive=30)
    client.loop_start()

    rng = np.random.default_rng()
    start_ns = time.time_ns() // 1_000_000_000 * 1_000_000_000  # whole seconds keep windows aligned
    window: list[np.ndarray] = []
    for seq in range(args.seconds):
        t0_ns = start_ns + seq * 1_000_000_000
        samples = synthetic_second(rng, t0_ns / 1e9, args.rate, args.power)
        last = client.publish(f"mad/sensors/{args.sensor}/pd", pd_chunk(seq, t0_ns, samples, args.rate, args.power),
                              qos=1)
        window.append(samples)
        if len(window) == WINDOW_S:
            window_start_ns = t0_ns - (WINDOW_S - 1) * 1_000_000_000
            image = prpd_image(np.concatenate(window), window_start_ns / 1e9, args.rate, args.power)
            last = client.publish(f"mad/sensors/{args.sensor}/prpd", prpd_frame(window_start_ns, png_rgb(image)),
                                  qos=1)
            window.clear()
        if not args.fast:
            time.sleep(max(0.0, (t0_ns + 1_000_000_000 - time.time_ns()) / 1e9))
    if args.seconds > 0:
        last.wait_for_publish(timeout=30)  # QoS 1 messages go out in order: the last PUBACK means all arrived
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    main()
