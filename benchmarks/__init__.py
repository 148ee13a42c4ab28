"""Benchmarks of binderhub-service against real components on loopback."""
