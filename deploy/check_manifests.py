#!/usr/bin/env python3
"""Project-specific checks of the rendered Kubernetes manifests and of deploy/monitoring/.

Run by deploy/validate.sh after the schema validation and the policy scan, which cannot know
this project: every environment variable a ConfigMap or a Deployment sets must be one the
consuming service declares in its Rust sources; listeners bind 0.0.0.0 on the container's
ports; probes hit /healthz, /readyz on the service's own HTTP port; the shutdown budget covers
the drain; dev and prod keep their promises; every checkov skip carries a reason; alert rules
and the dashboard name only metrics the services export.

Usage: check_manifests.py RENDER_DIR   (RENDER_DIR holds base.yaml, dev.yaml, prod.yaml)
Prints nothing and exits 0 when everything holds; prints each problem and exits 1 otherwise.
"""

from __future__ import annotations

import json
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
    "auth-service": {"AUTH_HTTP_ADDR": 8081, "AUTH_GRPC_ADDR": 50051},
    "orders-service": {"ORDERS_GRPC_ADDR": 50052, "ORDERS_HTTP_ADDR": 9092},
    "gateway": {"GATEWAY_ADDR": 8080},
}
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
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", value)
    if not match:
        return float("nan")
    n, unit = int(match[1]), match[2]
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


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

    for service in SERVICES:
        where = f"{name}: Deployment/{service}"
        deployment = deployments.get(service)
        if deployment is None:
            problem(f"{where}: missing")
            continue
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            cm = config_maps.get(source.get("configMapRef", {}).get("name", ""))
            if cm is None:
                problem(f"{where}: envFrom names a ConfigMap that is not in the render: {source}")
                continue
            env.update(cm.get("data", {}))
        secret_env = set()
        for item in container.get("env", []):
            if "valueFrom" in item:
                secret_env.add(item["name"])
                env[item["name"]] = "<secret>"
            else:
                env[item["name"]] = item.get("value", "")
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
        if not any(p["spec"].get("maxUnavailable") is not None or p["spec"].get("minAvailable") is not None
                   for p in pdbs.values()
                   if p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name") == service):
            problem(f"{where}: no PodDisruptionBudget")

        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mode = env.get("AUTH_MODE")
        if name == "prod":
            if "replicas" in deployment["spec"]:
                problem(f"{where}: spec.replicas must be left to the HPA in prod")
            hpa = hpas.get(service)
            if hpa is None or hpa["spec"].get("minReplicas", 1) < 2:
                problem(f"{where}: prod needs an HPA with minReplicas >= 2")
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
    }
    return {w for w in words - promql if not w.startswith("__")}


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
    for name in ("base", "dev", "prod"):
        check_render(name, load(render_dir / f"{name}.yaml"), env_names)
    metrics = exported_metrics()
    if len(metrics) < 10:
        problem(f"found only {sorted(metrics)} as exported metrics: the Rust sources moved?")
    check_monitoring(metrics)
    check_dockerfile()
    for message in problems:
        print(message, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
