"""Metrics: each room's live conversion metrics for its host, and the operator's (Prometheus)."""
