"""Thin Tornado handlers: validate, authorise, relay."""
