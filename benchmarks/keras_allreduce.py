"""One all-reduce between 2 MultiWorkerMirroredStrategy processes on this machine.

What a multi-worker Keras step pays to communicate, apart from its arithmetic: each mode
all-reduces tensors the size of a network's gradients (RING collectives over gRPC on
loopback, one intra-op thread per process) 200 times after 20 warm-ups. Run by hand (not
part of the test suite):

    python benchmarks/keras_allreduce.py            # one: the cnn's 225,034 floats in one tensor
    python benchmarks/keras_allreduce.py many tiny  # 6 tensors (34,826 floats); 3 floats
    python benchmarks/keras_allreduce.py half       # the cnn's floats sent as float16

Each mode prints the wall time of one all-reduce and the CPU time rank 0 spent on it (its
process's CPU time over the calls): the CPU a worker pays on the core it trains on.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

SHAPES = {
    "one": [(225034,)],  # distml's cnn: every gradient in one tensor
    "many": [(3, 3, 1, 32), (32,), (3, 3, 32, 64), (64,), (1600, 10), (10,)],
    "tiny": [(3,)],  # the latency floor
    "half": [(225034,)],  # the cnn's, cast to float16 before the all-reduce
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def worker(rank: int, ports: list[int], mode: str) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"localhost:{port}" for port in ports]},
            "task": {"type": "worker", "index": rank},
        }
    )
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        os.environ.pop(name, None)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    ring = tf.distribute.experimental.CommunicationImplementation.RING
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=ring, timeout_seconds=60
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    with strategy.scope():
        tensors = [tf.Variable(tf.ones(shape)) for shape in SHAPES[mode]]

    @tf.function
    def all_reduce():  # type: ignore[no-untyped-def]
        def replica():  # type: ignore[no-untyped-def]
            context = tf.distribute.get_replica_context()
            return context.all_reduce(
                tf.distribute.ReduceOp.SUM,
                [tf.cast(t, tf.float16) if mode == "half" else t * 1.0 for t in tensors],
            )

        return strategy.run(replica)

    for _ in range(20):
        all_reduce()
    calls = 200
    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
        all_reduce()
    seconds = (time.perf_counter() - started) / calls
    cpu = (time.process_time() - cpu) / calls
    if rank == 0:
        floats = sum(int(tf.size(t)) for t in tensors)
        print(
            f"{mode}: {floats:,} floats in {len(tensors)} tensor(s): {seconds * 1e3:.2f} ms, "
            f"rank 0's CPU {cpu * 1e3:.2f} ms",
            flush=True,
        )
    os._exit(0)  # gRPC's threads can hold a normal exit back


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--rank":
        worker(int(sys.argv[2]), json.loads(sys.argv[3])[0], json.loads(sys.argv[3])[1])
        return
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    for mode in sys.argv[1:] or ["one"]:
        ports = [free_port(), free_port()]
        args = json.dumps([ports, mode])
        ranks = [
            subprocess.Popen([sys.executable, __file__, "--rank", str(rank), args], env=env)
            for rank in (1, 0)
        ]
        for process in ranks:
            process.wait(timeout=300)


if __name__ == "__main__":
    main()
