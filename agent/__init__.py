"""The MAD edge agent: MQTT in, windows, batched inference, alarms out (`mad-agent`)."""
