"""Shared by scripts/validate-deploy and the pytest checks in this folder.

Renders the Helm chart with Helm's own Go code (PyPI `helm-python-sdk`, import name
`helm_python`: no helm binary, no cluster), for every values case in
helm/cron-scheduler/ci/, and reads the names of the environment variables the service
reads out of its source, so the deployment files can be checked against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cron-scheduler"
COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
CONFIG_RS = REPO / "src" / "config.rs"

RELEASE = "release-name"
NAMESPACE = "scheduling"

# Kubernetes versions the manifests must be valid for: the newest that
# kubernetes-validate knows, and the chart's floor (Chart.yaml kubeVersion).
KUBE_VERSIONS = ("1.37.0", "1.30.0")

# Values cases: name -> file under helm/cron-scheduler/ci/. "default" is the chart's
# values.yaml plus the one value it requires (a database).
CASES = {
    "default": "default-values.yaml",
    "minimal": "minimal-values.yaml",
    "full": "full-values.yaml",
    "existing-secret": "existing-secret-values.yaml",
    "monitoring": "monitoring-values.yaml",
}

# Standard OpenTelemetry SDK variables the deployment files may set (the SDK reads them).
OTEL_VARS = {
    "OTEL_SDK_DISABLED",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_PROPAGATORS",
}

# Settings of config.rs that the chart does not expose in values.config, and why.
NOT_IN_CHART_CONFIG = {
    "DATABASE_URL": "secret: secrets.databaseUrl / existingSecret",
    "SCHEDULER_DATABASE_URL": "secret: secrets.databaseUrl / existingSecret",
    "SCHEDULER_EXECUTOR_TOKEN": "secret: secrets.executorToken / existingSecret",
    "SCHEDULER_NODE_ID": "the pod name (downward API)",
    "SCHEDULER_HOST": "set by the chart",
    "SCHEDULER_PORT": "containerPort",
    "SCHEDULER_DATA_DIR": "embedded PostgreSQL only; the image has none",
    "SCHEDULER_PG_BIN_DIR": "embedded PostgreSQL only; the image has none",
    "SCHEDULER_RELOAD": "accepted and ignored by the service",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "otel.endpoint",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "extraEnv (the chart's otel.endpoint is OTLP/gRPC)",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "extraEnv",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "extraEnv",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "extraEnv",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "extraEnv",
    "OTEL_SERVICE_NAME": "otel.serviceName",
    "OTEL_METRIC_EXPORT_INTERVAL": "otel.metricExportIntervalMs",
    "OTEL_SDK_DISABLED": "leave otel.endpoint empty",
    "SCHEDULER_API_TOKENS": "secret: secrets.apiTokens / existingSecret",
    "SCHEDULER_JWT_HS256_SECRET": "secret: secrets.jwtHs256Secret / existingSecret",
    "SCHEDULER_DATABASE_URL_FILE": "the chart passes secrets as variables (extraEnv for files)",
    "SCHEDULER_EXECUTOR_TOKEN_FILE": "the chart passes secrets as variables (extraEnv for files)",
    "SCHEDULER_JWT_HS256_SECRET_FILE": "the chart passes secrets as variables (extraEnv for files)",
}


@cache
def service_env_names() -> frozenset[str]:
    """Variables `Config::from_lookup` reads: the leading string arguments of every
    `env.get(..)`, `.parse(..)`, `.parse_with(..)`, `.bool(..)`, `.millis(..)`,
    `.duration(..)`, `.secret(VAR, VAR_FILE)` and `.read_file(..)` call on the environment (`env.` or, inside
    its helpers, `self.`) in src/config.rs. A renamed variable changes this set, and the
    checks then fail."""
    text = CONFIG_RS.read_text()
    names: set[str] = set()
    for first, second in re.findall(
        r"\b(?:env|self)\s*\.\s*(?:get|parse|parse_with|bool|millis|duration|secret|read_file)\s*\("
        r'\s*"([A-Z][A-Z0-9_]*)"(?:\s*,\s*"([A-Z][A-Z0-9_]*)")?',
        text,
    ):
        names.update(n for n in (first, second) if n)
    # The OTLP variables, resolved per signal in src/otlp.rs (`Env::otlp` calls it).
    otlp = (REPO / "src" / "otlp.rs").read_text()
    names.update(re.findall(r'"(OTEL_EXPORTER_OTLP_[A-Z_]+)"', otlp))
    # A parser that finds nothing would make every check pass: refuse that.
    if not {"SCHEDULER_PORT", "SCHEDULER_DATABASE_URL", "SCHEDULER_NODE_ID"} <= names:
        raise RuntimeError(
            f"could not read the variable names out of {CONFIG_RS} (found {sorted(names)}); "
            "update service_env_names() in tests/deploy/deploylib.py to the new shape"
        )
    return frozenset(names)


@cache
def clap_env_names() -> frozenset[str]:
    """Variables read by clap arguments (`#[arg(..., env = "SCHEDULER_MOCK_PORT")]`), e.g.
    by the `mock-executor` subcommand."""
    names: set[str] = set()
    for path in (REPO / "src").rglob("*.rs"):
        names.update(re.findall(r'\benv\s*=\s*"(SCHEDULER_[A-Z0-9_]+)"', path.read_text()))
    return frozenset(names)


def unknown_env_names(names: set[str] | frozenset[str], *, mock: bool = False) -> list[str]:
    """The SCHEDULER_* / DATABASE_URL / OTEL_* names in `names` that nothing reads."""
    known = service_env_names() | (clap_env_names() if mock else frozenset())
    bad = []
    for name in sorted(names):
        if name.startswith("SCHEDULER_") or name == "DATABASE_URL":
            if name not in known:
                bad.append(name)
        elif name.startswith("OTEL_") and name not in OTEL_VARS:
            bad.append(name)
    return bad


@dataclass
class Rendered:
    """One values case rendered: the objects (hooks included), and NOTES.txt."""

    case: str
    values: dict[str, Any]
    docs: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)  # template path of each doc
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d.get("kind") == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            d
            for d in self.of_kind(kind)
            if component is None
            or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"{self.case}: expected one {kind} ({component}), found {len(found)}"
        return found[0]


def case_values(case: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / CASES[case]).read_text()) or {}


def render(values: dict[str, Any], case: str = "adhoc", release: str = RELEASE) -> Rendered:
    """Renders the chart as `helm install` would (schema checked first). Raises the
    SDK's HelmValuesError / HelmRenderError on a bad value or template, and ValueError
    on rendered text that is not YAML."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(chart.merge_values(values))
        manifests = chart.render(values, name=release, namespace=NAMESPACE, is_install=True)
    out = Rendered(case=case, values=values)
    for path in sorted(manifests):
        text = manifests[path]
        if path.endswith("NOTES.txt"):
            out.notes = text
            continue
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise ValueError(f"{case}: {path} does not render to YAML: {e}") from e
        for doc in docs:
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
                raise ValueError(f"{case}: {path} rendered something that is not an object")
            out.docs.append(doc)
            out.sources.append(path)
    return out


@cache
def render_case(case: str) -> Rendered:
    return render(case_values(case), case)


def lint(values: dict[str, Any], kube_version: str) -> dict[str, Any]:
    """`helm lint --strict` with these values; the report as the SDK returns it."""
    import helm_python as helm

    return helm.lint(str(CHART), values, strict=True, kube_version=f"v{kube_version}")


def pod_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
