"""Fixtures of the Helm chart tests (defined in chart_helpers)."""

from chart_helpers import helm, render

__all__ = ["helm", "render"]
