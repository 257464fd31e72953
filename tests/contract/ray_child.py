"""A two-node Ray cluster on this machine, for the node-loss test (issue 14):
``python tests/contract/ray_child.py --backend local|docker --db FILE``.

Run it inside a private network namespace with only ``lo`` up (the test does, with
``unshare --net``): Ray then binds 127.0.0.1 and nothing it sends can leave loopback. It
starts ``ray.cluster_utils.Cluster`` (a head and one more node), runs 20 tasks through a broker
on ``RayCluster`` with a scripted model that takes 1 s per reply, removes the second node once
tasks are running on it, and prints one JSON line: each task's status, the results stored per
task, which nodes ran tasks, how many tasks were queued again, and the containers labelled with
this cluster's nodes that remain once the cluster has stopped.

Run as a script (not imported), so Ray ships the model's reply function by value.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ["RAY_AUTH_MODE"] = "disabled"  # token authentication is for real clusters

import anyio

from execloop.runtime.broker import Broker
from execloop.runtime.models.base import ModelRequest
from execloop.runtime.ray_cluster import RayCluster
from execloop.runtime.task import Task
from execloop.sandboxes import SandboxSpec
from execloop.testing import FunctionModel

# the script stays a moment in its sandbox, so the lost node has sandboxes alive
SCRIPT = "import json, time\ntime.sleep(2)\njson.dump({'ok': True}, open('result.json', 'w'))\n"
TASKS = 20
# the GCS declares a lost node dead within ~1.5 s instead of ~20 s (the defaults)
FAST_HEALTH = {
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
    "health_check_initial_delay_ms": 0,
}


async def reply(request: ModelRequest, number: int) -> str:
    await anyio.sleep(1.0)  # a latency-bound model, so tasks are in flight when the node goes
    return SCRIPT


def containers_of(node_ids: set[str]) -> list[str]:
    from execloop.sandboxes.placements.container import default_client
    from execloop.sandboxes.reaper import LABEL_NODE

    listed = default_client().containers.list(
        all=True, filters={"label": LABEL_NODE}, ignore_removed=True
    )
    return [c.short_id for c in listed if c.labels.get(LABEL_NODE) in node_ids]


async def main(backend: str, db: Path) -> dict[str, object]:
    import ray
    from ray.cluster_utils import Cluster

    stale = Path(os.environ.get("RAY_TMPDIR", tempfile.gettempdir()), "ray", "ray_current_cluster")
    await anyio.to_thread.run_sync(lambda: stale.unlink(missing_ok=True))
    began = time.monotonic()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False, "_system_config": FAST_HEALTH},
    )
    try:
        # the driver joins while the head is the only node: it attaches to the head's raylet
        # (a driver attached to the second node's would be cut off when that node goes)
        ray.init(address=cluster.address, log_to_driver=False)
        second = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        spec = SandboxSpec(backend=backend)  # type: ignore[arg-type]
        tasks = [
            Task(id=f"ray-{n:02d}", goal="write result.json", sandbox=spec) for n in range(TASKS)
        ]
        ran_on: set[str] = set()
        async with RayCluster("auto", max_node_losses=2, watch_s=0.5) as execs:
            node_ids = {info.node_id for info in execs.nodes}
            async with Broker(
                db=db, model=lambda task: FunctionModel(reply), max_concurrency=TASKS, cluster=execs
            ) as broker:
                for task in tasks:
                    await broker.submit(task)
                removed_at = None
                at_removal = 0

                async def sandboxes_on(node_id: str) -> int:
                    """Sandboxes the node has alive (docker: its labelled containers)."""
                    if backend != "docker":
                        return 1  # bubblewrap sandboxes die with the node's process tree
                    return len(await anyio.to_thread.run_sync(containers_of, {node_id}))

                while removed_at is None:  # remove the second node once it runs tasks
                    busy = {info.node_id for info in execs.nodes if info.running}
                    ran_on |= busy
                    if (
                        second.node_id in busy
                        and len(busy) == 2
                        and await sandboxes_on(second.node_id)
                    ):
                        at_removal = await sandboxes_on(second.node_id)
                        await anyio.to_thread.run_sync(cluster.remove_node, second)
                        removed_at = time.monotonic() - began
                    await anyio.sleep(0.1)
                results = await broker.gather([task.id for task in tasks])
                counts = broker.store.result_counts()
            losses, reaped = execs.node_losses, list(execs.reaped)
            alive_after = [info.node_id for info in execs.nodes]
    finally:
        ray.shutdown()  # the driver first: the cluster refuses to stop a node it is attached to
        cluster.shutdown()
    left = containers_of(node_ids) if backend == "docker" else []
    return {
        "statuses": {r.task_id: r.status.value for r in results},
        "errors": sorted({r.error for r in results if r.error})[:3],
        "results_per_task": counts,
        "nodes": sorted(node_ids),
        "second": second.node_id,
        "ran_on": sorted(ran_on),
        "alive_after": alive_after,
        "node_losses": losses,
        "removed_at_s": removed_at,
        "wall_s": time.monotonic() - began,
        "containers_left": left,
        "sandboxes_at_removal": at_removal,
        "reaped": reaped,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", choices=("local", "docker"), default="local")
    parser.add_argument("--db", type=Path, required=True)
    args = parser.parse_args()
    print(json.dumps(anyio.run(main, args.backend, args.db)))
