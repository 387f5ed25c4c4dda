#!/usr/bin/env python3
"""Project-specific checks of the rendered Kubernetes manifests and of deploy/monitoring/.

Run by deploy/validate.sh after the schema validation and the policy scan, which cannot know
this project: every environment variable a ConfigMap or a Deployment sets must be one the
consuming service declares in its Rust sources; listeners bind 0.0.0.0 on the container's
ports; probes hit /healthz, /readyz on the service's own HTTP port; the shutdown budget covers
the drain; dev, prod and staging keep their promises (issuer availability, migrate Jobs and
DML-only services, the database key store, edge trust, metrics on internal ports only, the
database connection budget, Argon2 memory, images by digest); every checkov skip carries a
reason; alert rules and the dashboard name only metrics the services export.

Usage: check_manifests.py RENDER_DIR   (RENDER_DIR holds base.yaml, dev.yaml, prod.yaml,
staging.yaml and cluster.yaml, the render of deploy/k8s/cluster)
Prints nothing and exits 0 when everything holds; prints each problem and exits 1 otherwise.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("auth-service", "orders-service", "gateway")
# The service's own crate, plus the shared verifier configuration the verifiers flatten in.
SOURCES = {
    "auth-service": ["auth-service/src"],
    "orders-service": ["orders-service/src", "authn/src/config.rs"],
    "gateway": ["gateway/src", "authn/src/config.rs"],
}
# Read by platform::telemetry (tracing's EnvFilter and LOG_FORMAT) in every service.
TELEMETRY_ENV = {"RUST_LOG", "LOG_FORMAT"}
HTTP_PORT = {"auth-service": 8081, "orders-service": 9092, "gateway": 8080}
ADDR_PORTS = {
    "auth-service": {"AUTH_HTTP_ADDR": 8081, "AUTH_GRPC_ADDR": 50051, "AUTH_METRICS_ADDR": 9091},
    "orders-service": {"ORDERS_GRPC_ADDR": 50052, "ORDERS_HTTP_ADDR": 9092},
    "gateway": {"GATEWAY_ADDR": 8080, "GATEWAY_METRICS_ADDR": 9090},
}
# The port that serves /metrics, a container port named `metrics`: auth-service's and the
# gateway's internal listeners, orders-service's operations listener (health and metrics).
METRICS_PORT = {"auth-service": 9091, "orders-service": 9092, "gateway": 9090}
# The renders that run the production topology.
PROD_LIKE = ("prod", "staging")
OVERLAY_RENDERS = ("base", "dev", "prod", "staging")
# The services with a database, and so a migrate Job in the production-like renders.
DATABASE_SERVICES = ("auth-service", "orders-service")

# The database connection budget (docs/OPERATIONS.md, "Capacity"): PostgreSQL's max_connections
# as assumed (its default), minus headroom for administrators and superuser sessions. Every pod
# at its HPA maximum plus the rollout surge, each with a full pool, plus the migrate Jobs' pools,
# must stay below it.
POSTGRES_MAX_CONNECTIONS = 100
POSTGRES_HEADROOM = 10
# Besides its pool, every pod holds one connection of its own for the readiness check
# (platform::readiness: a busy pool must not make every replica unready at once).
READINESS_CONNECTIONS = 1

# Argon2id holds 19 MiB per run (m=19456 KiB); the memory limit of auth-service must hold the
# baseline (measured peak RSS 26 MB, docs/BENCHMARKS.md, taken as 32 MiB) + permits x 19 MiB +
# a margin (allocator slack, TLS, caches).
ARGON2_MIB_PER_PERMIT = 19
AUTH_BASELINE_MIB = 32
AUTH_MEMORY_MARGIN_MIB = 64
# Measured peak RSS under load (docs/BENCHMARKS.md, 256 connections; the gateway ~40 MB in the
# review of issue 14): memory requests are at least this (MB = 10^6 bytes). auth-service's adds
# its Argon2 permits, all busy.
MEASURED_PEAK_MB = {"auth-service": 26.0, "orders-service": 41.1, "gateway": 40.0}

# Trusted-proxy settings may never cover a whole private or shared range: any pod in it could
# forge X-Forwarded-For.
BROAD_RANGES = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7",
)]
DIGEST_IMAGE = re.compile(r"^[^@\s]+@sha256:[0-9a-f]{64}$")
# The longest drain a service allows itself once its listeners close (*_SHUTDOWN_GRACE);
# *_SHUTDOWN_DELAY (serving, not ready, after SIGTERM) comes before it.
DRAIN_SECONDS = 20

# Settings and cargo features of benchmark builds only (issue 7's auth-off baseline): token
# verification switched off. Never in a manifest, never in the image (the Dockerfile builds the
# services without features, and a build without the feature refuses the setting at start).
BENCHMARK_ONLY_ENV = {"AUTH_INSECURE_SKIP_VERIFY"}
BENCHMARK_ONLY_FEATURE = "bench-auth-off"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"

problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)


def rust_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        path = ROOT / p
        files.extend(sorted(path.rglob("*.rs")) if path.is_dir() else [path])
    return files


def declared_env(service: str) -> set[str]:
    """Environment variables the service reads: clap `env = "..."` / `env = ENV_...` and the
    `ENV_*` constants they refer to."""
    names = set(TELEMETRY_ENV)
    for file in rust_files(SOURCES[service]):
        text = file.read_text()
        names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
        names.update(re.findall(r'const\s+ENV_[A-Z0-9_]+\s*:\s*&str\s*=\s*"([A-Z][A-Z0-9_]*)"', text))
    return names


def exported_metrics() -> set[str]:
    """Metric names in the sources: literal names in the `metrics` macros, and the names a
    service gives the shared request-metrics layers (`MetricNames::new("..._total", "..._seconds")`)."""
    names: set[str] = set()
    for file in rust_files(["authn/src", "platform/src", "auth-service/src", "orders-service/src", "gateway/src"]):
        text = file.read_text()
        names.update(re.findall(r'(?:counter|gauge|histogram)!\(\s*"([a-z_][a-z0-9_]*)"', text))
        for pair in re.findall(
            r'MetricNames::new\(\s*"([a-z_][a-z0-9_]*)"\s*,\s*"([a-z_][a-z0-9_]*)"', text
        ):
            names.update(pair)
    return names


def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def duration_seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d)", value)
    if not match:
        return float("nan")
    n, unit = int(match[1]), match[2]
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def quantity_bytes(value) -> float:
    """A Kubernetes memory quantity (128Mi, 1G, 1048576) in bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(value))
    if not match:
        return float("nan")
    factor = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
              "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}[match[2]]
    return float(match[1]) * factor


