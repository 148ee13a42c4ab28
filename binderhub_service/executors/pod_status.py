"""What a build pod's status says, read from its wire form (a dict). Pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..failures import FailureClass
from .pod import CONTAINER_NAME

# Container waiting reasons that never resolve by themselves: the build fails at once.
FATAL_WAITING_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# The kubelet retries these (a Secret created a moment late, a registry that
# recovers): the build fails only when they last (the executor's graces).
CONFIG_WAITING_REASONS = frozenset({"CreateContainerConfigError"})
PULL_WAITING_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})

_NOT_STARTING = FATAL_WAITING_REASONS | CONFIG_WAITING_REASONS | PULL_WAITING_REASONS
_STATES = ("terminated", "running", "waiting")
# Longest kubelet or container message quoted in a failure reason, in characters.
_MESSAGE_MAX = 300


def _short(text: str | None) -> str | None:
    """A message's last non-empty line, shortened; repo2docker JSON lines give their message."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return None
    line = lines[-1]
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        line = parsed["message"].strip() or line
    return line if len(line) <= _MESSAGE_MAX else line[: _MESSAGE_MAX - 1] + "…"


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
    terminated_message: str | None = None
    pod_reason: str | None = None
    pod_message: str | None = None
    unschedulable: str | None = None
    # Set once the pod is being deleted (metadata.deletionTimestamp).
    deleting_since: str | None = None
    # The build container's memory limit, as its spec gives it (e.g. ``2Gi``).
    memory_limit: str | None = None

    @property
    def started(self) -> bool:
        """Whether the container has run, so that its log can be read."""
        return self.container_state in ("running", "terminated")

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def out_of_memory(self) -> bool:
        """Whether the container was killed for exceeding its memory limit."""
        return self.terminated_reason == "OOMKilled"

    @property
    def terminating(self) -> bool:
        """Whether the pod is being deleted: it must never be joined."""
        return self.deleting_since is not None

    def waiting_summary(self) -> str:
        """A one-line account of why a pending pod has not started yet."""
        if self.unschedulable:
            return f"Waiting for a node to run the build: {self.unschedulable}"
        if self.waiting_reason:
            detail = f": {self.waiting_message}" if self.waiting_message else ""
            return f"Waiting for the build pod to start ({self.waiting_reason}{detail})"
        return "Waiting for the build pod to start"

    def waiting_failure(self) -> str:
        """A user-facing reason for a container that never started."""
        message = _short(self.waiting_message)
        if self.waiting_reason in PULL_WAITING_REASONS:
            detail = f": {message}" if message else f" ({self.waiting_reason})"
            return f"The build image could not be pulled{detail}"
        detail = f": {message}" if message else ""
        return f"The build pod could not start ({self.waiting_reason}{detail})"

    def failure_class(self) -> FailureClass | None:
        """Why a failed pod failed, when its status says so (its log may say more)."""
        if self.pod_reason == "DeadlineExceeded":
            return FailureClass.TIMEOUT
        if self.terminated_reason == "OOMKilled":
            return FailureClass.OUT_OF_MEMORY
        if self.pod_reason == "Evicted":
            message = (self.pod_message or "").lower()
            if any(word in message for word in ("ephemeral", "storage", "disk")):
                return FailureClass.DISK_FULL
            if "memory" in message:
                return FailureClass.OUT_OF_MEMORY
            return FailureClass.INTERRUPTED
        if self.waiting_reason in _NOT_STARTING:
            return FailureClass.UNKNOWN
        return None

    def failure_reason(self, build_timeout: int) -> str:
        """A user-facing reason for a failed pod, when repo2docker did not give one.

        It quotes the kubelet (``status.message``) or the container's
        termination message (with ``FallbackToLogsOnError``, the end of its log).
        """
        pod_message = _short(self.pod_message)
        if self.pod_reason == "DeadlineExceeded":
            return f"The build took longer than its time limit ({build_timeout} s)"
        if self.out_of_memory:
            limit = f" of {self.memory_limit}" if self.memory_limit else ""
            return (
                f"The build ran out of memory: it exceeded the build pod's memory limit{limit}"
                " and was killed (OOMKilled)"
            )
        if self.pod_reason == "Evicted":
            detail = f": {pod_message}" if pod_message else ""
            return f"The build pod was evicted from its node{detail}"
        if self.waiting_reason in _NOT_STARTING:
            return self.waiting_failure()
        if self.exit_code is not None:
            message = _short(self.terminated_message)
            detail = f": {message}" if message else ""
            return f"repo2docker exited with code {self.exit_code}{detail}"
        if pod_message:
            return f"The build pod failed: {pod_message}"
        return "The build pod failed"


def pod_status(pod: dict[str, Any]) -> PodStatus:
    """Read :class:`PodStatus` from a pod as the API server returns it."""
    status = pod.get("status") or {}
    container: dict[str, Any] = next(
        (c for c in status.get("containerStatuses") or [] if c.get("name") == CONTAINER_NAME),
        {},
    )
    state: dict[str, Any] = container.get("state") or {}
    spec_container: dict[str, Any] = next(
        (
            c
            for c in (pod.get("spec") or {}).get("containers") or []
            if c.get("name") == CONTAINER_NAME
        ),
        {},
    )
    limits = (spec_container.get("resources") or {}).get("limits") or {}
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
        terminated_message=terminated.get("message"),
        pod_reason=status.get("reason"),
        pod_message=status.get("message"),
        unschedulable=unschedulable,
        deleting_since=(pod.get("metadata") or {}).get("deletionTimestamp"),
        memory_limit=str(limits["memory"]) if "memory" in limits else None,
    )
