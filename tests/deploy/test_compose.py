"""The docker-compose fleet, the Dockerfile and the files they mount: what cannot be run
here (no Docker engine) is checked for consistency with the service and each other."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

import deploylib
from deploylib import COMPOSE, DOCKERFILE, REPO

IMAGE = "cron-scheduler:local"
SCHEDULERS = ["scheduler-1", "scheduler-2", "scheduler-3"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def ours(compose: dict) -> dict[str, dict]:
    """Services that run the cron-scheduler image."""
    return {n: s for n, s in compose["services"].items() if s.get("image") == IMAGE}


def subcommands() -> set[str]:
    """Subcommands of the binary: the variants of `enum Command` in src/main.rs, in the
    kebab-case clap derives from them."""
    text = (REPO / "src" / "main.rs").read_text()
    body = re.search(r"enum Command\s*\{(.*?)\n\}", text, re.S)
    assert body, "enum Command not found in src/main.rs"
    variants = re.findall(r"^\s{4}([A-Z][A-Za-z0-9]*)\b", body.group(1), re.M)
    return {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower() for v in variants}


def test_binary_has_the_subcommands_the_deployment_runs():
    assert {"serve", "migrate", "healthcheck", "mock-executor"} <= subcommands()


def test_three_replicas_with_distinct_node_ids_in_one_cluster(compose):
    services = compose["services"]
    node_ids = [env_of(services[n])["SCHEDULER_NODE_ID"] for n in SCHEDULERS]
    assert len(set(node_ids)) == 3
    clusters = {env_of(services[n])["SCHEDULER_CLUSTER_NAME"] for n in SCHEDULERS}
    assert len(clusters) == 1
    urls = {env_of(services[n])["SCHEDULER_DATABASE_URL"] for n in SCHEDULERS}
    assert len(urls) == 1
    for n in SCHEDULERS:
        s = services[n]
        assert s["command"] == ["serve"]
        assert s["image"] == IMAGE
        assert s.get("stop_grace_period") == "30s"
        assert s.get("read_only") is True
        assert s["healthcheck"]["test"][:2] == ["CMD", "/usr/local/bin/cron-scheduler"]
        assert s["healthcheck"]["test"][2] == "healthcheck"
        deps = s["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_is_a_one_shot_service(compose):
    m = compose["services"]["migrate"]
    assert m["command"] == ["migrate"]
    assert m["restart"] == "no"
    assert m["healthcheck"] == {"disable": True}
    assert m["depends_on"]["postgres"]["condition"] == "service_healthy"
    scheduler_url = env_of(compose["services"]["scheduler-1"])["SCHEDULER_DATABASE_URL"]
    assert env_of(m)["SCHEDULER_DATABASE_URL"] == scheduler_url


def test_every_service_has_a_health_check_or_a_reason(compose):
    # The collector image has no shell or HTTP client to check itself with; nothing waits
    # for Tempo or Loki to be healthy (service_started: the collector and Grafana retry).
    no_check = {"otel-collector", "migrate", "tempo", "loki"}
    for name, s in compose["services"].items():
        if name in no_check:
            continue
        test = s.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), name


def test_depends_on_names_real_services_with_satisfiable_conditions(compose):
    services = compose["services"]
    for name, s in services.items():
        for dep, how in (s.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            cond = how["condition"]
            if cond == "service_healthy":
                hc = services[dep].get("healthcheck", {})
                has_image_check = services[dep].get("image") == IMAGE  # HEALTHCHECK in image
                assert (hc.get("test") or has_image_check) and not hc.get("disable"), (
                    f"{name} waits for {dep} to be healthy, but it has no health check"
                )


def test_environment_names_are_read_by_the_service(compose):
    for name, s in ours(compose).items():
        mock = s["command"][0] == "mock-executor"
        bad = deploylib.unknown_env_names(set(env_of(s)), mock=mock)
        assert bad == [], f"{name}: nothing reads {bad}"


def test_api_credentials_let_the_mock_report_completions(compose):
    services = compose["services"]
    tokens = {env_of(services[n]).get("SCHEDULER_API_TOKENS") for n in SCHEDULERS}
    assert len(tokens) == 1
    (tokens,) = tokens
    assert tokens, "with a database URL and no credential the service refuses to start"
    entries = [t.strip().split(":") for t in tokens.split(",")]
    executor = [e[-1] for e in entries if e[0] == "executor"]
    assert any(e[0] == "admin" for e in entries)
    assert all(len(e[-1]) >= 16 for e in entries)
    assert env_of(services["mock-executor"])["SCHEDULER_MOCK_CALLBACK_TOKEN"] in executor


def test_mock_executor_and_callbacks(compose):
    services = compose["services"]
    mock = services["mock-executor"]
    env = env_of(mock)
    port = env["SCHEDULER_MOCK_PORT"]
    assert mock["command"] == ["mock-executor"]
    assert f"127.0.0.1:{port}/health" in " ".join(mock["healthcheck"]["test"])
    executor = env_of(services["scheduler-1"])["SCHEDULER_EXECUTOR_URL"]
    assert executor == f"http://mock-executor:{port}"
    assert env["SCHEDULER_MOCK_CALLBACK_URL"] == "http://lb:8001"
    assert "/health" in _routes_of("src/mock_executor.rs")


def _routes_of(relative: str) -> set[str]:
    return set(re.findall(r'\.route\(\s*"(/[^"]*)"', (REPO / relative).read_text()))


def test_load_balancer_checks_readiness_of_every_replica(compose):
    lb = compose["services"]["lb"]
    (mount,) = [v for v in lb["volumes"] if "haproxy.cfg" in v]
    cfg = (REPO / mount.split(":")[0]).read_text()
    servers = re.findall(r"^\s*server\s+(\S+)\s+(\S+):(\d+)", cfg, re.M)
    assert sorted(s[1] for s in servers) == SCHEDULERS
    assert {s[2] for s in servers} == {"8001"}
    assert re.search(r"http-check send meth GET uri /health/ready\b", cfg)
    assert re.search(r"http-check expect status 200\b", cfg)
    assert "127.0.0.1:8001:8001" in lb["ports"]
    for n in SCHEDULERS:
        assert lb["depends_on"][n]["condition"] == "service_healthy"


def test_load_balancer_retries_only_requests_no_replica_received():
    """`retry-on` beyond conn-failure (empty-response, junk-response, response-timeout,
    0rtt-rejected, status codes, all-retryable-errors) replays a request a replica may
    already have acted on: a manual trigger could launch twice."""
    cfg = (REPO / "deploy" / "haproxy.cfg").read_text()
    lines = [line.split("#")[0].split() for line in cfg.splitlines()]
    retry_on = [words[1:] for words in lines if words[:1] == ["retry-on"]]
    assert retry_on, "state the retry policy (HAProxy's default may change)"
    for policy in retry_on:
        assert policy == ["conn-failure"], f"retry-on {' '.join(policy)}"


def test_mounted_files_exist(compose):
    for name, s in compose["services"].items():
        for volume in s.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith("./"):
                continue  # a named volume
            assert (REPO / source).exists(), f"{name} mounts missing {source}"


def test_grafana_dashboards_are_provisioned(compose):
    g = compose["services"]["grafana"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in g["volumes"]}
    provider = yaml.safe_load(
        (REPO / mounts["/etc/grafana/provisioning/dashboards"] / "cron-scheduler.yaml").read_text()
    )
    (p,) = provider["providers"]
    # The chart's dashboards: one copy for Grafana here and the chart's ConfigMap.
    assert mounts[p["options"]["path"]] == "./helm/cron-scheduler/files/grafana"
    ds = yaml.safe_load(
        (REPO / mounts["/etc/grafana/provisioning/datasources"] / "prometheus.yaml").read_text()
    )
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboards = list((REPO / "helm" / "cron-scheduler" / "files" / "grafana").rglob("*.json"))
    assert dashboards
    for path in dashboards:
        json.loads(path.read_text())  # Grafana skips a dashboard that does not parse


def test_prometheus_scrapes_services_that_exist(compose):
    prom = compose["services"]["prometheus"]
    (mount,) = [v for v in prom["volumes"] if "prometheus.yml" in v]
    config = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    services = compose["services"]
    targets = [
        t
        for job in config["scrape_configs"]
        for sc in job.get("static_configs", [])
        for t in sc["targets"]
    ]
    assert targets
    for target in targets:
        host = target.split(":")[0]
        assert host in services or host in ("localhost", "127.0.0.1"), target
    # The replicas' metrics reach Prometheus: scraped directly, or through the collector.
    direct = all(f"{n}:8001" in targets for n in SCHEDULERS)
    assert direct or any(t.startswith("otel-collector:") for t in targets)


def test_prometheus_rule_files_are_mounted(compose):
    prom = compose["services"]["prometheus"]
    mounts = {
        v.split(":")[1]: REPO / v.split(":")[0] for v in prom["volumes"] if v.startswith("./")
    }
    (config_mount,) = [m for m in mounts if m.endswith("prometheus.yml")]
    config = yaml.safe_load(mounts[config_mount].read_text())
    for rule_file in config.get("rule_files", []):
        # Relative paths are relative to the config file's folder in the container.
        target = rule_file if rule_file.startswith("/") else f"/etc/prometheus/{rule_file}"
        local = [
            src / Path(target).relative_to(dst)
            for dst, src in mounts.items()
            if Path(target).is_relative_to(dst) and target != dst
        ]
        assert local and local[0].exists(), f"rule file {rule_file} is not mounted"
        # The chart's rules, the one copy (its PrometheusRule renders the same file).
        assert local[0].resolve().parent == (deploylib.CHART / "files" / "prometheus").resolve()
    assert config.get("rule_files"), "the compose Prometheus loads the alert rules"


def test_otlp_endpoint_is_a_collector_receiver(compose):
    endpoint = env_of(compose["services"]["scheduler-1"])["OTEL_EXPORTER_OTLP_ENDPOINT"]
    host, port = re.match(r"http://([^:/]+):(\d+)", endpoint).groups()
    assert host == "otel-collector"
    collector = compose["services"]["otel-collector"]
    (mount,) = [v for v in collector["volumes"] if "otel-collector" in v]
    cfg = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    protocols = cfg["receivers"]["otlp"]["protocols"]
    ports = {p["endpoint"].rsplit(":", 1)[1] for p in protocols.values()}
    assert port in ports


# ---------------------------------------------------------------------------------------
# Telemetry: collector, trace backend, logs, Grafana's linked datasources


def _mounted(service: dict, target: str) -> Path:
    (source,) = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == target]
    return REPO / source


def _collector(compose) -> dict:
    return yaml.safe_load(
        _mounted(compose["services"]["otel-collector"], "/etc/otelcol/config.yaml").read_text()
    )


def _host_port(endpoint: str) -> tuple[str, str]:
    host, port = re.match(r"(?:[a-z]+://)?([^:/]+):(\d+)", endpoint).groups()
    return host, port


def test_collector_pipelines_use_only_defined_components(compose):
    cfg = _collector(compose)
    pipelines = cfg["service"]["pipelines"]
    assert {"traces", "metrics", "logs"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in cfg[kind], f"{name}: {kind} {component} is not defined"
        # A pipeline that only prints (the `debug` exporter) sends nothing anywhere.
        assert set(pipeline["exporters"]) - {"debug"}, f"{name} exports nowhere"


def test_traces_reach_tempo_and_tempo_writes_span_metrics_to_prometheus(compose):
    services = compose["services"]
    cfg = _collector(compose)
    tempo = yaml.safe_load(_mounted(services["tempo"], "/etc/tempo/tempo.yaml").read_text())
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    for exporter in cfg["service"]["pipelines"]["traces"]["exporters"]:
        host, port = _host_port(cfg["exporters"][exporter]["endpoint"])
        assert host == "tempo" and port == grpc.rsplit(":", 1)[1], exporter
    assert tempo["storage"]["trace"]["backend"] == "local"
    (write,) = tempo["metrics_generator"]["storage"]["remote_write"]
    assert _host_port(write["url"])[0] == "prometheus"
    assert "--web.enable-remote-write-receiver" in services["prometheus"]["command"]
    processors = tempo["overrides"]["defaults"]["metrics_generator"]["processors"]
    assert {"service-graphs", "span-metrics"} <= set(processors)


def test_replica_logs_reach_loki_with_their_trace_ids(compose):
    services = compose["services"]
    cfg = _collector(compose)
    (receiver,) = cfg["service"]["pipelines"]["logs"]["receivers"]
    filelog = cfg["receivers"][receiver]
    # The collector reads the files it is told to (mounted from the host, read-only).
    (pattern,) = filelog["include"]
    mounts = {v.split(":")[1]: v for v in services["otel-collector"]["volumes"]}
    folder = pattern.split("/*")[0]
    assert folder in mounts and mounts[folder].endswith(":ro")
    # It keeps the lines of containers labelled for it: every replica, by its node id.
    (keep,) = [op for op in filelog["operators"] if op["type"] == "filter"]
    label = re.search(r"attributes\.attrs\.(\w+) == nil", keep["expr"]).group(1)
    for n in SCHEDULERS:
        s = services[n]
        assert s["logging"]["driver"] == "json-file"
        assert s["logging"]["options"]["labels"] == label
        assert s["labels"][label] == env_of(s)["SCHEDULER_NODE_ID"]
        assert env_of(s)["SCHEDULER_LOG_FORMAT"] == "json"
    # Each JSON line's trace_id / span_id become the record's trace context.
    (trace,) = [op for op in filelog["operators"] if op["type"] == "trace_parser"]
    assert trace["trace_id"]["parse_from"] == "attributes.trace_id"
    assert trace["span_id"]["parse_from"] == "attributes.span_id"
    for exporter in cfg["service"]["pipelines"]["logs"]["exporters"]:
        assert _host_port(cfg["exporters"][exporter]["endpoint"]) == ("loki", "3100")
    loki = yaml.safe_load(_mounted(services["loki"], "/etc/loki/loki.yaml").read_text())
    assert loki["server"]["http_listen_port"] == 3100
    assert loki["limits_config"]["allow_structured_metadata"] is True


def _datasources() -> dict[str, dict]:
    folder = REPO / "deploy" / "grafana-provisioning" / "datasources"
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        # Grafana expands ${...} from its environment in provisioning files: a link
        # variable such as ${__trace.traceId} must be written $${...}.
        assert not re.search(r"(?<!\$)\$\{__", text), f"{path.name}: write $${{__...}}"
        for source in yaml.safe_load(text)["datasources"]:
            assert source["uid"] not in found, f"uid {source['uid']} twice"
            found[source["uid"]] = source
    return found


def test_grafana_datasources_link_traces_logs_and_metrics(compose):
    sources = _datasources()
    by_type = {s["type"]: s for s in sources.values()}
    assert {"prometheus", "tempo", "loki"} <= set(by_type)
    services = compose["services"]
    listens = {
        "tempo": yaml.safe_load(_mounted(services["tempo"], "/etc/tempo/tempo.yaml").read_text())[
            "server"
        ]["http_listen_port"],
        "loki": 3100,
        "prometheus": 9090,
    }
    for kind, source in by_type.items():
        host, port = _host_port(source["url"])
        assert host in services and int(port) == listens[host], source["url"]
    tempo = by_type["tempo"]["jsonData"]
    uid = {kind: s["uid"] for kind, s in by_type.items()}
    # trace -> its log lines (by the trace id the collector put in structured metadata)
    assert tempo["tracesToLogsV2"]["datasourceUid"] == uid["loki"]
    assert 'trace_id="$${__trace.traceId}"' in tempo["tracesToLogsV2"]["query"]
    # trace -> metrics of the replica that made the span
    assert tempo["tracesToMetrics"]["datasourceUid"] == uid["prometheus"]
    assert {"key": "service.instance.id", "value": "instance"} in tempo["tracesToMetrics"]["tags"]
    assert tempo["serviceMap"]["datasourceUid"] == uid["prometheus"]
    # log line -> its trace
    (derived,) = by_type["loki"]["jsonData"]["derivedFields"]
    assert derived["datasourceUid"] == uid["tempo"] and derived["matcherRegex"] == "trace_id"
    # exemplar -> its trace
    (exemplar,) = by_type["prometheus"]["jsonData"]["exemplarTraceIdDestinations"]
    assert exemplar["datasourceUid"] == uid["tempo"]
    # The metric names the links query are ones the service emits (src/telemetry.rs).
    telemetry = (REPO / "src" / "telemetry.rs").read_text()
    queried = [
        metric
        for query in tempo["tracesToMetrics"]["queries"]
        for metric in re.findall(r"\b(scheduler_[a-z_]+?)(?:_bucket|_total)?\{", query["query"])
    ]
    assert len(queried) == len(tempo["tracesToMetrics"]["queries"]), queried
    for metric in queried:
        assert f'"{metric}"' in telemetry, metric


# ---------------------------------------------------------------------------------------
# Dockerfile and build context


def dockerfile() -> str:
    # Join continuation lines so each instruction is one line.
    return re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())


def test_dockerfile_is_multi_stage_non_root_and_checks_itself():
    text = dockerfile()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, re.M | re.I)
    assert len(stages) >= 2
    assert stages[0][0].startswith("rust:"), "builder on the official Rust image"
    (user,) = re.findall(r"^USER\s+(\S+)", text, re.M)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot checks it)"
    (hc,) = re.findall(r"^HEALTHCHECK\s+.*CMD\s+(\[.*\])\s*$", text, re.M)
    assert json.loads(hc) == ["/usr/local/bin/cron-scheduler", "healthcheck"]
    (entry,) = re.findall(r"^ENTRYPOINT\s+(\[.*\])", text, re.M)
    assert json.loads(entry) == ["/usr/local/bin/cron-scheduler"]
    (cmd,) = re.findall(r"^CMD\s+(\[.*\])", text, re.M)
    assert json.loads(cmd)[0] in subcommands()
    assert "--locked" in text
    assert re.search(r"^EXPOSE\s+8001\b", text, re.M)


def test_dockerfile_environment_names_are_read_by_the_service():
    text = dockerfile()
    names = set()
    for line in re.findall(r"^ENV\s+(.*)$", text, re.M):
        names.update(re.findall(r"([A-Z][A-Z0-9_]*)=", line))
    assert names
    assert deploylib.unknown_env_names(names) == []


def builder_stage() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile's first stage, in order."""
    instructions: list[tuple[str, str]] = []
    stages = 0
    for line in dockerfile().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        op, _, args = line.strip().partition(" ")
        stages += op.upper() == "FROM"
        if stages == 2:
            break
        if stages == 1:
            instructions.append((op.upper(), args.strip()))
    return instructions