def container_env(container: dict, config_maps: dict[str, dict], where: str) -> tuple[dict[str, str], dict[str, dict]]:
    """The container's environment (ConfigMaps, then env), and the secretKeyRef of each variable
    that comes from a Secret."""
    env: dict[str, str] = {}
    secret_refs: dict[str, dict] = {}
    for source in container.get("envFrom", []):
        cm = config_maps.get(source.get("configMapRef", {}).get("name", ""))
        if cm is None:
            problem(f"{where}: envFrom names a ConfigMap that is not in the render: {source}")
            continue
        env.update(cm.get("data", {}))
    for item in container.get("env", []):
        if "valueFrom" in item:
            env[item["name"]] = "<secret>"
            ref = item["valueFrom"].get("secretKeyRef")
            if ref is not None:
                secret_refs[item["name"]] = ref
        else:
            env[item["name"]] = item.get("value", "")
    return env, secret_refs


def selects(selector: dict, labels: dict) -> bool:
    """Whether a label selector (matchLabels only, as used here) selects these labels."""
    match = (selector or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in match.items())


def check_render(name: str, docs: list[dict], env_names: dict[str, set[str]]) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
        for key, value in (doc["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check_id, _, reason = str(value).partition("=")
                if not re.fullmatch(r"CKV2?_K8S_\d+", check_id) or len(reason.strip()) < 20:
                    problem(f"{name}: {doc['kind']}/{doc['metadata']['name']}: checkov skip "
                            f"{key} needs 'CKV_K8S_NN=<a reason of a sentence>', got {value!r}")
    config_maps = by_kind.get("ConfigMap", {})
    deployments = by_kind.get("Deployment", {})
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
    pdbs = by_kind.get("PodDisruptionBudget", {})
    services = by_kind.get("Service", {})

    envs: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        where = f"{name}: Deployment/{service}"
        deployment = deployments.get(service)
        if deployment is None:
            problem(f"{where}: missing")
            continue
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env, secret_refs = container_env(container, config_maps, where)
        secret_env = {item["name"] for item in container.get("env", []) if "valueFrom" in item}
        envs[service] = env
        for var in sorted(set(env) & BENCHMARK_ONLY_ENV):
            problem(f"{where}: sets {var}, a benchmark-only setting that must never reach a deployment")
        for var in sorted(set(env) - env_names[service]):
            problem(f"{where}: sets {var}, which {service} does not read (a typo, or a setting of another service)")

        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for var, port in ADDR_PORTS[service].items():
            if env.get(var) != f"0.0.0.0:{port}":
                problem(f"{where}: {var} must be 0.0.0.0:{port}, got {env.get(var)!r}")
            if port not in ports.values():
                problem(f"{where}: no containerPort {port} for {var}")
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (container.get(probe) or {}).get("httpGet") or {}
            if get.get("path") != path or ports.get(get.get("port")) != HTTP_PORT[service]:
                problem(f"{where}: {probe} must GET {path} on the HTTP port {HTTP_PORT[service]}, got {get}")
            # The probes answer from memory (readiness from the cached dependency check): a
            # timeout within the period (probes never overlap), readiness withdrawn only after several
            # misses, so that one slow answer or a short database blip does not take every
            # replica out at once (docs/OPERATIONS.md, "Probes").
            spec = container.get(probe) or {}
            period, timeout = spec.get("periodSeconds", 10), spec.get("timeoutSeconds", 1)
            if timeout > period:
                problem(f"{where}: {probe} timeoutSeconds {timeout} must not exceed periodSeconds {period}")
            if probe == "readinessProbe" and (spec.get("failureThreshold", 3) < 3 or timeout > 2):
                problem(f"{where}: readinessProbe needs failureThreshold >= 3 and timeoutSeconds <= 2 "
                        f"(it answers from a cache), got {spec.get('failureThreshold')} and {timeout}")

        # Metrics: a container port named `metrics`, the one the scrape annotation names.
        if ports.get("metrics") != METRICS_PORT[service]:
            problem(f"{where}: needs a container port named metrics = {METRICS_PORT[service]}, got {ports.get('metrics')}")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        if annotations.get("prometheus.io/port") != str(METRICS_PORT[service]):
            problem(f"{where}: prometheus.io/port must be the metrics port {METRICS_PORT[service]}, "
                    f"got {annotations.get('prometheus.io/port')!r}")

        # Memory requests at or above the measured RSS (docs/BENCHMARKS.md).
        resources = container.get("resources", {})
        request = quantity_bytes(resources.get("requests", {}).get("memory", "0"))
        limit = quantity_bytes(resources.get("limits", {}).get("memory", "0"))
        measured = MEASURED_PEAK_MB[service] * 10**6
        if service == "auth-service":
            try:
                permits = int(env.get("AUTH_ARGON2_PERMITS", "0"))
            except ValueError:
                permits = 0
            if permits < 1:
                problem(f"{where}: AUTH_ARGON2_PERMITS must be set explicitly (>= 1), so that the "
                        f"memory limit can be checked against it; got {env.get('AUTH_ARGON2_PERMITS')!r}")
            needed = (AUTH_BASELINE_MIB + permits * ARGON2_MIB_PER_PERMIT + AUTH_MEMORY_MARGIN_MIB) * 2**20
            if not limit >= needed:
                problem(f"{where}: memory limit {resources.get('limits', {}).get('memory')} is below "
                        f"{AUTH_BASELINE_MIB} MiB + {permits} permits x {ARGON2_MIB_PER_PERMIT} MiB + "
                        f"{AUTH_MEMORY_MARGIN_MIB} MiB = {needed / 2**20:.0f} MiB")
            measured += permits * ARGON2_MIB_PER_PERMIT * 2**20
        if not request >= measured:
            problem(f"{where}: memory request {resources.get('requests', {}).get('memory')} is below the "
                    f"measured RSS under load ({measured / 2**20:.1f} MiB, docs/BENCHMARKS.md)")

        sleep = (((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds")
        grace = pod.get("terminationGracePeriodSeconds", 30)
        drain = max([DRAIN_SECONDS] + [duration_seconds(v) for k, v in env.items() if k.endswith("_SHUTDOWN_GRACE")])
        # After SIGTERM a service keeps serving, not ready, for *_SHUTDOWN_DELAY, then drains.
        delay = max([0.0] + [duration_seconds(v) for k, v in env.items() if k.endswith("_SHUTDOWN_DELAY")])
        if not sleep:
            problem(f"{where}: no lifecycle.preStop.sleep")
        elif grace <= sleep + delay + drain:
            problem(f"{where}: terminationGracePeriodSeconds {grace} must exceed preStop {sleep}s "
                    f"+ shutdown delay {delay:g}s + drain {drain:g}s")

        context = container.get("securityContext", {})
        pod_context = pod.get("securityContext", {})
        expected = {
            "runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
        }
        for key, value in expected.items():
            if context.get(key, pod_context.get(key)) != value:
                problem(f"{where}: securityContext.{key} must be {value}")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(f"{where}: capabilities.drop must be [ALL]")
        if pod.get("automountServiceAccountToken") is not False or pod.get("serviceAccountName") != service:
            problem(f"{where}: needs its own ServiceAccount {service} and automountServiceAccountToken: false")
        keys = {c.get("topologyKey") for c in pod.get("topologySpreadConstraints", [])}
        if not {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys:
            problem(f"{where}: topology spread across zones and nodes is missing")
        own_pdbs = [p for p in pdbs.values()
                    if p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == service]
        if not any(p["spec"].get("maxUnavailable") is not None or p["spec"].get("minAvailable") is not None
                   for p in own_pdbs):
            problem(f"{where}: no PodDisruptionBudget")
        for p in own_pdbs:
            # An unready pod serves nothing; counting it would let it block every node drain.
            if p["spec"].get("unhealthyPodEvictionPolicy") != "AlwaysAllow":
                problem(f"{name}: PodDisruptionBudget/{p['metadata']['name']}: needs unhealthyPodEvictionPolicy: AlwaysAllow")

        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mode = env.get("AUTH_MODE")
        if name in PROD_LIKE:
            if "replicas" in deployment["spec"]:
                problem(f"{where}: spec.replicas must be left to the HPA in {name}")
            hpa = hpas.get(service)
            least = 3 if service == "auth-service" else 2
            if hpa is None or hpa["spec"].get("minReplicas", 1) < least:
                problem(f"{where}: {name} needs an HPA with minReplicas >= {least}")
            if service != "auth-service" and mode != "hybrid":
                problem(f"{where}: prod verifiers run AUTH_MODE=hybrid, got {mode!r}")
            if service != "gateway" and "DATABASE_URL" not in secret_env:
                problem(f"{where}: prod DATABASE_URL must come from a Secret")
            if service != "auth-service" and "AUTH_CLIENT_SECRET" not in secret_env:
                problem(f"{where}: prod hybrid mode needs AUTH_CLIENT_SECRET from a Secret")
            if service == "auth-service":
                keys_dir = env.get("AUTH_KEYS_DIR", "")
                volume = volumes.get(mounts.get(keys_dir, ""), {})
                if "secret" not in volume:
                    problem(f"{where}: AUTH_KEYS_DIR {keys_dir!r} must be the signing-key Secret's mount")
                if "REDIS_URL" not in secret_env:
                    problem(f"{where}: prod REDIS_URL must come from a Secret")
            check_prod_like(name, where, service, pod, container, env, secret_refs, mounts, volumes)
        if name == "dev":
            if deployment["spec"].get("replicas") != 1 or service in hpas:
                problem(f"{where}: dev runs exactly one replica, without HPA")
            if service != "auth-service" and mode != "stateless":
                problem(f"{where}: dev verifiers run AUTH_MODE=stateless, got {mode!r}")
            if service != "gateway":
                claim = volumes.get(mounts.get("/data", ""), {}).get("persistentVolumeClaim")
                if container.get("workingDir") != "/data" or not claim:
                    problem(f"{where}: dev keeps its state on a PersistentVolumeClaim at /data, the working directory")
                elif claim["claimName"] not in by_kind.get("PersistentVolumeClaim", {}):
                    problem(f"{where}: PersistentVolumeClaim {claim['claimName']} is not in the render")

    # gRPC targets are headless Services with a port named grpc.
    for headless, port in (("orders-service-grpc", 50052), ("auth-service-grpc", 50051)):
        svc = services.get(headless)
        if svc is None or svc["spec"].get("clusterIP") != "None" or \
                {"name": "grpc", "port": port} not in [{"name": p.get("name"), "port": p.get("port")} for p in svc["spec"]["ports"]]:
            problem(f"{name}: Service/{headless} must be headless with port grpc {port}")
    for svc in services.values():
        for p in svc["spec"]["ports"]:
            if p.get("name") not in ("http", "grpc"):
                problem(f"{name}: Service/{svc['metadata']['name']}: port {p.get('port')} must be named http or grpc")
            # No Service exposes a metrics port: Prometheus scrapes the pods.
            if p.get("targetPort") == "metrics" or p.get("port") in METRICS_PORT.values() \
                    or p.get("targetPort") in METRICS_PORT.values():
                problem(f"{name}: Service/{svc['metadata']['name']}: exposes a metrics port ({p})")
    for ingress in by_kind.get("Ingress", {}).values():
        for rule in ingress["spec"].get("rules", []):
            for path in (rule.get("http") or {}).get("paths", []):
                backend = path["backend"].get("service", {})
                if backend.get("name") != "gateway" or backend.get("port") != {"name": "http"}:
                    problem(f"{name}: Ingress/{ingress['metadata']['name']}: {path.get('path')} must go to "
                            f"the gateway's http port only, got {backend}")
    if "Namespace" in by_kind:
        problem(f"{name}: renders Namespace(s) {sorted(by_kind['Namespace'])}: the namespace is created once, "
                "apart (deploy/k8s/cluster), so that a delete or prune of the overlay keeps its Secrets")
    check_network_policies(name, by_kind)
    if name in PROD_LIKE:
        check_migrate_jobs(name, by_kind, deployments, config_maps, env_names)
        check_connection_budget(name, by_kind, deployments, hpas, envs)
        check_images(name, by_kind)
        cluster_objects["namespaces_used"].add(
            next(iter(deployments.values()))["metadata"].get("namespace", "") if deployments else "")


cluster_objects: dict = {"priority_classes_used": set(), "namespaces_used": set()}


def check_prod_like(name: str, where: str, service: str, pod: dict, container: dict, env: dict[str, str],
                    secret_refs: dict[str, dict], mounts: dict[str, str], volumes: dict[str, dict]) -> None:
    """Issuer availability, the verifiers' fallback, migrations, keys and edge trust of a
    production-like render."""
    # Priority: a class created apart (deploy/k8s/cluster), checked there.
    klass = pod.get("priorityClassName")
    if not klass:
        problem(f"{where}: needs a priorityClassName (token-platform-critical)")
    else:
        cluster_objects["priority_classes_used"].add(klass)
    spreads = {c.get("topologyKey"): c for c in pod.get("topologySpreadConstraints", [])}
    if spreads.get("kubernetes.io/hostname", {}).get("whenUnsatisfiable") != "DoNotSchedule":
        problem(f"{where}: the hostname spread must be DoNotSchedule")
    if service == "auth-service":
        zone = spreads.get("topology.kubernetes.io/zone", {})
        if zone.get("whenUnsatisfiable") != "DoNotSchedule" or zone.get("minDomains", 0) < 3:
            problem(f"{where}: the issuer's zone spread must be DoNotSchedule with minDomains >= 3, got {zone}")
    if service in DATABASE_SERVICES:
        if env.get("DATABASE_MIGRATE") != "false":
            problem(f"{where}: DATABASE_MIGRATE must be false in {name} (the migrate Job migrates, "
                    f"the service has DML-only credentials), got {env.get('DATABASE_MIGRATE')!r}")
    if service != "auth-service":
        # The hybrid fallback reads Redis, so an issuer outage is not a 503 on every request.
        ref = secret_refs.get("REDIS_URL")
        if ref is None or ref.get("optional"):
            problem(f"{where}: {name} verifiers need REDIS_URL from a Secret, not optional (the hybrid "
                    f"fallback without the issuer), got {ref}")
    if service == "auth-service":
        if env.get("AUTH_KEY_STORE") != "database":
            problem(f"{where}: {name} runs AUTH_KEY_STORE=database, got {env.get('AUTH_KEY_STORE')!r}")
        kek = env.get("AUTH_KEY_ENCRYPTION_KEY_FILE", "")
        kek_dir = kek.rsplit("/", 1)[0]
        kek_volume = volumes.get(mounts.get(kek_dir, ""), {}).get("secret")
        keys_volume = volumes.get(mounts.get(env.get("AUTH_KEYS_DIR", ""), ""), {}).get("secret") or {}
        if "AUTH_KEY_ENCRYPTION_KEY" in env:
            problem(f"{where}: the key-encryption key comes from a file (AUTH_KEY_ENCRYPTION_KEY_FILE), "
                    "never the environment")
        if not kek_volume or kek_volume.get("optional") or \
                kek_volume.get("secretName") == keys_volume.get("secretName"):
            problem(f"{where}: AUTH_KEY_ENCRYPTION_KEY_FILE {kek!r} must be in the mount of a Secret of its "
                    f"own (not optional, not the signing key's), got {kek_volume}")
        rotation = duration_seconds(env.get("AUTH_KEY_ROTATION_INTERVAL", ""))
        if not rotation > 0:
            problem(f"{where}: scheduled rotation must be on (AUTH_KEY_ROTATION_INTERVAL > 0), "
                    f"got {env.get('AUTH_KEY_ROTATION_INTERVAL')!r}")
        prepublish = duration_seconds(env.get("AUTH_KEY_PREPUBLISH", ""))
        max_age = duration_seconds(env.get("AUTH_JWKS_MAX_AGE", "5m"))
        if not prepublish >= 2 * max_age:
            problem(f"{where}: AUTH_KEY_PREPUBLISH {env.get('AUTH_KEY_PREPUBLISH')!r} must be set, at least "
                    f"2 x AUTH_JWKS_MAX_AGE {env.get('AUTH_JWKS_MAX_AGE')!r}")
    # Edge trust: who may name the client address.
    var = {"gateway": "GATEWAY_TRUSTED_PROXIES", "auth-service": "AUTH_TRUSTED_PROXIES"}.get(service)
    if var:
        value = env.get(var, "")
        if not value.strip():
            problem(f"{where}: {var} must name the proxies in front (a CIDR set), got nothing")
        for entry in filter(None, (e.strip() for e in value.split(","))):
            try:
                net = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                problem(f"{where}: {var}: {entry!r} is not a CIDR")
                continue
            broad = [str(r) for r in BROAD_RANGES if r.version == net.version and r.subnet_of(net)]
            if broad or net.prefixlen < 8:
                problem(f"{where}: {var}: {entry} covers a whole private range ({', '.join(broad) or 'too wide'}): "
                        "any pod in it could forge X-Forwarded-For; name the proxies' pod CIDR")


def check_network_policies(name: str, by_kind: dict[str, dict[str, dict]]) -> None:
    """The gateway admits only the ingress controller's namespace; the monitoring namespace
    reaches the `metrics` ports only."""
    policies = by_kind.get("NetworkPolicy", {})
    if not policies:
        return
    gateway = policies.get("gateway")
    if gateway is None:
        problem(f"{name}: NetworkPolicy/gateway is missing")
    else:
        for rule in gateway["spec"].get("ingress", []):
            peers = rule.get("from") or []
            if not peers or any(set(peer) != {"namespaceSelector"} or not
                                (peer["namespaceSelector"].get("matchLabels") or peer["namespaceSelector"].get("matchExpressions"))
                                for peer in peers):
                problem(f"{name}: NetworkPolicy/gateway: every ingress rule must admit only the ingress "
                        f"controller's namespace (a non-empty namespaceSelector), got {rule}")
            if [p.get("port") for p in rule.get("ports", [])] != [8080]:
                problem(f"{name}: NetworkPolicy/gateway: ingress only to 8080, got {rule.get('ports')}")
    for policy in policies.values():
        for rule in policy["spec"].get("ingress", []):
            monitoring = any((peer.get("namespaceSelector") or {}).get("matchLabels", {})
                             .get("kubernetes.io/metadata.name") == "monitoring" for peer in rule.get("from") or [])
            if monitoring and [p.get("port") for p in rule.get("ports", [])] != ["metrics"]:
                problem(f"{name}: NetworkPolicy/{policy['metadata']['name']}: the monitoring namespace may "
                        f"reach only the ports named metrics, got {rule.get('ports')}")


def check_migrate_jobs(name: str, by_kind: dict[str, dict[str, dict]], deployments: dict[str, dict],
                       config_maps: dict[str, dict], env_names: dict[str, set[str]]) -> None:
    """One migrate Job per service with a database: the service's image, DDL credentials of its
    own, bounded, locked down like the Deployments, ordered before them."""
    jobs = by_kind.get("Job", {})
    policies = by_kind.get("NetworkPolicy", {}).values()
    for service in DATABASE_SERVICES:
        where = f"{name}: Job/{service}-migrate"
        job = jobs.get(f"{service}-migrate")
        deployment = deployments.get(service)
        if job is None or deployment is None:
            problem(f"{where}: missing")
            continue
        spec, pod = job["spec"], job["spec"]["template"]["spec"]
        for field in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            if not isinstance(spec.get(field), int):
                problem(f"{where}: needs spec.{field}")
        if pod.get("restartPolicy") != "Never":
            problem(f"{where}: restartPolicy must be Never (the Job retries, backoffLimit)")
        annotations = job["metadata"].get("annotations") or {}
        if annotations.get("argocd.argoproj.io/hook") != "PreSync" or \
                "BeforeHookCreation" not in annotations.get("argocd.argoproj.io/hook-delete-policy", ""):
            problem(f"{where}: needs the Argo CD PreSync hook annotations (hook, hook-delete-policy BeforeHookCreation)")
        labels = job["spec"]["template"]["metadata"].get("labels") or {}
        if job["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "migration" or \
                labels.get("app.kubernetes.io/component") != "migration":
            problem(f"{where}: the Job and its pods need app.kubernetes.io/component: migration "
                    "(the first step of a kustomize release selects it)")
        if selects(deployment["spec"]["selector"], labels):
            problem(f"{where}: its pods carry the Deployment's selector labels: the Service, PDB and HPA would count them")
        if not any(selects(p["spec"]["podSelector"], labels) and
                   any(port.get("port") == 5432 for rule in p["spec"].get("egress", []) for port in rule.get("ports", []))
                   for p in policies):
            problem(f"{where}: no NetworkPolicy lets its pods reach PostgreSQL (5432)")
        (container,) = pod["containers"]
        (serving,) = deployment["spec"]["template"]["spec"]["containers"]
        if container.get("image") != serving.get("image"):
            problem(f"{where}: image {container.get('image')} is not the Deployment's {serving.get('image')}")
        if container.get("args") != ["migrate"]:
            problem(f"{where}: args must be [migrate], got {container.get('args')}")
        env, refs = container_env(container, config_maps, where)
        for var in sorted(set(env) - env_names[service]):
            problem(f"{where}: sets {var}, which {service} does not read")
        _, serving_refs = container_env(serving, config_maps, f"{name}: Deployment/{service}")
        ddl, dml = refs.get("DATABASE_URL"), serving_refs.get("DATABASE_URL")
        if ddl is None or dml is None or ddl.get("name") == dml.get("name"):
            problem(f"{where}: DATABASE_URL must come from a Secret of its own (the schema owner), not the "
                    f"Deployment's (DML-only): {ddl} vs {dml}")
        context, pod_context = container.get("securityContext", {}), pod.get("securityContext", {})
        for key, value in {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True,
                           "allowPrivilegeEscalation": False}.items():
            if context.get(key, pod_context.get(key)) != value:
                problem(f"{where}: securityContext.{key} must be {value}")
        if context.get("capabilities", {}).get("drop") != ["ALL"]:
            problem(f"{where}: capabilities.drop must be [ALL]")
        if pod.get("automountServiceAccountToken") is not False:
            problem(f"{where}: needs automountServiceAccountToken: false")
        if not container.get("resources", {}).get("limits", {}).get("memory"):
            problem(f"{where}: needs resource limits")


def check_connection_budget(name: str, by_kind: dict[str, dict[str, dict]], deployments: dict[str, dict],
                            hpas: dict[str, dict], envs: dict[str, dict[str, str]]) -> None:
    """(maxReplicas + surge) x (pool + the readiness check's connection), summed over the services with a database, plus the migrate
    Jobs' pools, stays below PostgreSQL's max_connections minus the headroom."""
    budget = POSTGRES_MAX_CONNECTIONS - POSTGRES_HEADROOM
    total, terms = 0, []
    for service in DATABASE_SERVICES:
        deployment, hpa, env = deployments.get(service), hpas.get(service), envs.get(service, {})
        if deployment is None or hpa is None:
            problem(f"{name}: Deployment/{service}: the connection budget needs its HPA")
            continue
        most = hpa["spec"]["maxReplicas"]
        surge = (deployment["spec"].get("strategy", {}).get("rollingUpdate") or {}).get("maxSurge", "25%")
        surge = math.ceil(most * int(surge[:-1]) / 100) if isinstance(surge, str) else int(surge)
        try:
            pool = int(env.get("DATABASE_MAX_CONNECTIONS", ""))
        except ValueError:
            problem(f"{name}: Deployment/{service}: DATABASE_MAX_CONNECTIONS must be set explicitly")
            continue
        total += (most + surge) * (pool + READINESS_CONNECTIONS)
        terms.append(f"{service} ({most} + {surge}) x ({pool} + {READINESS_CONNECTIONS})")
    for job in by_kind.get("Job", {}).values():
        for container in job["spec"]["template"]["spec"]["containers"]:
            pool = next((e.get("value") for e in container.get("env", []) if e["name"] == "DATABASE_MAX_CONNECTIONS"), None)
            if pool is None:
                problem(f"{name}: Job/{job['metadata']['name']}: DATABASE_MAX_CONNECTIONS must be set (the budget counts it)")
                continue
            total += int(pool) * job["spec"].get("parallelism", 1)
            terms.append(f"Job {job['metadata']['name']} {pool}")
    if not total < budget:
        problem(f"{name}: database connections {' + '.join(terms)} = {total}, not below the budget "
                f"{POSTGRES_MAX_CONNECTIONS} - {POSTGRES_HEADROOM} = {budget} (docs/OPERATIONS.md, \"Capacity\")")


def check_images(name: str, by_kind: dict[str, dict[str, dict]]) -> None:
    """Production-like renders run images by digest, pulled only when not on the node."""
    for kind in ("Deployment", "Job"):
        for obj in by_kind.get(kind, {}).values():
            for container in obj["spec"]["template"]["spec"]["containers"]:
                where = f"{name}: {kind}/{obj['metadata']['name']}"
                if not DIGEST_IMAGE.match(container.get("image", "")):
                    problem(f"{where}: image {container.get('image')!r} must be referenced by digest (@sha256:...)")
                if container.get("imagePullPolicy") != "IfNotPresent":
                    problem(f"{where}: imagePullPolicy must be IfNotPresent (the image is a digest)")


def check_cluster(docs: list[dict]) -> None:
    """deploy/k8s/cluster: the namespaces the overlays deploy to, with Pod Security `restricted`,
    and the PriorityClass the production-like renders name."""
    by_kind: dict[str, dict[str, dict]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    namespaces = by_kind.get("Namespace", {})
    for namespace in sorted(cluster_objects["namespaces_used"] | {"token-platform-dev"}):
        labels = (namespaces.get(namespace, {}).get("metadata") or {}).get("labels") or {}
        if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            problem(f"cluster: Namespace/{namespace} missing, or without pod-security.kubernetes.io/enforce: restricted")
    for klass in sorted(cluster_objects["priority_classes_used"]):
        if klass not in by_kind.get("PriorityClass", {}):
            problem(f"cluster: PriorityClass/{klass}, which the prod-like renders name, is not in deploy/k8s/cluster")
        elif by_kind["PriorityClass"][klass].get("globalDefault"):
            problem(f"cluster: PriorityClass/{klass} must not be the cluster's global default")


def check_dockerfile_bases() -> None:
    """Base images pinned by digest: a rebuild of a release uses the same toolchain and runtime."""
    for line in DOCKERFILE.read_text().splitlines():
        match = re.match(r"\s*FROM\s+(\S+)", line, re.IGNORECASE)
        if match and not re.search(r"@sha256:[0-9a-f]{64}$", match[1]):
            problem(f"{DOCKERFILE.relative_to(ROOT)}: {line.strip()!r}: base images must be pinned by digest")


def metric_names_in(expr: str) -> set[str]:
    # Identifiers followed by a selector, a range or an operator, minus PromQL words and labels.
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    words = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b", expr))
    promql = {
        "sum", "max", "min", "avg", "count", "rate", "increase", "irate", "absent", "by", "without",
        "and", "or", "unless", "offset", "histogram_quantile", "label_values", "on", "ignoring",
        "group_left", "group_right", "bool", "topk", "bottomk", "clamp_min", "clamp_max", "time",
        "namespace", "job", "pod", "outcome", "status", "code", "route", "grant", "error",
        "reason", "kind", "mode", "quantile", "le", "rpc", "method", "state", "scope", "action",
        # Functions over ranges and vectors, and more label names.
        "max_over_time", "min_over_time", "avg_over_time", "sum_over_time", "count_over_time",
        "last_over_time", "quantile_over_time", "stddev_over_time", "present_over_time",
        "absent_over_time", "changes", "resets", "delta", "idelta", "deriv", "predict_linear",
        "label_replace", "label_join", "vector", "scalar", "timestamp", "abs", "ceil", "floor",
        "round", "sgn", "group", "count_values", "stddev", "stdvar", "sort", "sort_desc",
        "deployment", "epoch", "instance", "container", "condition", "path", "kid",
    }
    # kube-state-metrics (replicas available, readiness), which the alerts may combine with the
    # services' own metrics.
    return {w for w in words - promql if not w.startswith("__") and not w.startswith("kube_")}


def check_monitoring(metrics: set[str]) -> None:
    known = metrics | {"up"} | {m + s for m in metrics for s in ("_sum", "_count", "_bucket")}
    rules = yaml.safe_load((ROOT / "deploy/monitoring/alerts.rules.yaml").read_text())
    exprs = [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((ROOT / "deploy/monitoring/grafana-dashboard.json").read_text())

    def panels(items):
        for item in items:
            yield item
            yield from panels(item.get("panels", []))

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            exprs.append((f"dashboard panel {panel['title']!r}", target["expr"].replace("$__rate_interval", "5m")))
    for where, expr in exprs:
        for name in sorted(metric_names_in(expr) - known):
            problem(f"deploy/monitoring: {where} uses {name}, which no service exports")
    titles = " ".join(p.get("title", "") for p in panels(dashboard["panels"])).lower()
    for topic in ("issuer", "jwks", "revocation feed lag", "verif", "5xx"):
        if topic not in titles:
            problem(f"deploy/monitoring: the dashboard has no panel about {topic!r}")


def check_dockerfile() -> None:
    """The image is built without cargo features, so never with the benchmark-only one."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    text = "\n".join(lines)
    if "cargo build" not in text:
        problem(f"{DOCKERFILE.relative_to(ROOT)}: no `cargo build` found: the Dockerfile moved?")
    for word in (BENCHMARK_ONLY_FEATURE, "--features", "--all-features", "-F ", *BENCHMARK_ONLY_ENV):
        if word in text:
            problem(f"{DOCKERFILE.relative_to(ROOT)}: mentions {word.strip()!r}: the image must be "
                    f"built without cargo features (the benchmark-only {BENCHMARK_ONLY_FEATURE!r} "
                    "switches token verification off)")


def main() -> int:
    render_dir = Path(sys.argv[1])
    env_names = {service: declared_env(service) for service in SERVICES}
    for service, names in env_names.items():
        if len(names) < 5:
            problem(f"found only {sorted(names)} as {service}'s environment variables: the Rust sources moved?")
    for name in OVERLAY_RENDERS:
        check_render(name, load(render_dir / f"{name}.yaml"), env_names)
    check_cluster(load(render_dir / "cluster.yaml"))
    check_dockerfile_bases()
    metrics = exported_metrics()
    if len(metrics) < 10:
        problem(f"found only {sorted(metrics)} as exported metrics: the Rust sources moved?")
    check_monitoring(metrics)
    check_monitoring_component(render_dir)
    check_dockerfile()
    for message in problems:
        print(message, file=sys.stderr)
    return 1 if problems else 0


# --- The monitoring component (deploy/k8s/components/monitoring) --------------------------------
# Self-contained: the PrometheusRule and PodMonitor objects of the Prometheus Operator that the
# production-like overlays include and others may leave out.

# The renders that must carry the component (the others may, or may not).
MONITORED_RENDERS = ("prod", "staging")
ALERT_RULES = ROOT / "deploy" / "monitoring" / "alerts.rules.yaml"


def label_selector_matches(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector: matchLabels and matchExpressions (In, NotIn, Exists,
    DoesNotExist)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if not {"In": present and labels[key] in values,
                "NotIn": not present or labels[key] not in values,
                "Exists": present,
                "DoesNotExist": not present}.get(operator, False):
            return False
    return True


def markdown_anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    anchors = set()
    for line in path.read_text().splitlines():
        match = re.match(r"#+\s+(.*)", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match[1].strip().lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def check_alert_rules(groups: list[dict]) -> None:
    """Every alert has a summary, a description and a runbook that points at an existing heading,
    and deploy/monitoring/alerts.test.yaml shows it firing and, somewhere, not firing."""
    tests = yaml.safe_load((ROOT / "deploy/monitoring/alerts.test.yaml").read_text())
    fires, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []):
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        where = f"deploy/monitoring/alerts.rules.yaml: alert {rule['alert']}"
        annotations = rule.get("annotations") or {}
        for key in ("summary", "description", "runbook"):
            if not str(annotations.get(key, "")).strip():
                problem(f"{where}: no {key} annotation")
        runbook = str(annotations.get("runbook", ""))
        doc, _, anchor = runbook.partition("#")
        if runbook and (not (ROOT / doc).is_file() or (anchor and anchor not in markdown_anchors(ROOT / doc))):
            problem(f"{where}: runbook {runbook!r} names no existing file and heading")
        if rule["alert"] not in fires:
            problem(f"{where}: no test in alerts.test.yaml expects it to fire")
        if rule["alert"] not in quiet:
            problem(f"{where}: no test in alerts.test.yaml expects it not to fire (exp_alerts: [])")


def check_monitoring_component(render_dir: Path) -> None:
    """The rendered PrometheusRule's spec.groups are exactly deploy/monitoring/alerts.rules.yaml's
    groups (the file promtool tests: no copy that can drift), and a PodMonitor of the same
    namespace scrapes every service's pods on their container port named `metrics`, path
    /metrics, with job = app.kubernetes.io/name (the `job` the alerts expect)."""
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    check_alert_rules(groups)
    for name in OVERLAY_RENDERS:
        docs = load(render_dir / f"{name}.yaml")
        rules = [d for d in docs if d.get("kind") == "PrometheusRule"]
        monitors = [d for d in docs if d.get("kind") == "PodMonitor"]
        if not rules and not monitors:
            if name in MONITORED_RENDERS:
                problem(f"{name}: no PrometheusRule or PodMonitor: the overlay must include "
                        "deploy/k8s/components/monitoring")
            continue
        if len(rules) != 1:
            problem(f"{name}: expected one PrometheusRule (the monitoring component), found {len(rules)}")
        for rule in rules:
            where = f"{name}: PrometheusRule/{rule['metadata']['name']}"
            if rule.get("apiVersion") != "monitoring.coreos.com/v1":
                problem(f"{where}: apiVersion must be monitoring.coreos.com/v1")
            if (rule.get("spec") or {}).get("groups") != groups:
                problem(f"{where}: spec.groups differs from deploy/monitoring/alerts.rules.yaml: "
                        "run deploy/monitoring/sync-prometheusrule.py and commit its output")
        deployments = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Deployment"}
        for service in SERVICES:
            deployment = deployments.get(service)
            if deployment is None:
                continue  # check_render reports it
            where = f"{name}: Deployment/{service}"
            template = deployment["spec"]["template"]
            labels = template["metadata"].get("labels") or {}
            namespace = deployment["metadata"].get("namespace")
            matching = [m for m in monitors
                        if m["metadata"].get("namespace") == namespace
                        and not m["spec"].get("namespaceSelector")
                        and label_selector_matches(m["spec"].get("selector"), labels)]
            if len(matching) != 1:
                problem(f"{where}: its pods must be selected by exactly one PodMonitor of namespace "
                        f"{namespace}, got {[m['metadata']['name'] for m in matching]}")
                continue
            monitor = matching[0]
            mwhere = f"{name}: PodMonitor/{monitor['metadata']['name']}"
            if monitor.get("apiVersion") != "monitoring.coreos.com/v1":
                problem(f"{mwhere}: apiVersion must be monitoring.coreos.com/v1")
            job_label = monitor["spec"].get("jobLabel")
            if job_label != "app.kubernetes.io/name" or labels.get(job_label) != service:
                problem(f"{mwhere}: jobLabel must be app.kubernetes.io/name (job={service} for {service}'s "
                        f"pods, as the alerts expect), got {job_label!r}")
            ports = {p.get("name"): p.get("containerPort")
                     for c in template["spec"]["containers"] for p in c.get("ports", [])}
            endpoints = monitor["spec"].get("podMetricsEndpoints") or []
            if [(e.get("port"), e.get("path", "/metrics")) for e in endpoints] != [("metrics", "/metrics")]:
                problem(f"{mwhere}: must scrape exactly the port named metrics at /metrics, got {endpoints}")
            if ports.get("metrics") != METRICS_PORT[service]:
                problem(f"{where}: the PodMonitor scrapes the container port named metrics, "
                        f"which must be {METRICS_PORT[service]}, got {ports.get('metrics')}")


if __name__ == "__main__":
    sys.exit(main())
