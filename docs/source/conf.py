"""Sphinx configuration for the binderhub-service documentation."""

project = "binderhub-service"
author = "binderhub-service contributors"
extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "alabaster"
myst_enable_extensions = ["deflist"]
myst_heading_anchors = 3
