"""Fixtures of the Kubernetes executor tests (defined in k8s_emulator)."""

from k8s_emulator import (
    assert_valid,
    core_api,
    emulator,
    executor,
    kmock_options,
    kubelet,
    pod_logs,
)

__all__ = [
    "assert_valid",
    "core_api",
    "emulator",
    "executor",
    "kmock_options",
    "kubelet",
    "pod_logs",
]
