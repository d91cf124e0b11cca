#!/bin/bash
# Entrypoint of the distml image (cluster/Dockerfile), run under tini.
#
# * "executor": Spark on Kubernetes starts executor pods with this one argument and
#   their settings in SPARK_* variables. Spark's own images turn that into the executor
#   JVM; pyspark's pip package has no such script, so this is the same command as
#   Spark's kubernetes/dockerfiles/spark/entrypoint.sh.
# * Anything else (dask scheduler, spark-class ..., distml submit ...) runs as given.
set -euo pipefail

# Spark executors, and distml's partition service tasks, connect back to the driver at
# the host it advertises. Spark's default is this machine's hostname, which other
# containers and pods cannot resolve: advertise this container's IP unless told otherwise.
if [ -z "${SPARK_LOCAL_HOSTNAME:-}" ]; then
    ip="$(python -c 'import socket; print(socket.gethostbyname(socket.gethostname()))' 2>/dev/null || true)"
    if [ -n "$ip" ]; then
        export SPARK_LOCAL_HOSTNAME="$ip"
    fi
fi

if [ "${1:-}" = "executor" ]; then
    # SPARK_JAVA_OPT_0, _1, ...: the executor JVM's options, in Spark's order
    java_opts=()
    i=0
    while name="SPARK_JAVA_OPT_$i" && [ -n "${!name+set}" ]; do
        java_opts+=("${!name}")
        i=$((i + 1))
    done
    exec java "${java_opts[@]}" \
        -Xms"$SPARK_EXECUTOR_MEMORY" -Xmx"$SPARK_EXECUTOR_MEMORY" \
        -cp "${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*:$PWD" \
        org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
        --driver-url "$SPARK_DRIVER_URL" \
        --executor-id "$SPARK_EXECUTOR_ID" \
        --cores "$SPARK_EXECUTOR_CORES" \
        --app-id "$SPARK_APPLICATION_ID" \
        --hostname "$SPARK_EXECUTOR_POD_IP" \
        --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" \
        --podName "$SPARK_EXECUTOR_POD_NAME"
fi

exec "$@"
