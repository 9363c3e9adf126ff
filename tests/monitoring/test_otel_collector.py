"""The OpenTelemetry Collector's manifests validate strictly for Kubernetes 1.30 and hold the containers to
the rules every workload follows; the collector's config has a traces pipeline from the OTLP gRPC receiver
on the port the Service and the network policies name."""

from pathlib import Path

import yaml

from tests.deploy.test_manifests import _kubernetes_validate

COLLECTOR = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "otel-collector" / "collector.yaml"


def test_the_collector_manifests_validate():
    errors, unchecked = _kubernetes_validate(COLLECTOR)
    assert not errors, "\n".join(errors)
    assert not unchecked


def test_the_collector_receives_otlp_grpc_on_the_port_it_exposes():
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(COLLECTOR.read_text())}
    config = yaml.safe_load(docs[("ConfigMap", "otel-collector")]["data"]["config.yaml"])
    pipeline = config["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"] and set(pipeline["exporters"]) <= set(config["exporters"])
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    [container] = docs[("Deployment", "otel-collector")]["spec"]["template"]["spec"]["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert docs[("Service", "otel-collector")]["spec"]["ports"][0]["port"] == 4317
    ingress = docs[("NetworkPolicy", "otel-collector-ingress")]["spec"]["ingress"][0]
    assert ingress["ports"][0]["port"] == 4317
