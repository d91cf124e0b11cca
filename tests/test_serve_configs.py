"""cluster/serve/: the serving image and its Kubernetes Deployment, parsed and checked.

As for the files in cluster/ (tests/test_cluster_configs.py), no Docker engine or
Kubernetes runs here: the Dockerfile and manifests are parsed, their structure
asserted, every ``distml`` command line in them parsed by the real CLI, and the probe
paths checked against the routes the real app serves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_cluster_configs import REPO, image_uid, parse_distml, token_invocations

SERVE = REPO / "cluster" / "serve"
DOCKERFILE = SERVE / "Dockerfile"
DEPLOYMENT = SERVE / "deployment.yaml"
BASE = REPO / "cluster" / "k8s" / "base.yaml"


def steps() -> list[tuple[str, str]]:
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if not ln.lstrip().startswith("#")]
    text = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def only(kind: str, path: Path = DEPLOYMENT) -> dict[str, Any]:
    (found,) = [d for d in docs(path) if d["kind"] == kind]
    return found


def container() -> dict[str, Any]:
    (c,) = only("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def test_serving_image() -> None:
    found = steps()
    keywords = [k for k, _ in found]
    (base,) = [a for k, a in found if k == "FROM"]
    assert base.startswith("python:3.11")
    (extras,) = [a for k, a in found if k == "ARG" and a.startswith("EXTRAS=")]
    assert "serve" in extras.removeprefix("EXTRAS=").split(",")
    (pip,) = [a for k, a in found if k == "RUN" and "pip install" in a]
    assert '"/src[${EXTRAS}]"' in pip
    copied = [a.split() for k, a in found if k == "COPY"]
    assert ["pyproject.toml", "README.md", "/src/"] in copied and [
        "distml",
        "/src/distml",
    ] in copied
    runs = " ".join(a for k, a in found if k == "RUN")
    assert int(re.search(r"useradd [^&]*--uid (\d+)", runs).group(1)) == image_uid()  # type: ignore[union-attr]
    users = [a for k, a in found if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    (entry,) = [a for k, a in found if k == "ENTRYPOINT"]
    assert "tini" in entry  # PID 1 forwards SIGTERM to distml serve
    (cmd,) = [a for k, a in found if k == "CMD"]
    words = yaml.safe_load(cmd)  # the exec form is a JSON array
    path, params = parse_distml(token_invocations(words)[0])
    assert path == ["distml", "serve"]
    assert params["host"] == "0.0.0.0"
    (exposed,) = [a for k, a in found if k == "EXPOSE"]
    assert int(exposed) == params["port"]


def test_serving_dockerignore_sends_what_the_image_copies() -> None:
    rules = [
        line.strip()
        for line in (SERVE / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    for keyword, args in steps():
        if keyword == "COPY":
            for source in args.split()[:-1]:
                assert source in allowed and (REPO / source).exists(), source


def test_deployment_serves_a_run_folder_from_the_shared_claim() -> None:
    deployment = only("Deployment")
    namespace = only("Namespace", BASE)["metadata"]["name"]
    claim = only("PersistentVolumeClaim", BASE)["metadata"]["name"]
    assert (
        deployment["metadata"]["namespace"] == only("Service")["metadata"]["namespace"] == namespace
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == image_uid()
    c = container()
    assert c["image"] == "distml-serve:latest"
    assert "command" not in c, "command would bypass the image's entrypoint (tini)"
    path, params = parse_distml(token_invocations(c["args"])[0])
    assert path == ["distml", "serve"] and params["host"] == "0.0.0.0"
    (port,) = c["ports"]
    assert port["containerPort"] == params["port"]
    (mount,) = c["volumeMounts"]
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"] and mount["readOnly"] is True
    assert volume["persistentVolumeClaim"]["claimName"] == claim
    for model in params["models"]:
        assert model.startswith(mount["mountPath"] + "/"), model
    # SIGTERM: the requests in flight get --timeout (+5 s) before the kubelet kills the pod
    assert pod["terminationGracePeriodSeconds"] >= params["timeout"] + 5


def test_probes_use_the_v2_health_endpoints_the_app_serves() -> None:
    pytest.importorskip("fastapi")
    from distml.serve.app import Settings, create_app
    from distml.serve.registry import ModelSource, Registry

    app = create_app(Registry([ModelSource("m", Path("unused"), "distml")]), Settings())
    routes = {route.path for route in app.api.routes}
    c = container()
    port_name = c["ports"][0]["name"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        get = c[probe]["httpGet"]
        assert get["path"] in routes and get["port"] == port_name, probe
    annotations = only("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes


def test_service_selects_the_pods() -> None:
    service, deployment = only("Service"), only("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container()["ports"][0]["name"]
