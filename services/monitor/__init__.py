"""The monitor service: follows the estimates topic and serves /metrics, /healthz, /estimate."""
