"""The deployment files in cluster/: parsed and checked, never run.

There is no Docker engine or Kubernetes where the suite runs, so no container starts
here. The compose files and manifests are parsed and their structure asserted (the
services, the one image, ports, the shared volume, the commands); every ``distml ...``
command line in them and in cluster/README.md is parsed by the real CLI, so a typo such
as ``distml sumbit`` fails; the job specs they name load with their overrides; and the
image's entrypoint script runs with a stand-in ``java``.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from distml.cli import main
from distml.jobs.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
COMPOSE = CLUSTER / "docker-compose.yml"
SECURE = CLUSTER / "docker-compose.secure.yml"
K8S = CLUSTER / "k8s"
README = CLUSTER / "README.md"
DOCKERFILE = CLUSTER / "Dockerfile"
ENTRYPOINT = CLUSTER / "entrypoint.sh"

IMAGE = "distml:latest"
SPARK_WORKERS = ("spark-worker-1", "spark-worker-2")
DASK_WORKERS = ("dask-worker-1", "dask-worker-2")
DAEMONS = ("spark-master", *SPARK_WORKERS, "dask-scheduler", *DASK_WORKERS)
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
SPARK_URL = "spark://spark-master:7077"
DASK_URL = "tcp://dask-scheduler:8786"


# -- reading the files --------------------------------------------------------------------------
def services(path: Path = COMPOSE) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())["services"]


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def k8s_object(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in k8s_docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''} in {K8S}, found {len(found)}"
    return found[0]


def pod_specs(doc: Any) -> list[dict[str, Any]]:
    """Every pod spec (a mapping with ``containers``) anywhere inside a manifest."""
    if isinstance(doc, dict):
        own = [doc] if isinstance(doc.get("containers"), list) else []
        return own + [spec for value in doc.values() for spec in pod_specs(value)]
    if isinstance(doc, list):
        return [spec for item in doc for spec in pod_specs(item)]
    return []


def argv(command: Any) -> list[str]:
    """A compose ``command`` (list or string) as a list of words."""
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def option(words: list[str], name: str) -> str:
    assert name in words, f"{name} missing from {words}"
    return words[words.index(name) + 1]


def dockerfile() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined, comments dropped."""
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    pairs = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def image_uid() -> int:
    runs = " ".join(args for keyword, args in dockerfile() if keyword == "RUN")
    match = re.search(r"useradd [^&]*--uid (\d+)", runs)
    assert match, "the Dockerfile creates no user with a fixed uid"
    return int(match.group(1))


# -- distml command lines: found in shell text and argv lists, checked against the CLI ----------
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def token_invocations(tokens: list[str], launchers: tuple[str, ...] = ()) -> list[list[str]]:
    """distml's arguments wherever ``distml`` is the command word: first (after any
    VAR=value), after ``--`` or ``exec``, or after a launcher (``docker compose run
    --rm client distml ...``)."""
    found = []
    for i, token in enumerate(tokens):
        before = tokens[:i]
        if token == "distml" and (
            all(ASSIGNMENT.match(t) for t in before) or before[-1] in ("--", "exec", *launchers)
        ):
            found.append(tokens[i + 1 :])
    return found


OPERATORS = {"&&", "||", ";", "|", "&"}


