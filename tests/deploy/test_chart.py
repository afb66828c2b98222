"""What operators rely on in the rendered Helm chart, for every values case in
helm/cron-scheduler/ci/. Run by scripts/validate-deploy (or `pytest tests/deploy`)."""

from __future__ import annotations

import copy
import json
import re
import warnings

import pytest
import yaml

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


def settings(r: deploylib.Rendered) -> dict[str, str]:
    """The scheduler's settings: the ConfigMap its container reads with envFrom."""
    return config_env(r, scheduler(r))


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
    # 5 s preStop pause + the service's 10 s shutdown grace + 12 s to flush and exit.
    assert pod["terminationGracePeriodSeconds"] == 27
    res = scheduler(r)["resources"]
    assert res["requests"] and res["limits"]


def service_default_shutdown_grace_ms() -> int:
    text = (REPO / "src" / "config.rs").read_text()
    (default,) = re.findall(r'"SCHEDULER_SHUTDOWN_GRACE_MS",\s*([0-9_]+)\)', text)
    return int(default.replace("_", ""))


def grace_period(r: deploylib.Rendered) -> int:
    return r.one("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("case", ALL)
def test_grace_period_is_the_pause_plus_the_shutdown_grace_the_service_gets(case):
    """One bound: the service is told its shutdown grace explicitly, and the pod's grace
    period is that plus the preStop pause and a margin, never a second number."""
    r = render_case(case)
    c = scheduler(r)
    pause = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace_ms = int(config_env(r, c)["SCHEDULER_SHUTDOWN_GRACE_MS"])
    margin = r.values.get("shutdownMarginSeconds", 12)
    assert margin >= 1
    assert grace_period(r) == pause + -(-grace_ms // 1000) + margin


def test_the_charts_default_grace_is_the_services():
    data = settings(render_case("default"))
    assert int(data["SCHEDULER_SHUTDOWN_GRACE_MS"]) == service_default_shutdown_grace_ms()


@pytest.mark.parametrize("grace_ms, expected", [(45_000, 62), (1, 18), ("30000", 47), ("", 27)])
def test_grace_period_follows_the_setting(grace_ms, expected):
    values = copy.deepcopy(deploylib.case_values("default"))
    values["config"] = {"SCHEDULER_SHUTDOWN_GRACE_MS": grace_ms}
    r = render(values, f"grace-{grace_ms}")
    assert grace_period(r) == expected
    sent = settings(r)["SCHEDULER_SHUTDOWN_GRACE_MS"]
    assert int(sent) == (int(grace_ms) if grace_ms != "" else 10_000)


def test_the_grace_period_cannot_be_set_apart_from_the_setting():
    import helm_python

    values = copy.deepcopy(deploylib.case_values("default"))
    values["terminationGracePeriodSeconds"] = 30
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values, "grace-value")
    assert "terminationGracePeriodSeconds" in str(err.value)
    values = copy.deepcopy(deploylib.case_values("default"))
    values["extraEnv"] = [{"name": "SCHEDULER_SHUTDOWN_GRACE_MS", "value": "60000"}]
    with pytest.raises(helm_python.HelmError) as err:
        render(values, "grace-extra-env")
    assert "config.SCHEDULER_SHUTDOWN_GRACE_MS" in str(err.value)


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
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"]["value"] == otel["protocol"] == "http/protobuf"
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
    assert settings(r)["SCHEDULER_AUTH"] == "off"
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
        render({"image": {"repository": "registry.example.com/cron-scheduler"}}, "no-database")
    assert "secrets.databaseUrl" in str(err.value)


def test_render_without_an_image_fails_and_says_how_to_make_one():
    """No public image exists: a default repository would only give ImagePullBackOff."""
    import helm_python

    values = copy.deepcopy(deploylib.case_values("default"))
    del values["image"]
    with pytest.raises(helm_python.HelmError) as err:
        render(values, "no-image")
    assert "image.repository" in str(err.value) and "deploy/Dockerfile" in str(err.value)
    for case in ALL:
        assert scheduler(render_case(case))["image"].startswith(
            render_case(case).values["image"]["repository"]
        )



# ---------------------------------------------------------------------------------------
# Names, cluster, hooks

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def all_names_and_label_values(r: deploylib.Rendered) -> list[tuple[str, str]]:
    found = []
    for doc in r.docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        found.append((where, doc["metadata"]["name"]))
        metas = [doc["metadata"], doc.get("spec", {}).get("template", {}).get("metadata", {})]
        for meta in metas:
            for key, value in (meta.get("labels") or {}).items():
                found.append((f"{where} label {key}", str(value)))
    return found


@pytest.mark.parametrize(
    "release, overrides",
    [
        ("r" * 60, {}),
        ("scheduler", {"fullnameOverride": "f" * 63}),
        ("a" * 53, {"nameOverride": "n" * 63}),
    ],
)
def test_long_release_names_give_valid_names(release, overrides):
    """Every object name and label value is a DNS-1123 label of at most 63 characters
    (the migration Job's name becomes a label of its pods)."""
    values = copy.deepcopy(deploylib.case_values("monitoring"))
    values.update(overrides)
    r = render(values, f"long-{release[:8]}", release=release)
    assert len(r.docs) >= 10
    for where, value in all_names_and_label_values(r):
        if "label" in where and not value:
            continue
        assert len(value) <= 63, f"{where}: {value!r} is {len(value)} characters"
        if "label" not in where:
            assert DNS_LABEL.fullmatch(value), f"{where}: {value!r} is not a DNS-1123 label"
    names = [doc["metadata"]["name"] for doc in r.docs]
    kinds_names = [(doc["kind"], doc["metadata"]["name"]) for doc in r.docs]
    assert len(set(kinds_names)) == len(kinds_names), "two objects of one kind share a name"
    (job,) = r.of_kind("Job")
    assert job["metadata"]["name"].endswith("-migrate")
    assert any(n.endswith("-test") for n in names)


def test_cluster_name_defaults_to_the_release_so_two_releases_never_share_a_leader():
    values = deploylib.case_values("default")
    one = settings(render(values, "one", release="scheduler-a"))
    two = settings(render(values, "two", release="scheduler-b"))
    assert one["SCHEDULER_CLUSTER_NAME"] == "scheduler-a"
    assert two["SCHEDULER_CLUSTER_NAME"] == "scheduler-b"
    full = render_case("full")
    assert settings(full)["SCHEDULER_CLUSTER_NAME"] == "production"
    assert "scheduler-a" in render(values, "one", release="scheduler-a").notes


@pytest.mark.parametrize("case", ALL)
def test_hooks_finish_within_helms_default_timeout(case):
    """Helm waits 5 minutes for a hook by default, then gives up; the hook's own deadline
    must come first, so it fails (and says why) instead of running on unattended."""
    r = render_case(case)
    hooks = [d for d in r.docs if "helm.sh/hook" in d["metadata"].get("annotations", {})]
    for doc in hooks:
        if doc["kind"] == "Job":
            deadline = doc["spec"].get("activeDeadlineSeconds")
        elif doc["kind"] == "Pod":
            deadline = doc["spec"].get("activeDeadlineSeconds")
        else:
            continue
        assert deadline is not None and 0 < deadline < 300, f"{case}: {doc['kind']} {deadline}"


# ---------------------------------------------------------------------------------------
# NetworkPolicy: who gets in


def selector_matches(selector: dict, labels: dict) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for e in selector.get("matchExpressions") or []:
        present, value = e["key"] in labels, labels.get(e["key"])
        op, values = e["operator"], e.get("values", [])
        if (
            (op == "In" and value not in values)
            or (op == "NotIn" and present and value in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def peer_admits(peer: dict, pod: dict) -> bool:
    """NetworkPolicyPeer semantics for a pod {namespace, labels}: podSelector alone means
    the policy's namespace; namespaceSelector alone, every pod of those namespaces; both,
    those pods in those namespaces."""
    if "ipBlock" in peer:
        return False
    ns_labels = {"kubernetes.io/metadata.name": pod["namespace"]}
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], ns_labels):
            return False
    elif pod["namespace"] != deploylib.NAMESPACE:
        return False
    return "podSelector" not in peer or selector_matches(peer["podSelector"], pod["labels"])


def ports_admit(ports: list | None, port: tuple[str, int]) -> bool:
    return not ports or any(p.get("port") in port and p.get("protocol", "TCP") == "TCP" for p in ports)


def admitted(np: dict, direction: str, pod: dict, port: tuple[str, int]) -> bool:
    """Whether a rule of `direction` (ingress: from, egress: to) admits `pod` on `port`."""
    key = "from" if direction == "ingress" else "to"
    for rule in np["spec"].get(direction) or []:
        if not ports_admit(rule.get("ports"), port):
            continue
        peers = rule.get(key)
        if peers is None or any(peer_admits(peer, pod) for peer in peers):
            return True
    return False


def api_port(r: deploylib.Rendered) -> tuple[str, int]:
    c = scheduler(r)
    return ("http", resolve_port(c, "http"))


def test_network_policy_admits_the_executor_from_its_namespace():
    r = render_case("monitoring")
    np = r.one("NetworkPolicy")
    executor = {"namespace": "workflows", "labels": {"app.kubernetes.io/name": "executor"}}
    stranger = {"namespace": "workflows", "labels": {"app.kubernetes.io/name": "other"}}
    elsewhere = {"namespace": "sandbox", "labels": {"app.kubernetes.io/name": "executor"}}
    assert admitted(np, "ingress", executor, api_port(r)), "completion reports blocked"
    assert not admitted(np, "ingress", stranger, api_port(r))
    assert not admitted(np, "ingress", elsewhere, api_port(r))
    assert not admitted(np, "ingress", executor, ("metrics", 9999))
    # Launches reach it on its port when egress is restricted.
    assert admitted(np, "egress", executor, ("http", 8080))
    # Without the executor setting the same policy keeps it out (the setting is the door).
    values = copy.deepcopy(r.values)
    del values["networkPolicy"]["executor"]
    closed = render(values, "no-executor").one("NetworkPolicy")
    assert not admitted(closed, "ingress", executor, api_port(r))
    # Only a namespace: every pod of it; an empty selector never means "everywhere".
    values["networkPolicy"]["executor"] = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "workflows"}}
    }
    ns_only = render(values, "executor-ns").one("NetworkPolicy")
    assert admitted(ns_only, "ingress", stranger, api_port(r))
    assert not admitted(ns_only, "ingress", elsewhere, api_port(r))


