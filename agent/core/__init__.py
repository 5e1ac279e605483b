"""The agent's pure core: windowing, pairing, batching, alarms. No MQTT, files or wall-clock time."""