def shell_invocations(script: str, launchers: tuple[str, ...] = ()) -> list[list[str]]:
    """distml command lines in shell text: each line split into simple commands at
    ``&&``, ``;``, ``|``... (outside quotes), comments dropped."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line.strip().removeprefix("$ "), posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token in OPERATORS:
                found += token_invocations(command, launchers)
                command = []
            else:
                command.append(token)
    return found


def argv_invocations(words: list[str], launchers: tuple[str, ...] = ()) -> list[list[str]]:
    if len(words) >= 3 and Path(words[0]).name in ("sh", "bash") and words[1] == "-c":
        return shell_invocations(words[2], launchers)
    return token_invocations(words, launchers)


def compose_invocations(path: Path) -> list[list[str]]:
    return [
        args
        for service in services(path).values()
        for args in argv_invocations(argv(service.get("command")))
    ]


def k8s_invocations(path: Path) -> list[list[str]]:
    found = []
    for doc in yaml.safe_load_all(path.read_text()):
        for spec in pod_specs(doc):
            for container in spec["containers"]:
                found += argv_invocations(
                    argv(container.get("command")) + argv(container.get("args"))
                )
    return found


FENCE = re.compile(r"^[ \t]*```(\w*)[ \t]*\n(.*?)^[ \t]*```", re.M | re.S)


def readme_invocations() -> tuple[list[list[str]], list[list[str]]]:
    """(command lines in shell code blocks, inline `distml ...` mentions in the prose)."""
    text = README.read_text()
    launchers = tuple(services(COMPOSE))
    blocks = [
        args
        for lang, body in FENCE.findall(text)
        if lang in ("", "bash", "sh", "console")
        for args in shell_invocations(body, launchers)
    ]
    prose = FENCE.sub("", text)
    inline = [
        shlex.split(span)[1:]
        for span in re.findall(r"`([^`\n]+)`", prose)
        if span.startswith("distml ")
    ]
    return blocks, inline


def _options(command: click.Command) -> set[str]:
    return {name for p in command.params for name in (*p.opts, *p.secondary_opts)}


def parse_distml(args: list[str], complete: bool = True) -> tuple[list[str], dict[str, Any]]:
    """Resolve ``distml ARGS`` against the real click tree: ``(command path, parameters)``.

    ``complete``: parse everything as click would (required arguments, option values);
    otherwise (a command named in prose) only the subcommands and option names given count.
    """
    command: click.Command = main
    path = ["distml"]
    rest = list(args)
    while isinstance(command, click.Group):
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            assert flag in _options(command), f"{' '.join(path)}: no option {flag}"
        choices = sorted(command.commands)
        if not rest and not complete:
            return path, {}  # prose may name a family of commands: `distml cluster up`
        assert rest, f"{' '.join(path)}: a subcommand is missing (one of {choices})"
        name = rest.pop(0)
        assert name in command.commands, f"{' '.join(path)} has no command {name!r}: {choices}"
        command = command.commands[name]
        path.append(name)
    if not complete:
        for token in rest:
            if token.startswith("--"):
                assert token.split("=")[0] in _options(command), f"{' '.join(path)}: no {token}"
        return path, {}
    try:
        with command.make_context(" ".join(path), list(rest)) as ctx:
            return path, dict(ctx.params)
    except click.UsageError as exc:
        raise AssertionError(f"{' '.join([*path, *rest])}: {exc.format_message()}") from None


def repo_spec(path: str) -> Path:
    """A spec path as the containers see it (/jobs is the repository's jobs/ folder)."""
    return REPO / "jobs" / path.removeprefix("/jobs/") if path.startswith("/jobs/") else REPO / path


def load_invocation_spec(path: list[str], params: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The spec a ``distml run|submit`` line runs, with its --set and backend applied."""
    backend = params.get("cluster_url") or params.get("backend")
    return load_spec(repo_spec(str(params["job"])), list(params["overrides"]), backend)


# -- docker compose ------------------------------------------------------------------------------
def test_compose_has_both_clusters_and_an_on_demand_client() -> None:
    found = services()
    assert set(found) == {*DAEMONS, "client"}
    assert found["client"].get("profiles") == ["client"]  # `docker compose up` leaves it out
    assert all("profiles" not in found[name] for name in DAEMONS)


@pytest.mark.parametrize("path", [COMPOSE, SECURE], ids=lambda p: p.name)
def test_every_service_runs_the_image_built_from_cluster_dockerfile(path: Path) -> None:
    base = services(COMPOSE)
    for name, service in services(path).items():
        if path == SECURE and name in base:
            assert "image" not in service and "build" not in service, name  # inherits the base's
            continue
        assert service["image"] == IMAGE, name
        build = service["build"]
        context = (path.parent / build["context"]).resolve()
        assert context == REPO, f"{name}: build context {context} is not the repository"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, name


def test_ports_are_published_on_localhost() -> None:
    def published(name: str) -> set[tuple[str, int, int]]:
        out = set()
        for entry in services()[name].get("ports", []):
            ip, host, container = str(entry).split(":")
            out.add((ip, int(host), int(container)))
        return out

    # 127.0.0.1: nothing on these clusters checks who connects (docker-compose.secure.yml)
    assert published("spark-master") == {("127.0.0.1", 7077, 7077), ("127.0.0.1", 8080, 8080)}
    assert published("dask-scheduler") == {("127.0.0.1", 8786, 8786), ("127.0.0.1", 8787, 8787)}
    for name in (*SPARK_WORKERS, *DASK_WORKERS, "client"):
        assert published(name) == set(), f"{name} publishes ports"


def test_every_node_mounts_the_shared_data_volume_at_data() -> None:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert "data" in doc["volumes"]
    for name, service in doc["services"].items():
        mounts = [str(v).split(":")[:2] for v in service["volumes"]]
        assert ["data", "/data"] in mounts, f"{name} does not mount the data volume at /data"
    assert ["../jobs", "/jobs"] in [
        str(v).split(":")[:2] for v in doc["services"]["client"]["volumes"]
    ]


def test_spark_master_and_workers_come_from_pyspark_spark_class() -> None:
    found = services()
    master = argv(found["spark-master"]["command"])
    assert master[:2] == ["spark-class", MASTER_CLASS]
    assert (option(master, "--host"), option(master, "--port")) == ("spark-master", "7077")
    assert option(master, "--webui-port") == "8080"
    for name in SPARK_WORKERS:
        worker = argv(found[name]["command"])
        assert worker[:2] == ["spark-class", WORKER_CLASS], name
        assert worker[-1] == SPARK_URL, name
        assert option(worker, "--host") == name  # the name the master and drivers reach it by
        assert not option(worker, "--work-dir").startswith("/usr/"), "pyspark's folder is read-only"
    env = [args for keyword, args in dockerfile() if keyword == "ENV"]
    assert any("${SPARK_HOME}/bin" in e for e in env), "spark-class is not on the image's PATH"


def test_dask_scheduler_and_workers() -> None:
    found = services()
    scheduler = argv(found["dask-scheduler"]["command"])
    assert scheduler[:2] == ["dask", "scheduler"]
    assert option(scheduler, "--port") == "8786"
    assert option(scheduler, "--dashboard-address") == ":8787"
    names = []
    for name in DASK_WORKERS:
        worker = argv(found[name]["command"])
        assert worker[:3] == ["dask", "worker", DASK_URL], name
        names.append(option(worker, "--name"))
    assert len(set(names)) == len(DASK_WORKERS), "worker names must differ"


def test_workers_wait_for_a_healthy_master_and_scheduler() -> None:
    found = services()
    for head, workers in (("spark-master", SPARK_WORKERS), ("dask-scheduler", DASK_WORKERS)):
        assert found[head]["healthcheck"]["test"][0] == "CMD"
        for name in workers:
            assert found[name]["depends_on"][head]["condition"] == "service_healthy", name
    assert set(found["client"]["depends_on"]) == {*SPARK_WORKERS, *DASK_WORKERS}


def test_the_client_submits_to_both_clusters_with_run_folders_on_the_shared_volume() -> None:
    lines = argv_invocations(argv(services()["client"]["command"]))
    clusters = set()
    for args in lines:
        path, params = parse_distml(args)
        assert path == ["distml", "submit"]
        assert str(params["out"]).startswith("/data/"), (
            "the run folder must be on the shared volume"
        )
        clusters.add(params["cluster_url"])
    assert clusters == {SPARK_URL, DASK_URL}


# -- docker-compose.secure.yml ------------------------------------------------------------------
def test_secure_overlay_turns_on_dask_tls_and_spark_authentication() -> None:
    base, secure = services(COMPOSE), services(SECURE)
    assert set(secure) == {*base, "secrets"}
    scheduler = argv(secure["dask-scheduler"]["command"])
    assert scheduler[:2] == ["dask", "scheduler"] and option(scheduler, "--protocol") == "tls"
    for name in DASK_WORKERS:
        worker = argv(secure[name]["command"])
        assert worker[:3] == ["dask", "worker", "tls://dask-scheduler:8786"], name
        assert option(worker, "--tls-cert") == "/secrets/worker.pem", name
    properties = option(argv(secure["spark-master"]["command"]), "--properties-file")
    for name in SPARK_WORKERS:
        worker = argv(secure[name]["command"])
        assert worker[:2] == ["spark-class", WORKER_CLASS] and worker[-1] == SPARK_URL
        assert option(worker, "--properties-file") == properties, name
    # spark-submit in the client finds the same file as $SPARK_CONF_DIR/spark-defaults.conf
    conf_dir = secure["client"]["environment"]["SPARK_CONF_DIR"]
    assert properties == f"{conf_dir}/spark-defaults.conf"
    submitted = {}
    for args in argv_invocations(argv(secure["client"]["command"])):
        _, params = parse_distml(args)
        submitted[params["cluster_url"]] = load_invocation_spec(["submit"], params)
    assert set(submitted) == {SPARK_URL, "tls://dask-scheduler:8786"}
    assert submitted["tls://dask-scheduler:8786"].backend.tls["cert"] == "/secrets/client.pem"


def test_the_secrets_service_writes_every_file_the_overlay_names(tmp_path: Path) -> None:
    secure = services(SECURE)
    words = argv(secure["secrets"]["command"])
    assert words[:2] == ["python", "-c"]
    assert ["secrets", "/secrets"] in [str(v).split(":")[:2] for v in secure["secrets"]["volumes"]]
    exec(compile(words[2].replace('"/secrets"', repr(str(tmp_path))), "secrets", "exec"), {})
    text = SECURE.read_text()
    named = set(re.findall(r"/secrets/[\w./-]*\w", text)) - {"/secrets"}
    assert len(named) >= 6
    for path in named:
        assert (tmp_path / path.removeprefix("/secrets/")).exists(), f"{path} is never written"
    for key in [*tmp_path.glob("*.key"), tmp_path / "spark" / "spark-defaults.conf"]:
        assert key.stat().st_mode & 0o777 == 0o600, key
    conf = (tmp_path / "spark" / "spark-defaults.conf").read_text()
    assert "spark.authenticate true\n" in conf
    assert re.search(r"^spark\.authenticate\.secret [0-9a-f]{64}$", conf, re.M)


# -- every distml command line is real ----------------------------------------------------------
SOURCES = {
    "docker-compose.yml": lambda: compose_invocations(COMPOSE),
    "docker-compose.secure.yml": lambda: compose_invocations(SECURE),
    "k8s/dask-submit.yaml": lambda: k8s_invocations(K8S / "dask-submit.yaml"),
    "k8s/spark-submit.yaml": lambda: k8s_invocations(K8S / "spark-submit.yaml"),
    "README.md": lambda: readme_invocations()[0],
}


@pytest.mark.parametrize("source", SOURCES)
def test_distml_command_lines_parse_with_the_real_cli(source: str) -> None:
    lines = SOURCES[source]()
    assert lines, f"no distml command line found in {source}"
    for args in lines:
        path, params = parse_distml(args)
        if path[1:] in (["run"], ["submit"]) and not Path(params["job"]).stem.isupper():
            # a real spec (placeholders such as JOB.yaml aside): it exists, and it and
            # its --set overrides validate
            assert repo_spec(str(params["job"])).is_file(), f"{source}: no spec {params['job']}"
            load_invocation_spec(path, params)


def test_readme_names_real_commands_in_its_prose_and_code() -> None:
    blocks, inline = readme_invocations()
    assert len(blocks) >= 10 and len(inline) >= 2
    used = {tuple(parse_distml(args)[0]) for args in blocks}
    used |= {tuple(parse_distml(args, complete=False)[0]) for args in inline}
    for expected in (("distml", "cluster", "up", "dask"), ("distml", "cluster", "up", "spark")):
        assert expected in used  # the local, really tested clusters are pointed to


def test_k8s_manifests_other_than_jobs_hold_no_distml_commands() -> None:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name not in ("dask-submit.yaml", "spark-submit.yaml"):
            assert k8s_invocations(path) == [], path.name


@pytest.mark.parametrize(
    "line",
    [
        "distml sumbit /jobs/kmeans.yaml --cluster tcp://h:8786",
        "distml submit /jobs/kmeans.yaml --clster tcp://h:8786",
        "distml submit /jobs/kmeans.yaml",
        "distml cluster up dsk",
        "distml cluster up",
        "distml jobs show 1",
        "distml --verbose run /jobs/kmeans.yaml",
    ],
)
def test_the_command_check_rejects_typos(line: str) -> None:
    with pytest.raises(AssertionError):
        for args in shell_invocations(line):
            parse_distml(args)


def test_command_lines_are_found_where_distml_is_the_command() -> None:
    found = shell_invocations(
        "docker compose run --rm client distml jobs list && kubectl -n distml get pods\n"
        "SPARK_CONF_DIR=/x distml cluster status  # comment distml nothing\n"
        "pip show distml; kubectl exec p -- distml cluster down",
        launchers=("client",),
    )
    assert found == [["jobs", "list"], ["cluster", "status"], ["cluster", "down"]]


# -- kubernetes ---------------------------------------------------------------------------------
def test_k8s_objects_share_one_namespace_one_claim_and_the_image() -> None:
    namespace = k8s_object("Namespace")["metadata"]["name"]
    claim = k8s_object("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]  # many pods on many nodes
    for doc in k8s_docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace, doc["metadata"]["name"]
    specs = pod_specs(k8s_docs())
    assert len(specs) == 4  # scheduler, workers, two submitting Jobs
    for spec in specs:
        for container in spec["containers"]:
            assert container["image"] == IMAGE, container["name"]
            assert "command" not in container, "command would bypass the image's entrypoint"
        assert spec["securityContext"]["runAsUser"] == image_uid()
        claims = [v for v in spec.get("volumes", []) if "persistentVolumeClaim" in v]
        for volume in claims:
            assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
            mounts = [
                m
                for c in spec["containers"]
                for m in c["volumeMounts"]
                if m["name"] == volume["name"]
            ]
            assert [m["mountPath"] for m in mounts] == ["/data"]


def test_dask_cluster_for_the_operator() -> None:
    cluster = k8s_object("DaskCluster")
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    worker, scheduler = cluster["spec"]["worker"], cluster["spec"]["scheduler"]
    assert worker["replicas"] == 2
    (worker_container,) = worker["spec"]["containers"]
    assert worker_container["args"][:3] == ["dask", "worker", "$(DASK_SCHEDULER_ADDRESS)"]
    assert any("persistentVolumeClaim" in v for v in worker["spec"]["volumes"])
    (scheduler_container,) = scheduler["spec"]["containers"]
    assert scheduler_container["args"][:2] == ["dask", "scheduler"]
    assert scheduler_container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {p["port"] for p in scheduler["service"]["ports"]} == {8786, 8787}
    assert scheduler["service"]["selector"]["dask.org/cluster-name"] == cluster["metadata"]["name"]


def test_dask_submit_job_targets_the_operators_scheduler_service() -> None:
    cluster = k8s_object("DaskCluster")
    name, namespace = cluster["metadata"]["name"], cluster["metadata"]["namespace"]
    (args,) = k8s_invocations(K8S / "dask-submit.yaml")
    path, params = parse_distml(args)
    assert path == ["distml", "submit"]
    # the operator names the service <cluster>-scheduler
    assert params["cluster_url"] == f"tcp://{name}-scheduler.{namespace}.svc.cluster.local:8786"
    assert str(params["out"]).startswith("/data/")


def test_spark_on_kubernetes_job() -> None:
    job = k8s_object("Job", "distml-spark-submit")
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    (args,) = k8s_invocations(K8S / "spark-submit.yaml")
    path, params = parse_distml(args)
    assert path == ["distml", "run"] and params["backend"].startswith("k8s://https://")
    assert str(params["out"]).startswith("/data/")
    job_spec = load_invocation_spec(path, params)
    env = {e["name"]: e for e in container["env"]}
    pod_name = job_spec.backend.conf["spark.kubernetes.driver.pod.name"]
    assert pod_name == "$(POD_NAME)"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # executors connect back to the driver at the pod's IP
    assert env["SPARK_LOCAL_HOSTNAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"

    # spark-defaults.conf reaches spark-submit through SPARK_CONF_DIR
    conf_dir = env["SPARK_CONF_DIR"]["value"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == conf_dir]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    configmap = k8s_object("ConfigMap", volume["configMap"]["name"])
    conf = dict(
        line.split(None, 1)
        for line in configmap["data"]["spark-defaults.conf"].splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    claim = k8s_object("PersistentVolumeClaim")["metadata"]["name"]
    prefix = "spark.kubernetes.executor.volumes.persistentVolumeClaim.data"
    assert conf["spark.kubernetes.container.image"] == IMAGE
    assert conf["spark.kubernetes.namespace"] == job["metadata"]["namespace"]
    assert conf[f"{prefix}.options.claimName"] == claim
    assert conf[f"{prefix}.mount.path"] == "/data"
    assert conf["spark.executor.instances"] == "2"

    # the driver's service account may create executor pods
    account = spec["serviceAccountName"]
    assert k8s_object("ServiceAccount", account)
    binding = k8s_object("RoleBinding")
    assert {
        "kind": "ServiceAccount",
        "name": account,
        "namespace": job["metadata"]["namespace"],
    } in binding["subjects"]
    role = k8s_object("Role", binding["roleRef"]["name"])
    assert any("pods" in r["resources"] and "create" in r["verbs"] for r in role["rules"])


# -- the image ----------------------------------------------------------------------------------
def test_dockerfile() -> None:
    steps = dockerfile()
    keywords = [k for k, _ in steps]
    (base,) = [args for k, args in steps if k == "FROM"]
    assert base.startswith("python:3.11")
    runs = [args for k, args in steps if k == "RUN"]
    assert any("apt-get install" in r and "openjdk-17-jre-headless" in r for r in runs)
    (pip,) = [r for r in runs if "pip install" in r]
    extras = re.search(r'"/src\[([^\]]*)\]"', pip)
    assert extras, "the project is not pip-installed from /src"
    assert set(extras.group(1).split(",")) == {"dask", "spark"}  # and no tensorflow
    copied = [args.split() for k, args in steps if k == "COPY"]
    assert ["pyproject.toml", "README.md", "/src/"] in copied
    assert ["distml", "/src/distml"] in copied
    users = [args for k, args in steps if k == "USER"]
    assert users and users[-1] not in ("root", "0"), "the services must not run as root"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    # SPARK_HOME is where pip puts pyspark for the base image's Python
    env = " ".join(args for k, args in steps if k == "ENV")
    assert "SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark" in env
    (entry,) = [args for k, args in steps if k == "ENTRYPOINT"]
    assert ["cluster/entrypoint.sh", "/usr/local/bin/distml-entrypoint"] in copied
    assert "/usr/local/bin/distml-entrypoint" in entry


def test_dockerignore_sends_everything_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    for keyword, args in dockerfile():
        if keyword == "COPY":
            for source in args.split()[:-1]:
                parts = Path(source).parts
                prefixes = {str(Path(*parts[: i + 1])) for i in range(len(parts))}
                assert prefixes & allowed, f"{source} is excluded from the build context"
                assert (REPO / source).exists(), source


def run_entrypoint(tmp_path: Path, args: list[str], env: dict[str, str]) -> list[str]:
    """Run cluster/entrypoint.sh with a ``java`` that prints its arguments, one per line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    java = bin_dir / "java"
    java.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    java.chmod(0o755)
    full_env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env}
    done = subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        env=full_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.splitlines()


def test_entrypoint_starts_a_spark_executor_like_sparks_own_images(tmp_path: Path) -> None:
    env = {
        "SPARK_HOME": "/opt/pyspark",
        "SPARK_LOCAL_HOSTNAME": "10.0.0.9",
        "SPARK_EXECUTOR_MEMORY": "2g",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@10.0.0.5:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_EXECUTOR_CORES": "2",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.9",
        "SPARK_RESOURCE_PROFILE_ID": "0",
        "SPARK_EXECUTOR_POD_NAME": "exec-3",
    }
    java_opts = [f"-Dopt{i}=v {i}" for i in range(11)]  # _10 comes after _9, spaces kept
    env.update({f"SPARK_JAVA_OPT_{i}": opt for i, opt in enumerate(java_opts)})
    words = run_entrypoint(tmp_path, ["executor"], env)
    assert words[:11] == java_opts
    classpath = f"/opt/pyspark/conf:/opt/pyspark/jars/*:{tmp_path}"
    assert words[11:15] == ["-Xms2g", "-Xmx2g", "-cp", classpath]
    assert words[15] == "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"
    flags = dict(zip(words[16::2], words[17::2], strict=True))
    assert flags == {
        "--driver-url": env["SPARK_DRIVER_URL"],
        "--executor-id": "3",
        "--cores": "2",
        "--app-id": "spark-app-1",
        "--hostname": "10.0.0.9",
        "--resourceProfileId": "0",
        "--podName": "exec-3",
    }


def test_entrypoint_passes_other_commands_through_and_advertises_an_ip(tmp_path: Path) -> None:
    show = ["printenv", "SPARK_LOCAL_HOSTNAME"]
    assert run_entrypoint(tmp_path, show, {"SPARK_LOCAL_HOSTNAME": "h1"}) == ["h1"]
    try:
        own_ip = socket.gethostbyname(socket.gethostname())
    except OSError:
        pytest.skip("this machine's hostname does not resolve")
    assert run_entrypoint(tmp_path, show, {}) == [own_ip]  # unset: this machine's IP


# -- the README ---------------------------------------------------------------------------------
def test_readme_says_these_files_were_not_run_and_lists_them() -> None:
    text = README.read_text()
    assert "Not run here" in text and "no Docker engine and no Kubernetes" in text
    assert "tests/test_cluster_configs.py" in text
    for path in sorted(CLUSTER.rglob("*")):
        if path.is_file() and path != README and "__pycache__" not in path.parts:
            assert f"`{path.relative_to(CLUSTER)}`" in text, f"README does not mention {path.name}"
    for target in re.findall(r"\]\(([^)#:]+)\)", text):  # relative links resolve
        assert (CLUSTER / target).exists(), target
