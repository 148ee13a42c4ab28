"""Build executors: where repo2docker actually runs."""
