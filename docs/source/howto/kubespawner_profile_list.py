# A KubeSpawner profile whose image can be one of a list or any image this
# service built ("Build your own image" in jupyterhub-fancy-profiles).
# Part of jupyterhub_config.py; tested by tests/hub/test_profiles.py.
from binderhub_service.spawner import image_name_regex

# The service's BinderHubService.image_prefix.
IMAGE_PREFIX = "registry.example.org/binder-"

c = get_config()  # noqa: F821
c.KubeSpawner.profile_list = [
    {
        "display_name": "Choose or build an image",
        "slug": "custom",
        "default": True,
        "profile_options": {
            "image": {
                "display_name": "Image",
                "choices": {
                    "minimal": {
                        "display_name": "Minimal",
                        "kubespawner_override": {"image": "quay.io/jupyter/minimal-notebook"},
                    },
                },
                "unlisted_choice": {
                    "enabled": True,
                    "display_name": "Image built by binderhub-service",
                    "validation_regex": image_name_regex(IMAGE_PREFIX),
                    "validation_message": f"An image built by the service: {IMAGE_PREFIX}...",
                    "kubespawner_override": {"image": "{value}"},
                },
                # jupyterhub-fancy-profiles 0.7: build the "unlisted" image from a
                # repository with the service at /services/binder/ before spawning.
                "dynamic_image_building": {"enabled": True},
            },
        },
    },
]
