"""Thin Tornado request handlers."""
