# repo2docker settings for machines whose Docker engine has no bridge network:
# builds run without a network and sources come from git only.
from repo2docker.contentproviders import Git

c = get_config()  # noqa: F821

c.DockerEngine.extra_buildx_build_args = ["--network=none"]
c.Repo2Docker.content_providers = [Git]
