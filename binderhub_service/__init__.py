"""binderhub-service: a standalone image-build service for JupyterHub."""

__version__ = "0.1.0.dev0"