def test_dependencies_are_built_in_a_layer_of_their_own():
    """Without BuildKit's cache a source change must not recompile every crate: the
    manifests are copied and the dependencies built with stand-in sources first, then the
    sources are copied and only the service's crate is rebuilt."""
    stage = builder_stage()
    builds = [i for i, (op, args) in enumerate(stage) if op == "RUN" and "cargo build" in args]
    assert len(builds) >= 2, "a dependency build, then the real one"
    first, last = builds[0], builds[-1]
    early = [args.split() for op, args in stage[:first] if op == "COPY"]
    copied = {src for words in early for src in words[:-1] if not src.startswith("--")}
    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())
    members = [m for m in manifest["workspace"]["members"] if m != "."]
    needed = {"Cargo.toml", "Cargo.lock"} | {f"{m}/Cargo.toml" for m in members}
    assert needed <= copied, f"copied before the dependency build: {sorted(copied)}"
    assert not copied & {".", "./", "src", "src/", "lab", "lab/"}, "sources in the deps layer"
    if (REPO / "build.rs").exists():
        assert "build.rs" in copied, "build.rs belongs to the dependency layer (it is tiny)"
    # Every target cargo loads gets a stand-in: the binary, each member's crate, each bench.
    stand_ins = stage[first][1]
    wanted = ["src/main.rs"] + [f"{m}/src/" for m in members]
    wanted += [b.get("path", f"benches/{b['name']}.rs") for b in manifest.get("bench", [])]
    for path in wanted:
        assert path in stand_ins, f"no stand-in for {path} before the dependency build"
    assert "--mount=type=cache,target=/src/target" not in stand_ins, (
        "a cache-mounted target keeps the compiled dependencies out of the layer"
    )
    # The sources come after, and the stand-in's build records cannot pass for them.
    late = [args for op, args in stage[first + 1 : last] if op == "COPY"]
    assert any(args.split()[0] in (".", "src", "src/") for args in late), "sources copied"
    final = stage[last][1]
    assert ".fingerprint/cron-scheduler-" in final or "touch src/main.rs src/lib.rs" in final
    assert "--locked" in final and "-p cron-scheduler" in final


def _ignored(path: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        p = pattern.rstrip("/")
        if fnmatch.fnmatch(path, p) or fnmatch.fnmatch(path, p + "/*") or path.startswith(p + "/"):
            return True
    return False


def test_build_context_keeps_what_cargo_needs():
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "target/" in patterns and ".git/" in patterns
    needed = ["Cargo.toml", "Cargo.lock", "src/main.rs", "src/lib.rs", "migrations"]
    manifest = tomllib.loads((REPO / "Cargo.toml").read_text())
    for section in ("bin", "bench", "test", "example"):
        needed += [t["path"] for t in manifest.get(section, []) if "path" in t]
    if "build" in manifest.get("package", {}):
        needed.append(manifest["package"]["build"])
    # cargo reads every workspace member's manifest, even to build one package.
    for member in manifest.get("workspace", {}).get("members", []):
        if member != ".":
            needed += [member, f"{member}/Cargo.toml"]
    for path in needed:
        assert (REPO / path).exists(), path
        assert not _ignored(path, patterns), f".dockerignore drops {path}, which the build needs"
    for path in Path(REPO / "benches").glob("*.rs") if (REPO / "benches").is_dir() else []:
        assert not _ignored(str(path.relative_to(REPO)), patterns)
