"""``python -m training federated``: a whole federated run on this machine, in Flower's simulation
engine (one virtual SuperNode per client, run by Ray), with the same ServerApp and ClientApp that
the deployment engine runs across machines."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path

from training.federated.partitions import PARTITIONS_FILE, Partitions, prepare_partitions
from training.federated.server_app import absolute_paths, run_server


def run_federated(config: dict, command: str | None = None) -> dict:
    """Prepare the clients' data, simulate every round, write the model folder; returns the record.
    With ``resume``, a run that stopped continues after its last completed round."""
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from training.federated.client_app import app as client_app

    # Ray's memory monitor kills workers when the machine as a whole is nearly full, which on a small
    # shared machine fails clients for others' memory; the kernel's OOM killer still guards it.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    config = absolute_paths(config)
    if config["partition"] == "pooled":  # one client holds everything: the minimums are that one
        config.update(min_train_clients=1, min_available_clients=1)
    out = Path(config["out"])
    if not config.get("resume"):
        for stale in (out / "checkpoint", out / PARTITIONS_FILE, out / "clients"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    prepared = out / PARTITIONS_FILE
    partitions = Partitions.load(prepared) if prepared.is_file() else prepare_partitions(config, out)
    names = [c["name"] for c in config["clients"]]
    if config["partition"] != "pooled" and [c["name"] for c in partitions.client_specs] != names:
        raise SystemExit(f"--resume: the config's clients {names} are not the run's "
                         f"{[c['name'] for c in partitions.client_specs]} (start a new run in another --out)")
    clients = len(partitions.clients)
    for key in ("min_available_clients", "min_train_clients"):
        if int(config[key]) > clients:  # the server would wait for nodes that never come
            raise SystemExit(f"{key} is {config[key]} but the run has {clients} client(s)")
    result: dict = {}
    server = ServerApp()
    if threading.current_thread() is threading.main_thread():
        # A cancelled job gets SIGTERM: exit through the simulation's cleanup, which stops Ray's workers.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        result.update(run_server(grid, config, command))

    # The simulated clients are allotted no GPU, and the training loop takes one whenever it sees one: keep
    # Ray hiding GPUs from such workers (today's default, which later Rays drop), and its tip about that quiet.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "1")
    warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
    run_simulation(server_app=server, client_app=client_app, num_supernodes=clients,
                   backend_config={"client_resources": {"num_cpus": int(config["client_cpus"]), "num_gpus": 0.0},
                                   "init_args": {"num_cpus": max(int(config["client_cpus"]), _cpus())}})
    if not result:
        raise RuntimeError(f"the federated run in {out} ended without a model (see the log above)")
    return result


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
