"""The Ray executor: each run trains in a Ray actor on a cluster, through the same worker entry point.

``STUDIO_EXECUTOR=ray`` with ``RAY_ADDRESS`` (or ``--executor ray --ray-address ADDR``) makes
the job runner start runs here instead of as local processes. Each run is a *detached*,
named Ray actor (``studio-run-<run id>-<launch token>``) that calls
``core.runs.worker.main([run_dir])`` with the run's launch token, so the run outlives a
restarted studio server, and the next server finds the actor by its name (kept in
meta.json as ``ray_actor``). Ray places the actor where the run's ``num_cpus``/``num_gpus``
fit (params ``resources``, else one CPU per process and, on a cluster with GPUs, one GPU
per process); the studio does no GPU slot-keeping of its own here.

The runs directory must be at the same path on every node (shared storage such as NFS):
the worker reads its settings and writes its results there. An actor that cannot see its
run directory ends at once, and the runner fails the run with a message that says so.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from core.errors import StudioError
from core.runs.lifecycle import utc_now
from core.runs.run import Run

logger = logging.getLogger(__name__)

NAMESPACE = "medmnist-studio"
ACTOR_PREFIX = "studio-run-"
EXIT_NO_RUN_DIR = 4
CAPACITY_REFRESH_S = 5.0  # how long the cluster's size is trusted before asking Ray again
_CONNECT_TIMEOUT_S = 3.0
_REPO_ROOT = Path(__file__).resolve().parents[2]

_remote_class = None
_remote_signal = None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise StudioError("the Ray executor was chosen (STUDIO_EXECUTOR=ray or --executor ray) but Ray is not "
                          "installed; install it with `pip install -r requirements-ray.txt`, or choose the "
                          "local executor") from None
    return ray


def connect(address: str | None = None):
    """Connect this process to a Ray cluster (once) and return the ``ray`` module.

    Args:
        address: ``host:port`` of the head node's GCS, ``ray://host:port`` (Ray Client),
            ``auto`` (a cluster started on this machine with ``ray start --head``) or
            ``local`` (start a one-machine cluster inside this process, for trying it out);
            None means ``$RAY_ADDRESS``, else ``auto``.

    Raises:
        StudioError: Ray is not installed, or no cluster answers at the address.
    """
    ray = _import_ray()
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    where = "on this machine" if address == "auto" else f"at {address}"
    hint = ("start one with `ray start --head` (see the README's Ray section), or correct RAY_ADDRESS / "
            "--ray-address")
    host_port = _host_port(address)
    if host_port is not None:
        # ray.init waits a long time for an address nobody listens on; a plain connect says it at once.
        try:
            socket.create_connection(host_port, timeout=_CONNECT_TIMEOUT_S).close()
        except OSError as exc:
            raise StudioError(f"no Ray cluster answers {where} ({exc.strerror or exc}); {hint}") from None
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING,
                 **({"include_dashboard": False} if address == "local" else {}))
    except Exception as exc:  # ConnectionError, or RuntimeError for a version mismatch
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StudioError(f"no Ray cluster answers {where} ({first}); {hint}") from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    text = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


class RunActor:
    """The body of a run's Ray actor (made remote by :class:`RayExecutor`)."""

    def train(self, run_dir: str, token: str | None, env: Mapping[str, str]) -> dict[str, Any]:
        """Train the run in this actor's process: ``core.runs.worker.main([run_dir])``.

        Returns:
            ``{"code": exit status}``, plus ``"error"`` when the run directory is not visible here.
        """
        import ray

        os.environ.update(env)
        if token:
            from core.runs.executors import LAUNCH_TOKEN_ENV

            os.environ[LAUNCH_TOKEN_ENV] = token
        path = Path(run_dir)
        host = socket.gethostname()
        if not (path / "meta.json").is_file():
            return {"code": EXIT_NO_RUN_DIR, "error": (
                f"the Ray worker on node {host} cannot see the run directory {path}; the runs directory must be "
                "on storage shared by every node of the cluster, mounted at the same path (for example NFS), "
                "then resume the run")}
        from core.runs.store import RunStore
        from core.runs.worker import main

        # This process serves this run only, so its output may go where a local worker's goes.
        log = os.open(path / "worker.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        store = RunStore(path.parent)
        # Where to send a SIGTERM (the pid is the worker's own, written by main()).
        store.update_meta(path.name, ray_node=ray.get_runtime_context().get_node_id())
        return {"code": main([str(path)])}

    def close(self) -> None:
        """End the actor (queued after ``train``, so its CPUs and GPUs are given back)."""
        import ray

        ray.actor.exit_actor()


def _send_signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


@dataclass
class RayJob:
    """The runner's handle on one run's actor."""

    run: Run
    actor_name: str
    actor: Any
    done: Any  # an ObjectRef that is ready once the actor has finished training (or died)
    train: Any | None  # the train() call's ObjectRef; None for an actor adopted after a restart


class RayExecutor:
    """Starts each run as a detached Ray actor; implements the job runner's Executor calls.

    Args:
        address: the cluster (see :func:`connect`); None means ``$RAY_ADDRESS``.
        num_cpus: CPUs per training process when a run does not say (default 1).
        num_gpus: GPUs per training process when a run does not say; None: 1 on a cluster
            with GPUs (0 when the run or ``$STUDIO_DEVICE`` says cpu), else 0.
        env: extra environment variables for the workers; the server's ``STUDIO_*``
            variables are passed along too.

    Raises:
        StudioError: Ray not installed or no cluster reachable (one sentence).
    """

    name = "ray"
    uses_local_gpus = False  # Ray schedules GPUs

    def __init__(self, address: str | None = None, num_cpus: float | None = None, num_gpus: float | None = None,
                 env: Mapping[str, str] | None = None):
        self.address = address or os.environ.get("RAY_ADDRESS") or "auto"
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.env = dict(env or {})
        self._ray = connect(self.address)
        self._capacity: tuple[float, int] | None = None

    # -- the cluster ---------------------------------------------------------------------------
    def describe(self) -> str:
        """One line for the sidebar: where runs train and how big the cluster is."""
        try:
            cpus, gpus, nodes = self._size()
        except Exception as exc:  # the cluster went away after we connected
            logger.warning("the Ray cluster at %s does not answer: %s", self.address, exc)
            return f"Ray cluster at {self.address} (not answering now)"
        return (f"Ray cluster at {self.address}: {nodes} node{'s' if nodes != 1 else ''}, "
                f"{cpus:g} CPUs, {gpus:g} GPUs")

    def capacity(self) -> int:
        """How many one-process runs fit on the cluster at once (the runner's concurrency)."""
        now = time.monotonic()
        if self._capacity is None or now - self._capacity[0] > CAPACITY_REFRESH_S:
            cpu_need, gpu_need = self._per_process(None)
            fits = 0
            for node in self._ray.nodes():
                if not node.get("Alive"):
                    continue
                have = node.get("Resources", {})
                n = math.floor(have.get("CPU", 0) / cpu_need) if cpu_need else 1 << 20
                if gpu_need:
                    n = min(n, math.floor(have.get("GPU", 0) / gpu_need))
                fits += n
            self._capacity = (now, max(1, fits))
        return self._capacity[1]

    def resources(self, run: Run) -> dict[str, float]:
        """``num_cpus``/``num_gpus`` for ``run``'s actor: its params' ``resources``, else per process."""
        from core.train.distributed import processes_of

        params = run.params()
        given = params.get("resources") if isinstance(params.get("resources"), Mapping) else {}
        processes = processes_of(params)
        cpu, gpu = self._per_process(params)
        out = {"num_cpus": given.get("num_cpus", cpu * processes), "num_gpus": given.get("num_gpus", gpu * processes)}
        for key, value in out.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1024:
                raise StudioError(f"{key} must be a number from 0 up (got {value!r}); set the run's resources again")
        return {k: float(v) for k, v in out.items()}

    def _per_process(self, params: Mapping[str, Any] | None) -> tuple[float, float]:
        cpu = 1.0 if self.num_cpus is None else float(self.num_cpus)
        if self.num_gpus is not None:
            return cpu, float(self.num_gpus)
        device = str(((params or {}).get("config") or {}).get("device") or "auto")
        if device == "cpu" or os.environ.get("STUDIO_DEVICE", "").lower() == "cpu":
            return cpu, 0.0
        return cpu, 1.0 if self._size()[1] > 0 else 0.0

    def _size(self) -> tuple[float, float, int]:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        return (sum(n.get("Resources", {}).get("CPU", 0) for n in nodes),
                sum(n.get("Resources", {}).get("GPU", 0) for n in nodes), len(nodes))

    # -- the Executor calls ----------------------------------------------------------------------
    def worker_run_dir(self, run: Run) -> str:
        """The run directory as the workers will open it: the same path (shared storage)."""
        return str(run.dir)

    def start(self, run: Run) -> RayJob:
        """Create the run's actor and queue ``train`` then ``close`` on it.

        Returns:
            The :class:`RayJob` handle.
        """
        ray = self._ray
        resources = self.resources(run)
        token = run.meta().get("launch_token")
        name = f"{ACTOR_PREFIX}{run.id}-{token or 'none'}"
        env = {k: v for k, v in os.environ.items() if k.startswith("STUDIO_") and k != "STUDIO_LAUNCH_TOKEN"}
        env.update(self.env, PYTHONUNBUFFERED="1")
        # Written before the actor exists: a server restarted right now still finds it.
        run.update_meta(ray_actor=name)
        with open(run.log_path, "ab") as log:
            log.write(f"--- {utc_now()} starting on the Ray cluster at {self.address} as actor {name} "
                      f"({resources['num_cpus']:g} CPUs, {resources['num_gpus']:g} GPUs)\n".encode())
        actor = _actor_class(ray).options(
            name=name, namespace=NAMESPACE, lifetime="detached", max_restarts=0, max_task_retries=0, **resources,
        ).remote()
        train = actor.train.remote(self.worker_run_dir(run), token, env)
        actor.close.remote()
        return RayJob(run, name, actor, train, train)

    def adopt(self, run: Run) -> RayJob | None:
        """The handle of a run's actor started by an earlier runner, or None when it is gone."""
        name = run.meta().get("ray_actor")
        if not isinstance(name, str):
            return None
        try:
            actor = self._ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:  # no live actor of that name
            return None
        # Queued behind the actor's train(): ready once it has finished or died.
        return RayJob(run, name, actor, actor.close.remote(), None)

    def is_alive(self, handle: RayJob) -> bool:
        ready, _ = self._ray.wait([handle.done], timeout=0)
        return not ready

    def exit_code(self, handle: RayJob) -> int | None:
        """The worker's exit status; None while it runs, when it died, or for an adopted actor."""
        result = self._result(handle)
        return result.get("code") if isinstance(result, dict) else None

    def failure(self, handle: RayJob) -> str | None:
        """Why the run could not train at all (its directory not visible on the node), or None."""
        result = self._result(handle)
        return result.get("error") if isinstance(result, dict) else None

    def end_cause(self, handle: RayJob) -> str | None:
        """Words for a run whose actor ended without a final status."""
        if handle.train is None:
            return "its Ray actor ended while no studio server was watching it"
        result = self._result(handle)
        if isinstance(result, Exception):
            return (f"its Ray worker process died ({type(result).__name__}: the node may have run out of memory, "
                    "or the process was killed)")
        return None

    def terminate(self, handle: RayJob) -> None:
        """SIGTERM to the worker's process on its node; an actor not yet training is removed."""
        meta = handle.run.meta()
        pid, node = meta.get("pid"), meta.get("ray_node")
        if not isinstance(pid, int) or not isinstance(node, str):
            self.kill(handle)
            return
        ray = self._ray
        # The pid is only meaningful on the worker's node: a zero-CPU task there sends it
        # (one path whether that node is this machine or another).
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        global _remote_signal
        if _remote_signal is None:
            _remote_signal = ray.remote(num_cpus=0, max_retries=0)(_send_signal)
        _remote_signal.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(
            pid, int(signal.SIGTERM))

    def kill(self, handle: RayJob) -> None:
        """Kill the actor (its worker process) at once."""
        try:
            self._ray.kill(handle.actor, no_restart=True)
        except Exception as exc:  # already gone
            logger.info("could not kill Ray actor %s: %s", handle.actor_name, exc)

    def _result(self, handle: RayJob) -> Any:
        if handle.train is None:
            return None
        ready, _ = self._ray.wait([handle.train], timeout=0)
        if not ready:
            return None
        try:
            return self._ray.get(handle.train, timeout=0)
        except Exception as exc:  # the actor died: ActorDiedError and friends
            return exc


def _actor_class(ray):
    global _remote_class
    if _remote_class is None:
        _remote_class = ray.remote(RunActor)
    return _remote_class
