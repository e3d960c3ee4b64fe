"""Metrics: operator metrics (Prometheus) now; the live conversion metrics come with the funnel."""
