"""One worker of a multi-worker Keras job: ``python -m distml.deep.worker PLAN.json``.

Every engine starts it the same way (a member of a gang, :mod:`distml.backends.gang`),
always as a fresh interpreter, so TensorFlow's process-wide collective state is never
reused ("Collective ops are already configured"). Its environment carries
``TF_CONFIG`` (:func:`tf_config_env`), the devices it may use
(``CUDA_VISIBLE_DEVICES``), thread counts, and no proxy variables. It creates the
``MultiWorkerMirroredStrategy`` before any other TensorFlow operation, with a
collective timeout, then trains its shard (:mod:`distml.deep.multiworker`).

Exit status: 0 done; 2 a distml error (its line, ``error: ...``, is the last one
printed); 75 the reserved port was taken after all, 76 a collective operation timed
out (``train.collective_timeout``) or lost its peer — both retriable: the gang is
started again; 1 anything else (with its traceback).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
import traceback

from distml.backends.gang import (
    EXIT_PEER_LOST,
    EXIT_PORT_TAKEN,
    bind_cpus,
    guard_parent,
    release_reserved_port,
)
from distml.deep.checkpoints import StateFolder
from distml.errors import DistmlError


def tf_config_env(rank: int, peers: list[str], all_gpu: bool) -> dict[str, str]:
    """``TF_CONFIG`` for rank ``rank`` of a gang whose members listen at ``peers``."""
    config = {"cluster": {"worker": list(peers)}, "task": {"type": "worker", "index": rank}}
    return {"TF_CONFIG": json.dumps(config)}


def multiworker_strategy(timeout: float, nccl: bool):  # type: ignore[no-untyped-def]
    """``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``: NCCL when every worker has a
    GPU, else RING (gRPC) collectives; a collective waits at most ``timeout`` seconds."""
    from distml.deep.devices import import_tensorflow

    tf = import_tensorflow()
    implementation = tf.distribute.experimental.CommunicationImplementation
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation.NCCL if nccl else implementation.RING,
        timeout_seconds=timeout,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    guard_parent()
    bind_cpus()  # before TensorFlow starts its threads
    rank = int(os.environ.get("DISTML_GANG_RANK", "0"))
    try:
        if len(args) != 1:
            raise DistmlError("usage: python -m distml.deep.worker PLAN.json")
        where, name = args[0].rstrip("/").rsplit("/", 1)
        plan = json.loads(StateFolder(where).read(name))  # a path, or a URL on a store
        from distml.deep.devices import import_tensorflow

        tf = import_tensorflow(keras_without_sklearn=True)  # a worker never needs it
        threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0") or 0)
        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
        nccl = os.environ.get("DISTML_GANG_ALL_GPU") == "1"
        release_reserved_port()  # the strategy's gRPC server binds it next
        started = time.perf_counter()
        try:
            strategy = multiworker_strategy(float(plan["collective_timeout"]), nccl)
        except Exception as exc:  # noqa: BLE001 - only the port race is told apart
            if "Could not start gRPC server" in str(exc):
                print(f"worker {rank}: its port was taken before TensorFlow bound it", flush=True)
                return EXIT_PORT_TAKEN
            raise
        # MultiWorkerMirroredStrategy installs a C++ SIGTERM handler (TensorFlow's preemption
        # notifier) that swallows the signal: an aborted worker would linger until SIGKILL
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        from distml.deep.multiworker import train_rank

        try:
            train_rank(plan, strategy, rank, time.perf_counter() - started)
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as exc:
            # a peer hung past train.collective_timeout, or went away: the gang is restarted
            traceback.print_exc(file=sys.stdout)
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            telling = [
                line for line in lines if re.search(r"timed out|unavailable|connect", line, re.I)
            ]
            detail = (telling or lines or [type(exc).__name__])[0]
            print(
                f"error: worker {rank}: a collective operation failed waiting for its peers "
                f"(train.collective_timeout={float(plan['collective_timeout']):g}s): {detail}",
                flush=True,
            )
            return EXIT_PEER_LOST
    except DistmlError as exc:
        print(f"error: {exc}", flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 - the driver shows the last line; the rest is here
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        return 1
    return 0


if __name__ == "__main__":
    from distml.teardown import exit_now

    exit_now(main())  # a normal exit can be held back by TensorFlow's gRPC threads
