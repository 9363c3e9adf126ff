"""The Kubernetes manifests and the container image, checked offline against what the code expects.

Each overlay under deploy/overlays is rendered with `kubectl kustomize` (kubectl must be installed:
the tests fail, never skip, without it) and validated with `kubernetes-validate --strict` for
Kubernetes 1.30. Custom resources (CloudNativePG) have no schema there: they are noted, not failed,
and checked for what matters here by hand. The rendered objects are then held to the rules in
docs/operations.md (hardened containers, probes, budgets, network policies), and to the code:
every environment variable a service's config class reads must be in its manifests and nothing else,
so config and manifests cannot drift.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path, PurePosixPath

import pytest
import yaml

from services.common.config import env_names, load

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
SECRET_TEMPLATES = DEPLOY / "base" / "secret-templates"
KUBERNETES_VERSION = "1.30.0"
OVERLAYS = {"dev": "covidtest-dev", "prod": "covidtest"}

# Deployment name (also the entry point command) -> its config class: the three gRPC services.
SERVICES = {
    "result-svc": "services.result_svc.config.ResultConfig",
    "publish-svc": "services.publish_svc.config.PublishConfig",
    "verify-svc": "services.verify_svc.config.VerifyConfig",
}
# The HTTP/JSON gateway in front of them: a Deployment from the same image, but it serves HTTP (no gRPC
# server, so no gRPC probes and no headless Service) and holds no database, Redis or key.
GATEWAY = "gateway"
# Every process the manifests run as a Deployment -> its config class.
PROCESSES = {**SERVICES, GATEWAY: "services.gateway.config.GatewayConfig"}
# The namespace of the ingress controller the gateway's network policy admits (docs/operations.md).
INGRESS_NAMESPACE = "ingress-nginx"
INGRESS_TLS_SECRET = "covidtest-gateway-tls"
# Custom resources an overlay may contain: installed by operators, so no Kubernetes schema for them.
CUSTOM_RESOURCES = {
    ("postgresql.cnpg.io/v1", "Cluster"),
    ("postgresql.cnpg.io/v1", "ScheduledBackup"),
    ("barmancloud.cnpg.io/v1", "ObjectStore"),
}
STAGES = {"foundation", "migrate", "services"}


class NotSchemaChecked(UserWarning):
    """Custom resources that kubernetes-validate has no schema for."""


# --- rendering ------------------------------------------------------------------------------------------


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail(
            "kubectl is not installed or not on PATH: the manifest tests render deploy/overlays/* with "
            "`kubectl kustomize` (kubectl >= 1.27, kustomize v5). Install kubectl and run them again.",
            pytrace=False,
        )
    return path


@functools.cache
def _render(overlay: str) -> str:
    proc = subprocess.run(
        [kubectl(), "kustomize", str(DEPLOY / "overlays" / overlay)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        pytest.fail(f"kubectl kustomize deploy/overlays/{overlay} failed:\n{proc.stderr}", pytrace=False)
    return proc.stdout


@dataclasses.dataclass
class Manifests:
    overlay: str
    text: str
    objects: list[dict]

    @property
    def namespace(self) -> str:
        return OVERLAYS[self.overlay]

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert found, f"{self.overlay}: no {kind} {name} in the rendered output"
        return found[0]

    def workloads(self) -> list[dict]:
        return [o for o in self.objects if pod_spec(o) is not None]

    def config_map(self, name: str) -> dict:
        return self.get("ConfigMap", name).get("data") or {}

    def secret(self, name: str) -> dict[str, str] | None:
        """Decoded data of a rendered Secret, or None when it is created outside the render (prod)."""
        for obj in self.of_kind("Secret"):
            if obj["metadata"]["name"] == name:
                data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
                data.update(obj.get("stringData") or {})
                return data
        return None


@functools.cache
def rendered(overlay: str) -> Manifests:
    text = _render(overlay)
    return Manifests(overlay, text, [o for o in yaml.safe_load_all(text) if o])


@pytest.fixture(params=sorted(OVERLAYS))
def manifests(request) -> Manifests:
    return rendered(request.param)


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict) -> dict:
    template = obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]
    return template["metadata"].get("labels") or {}


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def each_container(m: Manifests):
    for obj in m.workloads():
        for c in containers(obj):
            yield f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}", obj, c


def service_container(m: Manifests, name: str) -> dict:
    deployment = m.get("Deployment", name)
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def config_class(name: str):
    module, _, cls = PROCESSES[name].rpartition(".")
    return getattr(importlib.import_module(module), cls)


def matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# --- rendering and schema validation --------------------------------------------------------------------


def test_kubectl_is_installed():
    assert kubectl()


def test_overlay_renders_into_its_own_namespace(manifests):
    assert manifests.objects, f"{manifests.overlay} rendered nothing"
    namespaces = manifests.of_kind("Namespace")
    assert [n["metadata"]["name"] for n in namespaces] == [manifests.namespace]
    elsewhere = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in manifests.objects
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != manifests.namespace
    ]
    assert not elsewhere, f"objects outside namespace {manifests.namespace}: {elsewhere}"
    for name in PROCESSES:
        manifests.get("Deployment", name)
    manifests.get("Job", "covidtest-migrate")


def _kubernetes_validate(*files: Path) -> tuple[list[str], set[tuple[str, str]]]:
    """Run kubernetes-validate --strict for Kubernetes 1.30; returns (errors, kinds without a schema)."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            "--quiet",
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = proc.stdout.splitlines()
    errors = [line for line in lines if line.startswith(("ERROR", "FATAL"))]
    if proc.returncode != 0 and not errors:
        errors = [f"kubernetes-validate exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"]
    unchecked = set()
    for line in lines:
        found = re.search(r"Couldn't find schema for kind (\S+) with api version (\S+)", line)
        if found:
            unchecked.add((found.group(2), found.group(1)))
    return errors, unchecked


def test_rendered_manifests_validate_strictly_against_kubernetes_1_30(manifests, tmp_path):
    rendered = tmp_path / f"{manifests.overlay}.yaml"
    rendered.write_text(manifests.text)
    errors, unchecked = _kubernetes_validate(rendered)
    assert not errors, "\n".join(errors)
    assert unchecked <= CUSTOM_RESOURCES, (
        f"kinds without a schema that are not known custom resources: {unchecked - CUSTOM_RESOURCES}"
    )
    present = {(o["apiVersion"], o["kind"]) for o in manifests.objects} & CUSTOM_RESOURCES
    assert unchecked == present
    if unchecked:
        warnings.warn(
            NotSchemaChecked(
                f"{manifests.overlay}: custom resources not schema-checked (no Kubernetes schema): "
                + ", ".join(f"{kind} ({api})" for api, kind in sorted(unchecked))
            ),
            stacklevel=1,
        )


