"""What a build pod's status says, read from its wire form (a dict). Pure functions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .pod import CONTAINER_NAME

# Container waiting reasons that never resolve by themselves: the build fails at once.
FATAL_WAITING_REASONS = frozenset(
    {"InvalidImageName", "CreateContainerConfigError", "ErrImageNeverPull"}
)

_STATES = ("terminated", "running", "waiting")


@dataclass(frozen=True)
class PodStatus:
    """The parts of a build pod's status the executor acts on."""

    phase: str
    node_name: str | None = None
    container_state: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    exit_code: int | None = None
    terminated_reason: str | None = None
    pod_reason: str | None = None
    unschedulable: str | None = None

    @property
    def started(self) -> bool:
        """Whether the container has run, so that its log can be read."""
        return self.container_state in ("running", "terminated")

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    def waiting_summary(self) -> str:
        """A one-line account of why a pending pod has not started yet."""
        if self.unschedulable:
            return f"Waiting for a node to run the build: {self.unschedulable}"
        if self.waiting_reason:
            detail = f": {self.waiting_message}" if self.waiting_message else ""
            return f"Waiting for the build pod to start ({self.waiting_reason}{detail})"
        return "Waiting for the build pod to start"

    def failure_reason(self, build_timeout: int) -> str:
        """A user-facing reason for a failed pod, when repo2docker did not give one."""
        if self.pod_reason == "DeadlineExceeded":
            return f"The build took longer than its time limit ({build_timeout} s)"
        if self.terminated_reason == "OOMKilled":
            return "The build ran out of memory"
        if self.pod_reason == "Evicted":
            return "The build pod was evicted from its node"
        if self.waiting_reason in FATAL_WAITING_REASONS:
            return f"The build pod could not start ({self.waiting_reason})"
        if self.exit_code is not None:
            return f"repo2docker exited with code {self.exit_code}"
        return "The build pod failed"


def pod_status(pod: dict[str, Any]) -> PodStatus:
    """Read :class:`PodStatus` from a pod as the API server returns it."""
    status = pod.get("status") or {}
    container: dict[str, Any] = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER_NAME),
        {},
    )
    state: dict[str, Any] = container.get("state") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    unschedulable = next(
        (
            condition.get("message") or condition.get("reason") or "Unschedulable"
            for condition in status.get("conditions") or []
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False"
        ),
        None,
    )
    return PodStatus(
        phase=status.get("phase") or "Pending",
        node_name=(pod.get("spec") or {}).get("nodeName"),
        container_state=next((key for key in _STATES if key in state), None),
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        exit_code=terminated.get("exitCode"),
        terminated_reason=terminated.get("reason"),
        pod_reason=status.get("reason"),
        unschedulable=unschedulable,
    )