@pytest.mark.parametrize("case", ALL)
def test_network_policy_admits_the_helm_test_pod(case):
    r = render_case(case)
    policies = r.of_kind("NetworkPolicy")
    pods = r.of_kind("Pod")
    if not policies or not pods:
        return
    (np,) = policies
    (test_pod,) = pods
    source = {"namespace": deploylib.NAMESPACE, "labels": test_pod["metadata"]["labels"]}
    assert admitted(np, "ingress", source, api_port(r)), f"{case}: helm test is blocked"
    server = {
        "namespace": deploylib.NAMESPACE,
        "labels": r.one("Deployment")["spec"]["template"]["metadata"]["labels"],
    }
    selects_test_pod = selector_matches(np["spec"]["podSelector"], source["labels"])
    if selects_test_pod and "Egress" in np["spec"]["policyTypes"]:
        assert admitted(np, "egress", server, api_port(r)), f"{case}: the test pod cannot leave"


def test_network_policy_admits_the_helm_test_pod_when_ingress_is_narrowed():
    values = copy.deepcopy(deploylib.case_values("full"))
    values["networkPolicy"]["ingress"]["from"] = [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    r = render(values, "narrow")
    np = r.one("NetworkPolicy")
    (test_pod,) = r.of_kind("Pod")
    source = {"namespace": deploylib.NAMESPACE, "labels": test_pod["metadata"]["labels"]}
    neighbour = {"namespace": deploylib.NAMESPACE, "labels": {"app": "something-else"}}
    assert admitted(np, "ingress", source, api_port(r))
    assert not admitted(np, "ingress", neighbour, api_port(r))
    values["tests"] = {"enabled": False}
    np = render(values, "narrow-no-tests").one("NetworkPolicy")
    assert not admitted(np, "ingress", source, api_port(r))


# ---------------------------------------------------------------------------------------
# Monitoring: ServiceMonitor, PrometheusRule, dashboards

ALERTS = deploylib.CHART / "files" / "prometheus" / "alerts.yml"
DASHBOARDS = deploylib.CHART / "files" / "grafana"
METRIC = re.compile(r"\b(scheduler_(?!cluster\b)[a-z_]+)\s*(\{[^}]*\})?")


def selectors(expr: str) -> list[tuple[str, str]]:
    """(metric, matchers) of every scheduler_* selector in a PromQL expression."""
    return [(m.group(1), m.group(2) or "") for m in METRIC.finditer(expr)]


def test_service_monitor_relabels_instance_to_the_pod_name():
    for case in ("full", "monitoring"):
        (endpoint,) = render_case(case).one("ServiceMonitor")["spec"]["endpoints"]
        relabel = [
            x for x in endpoint.get("relabelings", []) if x.get("targetLabel") == "instance"
        ]
        assert relabel == [
            {
                "sourceLabels": ["__meta_kubernetes_pod_name"],
                "targetLabel": "instance",
                "action": "replace",
            }
        ]


def test_service_monitor_sends_a_token_when_metrics_need_one():
    import helm_python

    r = render_case("monitoring")
    (endpoint,) = r.one("ServiceMonitor")["spec"]["endpoints"]
    secret = r.values["serviceMonitor"]["bearerTokenSecret"]
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"name": secret["name"], "key": secret["key"]},
    }
    # /metrics is open in "full": no token is sent.
    (endpoint,) = render_case("full").one("ServiceMonitor")["spec"]["endpoints"]
    assert "authorization" not in endpoint
    # A ServiceMonitor that could not scrape is refused.
    values = copy.deepcopy(r.values)
    values["serviceMonitor"]["bearerTokenSecret"] = {"name": ""}
    with pytest.raises(helm_python.HelmError) as err:
        render(values, "no-metrics-token")
    assert "serviceMonitor.bearerTokenSecret" in str(err.value)
    # ... unless authentication is off altogether (then /metrics is open).
    values["config"]["SCHEDULER_AUTH"] = "off"
    render(values, "auth-off")


