"""The observability stack's own protocols: Prometheus remote_write and OTLP/HTTP metrics in, a
Prometheus-compatible read API and an autoscaler hook out. Samples become contract records and go
through ingest's one write path; nothing here imports the dashboard, and the web process never
reaches torch (import-linter contracts in pyproject.toml)."""
