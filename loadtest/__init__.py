"""Locust load tests of liveserver: an audience and its hosts, the evening and spike shapes, one
command that runs them headless and checks the server's invariants afterwards (README.md)."""
