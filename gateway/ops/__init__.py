"""Operating Sealgate: metrics, structured logs, health endpoints, systemd notification and
the config check (README, "Operating Sealgate")."""