def test_secret_templates_validate_and_hold_no_real_secret():
    templates = sorted(SECRET_TEMPLATES.glob("*.yaml"))
    assert templates, "deploy/base/secret-templates/ is empty"
    errors, unchecked = _kubernetes_validate(*templates)
    assert not errors, "\n".join(errors)
    assert not unchecked
    for path in templates:
        for secret in filter(None, yaml.safe_load_all(path.read_text())):
            assert secret["kind"] == "Secret"
            assert "data" not in secret, f"{path.name}: templates use readable stringData placeholders"
            for key, value in secret["stringData"].items():
                assert "REPLACE" in value, f"{path.name}: {secret['metadata']['name']}.{key} is not a placeholder"


def test_every_secret_the_services_read_is_rendered_or_templated(manifests):
    """A Secret the manifests reference either comes with the overlay, from CloudNativePG, or has a template."""
    templated = {
        s["metadata"]["name"]: set(s["stringData"])
        for path in SECRET_TEMPLATES.glob("*.yaml")
        for s in filter(None, yaml.safe_load_all(path.read_text()))
    }
    generated_by_cnpg = {
        f"{c['metadata']['name']}-app": {"uri", "username", "password", "host", "port", "dbname"}
        for c in manifests.of_kind("Cluster")
    }
    problems = []
    for where, obj, c in each_container(manifests):
        refs = [
            (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
            for e in c.get("env") or []
            if "secretKeyRef" in (e.get("valueFrom") or {})
        ]
        for volume in pod_spec(obj).get("volumes") or []:
            sources = [volume] if "secret" in volume else (volume.get("projected") or {}).get("sources") or []
            for source in sources:
                if "secret" in source:
                    name = source["secret"].get("secretName") or source["secret"].get("name")
                    refs += [(name, item["key"]) for item in source["secret"].get("items") or []]
        for name, key in refs:
            rendered = manifests.secret(name)
            if rendered is not None:
                ok = key in rendered
            elif name in generated_by_cnpg:
                ok = key in generated_by_cnpg[name]
            else:
                ok = key in templated.get(name, ())
            if not ok:
                problems.append(f"{where}: Secret {name} key {key} is neither rendered, generated nor templated")
    assert not problems, "\n".join(problems)


# --- containers: hardened as docs/operations.md says ------------------------------------------------------------------


def _effective(obj: dict, container: dict, field: str):
    value = (container.get("securityContext") or {}).get(field)
    return (pod_spec(obj).get("securityContext") or {}).get(field) if value is None else value


def test_every_container_runs_as_non_root(manifests):
    bad = [
        where
        for where, obj, c in each_container(manifests)
        if _effective(obj, c, "runAsNonRoot") is not True or _effective(obj, c, "runAsUser") == 0
    ]
    assert not bad, f"not guaranteed non-root: {bad}"


def test_every_container_has_a_read_only_root_filesystem(manifests):
    bad = [
        where
        for where, _, c in each_container(manifests)
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]
    assert not bad, f"writable root filesystem: {bad}"


def test_no_container_can_escalate_privileges(manifests):
    bad = [
        where
        for where, _, c in each_container(manifests)
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False
        or (c.get("securityContext") or {}).get("privileged")
    ]
    assert not bad, f"privilege escalation possible: {bad}"
    hosts = [
        o["metadata"]["name"]
        for o in manifests.workloads()
        if any(pod_spec(o).get(f) for f in ("hostNetwork", "hostPID", "hostIPC"))
    ]
    assert not hosts, f"host namespaces shared: {hosts}"


def test_every_container_drops_all_capabilities(manifests):
    bad = []
    for where, _, c in each_container(manifests):
        caps = (c.get("securityContext") or {}).get("capabilities") or {}
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            bad.append(where)
    assert not bad, f"capabilities not dropped: {bad}"


def test_every_container_uses_the_runtime_default_seccomp_profile(manifests):
    bad = [
        where
        for where, obj, c in each_container(manifests)
        if (_effective(obj, c, "seccompProfile") or {}).get("type") != "RuntimeDefault"
    ]
    assert not bad, f"no RuntimeDefault seccomp profile: {bad}"


def test_no_pod_mounts_a_service_account_token(manifests):
    bad = [
        o["metadata"]["name"]
        for o in manifests.workloads()
        if pod_spec(o).get("automountServiceAccountToken") is not False
    ]
    bad += [
        f"ServiceAccount/{sa['metadata']['name']}"
        for sa in manifests.of_kind("ServiceAccount")
        if sa.get("automountServiceAccountToken") is not False
    ]
    assert not bad, f"service account token mounted: {bad}"


def test_service_links_are_disabled_so_nothing_shadows_the_configuration(manifests):
    # With service links, a Service named `redis` injects REDIS_PORT=tcp://… into every pod.
    bad = [o["metadata"]["name"] for o in manifests.workloads() if pod_spec(o).get("enableServiceLinks") is not False]
    assert not bad, f"enableServiceLinks not false: {bad}"


def test_every_container_sets_cpu_and_memory_requests_and_limits(manifests):
    bad = []
    for where, _, c in each_container(manifests):
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(resources.get(kind) or {})
            if missing:
                bad.append(f"{where}: {kind} lacks {sorted(missing)}")
    for cluster in manifests.of_kind("Cluster"):
        resources = cluster["spec"].get("resources") or {}
        if not (resources.get("limits") and resources.get("requests")):
            bad.append(f"Cluster/{cluster['metadata']['name']}: no requests and limits")
    assert not bad, "\n".join(bad)


def _image_problem(image: str) -> str | None:
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    if not tag and not digest:
        return "no tag (means latest)"
    if tag == "latest":
        return "tag latest"
    return None


def test_no_image_uses_the_latest_tag(manifests):
    images = [(where, c["image"]) for where, _, c in each_container(manifests)]
    images += [(f"Cluster/{c['metadata']['name']}", c["spec"]["imageName"]) for c in manifests.of_kind("Cluster")]
    bad = [f"{where}: {image} ({problem})" for where, image in images if (problem := _image_problem(image))]
    assert not bad, "\n".join(bad)


# --- the three services ---------------------------------------------------------------------------------


def _probe_ports(container: dict) -> dict[str, object]:
    ports = {}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe:
            handler = next(h for h in ("grpc", "httpGet", "tcpSocket", "exec") if h in probe)
            ports[kind] = (handler, (probe[handler] or {}).get("port"))
    return ports


def test_services_have_native_grpc_probes_on_declared_numeric_ports(manifests):
    problems = []
    for name in SERVICES:
        c = service_container(manifests, name)
        declared = {p["containerPort"] for p in c.get("ports") or []}
        probes = _probe_ports(c)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            handler, port = probes.get(kind, (None, None))
            if handler != "grpc":
                problems.append(f"{name}: {kind} is not a native gRPC probe")
            elif not isinstance(port, int) or port not in declared:
                problems.append(f"{name}: {kind} port {port!r} is not a number declared as a containerPort")
    for where, _, c in each_container(manifests):
        for kind, (handler, port) in _probe_ports(c).items():
            if handler != "exec" and not isinstance(port, int):
                problems.append(f"{where}: {kind} uses port {port!r}, not a number")
    assert not problems, "\n".join(problems)


def test_probes_reach_a_plaintext_health_port(manifests):
    """The kubelet's gRPC probe has no TLS: with TLS on, it must not probe the TLS gRPC port."""
    problems = []
    for name in SERVICES:
        c = service_container(manifests, name)
        env = _literal_env(manifests, c)
        grpc_port = int(env.get("GRPC_PORT") or 50051)
        ports = {port for _, port in _probe_ports(c).values()}
        if env.get("TLS_CERT_FILE"):
            if grpc_port in ports:
                problems.append(f"{name}: TLS is on, yet a probe targets the gRPC port {grpc_port}")
        elif ports != {grpc_port}:
            problems.append(f"{name}: plaintext gRPC, so the probes should target GRPC_PORT {grpc_port}, not {ports}")
    assert not problems, "\n".join(problems)


# The gateway's HTTP probes: start-up and liveness ask only whether the process serves; readiness also
# whether its channels to the services are connected (503 otherwise, and while draining).
GATEWAY_PROBE_PATHS = {"startupProbe": "/healthz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}


def test_gateway_has_http_probes_on_its_declared_numeric_port(manifests):
    c = service_container(manifests, GATEWAY)
    env = _literal_env(manifests, c)
    http_port = int(env.get("GATEWAY_HTTP_PORT") or 8080)
    declared = {p["containerPort"]: p.get("name") for p in c.get("ports") or []}
    assert declared.get(http_port) == "http", f"GATEWAY_HTTP_PORT {http_port} is not the containerPort named http"
    assert int(env.get("METRICS_PORT") or 9100) in declared, "METRICS_PORT is not a declared containerPort"
    problems = []
    for kind, path in GATEWAY_PROBE_PATHS.items():
        probe = c.get(kind) or {}
        get = probe.get("httpGet")
        if get is None:
            problems.append(f"{kind} is not an HTTP GET probe")
            continue
        if get.get("path") != path:
            problems.append(f"{kind} asks {get.get('path')!r}, not {path}")
        if get.get("port") != http_port:
            problems.append(f"{kind} port {get.get('port')!r} is not the number GATEWAY_HTTP_PORT {http_port}")
        if get.get("scheme", "HTTP") != "HTTP":
            problems.append(f"{kind} uses {get['scheme']}: the gateway serves plain HTTP behind the Ingress")
    assert not problems, f"{manifests.overlay}/{GATEWAY}: " + "; ".join(problems)


def _pre_stop_seconds(container: dict) -> int:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    return int((pre_stop.get("sleep") or {}).get("seconds", 0))


def test_termination_grace_period_covers_the_drain(manifests):
    for name in PROCESSES:
        deployment = manifests.get("Deployment", name)
        c = service_container(manifests, name)
        grace = float(_literal_env(manifests, c)["SHUTDOWN_GRACE_SECONDS"])
        period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert period > grace + _pre_stop_seconds(c), (
            f"{name}: terminationGracePeriodSeconds {period} must exceed preStop {_pre_stop_seconds(c)} s "
            f"+ SHUTDOWN_GRACE_SECONDS {grace} s, or Kubernetes kills the drain"
        )


def test_each_service_has_a_grpc_service_and_a_headless_service(manifests):
    for name in SERVICES:
        labels = pod_labels(manifests.get("Deployment", name))
        selecting = [
            s
            for s in manifests.of_kind("Service")
            if s["spec"].get("selector") and matches({"matchLabels": s["spec"]["selector"]}, labels)
        ]
        grpc = [s for s in selecting if any(p.get("name") == "grpc" for p in s["spec"]["ports"])]
        assert any(s["spec"].get("clusterIP") != "None" for s in grpc), f"{name}: no Service with a port named grpc"
        assert any(s["spec"].get("clusterIP") == "None" for s in grpc), (
            f"{name}: no headless Service for client-side (per-call) load balancing"
        )
        container_ports = {p["name"]: p["containerPort"] for p in service_container(manifests, name)["ports"]}
        for service in grpc:
            port = next(p for p in service["spec"]["ports"] if p["name"] == "grpc")
            assert port["targetPort"] in ("grpc", container_ports["grpc"])


# The gateway forwards to each service through its headless Service (every ready pod, calls balanced round
# robin), variable -> the Deployment behind it.
GATEWAY_TARGETS = {
    "RESULT_SVC_TARGET": "result-svc",
    "PUBLISH_SVC_TARGET": "publish-svc",
    "VERIFY_SVC_TARGET": "verify-svc",
}


def test_gateway_targets_are_the_services_grpc_ports(manifests):
    env = _literal_env(manifests, service_container(manifests, GATEWAY))
    for var, name in GATEWAY_TARGETS.items():
        assert env[var].startswith("dns:///"), f"{var}: {env[var]} is not a dns:/// target (calls would be pinned)"
        host, _, port = env[var].removeprefix("dns:///").rpartition(":")
        name_in_full = f".{manifests.namespace}.svc"
        assert "." not in host or host.endswith(name_in_full), f"{var}: {host} is not in the namespace"
        if manifests.namespace == "covidtest":  # prod, mutual TLS: the full name its certificate carries
            assert host.endswith(name_in_full), f"{var}: {host} is not the name in the service's certificate"
        host = host.split(".")[0]
        service = manifests.get("Service", host)
        assert service["spec"].get("clusterIP") == "None", f"{var}: {host} is not headless: calls would be pinned"
        selector = {"matchLabels": service["spec"]["selector"]}
        assert matches(selector, pod_labels(manifests.get("Deployment", name))), f"{var}: {host} is not {name}"
        [grpc] = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        assert grpc["targetPort"] == "grpc", f"{var}: port {port} of {host} is not its gRPC port"


def _nginx_size(value: str) -> int:
    """nginx's size syntax (ingress-nginx's proxy-body-size): bytes, or k/m/g for KiB, MiB, GiB."""
    found = re.fullmatch(r"(\d+)([kmg]?)", str(value).strip().lower())
    assert found, f"not an nginx size: {value!r}"
    return int(found.group(1)) * 1024 ** "_kmg".index(found.group(2) or "_")


def _routes(path: dict, request_path: str) -> bool:
    """Whether an Ingress path (Exact, or Prefix by path elements) takes `request_path`."""
    if path.get("pathType") == "Exact":
        return request_path == path["path"]
    prefix = path["path"].rstrip("/")
    return request_path == prefix or request_path.startswith(prefix + "/")


def test_ingress_terminates_tls_and_routes_to_the_gateway_service(manifests):
    [ingress] = manifests.of_kind("Ingress")
    spec = ingress["spec"]
    c = service_container(manifests, GATEWAY)
    env = _literal_env(manifests, c)
    http_port = int(env["GATEWAY_HTTP_PORT"])
    named_ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    service = manifests.get("Service", GATEWAY)
    assert matches({"matchLabels": service["spec"]["selector"]}, pod_labels(manifests.get("Deployment", GATEWAY)))
    tls_hosts = {h for t in spec.get("tls") or [] if t.get("secretName") == INGRESS_TLS_SECRET for h in t["hosts"]}
    templated = {
        s["metadata"]["name"]
        for path in SECRET_TEMPLATES.glob("*.yaml")
        for s in filter(None, yaml.safe_load_all(path.read_text()))
    }
    assert INGRESS_TLS_SECRET in templated, f"no template documents the Secret {INGRESS_TLS_SECRET}"
    assert "defaultBackend" not in spec
    problems = []
    for rule in spec.get("rules") or []:
        host = rule.get("host")
        if not host:
            problems.append("a rule without a host")
            continue
        if host not in tls_hosts:
            problems.append(f"{host}: not served with TLS from the Secret {INGRESS_TLS_SECRET}")
        if host.endswith(".invalid"):
            problems.append(f"{host}: the base's placeholder; the overlay must set the public name")
        for path in rule["http"]["paths"]:
            backend = path["backend"].get("service") or {}
            if backend.get("name") != GATEWAY:
                problems.append(f"{host}{path['path']}: routed to {backend.get('name')!r}, not the gateway")
                continue
            ref = backend["port"]
            ports = [
                p
                for p in service["spec"]["ports"]
                if p.get("name") == ref.get("name") or p["port"] == ref.get("number")
            ]
            target = ports[0]["targetPort"] if ports else None
            if named_ports.get(target, target) != http_port:
                problems.append(
                    f"{host}{path['path']}: Service port {ref} does not lead to GATEWAY_HTTP_PORT {http_port}"
                )
            for internal in GATEWAY_PROBE_PATHS.values():
                if _routes(path, internal):
                    problems.append(f"{host}{path['path']}: publishes the probe endpoint {internal}")
        for public in ("/v1/verify", "/checkpoint/"):
            if not any(_routes(p, public) for p in rule["http"]["paths"]):
                problems.append(f"{host}: {public} is not routed")
    assert spec.get("rules"), "the Ingress has no rules"
    assert not problems, f"{manifests.overlay}: " + "; ".join(problems)
    # A body the gateway would take must pass the controller, and one it would refuse need not.
    limit = (ingress["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/proxy-body-size")
    assert limit is not None, "no nginx.ingress.kubernetes.io/proxy-body-size: ingress-nginx's default is 1 MiB"
    assert _nginx_size(limit) == int(env["MAX_REQUEST_BYTES"]), (
        f"the Ingress's body limit {limit} differs from the gateway's MAX_REQUEST_BYTES {env['MAX_REQUEST_BYTES']}"
    )


def _selects(selector: dict, obj: dict) -> bool:
    return bool(selector) and matches(selector, pod_labels(obj))


def test_every_deployment_has_a_disruption_budget_an_autoscaler_and_a_network_policy(manifests):
    problems = []
    policies = manifests.of_kind("NetworkPolicy")
    default_deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes") or []) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not default_deny:
        problems.append("no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)")
    for deployment in manifests.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if not any(_selects(p["spec"]["selector"], deployment) for p in manifests.of_kind("PodDisruptionBudget")):
            problems.append(f"{name}: no PodDisruptionBudget selects its pods")
        if not any(
            h["spec"]["scaleTargetRef"]["kind"] == "Deployment" and h["spec"]["scaleTargetRef"]["name"] == name
            for h in manifests.of_kind("HorizontalPodAutoscaler")
        ):
            problems.append(f"{name}: no HorizontalPodAutoscaler")
        if not any(_selects(p["spec"]["podSelector"], deployment) and p["spec"].get("ingress") for p in policies):
            problems.append(f"{name}: no NetworkPolicy names its pods with an ingress rule")
    assert not problems, "\n".join(problems)


def test_deployments_run_the_entry_point_command_of_their_service(manifests):
    commands = dict(re.findall(r"^\s*([a-z-]+)\)\s+exec python -m ([\w.]+)", ENTRYPOINT.read_text(), re.M))
    for name in PROCESSES:
        args = service_container(manifests, name).get("args")
        assert args == [name], f"{name}: args {args}"
        assert name in commands, f"deploy/entrypoint.sh has no command {name}"
        config_package = PROCESSES[name].rsplit(".", 2)[0]
        assert commands[name] == config_package, f"{name} runs {commands[name]}, but its config is in {config_package}"
    job = manifests.get("Job", "covidtest-migrate")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["migrate"] and commands.get("migrate") == "services.common.migrate"
    assert any(e["name"] == "DATABASE_URL" and "secretKeyRef" in e.get("valueFrom", {}) for e in c["env"])
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


# --- configuration: manifests against the config classes ------------------------------------------------


@dataclasses.dataclass
class EnvSource:
    kind: str  # literal | configmap | secret | field
    value: str | None = None
    ref: tuple[str, str] | None = None


def _container_env(m: Manifests, c: dict) -> dict[str, EnvSource]:
    env: dict[str, EnvSource] = {}
    for source in c.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            for key, value in m.config_map(name).items():
                env[(source.get("prefix") or "") + key] = EnvSource("configmap", value, (name, key))
        else:
            pytest.fail(f"envFrom {source}: only ConfigMaps, so every variable name stays visible", pytrace=False)
    for entry in c.get("env") or []:
        value_from = entry.get("valueFrom") or {}
        if "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            env[entry["name"]] = EnvSource("secret", None, (ref["name"], ref["key"]))
        elif "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            env[entry["name"]] = EnvSource(
                "configmap", m.config_map(ref["name"]).get(ref["key"]), (ref["name"], ref["key"])
            )
        elif value_from:
            env[entry["name"]] = EnvSource("field")
        else:
            env[entry["name"]] = EnvSource("literal", entry.get("value", ""))
    return env


def _literal_env(m: Manifests, c: dict) -> dict[str, str]:
    return {k: s.value for k, s in _container_env(m, c).items() if s.value is not None}


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_manifests_set_exactly_the_variables_the_config_class_reads(manifests, name):
    cls = config_class(name)
    present = set(_container_env(manifests, service_container(manifests, name)))
    expected = set(env_names(cls))
    missing, unknown = sorted(expected - present), sorted(present - expected)
    assert not missing, (
        f"{manifests.overlay}/{name}: {PROCESSES[name]} reads {missing}, which the manifests do not set. "
        "Add them to deploy/base/config/*.env (or as secretKeyRef env entries) and to each overlay as needed."
    )
    assert not unknown, f"{manifests.overlay}/{name}: the manifests set {unknown}, which {PROCESSES[name]} never reads"


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_secret_settings_come_from_secrets_and_secret_files_from_secret_volumes(manifests, name):
    cls = config_class(name)
    c = service_container(manifests, name)
    env = _container_env(manifests, c)
    spec = manifests.get("Deployment", name)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    problems = []
    for field in dataclasses.fields(cls):
        var = field.metadata.get("env")
        if not var or var not in env:
            continue
        source = env[var]
        if var.endswith("_FILE"):
            if source.value and not _secret_file(source.value, c, volumes):
                problems.append(f"{var}={source.value} is not a file of a mounted Secret")
        elif field.metadata["secret"] and source.kind != "secret":
            problems.append(f"{var} is secret but comes from a {source.kind}")
    assert not problems, f"{manifests.overlay}/{name}: " + "; ".join(problems)


def _secret_file(path: str, container: dict, volumes: dict) -> bool:
    for mount in container.get("volumeMounts") or []:
        relative = os.path.relpath(path, mount["mountPath"])
        if relative.startswith(".."):
            continue
        volume = volumes.get(mount["name"]) or {}
        sources = [volume] if "secret" in volume else (volume.get("projected") or {}).get("sources") or []
        for source in sources:
            secret = source.get("secret")
            if secret and any(item["path"] == relative for item in secret.get("items") or []):
                return True
    return False


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_configured_values_parse_with_the_config_class(manifests, name):
    cls = config_class(name)
    env = _literal_env(manifests, service_container(manifests, name))
    problems = []
    for field in dataclasses.fields(cls):
        var = field.metadata.get("env")
        raw = env.get(var)
        if raw:
            try:
                field.metadata["parse"](raw)
            except (ValueError, TypeError) as exc:
                problems.append(f"{var}={raw!r}: {exc}")
    assert not problems, f"{manifests.overlay}/{name}: " + "; ".join(problems)


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_dev_configuration_loads_completely(name):
    """In dev every value, secrets included, is in the render: the service's own loader accepts it."""
    m = rendered("dev")
    environ = {}
    for var, source in _container_env(m, service_container(m, name)).items():
        if source.kind == "secret":
            secret = m.secret(source.ref[0])
            assert secret is not None, f"dev: Secret {source.ref[0]} is not rendered"
            environ[var] = secret[source.ref[1]]
        elif source.value is not None:
            environ[var] = source.value
    config = load(config_class(name), environ)
    if name == GATEWAY:
        assert config.upstream_insecure is True, "dev services speak plaintext gRPC, so must the gateway"
    else:
        assert config.grpc_insecure is True


# --- network policies: exactly the intended flows -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    namespace: str
    namespace_labels: tuple
    pod_labels: tuple

    @property
    def ns(self) -> dict:
        return dict(self.namespace_labels)

    @property
    def pod(self) -> dict:
        return dict(self.pod_labels)


def _endpoint(name: str, namespace: str, namespace_labels: dict, labels: dict) -> Endpoint:
    ns_labels = {"kubernetes.io/metadata.name": namespace, **namespace_labels}
    return Endpoint(name, namespace, tuple(sorted(ns_labels.items())), tuple(sorted(labels.items())))


def _peer_matches(peer: dict, policy_namespace: str, ep: Endpoint) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_ok = matches(peer["namespaceSelector"], ep.ns)
    else:
        ns_ok = ep.namespace == policy_namespace
    return ns_ok and ("podSelector" not in peer or matches(peer["podSelector"], ep.pod))


def _port_matches(rule: dict, port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(p.get("port") in (None, port) for p in ports)


def _policy_types(policy: dict) -> set[str]:
    spec = policy["spec"]
    return set(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if spec.get("egress") else [])))


def _direction_allows(policies, namespace, selected: Endpoint, other: Endpoint, port, direction) -> bool:
    rule_key, peer_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    applying = [
        p
        for p in policies
        if selected.namespace == namespace
        and direction in _policy_types(p)
        and matches(p["spec"]["podSelector"], selected.pod)
    ]
    if not applying:
        return True
    for policy in applying:
        for rule in policy["spec"].get(rule_key) or []:
            peers = rule.get(peer_key)
            if _port_matches(rule, port) and (not peers or any(_peer_matches(p, namespace, other) for p in peers)):
                return True
    return False


def flow_allowed(m: Manifests, src: Endpoint, dst: Endpoint, port: int) -> bool:
    policies = m.of_kind("NetworkPolicy")
    return _direction_allows(policies, m.namespace, src, dst, port, "Egress") and _direction_allows(
        policies, m.namespace, dst, src, port, "Ingress"
    )


def _own(m: Manifests, name: str, labels: dict) -> Endpoint:
    return _endpoint(name, m.namespace, m.get("Namespace", m.namespace)["metadata"].get("labels") or {}, labels)


def _behind_service(m: Manifests, service: str) -> Endpoint:
    """The pods a Service selects (workload pods, or CloudNativePG instances)."""
    selector = {"matchLabels": m.get("Service", service)["spec"]["selector"]}
    for obj in m.workloads():
        if matches(selector, pod_labels(obj)):
            return _own(m, obj["metadata"]["name"], pod_labels(obj))
    raise AssertionError(f"Service {service} selects no workload")


def _postgres(m: Manifests) -> Endpoint:
    clusters = m.of_kind("Cluster")
    if clusters:
        labels = {
            **clusters[0]["spec"]["inheritedMetadata"]["labels"],
            "cnpg.io/cluster": clusters[0]["metadata"]["name"],
        }
        return _own(m, "postgres", labels)
    return _behind_service(m, "postgres")


CALLERS = ("checkpoint", "partner", "lab", "sampling-unit", "health-authority", "operator", "prometheus", None)
INTENDED_INGRESS = {
    ("checkpoint", "verify-svc", 50051),
    ("partner", "publish-svc", 50051),
    ("lab", "result-svc", 50051),
    ("sampling-unit", "result-svc", 50051),
    ("health-authority", "result-svc", 50051),
    ("operator", "result-svc", 50051),
    ("prometheus", "result-svc", 9100),
    ("prometheus", "publish-svc", 9100),
    ("prometheus", "verify-svc", 9100),
    # The public HTTP/JSON API: the ingress controller alone reaches the gateway (and metrics scrapers).
    (INGRESS_NAMESPACE, GATEWAY, 8080),
    ("prometheus", GATEWAY, 9100),
}


def _callers() -> list[tuple[str | None, Endpoint]]:
    """A client pod in a namespace of each caller class (by its covidtest.vn/caller label), one in an
    unlabelled namespace, and an ingress-nginx controller pod in its own namespace."""
    callers: list[tuple[str | None, Endpoint]] = [
        (
            caller,
            _endpoint(
                f"{caller}-ns",
                f"{caller or 'unlabelled'}-ns",
                {"covidtest.vn/caller": caller} if caller else {},
                {"app": "client"},
            ),
        )
        for caller in CALLERS
    ]
    controller = {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
    callers.append((INGRESS_NAMESPACE, _endpoint("ingress-controller", INGRESS_NAMESPACE, {}, controller)))
    return callers


def test_network_policies_admit_exactly_the_intended_callers(manifests):
    wrong = []
    for caller, src in _callers():
        for name in PROCESSES:
            dst = _own(manifests, name, pod_labels(manifests.get("Deployment", name)))
            for port in (50051, 50052, 9100, 8080):
                expected = (caller, name, port) in INTENDED_INGRESS
                if flow_allowed(manifests, src, dst, port) != expected:
                    wrong.append(
                        f"{caller or 'an unlabelled namespace'} -> {name}:{port} should be "
                        f"{'allowed' if expected else 'denied'}"
                    )
    assert not wrong, "\n".join(wrong)


def test_network_policies_admit_the_ingress_controller_to_the_gateway_only(manifests):
    """Only the namespace named ingress-nginx: a namespace merely labelled like it, or any other pod in
    the gateway's own namespace, is not the ingress controller."""
    gateway = _own(manifests, GATEWAY, pod_labels(manifests.get("Deployment", GATEWAY)))
    impostors = [
        _endpoint("look-alike", "edge", {"app.kubernetes.io/name": "ingress-nginx"}, {"app": "client"}),
        _own(manifests, "neighbour", {"app": "client"}),
    ]
    wrong = [
        f"{src.name} -> gateway:8080 should be denied"
        for src in impostors
        if flow_allowed(manifests, src, gateway, 8080)
    ]
    assert not wrong, "\n".join(wrong)


def test_network_policies_let_the_gateway_reach_only_the_services_grpc_ports(manifests):
    """The gateway holds no database and no key: it reaches the three services' gRPC port and DNS, and
    nothing else; the services admit it there, and nothing in the namespace reaches the gateway."""
    gateway = _own(manifests, GATEWAY, pod_labels(manifests.get("Deployment", GATEWAY)))
    services = {n: _own(manifests, n, pod_labels(manifests.get("Deployment", n))) for n in SERVICES}
    migrate = _own(manifests, "migrate", pod_labels(manifests.get("Job", "covidtest-migrate")))
    postgres, redis = _postgres(manifests), _behind_service(manifests, "redis")
    dns = _endpoint("kube-dns", "kube-system", {}, {"k8s-app": "kube-dns"})
    neighbour = _own(manifests, "unlabelled-pod", {"app": "client"})
    expectations = [(gateway, dns, 53, True), (gateway, postgres, 5432, False), (gateway, redis, 6379, False)]
    for svc in services.values():
        expectations += [(gateway, svc, 50051, True)]
        expectations += [(gateway, svc, port, False) for port in (50052, 9100, 8080)]
        expectations += [(svc, gateway, port, False) for port in (8080, 9100)]
        # The services' rule names the gateway's pods, not the namespace.
        expectations += [(neighbour, svc, 50051, False), (migrate, svc, 50051, False)]
    expectations += [(migrate, gateway, 8080, False), (neighbour, gateway, 8080, False)]
    wrong = [
        f"{s.name} -> {d.name}:{port} should be {'allowed' if ok else 'denied'}"
        for s, d, port, ok in expectations
        if flow_allowed(manifests, s, d, port) != ok
    ]
    assert not wrong, "\n".join(wrong)


def test_network_policies_let_services_reach_storage_and_nothing_else(manifests):
    services = {n: _own(manifests, n, pod_labels(manifests.get("Deployment", n))) for n in SERVICES}
    migrate = _own(manifests, "migrate", pod_labels(manifests.get("Job", "covidtest-migrate")))
    postgres, redis = _postgres(manifests), _behind_service(manifests, "redis")
    dns = _endpoint("kube-dns", "kube-system", {}, {"k8s-app": "kube-dns"})
    expectations = []
    for name, svc in services.items():
        expectations += [
            (svc, postgres, 5432, True),
            (svc, redis, 6379, True),
            (svc, dns, 53, True),
            (svc, postgres, 6379, False),
            (svc, redis, 5432, False),
        ]
        expectations += [(svc, other, 50051, False) for other_name, other in services.items() if other_name != name]
    expectations += [
        (migrate, postgres, 5432, True),
        (migrate, dns, 53, True),
        (migrate, redis, 6379, False),
        (redis, postgres, 5432, False),
        (postgres, redis, 6379, False),
    ]
    expectations += [(migrate, svc, 50051, False) for svc in services.values()]
    wrong = [
        f"{s.name} -> {d.name}:{port} should be {'allowed' if ok else 'denied'}"
        for s, d, port, ok in expectations
        if flow_allowed(manifests, s, d, port) != ok
    ]
    assert not wrong, "\n".join(wrong)


# --- prod: replicated Postgres and Redis, TLS ------------------------------------------------------------


@pytest.fixture
def prod() -> Manifests:
    return rendered("prod")


# Each service's own database role (migrations/0009_verify_role.sql, 0010_service_roles.sql).
SERVICE_DB_ROLES = {
    "result-svc": "covidtest_result",
    "publish-svc": "covidtest_publish",
    "verify-svc": "covidtest_verify",
}


def test_dev_secrets_and_init_script_give_each_service_its_own_role():
    """dev: each service reads its own generated Secret, whose user the dev Postgres init scripts create with
    the Secret's password; the migration Job alone reads the owner's."""
    manifests = rendered("dev")
    [init] = [c for c in manifests.of_kind("ConfigMap") if c["metadata"]["name"].startswith("postgres-init")]
    scripts = "\n".join(init["data"].values())
    for name, role in SERVICE_DB_ROLES.items():
        secret_name = f"covidtest-db-{name.removesuffix('-svc')}"
        env = _container_env(manifests, service_container(manifests, name))
        assert env["DATABASE_URL"].ref[1] == "uri" and env["DATABASE_URL"].ref[0].startswith(secret_name)
        secret = manifests.secret(env["DATABASE_URL"].ref[0])
        assert secret["username"] == role and secret["uri"].startswith(f"postgresql://{role}:{secret['password']}@")
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in scripts
    [job_container] = manifests.get("Job", "covidtest-migrate")["spec"]["template"]["spec"]["containers"]
    assert _container_env(manifests, job_container)["DATABASE_URL"].ref[0].startswith("covidtest-db-app")


def test_prod_postgres_is_a_replicated_cloudnativepg_cluster_with_backups(prod):
    [cluster] = prod.of_kind("Cluster")
    spec = cluster["spec"]
    assert spec["instances"] >= 3
    assert spec["postgresql"]["synchronous"]["number"] >= 1, "acknowledged results must survive a failover"
    assert spec["inheritedMetadata"]["labels"]["covidtest.vn/tier"] == "postgres", "network policies select this label"
    [plugin] = [p for p in spec["plugins"] if p.get("isWALArchiver")]
    store = prod.get("ObjectStore", plugin["parameters"]["barmanObjectName"])
    assert store["spec"]["retentionPolicy"]
    assert any(b["spec"]["cluster"]["name"] == cluster["metadata"]["name"] for b in prod.of_kind("ScheduledBackup"))
    # Only the migration Job reads the Secret CloudNativePG generates for the owner (its uri names the
    # primary, -rw); each service logs in as its own role (migrations/0009_verify_role.sql,
    # 0010_service_roles.sql), which CloudNativePG manages with the password of the Secret the service reads.
    app_secret = f"{cluster['metadata']['name']}-app"
    job = prod.get("Job", "covidtest-migrate")
    [job_container] = job["spec"]["template"]["spec"]["containers"]
    assert _container_env(prod, job_container)["DATABASE_URL"].ref == (app_secret, "uri"), "migrations run as the owner"
    managed = {r["name"]: r for r in spec["managed"]["roles"]}
    for name, role in SERVICE_DB_ROLES.items():
        secret = f"covidtest-db-{name.removesuffix('-svc')}"
        env = _container_env(prod, service_container(prod, name))
        assert env["DATABASE_URL"].ref == (secret, "uri"), f"{name} must log in as its own role, from {secret}"
        assert managed[role]["login"] and managed[role]["ensure"] == "present"
        assert managed[role]["passwordSecret"]["name"] == secret
        assert not managed[role].get("superuser") and not managed[role].get("createrole")


def test_prod_redis_has_replication_and_sentinel_failover_behind_a_stable_service(prod):
    [redis] = [s for s in prod.of_kind("StatefulSet") if pod_labels(s).get("covidtest.vn/tier") == "redis"]
    replicas = redis["spec"]["replicas"]
    assert replicas >= 3
    names = {c["name"] for c in containers(redis)}
    assert {"redis", "sentinel"} <= names
    env = {e["name"]: e.get("value") for e in redis["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert replicas // 2 < int(env["QUORUM"]) <= replicas, "Sentinel quorum must be a majority"
    proxy = _behind_service(prod, "redis")
    assert proxy.name != redis["metadata"]["name"], "clients reach the master through the proxy, not one server"
    assert any(
        pod_labels(p).get("covidtest.vn/tier") == "redis"
        for p in prod.of_kind("Deployment")
        if p["metadata"]["name"] == proxy.name
    )


def test_redis_never_evicts_certificate_statuses():
    # A status key evicted under memory pressure is a revocation the cache no longer holds; with
    # noeviction a full Redis refuses writes (retried, and reads fall back to Postgres) instead.
    dev = rendered("dev")
    [server] = [s for s in dev.of_kind("Deployment") + dev.of_kind("StatefulSet") if s["metadata"]["name"] == "redis"]
    args = containers(server)[0]["args"]
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    scripts = [c for c in rendered("prod").of_kind("ConfigMap") if "redis-bootstrap.sh" in c.get("data", {})]
    assert re.findall(r"maxmemory-policy ([a-z-]+)", scripts[0]["data"]["redis-bootstrap.sh"]) == ["noeviction"]


def test_prod_serves_mutual_tls_and_dev_plaintext():
    for overlay, tls in (("prod", True), ("dev", False)):
        m = rendered(overlay)
        for name in SERVICES:
            env = _literal_env(m, service_container(m, name))
            if tls:
                assert env["GRPC_INSECURE"] == "false"
                assert env["TLS_CERT_FILE"] and env["TLS_KEY_FILE"] and env["TLS_CLIENT_CA_FILE"], name
            else:
                assert env["GRPC_INSECURE"] == "true" and not env["TLS_CERT_FILE"], name
        env = _literal_env(m, service_container(m, GATEWAY))
        files = ("UPSTREAM_CA_FILE", "UPSTREAM_CLIENT_CERT_FILE", "UPSTREAM_CLIENT_KEY_FILE")
        if tls:
            # The services require a client certificate: the gateway shows one, and checks theirs.
            assert env["UPSTREAM_INSECURE"] == "false" and all(env[f] for f in files), env
        else:
            assert env["UPSTREAM_INSECURE"] == "true" and not any(env[f] for f in files), env


def test_every_object_belongs_to_a_deploy_stage(manifests):
    """docs/operations.md applies the overlay stage by stage (-l covidtest.vn/stage=…)."""
    bad = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in manifests.objects
        if (o["metadata"].get("labels") or {}).get("covidtest.vn/stage") not in STAGES
    ]
    assert not bad, f"no covidtest.vn/stage label in {sorted(STAGES)}: {bad}"


# --- the image -----------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, rest in _dockerfile_instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, rest))
    return stages


def _dockerignore(path: Path = DOCKERIGNORE) -> list[tuple[bool, str]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, line.lstrip("!").strip("/")))
    return rules


def _glob_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern: `**` spans directories, `*` and `?` stay within one path segment."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _ignored(path: str, rules) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, pattern in rules:
        if any(_glob_regex(pattern).fullmatch(c) for c in candidates):
            ignored = not negate
    return ignored


def test_every_path_the_dockerfile_copies_exists_and_is_in_the_build_context():
    rules = _dockerignore()
    copied = []
    for keyword, rest in _dockerfile_instructions():
        if keyword in ("COPY", "ADD"):
            args = [a for a in rest.split() if not a.startswith("--")]
            if any(a.startswith("--from") for a in rest.split()):
                continue
            copied += args[:-1]
    assert copied, "the Dockerfile copies nothing from the build context"
    missing = [p for p in copied if not (REPO / p).exists()]
    assert not missing, f"the Dockerfile copies paths that do not exist in the repository: {missing}"
    excluded = [p for p in copied if _ignored(p.rstrip("/"), rules)]
    assert not excluded, f".dockerignore keeps these out of the build context: {excluded}"
    for local_state in (".venv", "node_modules", ".git", ".run", "tests"):
        assert _ignored(local_state, rules), f"{DOCKERIGNORE.name} must exclude {local_state}"


def _stage_bases() -> dict[str, str]:
    """Stage name (or its index) -> its base image, ARG defaults substituted."""
    args = {}
    for keyword, rest in _dockerfile_instructions():
        if keyword == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args.setdefault(key, value)
    bases = {}
    for i, stage in enumerate(_stages()):
        words = stage[0][1].split()
        name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(i)
        bases[name] = re.sub(r"\$\{(\w+)\}", lambda mt: args.get(mt.group(1), ""), words[0])
    return bases


PYTHON_BASE = r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?"
# The assets stage only runs npm ci for the checkpoint page's QR reader; nothing of Node is shipped.
NODE_BASE = r"node:\d+\.\d+\.\d+-(\w+-)?slim(@sha256:[0-9a-f]{64})?"


def test_image_uses_a_pinned_slim_python_3_11_base():
    bases = _stage_bases()
    assert len(bases) >= 2, "multi-stage build expected"
    assert re.fullmatch(PYTHON_BASE, list(bases.values())[-1]), "the final stage must be the slim Python base"
    for name, base in bases.items():
        pattern = NODE_BASE if name == "assets" else PYTHON_BASE
        assert re.fullmatch(pattern, base), f"stage {name}: base image {base!r}"


def test_image_ships_the_locked_qr_reader_where_the_gateway_reads_it():
    """zxing-wasm comes from package-lock.json (npm ci, integrity-checked), runtime dependencies only, and
    lands where CHECKPOINT_ASSETS_DIR points in every overlay."""
    stages = {name: stage for name, stage in zip(_stage_bases(), _stages())}
    runs = " ".join(rest for keyword, rest in stages["assets"] if keyword == "RUN")
    copied = " ".join(rest for keyword, rest in stages["assets"] if keyword == "COPY")
    assert "npm ci" in runs and "--omit=dev" in runs, "the assets stage must install from the lock, without buf"
    assert "package.json" in copied and "package-lock.json" in copied
    pinned = json.loads((REPO / "package.json").read_text())["dependencies"]["zxing-wasm"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"zxing-wasm {pinned!r} is not pinned to one version"
    [dest] = [
        rest.split()[-1]
        for keyword, rest in list(stages.values())[-1]
        if keyword == "COPY" and "--from=assets" in rest and "zxing-wasm/dist" in rest
    ]
    for overlay in OVERLAYS:
        m = rendered(overlay)
        assets = _literal_env(m, service_container(m, GATEWAY))["CHECKPOINT_ASSETS_DIR"]
        assert assets.rstrip("/") == dest.rstrip("/"), f"{overlay}: CHECKPOINT_ASSETS_DIR {assets!r}, image has {dest}"


def test_final_stage_runs_as_a_numeric_non_root_user_without_compilers():
    final = _stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {users[-1]} must be a numeric non-root id"
    runs = " ".join(rest for keyword, rest in final if keyword == "RUN")
    for tool in ("gcc", "g++", "build-essential", "clang", "make ", "python3-dev", "libpq-dev"):
        assert tool not in runs, f"the final stage installs {tool.strip()}"
    assert any(keyword == "ENTRYPOINT" for keyword, _ in final)
    copies_from_context = [rest for keyword, rest in final if keyword == "COPY" and "--from" not in rest]
    assert all("entrypoint.sh" in rest for rest in copies_from_context), (
        "the final stage takes code only from the build stage (checked generated code), not the context"
    )


def _entrypoint(*args: str) -> subprocess.CompletedProcess:
    """Run deploy/entrypoint.sh as the image would, with an otherwise empty environment."""
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin", "PYTHONPATH": str(REPO)}
    return subprocess.run(["sh", str(ENTRYPOINT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_entry_point_starts_each_service_module():
    # Without configuration each service stops at once with its own config error (exit 2): the command
    # reached the right module, and nothing needs Postgres or Redis.
    for name in SERVICES:
        run = _entrypoint(name)
        label = name.replace("-", "_")
        assert run.returncode == 2 and run.stderr.startswith(f"{label}: invalid configuration"), (name, run.stderr)
    run = _entrypoint("migrate", "--help")
    assert run.returncode == 0 and "services.common.migrate" in run.stdout, run.stderr


def test_entry_point_starts_the_gateway_module():
    # No RESULT_SVC_TARGET and the rest: the gateway stops at once on its configuration.
    run = _entrypoint(GATEWAY)
    assert run.returncode == 2 and "invalid configuration" in run.stderr, run.stderr
    assert "RESULT_SVC_TARGET" in run.stderr, run.stderr


def test_entry_point_rejects_unknown_commands():
    run = _entrypoint("no-such-service")
    assert run.returncode == 64 and "unknown command" in run.stderr
