"""``python -m binderhub_service``: the same as the ``binderhub-service`` command."""

from .app import main

main()
