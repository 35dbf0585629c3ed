"""Training across processes and hosts with JAX's own multi-process runtime.

Every process runs the same ``interp-train`` command with its own ``--process-id``; they
meet at the coordinator (``jax.distributed.initialize``) and then form one data-parallel
mesh over all their devices, the same mesh ``training.steps`` builds over one machine's two
host devices: each device takes its rows of every batch and one all-reduce (Gloo on CPU)
averages the gradient. Every process holds the whole corpus and draws the same batches.

Process 0 alone touches the run folder: it checks the run, writes ``run.json``, metrics
and checkpoints, and, when resuming, reads the step and sends it to the others. So the
other hosts need no shared storage, and any refusal on process 0 stops them all at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


class ClusterError(ValueError):
    """Options that do not describe a cluster; the message is for the user."""


@dataclass(frozen=True)
class Cluster:
    """Where this process stands: ``num_processes`` of them meet at ``coordinator``."""

    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0

    def __post_init__(self) -> None:
        if self.num_processes < 1:
            raise ClusterError(f"--num-processes must be at least 1, got {self.num_processes}")
        if not 0 <= self.process_id < self.num_processes:
            raise ClusterError(
                f"--process-id must be between 0 and {self.num_processes - 1} "
                f"(--num-processes {self.num_processes}), got {self.process_id}"
            )
        if self.num_processes > 1 and not self.coordinator:
            raise ClusterError("--num-processes above 1 needs --coordinator HOST:PORT")
        if self.coordinator is not None:
            m = _ADDRESS.match(self.coordinator)
            if not m or not 0 < int(m.group(2)) < 65536:
                raise ClusterError(
                    f"--coordinator must be HOST:PORT (a port from 1 to 65535), "
                    f"got {self.coordinator!r}"
                )

    @property
    def multi(self) -> bool:
        return self.num_processes > 1

    @property
    def writer(self) -> bool:
        """Whether this process writes the run (process 0)."""
        return self.process_id == 0


SINGLE = Cluster()


def initialize(cluster: Cluster, timeout_s: int = 300) -> None:
    """Join the cluster (nothing for one process). Must come before JAX computes anything:
    the backend is created with the other processes' devices in it."""
    if not cluster.multi:
        return
    from training.runtime import backend_started

    if backend_started():
        raise ClusterError("jax.distributed must start before JAX's backend; it already runs")
    import jax

    # Gloo carries the CPU devices' collectives between processes (the default in the jax
    # this project pins; said here so that a jax with another default still trains).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=cluster.coordinator,
        num_processes=cluster.num_processes,
        process_id=cluster.process_id,
        initialization_timeout=timeout_s,
    )


def on_writer(cluster: Cluster, work: Callable[[], T], what: str) -> T | None:
    """``work()`` on process 0 only (None elsewhere); every process then learns whether it
    succeeded, and the others refuse too when it did not (none waits for a partner that
    has left). Process 0 raises its own error."""
    if not cluster.multi:
        return work()
    failed: BaseException | None = None
    result = None
    if cluster.writer:
        try:
            result = work()
        except Exception as err:  # re-raised below, after the others are told
            failed = err
    status = int(broadcast(np.int32(failed is not None)))
    if failed is not None:
        raise failed
    if status:
        from training.prepare import TrainError

        raise TrainError(f"process 0 could not {what}; its output says why")
    return result


def check_same_run(cluster: Cluster, meta: dict[str, Any]) -> None:
    """Every process must train the same run (one corpus, one config, one jax): each
    compares its run's fingerprint with process 0's and all learn who differs, so all stop
    together. A corpus read from another path with the same lines is the same corpus."""
    if not cluster.multi:
        return
    from jax.experimental import multihost_utils

    from training.prepare import TrainError

    versions = meta.get("versions", {})
    fields = {
        "model": meta["model"],
        "train": meta["train"],
        "vocab": meta["vocab"],
        "corpus": meta["corpus"]["sha256"],
        "jax": [versions.get("jax"), versions.get("jaxlib")],
    }
    mine = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).digest()
    digest = np.frombuffer(mine, np.uint8).astype(np.int32)
    differs = np.int32(not np.array_equal(broadcast(digest), digest))
    flags = np.asarray(multihost_utils.process_allgather(differs)).ravel()
    others = [str(i) for i, flag in enumerate(flags) if flag]
    if others:
        raise TrainError(
            f"process {', '.join(others)} of {cluster.num_processes} was given another "
            "model, training options, corpus or jax version than process 0: every process "
            "runs the same command but for --process-id"
        )


def broadcast(tree: Any) -> Any:
    """Process 0's values of a pytree of host arrays, on every process (same shapes)."""
    from jax.experimental import multihost_utils

    return multihost_utils.broadcast_one_to_all(tree)


def share_start(
    cluster: Cluster, opened: tuple[int | None, Any] | None, fresh: Any
) -> tuple[int | None, Any]:
    """Process 0's (step resumed from, state) on every process: a new run's state is the
    same everywhere already (one seed); a resumed one is sent from process 0."""
    if not cluster.multi:
        assert opened is not None
        return opened
    import jax

    resumed = int(broadcast(np.int32(-1 if opened is None or opened[0] is None else opened[0])))
    if resumed < 0:
        return None, jax.tree.map(np.asarray, fresh)  # host values: placed on the mesh next
    source = opened[1] if opened is not None else fresh
    return resumed, broadcast(jax.tree.map(np.asarray, source))
