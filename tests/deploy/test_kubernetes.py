"""deploy/k8s: a kustomize base and a GPU overlay whose manifests are valid Kubernetes
objects (kubernetes-validate, schemas bundled, no cluster) and agree on ports, user and
scraping."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_files import DEPLOY, DOCKERFILES, image_env, instructions, yaml_docs

from streamrec.config import Settings

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
GPU = K8S / "overlays" / "gpu"
KUBECTL = shutil.which("kubectl")
needs_kustomize = pytest.mark.skipif(KUBECTL is None, reason="kubectl (kustomize) not on PATH")


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def kustomization(folder: Path) -> dict[str, Any]:
    return yaml.safe_load((folder / "kustomization.yaml").read_text())


def base_objects() -> list[dict[str, Any]]:
    return [doc for res in kustomization(BASE)["resources"] for doc in yaml_docs(BASE / res)]


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def render(folder: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(folder)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_every_base_manifest_is_a_valid_kubernetes_object():
    objects = base_objects()
    assert {o["kind"] for o in objects} >= {"StatefulSet", "Service", "ConfigMap"}
    for obj in objects:
        validate(obj)


def test_the_validator_rejects_an_invalid_manifest():
    sts = one(base_objects(), "StatefulSet")
    sts["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(sts)


def test_the_gpu_overlay_builds_on_the_base_and_names_what_exists():
    overlay = kustomization(GPU)
    assert [(GPU / r).resolve() for r in overlay["resources"]] == [BASE.resolve()]
    objects = base_objects()
    for patch in overlay["patches"]:
        assert (GPU / patch["path"]).is_file()
        target = patch["target"]
        one(objects, target["kind"], target["name"])
        for doc in yaml_docs(GPU / patch["path"]):
            one(objects, doc["kind"], doc["metadata"]["name"])
    images = {
        c["image"] for c in one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    }
    assert {i["name"] for i in overlay["images"]} <= images


@needs_kustomize
@pytest.mark.parametrize("folder", [BASE, GPU], ids=["base", "gpu"])
def test_kustomize_renders_valid_objects(folder: Path):
    rendered = render(folder)
    assert len(rendered) == len(base_objects())
    for obj in rendered:
        validate(obj)


@needs_kustomize
def test_the_gpu_overlay_runs_the_gpu_image_with_one_gpu_on_gpu_nodes():
    pod = one(render(GPU), "StatefulSet")["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    assert worker["image"] == "streamrec:gpu"
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"  # base kept
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])


def test_ports_agree_between_setting_container_probes_services_and_scrape():
    objects = base_objects()
    port = one(objects, "ConfigMap")["data"]["STREAMREC_WORKER_WEB_PORT"]
    template = one(objects, "StatefulSet")["spec"]["template"]
    (worker,) = template["spec"]["containers"]
    assert worker["ports"] == [{"name": "http", "containerPort": int(port)}]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert worker[probe]["httpGet"]["port"] == "http"
    for svc in (o for o in objects if o["kind"] == "Service"):
        assert [p["targetPort"] for p in svc["spec"]["ports"]] == ["http"]
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_annotation_scraping_needs_no_token():
    """Annotations cannot carry a token: /metrics stays open (no metrics token set)."""
    (worker,) = one(base_objects(), "StatefulSet")["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for e in worker["env"]} | set(one(base_objects(), "ConfigMap")["data"])
    assert "STREAMREC_WORKER_METRICS_TOKEN" not in names


def test_secrets_come_from_the_optional_secret_never_from_a_literal():
    """The token and the SASL password are read from Secret `streamrec` when it has them
    (optional: a cluster without SASL or a token starts as is); no secret setting is
    written into the manifests."""
    objects = base_objects()
    (worker,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in worker["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs == {
        "STREAMREC_WORKER_AUTH_TOKEN": {"name": "streamrec", "key": "token", "optional": True},
        "STREAMREC_KAFKA_SASL_PASSWORD": {
            "name": "streamrec",
            "key": "kafka-password",
            "optional": True,
        },
    }
    secrets = {f"STREAMREC_{n.upper()}" for n in Settings.model_fields if Settings.is_secret(n)}
    assert set(refs) <= secrets
    literal = {e["name"] for e in worker["env"] if "value" in e}
    assert not secrets & (literal | set(one(objects, "ConfigMap")["data"]))


def test_pods_run_as_the_images_non_root_user_without_privileges():
    pod = one(base_objects(), "StatefulSet")["spec"]["template"]["spec"]
    (worker,) = pod["containers"]
    image_user = {i.args for f in DOCKERFILES for i in instructions(f) if i.keyword == "USER"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {str(pod["securityContext"]["runAsUser"])} == image_user
    ctx = worker["securityContext"]
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"] for m in worker["volumeMounts"]}
    assert {"/data", "/tmp", image_env(DOCKERFILES[0])["STREAMREC_WORKER_ARTIFACTS_DIR"]} <= mounts


def test_workers_prefer_different_nodes():
    pod = one(base_objects(), "StatefulSet")["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"app": "streamrec-worker"}


def test_every_streamrec_variable_the_manifests_set_is_a_setting():
    """A mistyped variable would be ignored by the worker: each must name a setting."""
    known = {f"STREAMREC_{name.upper()}" for name in Settings.model_fields}
    objects = base_objects()
    (worker,) = one(objects, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for e in worker["env"]} | set(one(objects, "ConfigMap")["data"])
    assert {n for n in names if n.startswith("STREAMREC_")} - known == set()
