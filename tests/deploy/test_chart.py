"""What operators rely on in the rendered Helm chart, for every values case in
helm/cron-scheduler/ci/. Run by scripts/validate-deploy (or `pytest tests/deploy`)."""

from __future__ import annotations

import copy
import json
import re
import warnings

import pytest

import deploylib
from deploylib import CASES, REPO, pod_env, render, render_case

ALL = list(CASES)


def routes() -> set[str]:
    """Paths the service's router serves (`.route("/path", ...)` in src/)."""
    found: set[str] = set()
    for path in (REPO / "src").rglob("*.rs"):
        found.update(re.findall(r'\.route\(\s*"(/[^"]*)"', path.read_text()))
    return found


def pod_specs(r: deploylib.Rendered) -> list[tuple[str, dict]]:
    """(label, pod spec) of every object that runs pods: Deployment, Job, test Pod."""
    specs = []
    for doc in r.docs:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            specs.append((f"{kind}/{name}", doc["spec"]["template"]["spec"]))
        elif kind == "Pod":
            specs.append((f"Pod/{name}", doc["spec"]))
    return specs


def scheduler(r: deploylib.Rendered) -> dict:
    deployment = r.one("Deployment")
    (container,) = [
        c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "scheduler"
    ]
    return container


def resolve_port(container: dict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (match,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return match


def config_env(r: deploylib.Rendered, container: dict) -> dict[str, str]:
    """Variables a container gets from ConfigMaps through envFrom."""
    env: dict[str, str] = {}
    configmaps = {d["metadata"]["name"]: d for d in r.of_kind("ConfigMap")}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"{r.case}: only ConfigMaps are read with envFrom, got {source}"
        assert ref["name"] in configmaps, f"{r.case}: envFrom names a missing ConfigMap"
        env.update(configmaps[ref["name"]].get("data") or {})
    return env


# ---------------------------------------------------------------------------------------
# Probes and ports


def test_health_endpoints_exist_in_the_service():
    assert {"/health/live", "/health/ready"} <= routes()


@pytest.mark.parametrize("case", ALL)
def test_probes_hit_the_health_endpoints_on_the_service_port(case):
    r = render_case(case)
    c = scheduler(r)
    env = pod_env(c)
    listen_port = int(env["SCHEDULER_PORT"]["value"])
    expected = {
        "startupProbe": "/health/live",
        "livenessProbe": "/health/live",
        "readinessProbe": "/health/ready",
    }
    served = routes()
    for probe, path in expected.items():
        get = c[probe]["httpGet"]
        assert get["path"] == path, f"{case}: {probe} path"
        assert get["path"] in served
        assert resolve_port(c, get["port"]) == listen_port, f"{case}: {probe} port"
    service = r.one("Service")
    (sp,) = service["spec"]["ports"]
    assert resolve_port(c, sp["targetPort"]) == listen_port
    assert sp["name"] == "http"
    # The Service selects exactly the scheduler pods.
    pod_labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize("case", ALL)
def test_liveness_does_not_depend_on_the_database(case):
    c = scheduler(render_case(case))
    assert c["livenessProbe"]["httpGet"]["path"] != "/health/ready"


# ---------------------------------------------------------------------------------------
# Migration hook


@pytest.mark.parametrize("case", ALL)
def test_migration_job_is_a_pre_install_and_pre_upgrade_hook(case):
    r = render_case(case)
    jobs = r.of_kind("Job")
    if not r.values.get("migration", {}).get("enabled", True):
        assert jobs == [], f"{case}: migration disabled but a Job rendered"
        return
    (job,) = jobs
    ann = job["metadata"]["annotations"]
    assert set(ann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    policies = set(ann["helm.sh/hook-delete-policy"].split(","))
    assert "before-hook-creation" in policies
    spec = job["spec"]
    assert spec["activeDeadlineSeconds"] > 0, "migrate waits for the database: bound it"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    assert c["args"] == ["migrate"]
    assert c["image"] == scheduler(r)["image"]
    # The database URL comes from a Secret that exists when the hook runs: an operator's
    # existing Secret, or a hook Secret created before the Job (lower weight).
    ref = pod_env(c)["SCHEDULER_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    existing = r.values.get("existingSecret", {}).get("name")
    if existing:
        assert ref["name"] == existing
    else:
        hook_secrets = [
            s
            for s in r.of_kind("Secret")
            if s["metadata"]["name"] == ref["name"]
            and "helm.sh/hook" in s["metadata"].get("annotations", {})
        ]
        assert hook_secrets, f"{case}: the Job's Secret is not a hook: absent at pre-install"
        (secret,) = hook_secrets
        sann = secret["metadata"]["annotations"]
        assert set(sann["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
        assert int(sann["helm.sh/hook-weight"]) < int(ann.get("helm.sh/hook-weight", "0"))
        assert ref["key"] in secret["data"]
    # Objects the chart creates as ordinary resources do not exist yet at pre-install.
    sa = pod.get("serviceAccountName")
    if sa:
        assert not r.values.get("serviceAccount", {}).get("create", True)


# ---------------------------------------------------------------------------------------
# Disruption budget, rollout, spread


@pytest.mark.parametrize("case", ALL)
def test_pod_disruption_budget_covers_the_replicas(case):
    r = render_case(case)
    pdbs = r.of_kind("PodDisruptionBudget")
    if not r.values.get("podDisruptionBudget", {}).get("enabled", True):
        assert pdbs == []
        return
    (pdb,) = pdbs
    pod_labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    spec = pdb["spec"]
    assert ("minAvailable" in spec) != ("maxUnavailable" in spec)
    replicas = r.one("Deployment")["spec"].get("replicas")
    if replicas is None:  # autoscaled
        replicas = r.one("HorizontalPodAutoscaler")["spec"]["minReplicas"]
    if isinstance(spec.get("minAvailable"), int):
        assert spec["minAvailable"] < replicas, "a PDB that allows no eviction blocks drains"
    if isinstance(spec.get("maxUnavailable"), int):
        assert spec["maxUnavailable"] >= 1


def test_defaults_run_three_replicas_with_a_safe_rollout_and_spread():
    r = render_case("default")
    d = r.one("Deployment")
    assert d["spec"]["replicas"] == 3
    assert d["spec"]["strategy"]["type"] == "RollingUpdate"
    assert d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = d["spec"]["template"]["spec"]
    keys = {t["topologyKey"] for t in pod["topologySpreadConstraints"]}
    assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    labels = d["spec"]["template"]["metadata"]["labels"]
    for t in pod["topologySpreadConstraints"]:
        assert t["labelSelector"]["matchLabels"].items() <= labels.items()
    assert 25 <= pod["terminationGracePeriodSeconds"] <= 60
    res = scheduler(r)["resources"]
    assert res["requests"] and res["limits"]


@pytest.mark.parametrize("case", ALL)
def test_grace_period_covers_the_pre_stop_pause_and_the_shutdown_grace(case):
    r = render_case(case)
    c = scheduler(r)
    pod = r.one("Deployment")["spec"]["template"]["spec"]
    pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace_ms = int(config_env(r, c).get("SCHEDULER_SHUTDOWN_GRACE_MS", 10_000))
    assert pod["terminationGracePeriodSeconds"] > pause + grace_ms / 1000


def test_autoscaling_owns_the_replica_count():
    r = render_case("full")
    d = r.one("Deployment")
    hpa = r.one("HorizontalPodAutoscaler")
    assert "replicas" not in d["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": d["metadata"]["name"],
    }


# ---------------------------------------------------------------------------------------
# Security


@pytest.mark.parametrize("case", ALL)
def test_every_pod_runs_non_root_with_a_read_only_root(case):
    r = render_case(case)
    specs = pod_specs(r)
    assert specs
    for label, pod in specs:
        psc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, label
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", label
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            sc = c.get("securityContext", {})
            non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
            user = sc.get("runAsUser", psc.get("runAsUser"))
            assert non_root is True, f"{label}/{c['name']}: runAsNonRoot"
            assert user not in (None, 0), f"{label}/{c['name']}: runAsUser"
            assert sc.get("readOnlyRootFilesystem") is True, f"{label}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, f"{label}/{c['name']}"
            assert sc.get("privileged", False) is False
            assert sc.get("capabilities", {}).get("drop") == ["ALL"]
            for m in c.get("volumeMounts", []):
                writable = not m.get("readOnly", False)
                assert not writable or "emptyDir" in volumes[m["name"]], (
                    f"{label}: {m['mountPath']}: only scratch space may be writable"
                )


@pytest.mark.parametrize("case", ALL)
def test_secrets_never_appear_in_plain_text(case):
    r = render_case(case)
    secret_values = [
        v for v in (r.values.get("secrets") or {}).values() if isinstance(v, str) and v
    ]
    for doc in r.docs:
        if doc["kind"] == "Secret":
            continue
        text = json.dumps(doc)
        for v in secret_values:
            assert v not in text, f"{case}: a secret value in {doc['kind']}"
    for label, pod in pod_specs(r):
        for c in pod["containers"]:
            env = pod_env(c)
            for name in ("SCHEDULER_DATABASE_URL", "SCHEDULER_EXECUTOR_TOKEN"):
                if name in env:
                    assert "secretKeyRef" in env[name].get("valueFrom", {}), f"{label}: {name}"
            assert "SCHEDULER_DATABASE_URL" not in config_env(r, c)


# ---------------------------------------------------------------------------------------
# Environment


@pytest.mark.parametrize("case", ALL)
def test_node_id_is_the_pod_name(case):
    r = render_case(case)
    for label, pod in pod_specs(r):
        for c in pod["containers"]:
            if c.get("args", [None])[0] not in ("serve", "migrate"):
                continue
            ref = pod_env(c)["SCHEDULER_NODE_ID"]["valueFrom"]["fieldRef"]
            assert ref["fieldPath"] == "metadata.name", label


def test_the_service_reads_the_names_we_check():
    names = deploylib.service_env_names()
    assert {"SCHEDULER_PORT", "SCHEDULER_NODE_ID", "SCHEDULER_DATABASE_URL"} <= names
    assert deploylib.unknown_env_names({"SCHEDULER_PROT", "SCHEDULER_PORT"}) == ["SCHEDULER_PROT"]


@pytest.mark.parametrize("case", ALL)
def test_every_environment_name_is_one_the_service_reads(case):
    r = render_case(case)
    for label, pod in pod_specs(r):
        for c in pod["containers"]:
            names = set(pod_env(c)) | set(config_env(r, c))
            assert deploylib.unknown_env_names(names) == [], f"{case}: {label}/{c['name']}"


def test_schema_config_keys_are_service_variables():
    schema = json.loads((deploylib.CHART / "values.schema.json").read_text())
    keys = set(schema["properties"]["config"]["properties"])
    service = deploylib.service_env_names()
    assert deploylib.unknown_env_names(keys) == []
    assert keys - service <= {"RUST_LOG"}
    values = deploylib.CHART / "values.yaml"
    import yaml

    assert set(yaml.safe_load(values.read_text())["config"]) <= keys
    missing = service - keys - set(deploylib.NOT_IN_CHART_CONFIG)
    if missing:
        # Not a failure (a new setting still works through extraEnv), but the chart
        # should offer it: add it to values.schema.json's config properties.
        warnings.warn(f"settings not offered by the chart's config: {sorted(missing)}")


@pytest.mark.parametrize("case", ALL)
def test_config_changes_roll_the_pods(case):
    base = render_case(case)
    annotations = base.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert {"checksum/config", "checksum/secret"} <= annotations.keys()
    values = copy.deepcopy(base.values)
    values.setdefault("config", {})["SCHEDULER_LOOKAHEAD_MS"] = 2345
    changed = render(values, case + "+config")
    new = changed.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert new["checksum/config"] != annotations["checksum/config"]
    if not base.values.get("existingSecret", {}).get("name"):
        values = copy.deepcopy(base.values)
        values["secrets"]["databaseUrl"] = "postgres://other@db/other"
        changed = render(values, case + "+secret")
        new = changed.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        assert new["checksum/secret"] != annotations["checksum/secret"]


def test_telemetry_settings_reach_the_container():
    r = render_case("full")
    env = pod_env(scheduler(r))
    otel = r.values["otel"]
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == otel["endpoint"]
    assert env["OTEL_SERVICE_NAME"]["value"] == otel["serviceName"]
    assert env["OTEL_METRIC_EXPORT_INTERVAL"]["value"] == str(otel["metricExportIntervalMs"])
    attrs = env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    assert "k8s.pod.name=$(SCHEDULER_NODE_ID)" in attrs
    assert attrs.endswith("," + otel["resourceAttributes"])
    # Dependent variables ($(NAME)) expand only from variables listed before them.
    names = [e["name"] for e in scheduler(r)["env"]]
    for ref in ("SCHEDULER_NODE_ID", "K8S_NAMESPACE", "K8S_NODE_NAME"):
        assert names.index(ref) < names.index("OTEL_RESOURCE_ATTRIBUTES")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in pod_env(scheduler(render_case("default")))


def test_numbers_in_config_are_written_as_whole_numbers():
    data = render_case("full").one("ConfigMap")["data"]
    assert data["SCHEDULER_MAX_BODY_BYTES"] == "1048576"
    assert data["SCHEDULER_RUN_TIMEOUT_MS"] == "3600000"
    assert data["SCHEDULER_WORKER_AUTOSTART"] == "true"


# ---------------------------------------------------------------------------------------
# Optional objects


def test_ingress_and_service_monitor_point_at_the_service():
    r = render_case("full")
    service = r.one("Service")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for rule in r.one("Ingress")["spec"]["rules"]:
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in port_names
    sm = r.one("ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] in port_names
    assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize("case", ALL)
def test_network_policy_opens_only_the_api_port(case):
    r = render_case(case)
    policies = r.of_kind("NetworkPolicy")
    if not r.values.get("networkPolicy", {}).get("enabled", True):
        assert policies == []
        return
    (np,) = policies
    pod_labels = r.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    c = scheduler(r)
    for rule in np["spec"]["ingress"]:
        ports = {resolve_port(c, p["port"]) for p in rule["ports"]}
        assert ports == {int(pod_env(c)["SCHEDULER_PORT"]["value"])}
    if "Egress" in np["spec"]["policyTypes"]:
        dns = [
            rule
            for rule in np["spec"]["egress"]
            if {p["port"] for p in rule.get("ports", [])} == {53}
        ]
        assert dns, "restricted egress must still allow DNS"


@pytest.mark.parametrize("case", ALL)
def test_helm_test_pod_runs_the_healthcheck_against_the_service(case):
    r = render_case(case)
    pods = r.of_kind("Pod")
    if not r.values.get("tests", {}).get("enabled", True):
        assert pods == []
        return
    (pod,) = pods
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    service = r.one("Service")
    port = service["spec"]["ports"][0]["port"]
    assert c["args"] == [
        "healthcheck",
        "--url",
        f"http://{service['metadata']['name']}:{port}/health/ready",
    ]


@pytest.mark.parametrize("case", ALL)
def test_notes_warn_about_transaction_poolers(case):
    notes = render_case(case).notes
    assert "transaction-mode pooler" in notes
    assert "SESSION" in notes


# ---------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(
    "patch, fragment",
    [
        ({"replicaCount": "three"}, "replicaCount"),
        ({"config": {"SCHEDULER_PROT": "8001"}}, "SCHEDULER_PROT"),
        ({"config": {"SCHEDULER_DEFAULT_OVERLAP_POLICY": "sometimes"}}, "OVERLAP"),
        ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
        ({"secrets": {"databaseUrl": "mysql://u@db/x"}}, "databaseUrl"),
        ({"replicas": 3}, "replicas"),
    ],
)
def test_schema_refuses_bad_values(patch, fragment):
    import helm_python

    values = copy.deepcopy(deploylib.case_values("default"))
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(values.get(key), dict):
            values[key].update(value)
        else:
            values[key] = value
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values, "bad")
    assert fragment in str(err.value)


def test_render_without_api_credentials_fails_unless_auth_is_off():
    import helm_python

    values = copy.deepcopy(deploylib.case_values("default"))
    del values["secrets"]["apiTokens"]
    with pytest.raises(helm_python.HelmError) as err:
        render(values, "no-credentials")
    assert "secrets.apiTokens" in str(err.value) and "SCHEDULER_AUTH" in str(err.value)
    values["config"] = {"SCHEDULER_AUTH": "off"}
    r = render(values, "auth-off")
    assert r.one("ConfigMap")["data"]["SCHEDULER_AUTH"] == "off"
    assert "SCHEDULER_API_TOKENS" not in pod_env(scheduler(r))


@pytest.mark.parametrize("case", ALL)
def test_each_secret_value_reaches_the_scheduler_and_the_migration_gets_only_the_database(case):
    r = render_case(case)
    env = pod_env(scheduler(r))
    secrets = r.values.get("secrets") or {}
    existing = r.values.get("existingSecret", {}).get("name")
    for key, var in [
        ("databaseUrl", "SCHEDULER_DATABASE_URL"),
        ("executorToken", "SCHEDULER_EXECUTOR_TOKEN"),
        ("apiTokens", "SCHEDULER_API_TOKENS"),
        ("jwtHs256Secret", "SCHEDULER_JWT_HS256_SECRET"),
    ]:
        if existing or secrets.get(key):
            assert "secretKeyRef" in env[var]["valueFrom"], f"{case}: {var}"
        else:
            assert var not in env, f"{case}: {var} without a value"
    for job in r.of_kind("Job"):
        (c,) = job["spec"]["template"]["spec"]["containers"]
        secret_vars = {
            e["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert secret_vars == {"SCHEDULER_DATABASE_URL"}
    for secret in r.of_kind("Secret"):
        if "helm.sh/hook" in secret["metadata"].get("annotations", {}):
            assert set(secret["data"]) == {"database-url"}


def test_render_without_a_database_fails_with_a_clear_message():
    import helm_python

    with pytest.raises(helm_python.HelmError) as err:
        render({}, "no-database")
    assert "secrets.databaseUrl" in str(err.value)