def test_every_selector_of_the_alert_rules_can_be_scoped_to_a_cluster():
    """The chart scopes the rules by replacing `scheduler_cluster=~".+"`: a selector
    without it would stay fleet-wide in every release."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    count = 0
    for rule in (rule for g in groups for rule in g["rules"]):
        found = selectors(rule["expr"])
        assert found, rule.get("alert")
        for metric, matchers in found:
            count += 1
            assert 'scheduler_cluster=~".+"' in matchers, f"{rule.get('alert')}: {metric}"
    assert count >= 15


def test_prometheus_rule_renders_the_alert_file_scoped_to_the_release():
    r = render_case("monitoring")
    rule = r.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    cluster = settings(r)["SCHEDULER_CLUSTER_NAME"]
    source = yaml.safe_load(ALERTS.read_text())["groups"]
    groups = rule["spec"]["groups"]
    assert [len(g["rules"]) for g in groups] == [len(g["rules"]) for g in source]
    assert len({g["name"] for g in groups}) == len(groups)
    base = r.values["prometheusRule"]["runbookBaseUrl"]
    for group, original in zip(groups, source):
        assert set(group) == {"name", "rules"}
        for got, want in zip(group["rules"], original["rules"]):
            assert set(got) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert got["alert"] == want["alert"] and got.get("for") == want.get("for")
            assert got["annotations"]["runbook_url"] == base + want["annotations"]["runbook_url"]
            assert got["annotations"]["summary"] == want["annotations"]["summary"]
            assert got["labels"] == {**want["labels"], "team": "platform"}
            assert "=~\".+\"" not in got["expr"]
            for metric, matchers in selectors(got["expr"]):
                assert f'scheduler_cluster="{cluster}"' in matchers, f"{got['alert']}: {metric}"
            # Only the cluster matcher changed.
            assert got["expr"].replace(f'scheduler_cluster="{cluster}"', "") == want[
                "expr"
            ].replace('scheduler_cluster=~".+"', "")
    names = {rule["alert"] for g in groups for rule in g["rules"]}
    assert {"CronSchedulerDown", "CronSchedulerScheduleUnhealthy"} <= names


def test_rendered_prometheus_rule_passes_promtool(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (scripts/validate-deploy installs it)")
    groups = render_case("monitoring").one("PrometheusRule")["spec"]["groups"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    out = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_optional_monitoring_objects_are_off_by_default():
    r = render_case("default")
    assert not r.of_kind("PrometheusRule") and not r.of_kind("ServiceMonitor")
    assert len(r.of_kind("ConfigMap")) == 1


def test_dashboard_config_map_carries_the_dashboards_for_the_sidecar():
    r = render_case("monitoring")
    (cm,) = [c for c in r.of_kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboards")]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"] == {"grafana_folder": "cron-scheduler"}
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files and sorted(cm["data"]) == [f.name for f in files]
    for f in files:
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())
    # The label is the sidecar's choice, not ours.
    values = copy.deepcopy(r.values)
    # (null drops the chart's default label: Helm removes null keys when merging values)
    values["grafanaDashboard"]["labels"] = {"grafana_dashboard": None, "dashboards": "cron"}
    values["grafanaDashboard"]["namespace"] = "grafana"
    (cm,) = [
        c
        for c in render(values, "dashboards-label").of_kind("ConfigMap")
        if c["metadata"]["name"].endswith("-dashboards")
    ]
    assert cm["metadata"]["labels"]["dashboards"] == "cron"
    assert "grafana_dashboard" not in cm["metadata"]["labels"]
    assert cm["metadata"]["namespace"] == "grafana"
