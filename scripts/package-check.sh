#!/usr/bin/env bash
# Checks what operators install, for real: builds the Debian package with
# `cargo deb`, installs it with dpkg, runs the installed binary, verifies
# every systemd unit with systemd-analyze, removes and purges the package;
# then validates the Kubernetes manifests against the Kubernetes API schema
# (kubernetes-validate, from PyPI). Prints "packaging: N passed, N failed".
#
# CARGO_PROFILE (default "dev", which reuses the test build; "release" for
# the package you ship) picks the binary that goes into the package.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

passed=0 failed=0
check() { # NAME COMMAND...
  local name=$1; shift
  if out=$("$@" 2>&1); then
    passed=$((passed + 1)); log "ok: $name"
  else
    failed=$((failed + 1)); log "FAILED: $name"; printf '%s\n' "$out" >&2
  fi
}

need_packages dpkg-dev systemd adduser
command -v cargo-deb >/dev/null || { log "installing cargo-deb"; cargo install --locked --quiet cargo-deb >&2; }
command -v kubernetes-validate >/dev/null || { log "installing kubernetes-validate"; python3 -m pip install --quiet kubernetes-validate >&2; }

profile="${CARGO_PROFILE:-dev}"
out_dir="$(mktemp -d)"
trap 'rm -rf "$out_dir"' EXIT

check "cargo deb builds the package ($profile profile)" \
  cargo deb --profile "$profile" --output "$out_dir/gpuwatch.deb"
deb="$out_dir/gpuwatch.deb"

if [ -f "$deb" ]; then
  # A package left from an earlier run would hide a broken install.
  dpkg -P gpuwatch >/dev/null 2>&1 || true
  check "dpkg -i installs it" dpkg -i "$deb"
  check "the installed binary runs" /usr/bin/gpuwatch --version
  check "the config is in place, readable by the gpuwatch group only" \
    sh -c 'test "$(stat -c %a:%U:%G /etc/gpuwatch/gpuwatch.toml)" = 640:root:gpuwatch'
  check "a gpuwatch system user exists" sh -c 'getent passwd gpuwatch | grep -q "^gpuwatch:"'
  check "the dashboards are under /usr/share/gpuwatch" test -f /usr/share/gpuwatch/dashboards/gpu-detail.json
  check "the installed config is one the binary accepts" \
    env -i PATH=/usr/bin:/bin GPUWATCH_CONFIG=/etc/gpuwatch/gpuwatch.toml /usr/bin/gpuwatch collector --once --print
  for unit in gpuwatch-agent.service gpuwatch.service gpuwatch@serve.service \
              gpuwatch@aggregator.service gpuwatch@alerter.service gpuwatch@billing.service; do
    check "systemd-analyze verify $unit" sh -c "
      o=\$(systemd-analyze verify '$unit' 2>&1); s=\$?
      # Without systemd as PID 1 the verifier may mention the missing bus; every other line is a finding.
      f=\$(printf '%s\n' \"\$o\" | grep -v -e 'Failed to connect to bus' -e 'System has not been booted with systemd' -e '^\$' || true)
      printf '%s\n' \"\$f\"; [ \$s -eq 0 ] && [ -z \"\$f\" ]"
  done
  check "dpkg -r removes it" dpkg -r gpuwatch
  check "the binary is gone after removal" sh -c '! test -e /usr/bin/gpuwatch'
  check "dpkg -P purges its config and state" sh -c 'dpkg -P gpuwatch && ! test -e /etc/gpuwatch/gpuwatch.toml && ! test -e /var/lib/gpuwatch'
fi

check "Kubernetes manifests validate against the API schema" \
  kubernetes-validate --strict --quiet deploy/kubernetes/*.yaml
# The ServiceMonitor is a custom resource: no schema ships with Kubernetes,
# so its required fields are checked here.
check "ServiceMonitors name a selector and endpoints with a port" python3 - <<'PY'
import glob, yaml, sys
n = 0
for f in sorted(glob.glob("deploy/kubernetes/*.yaml")):
    for d in yaml.safe_load_all(open(f)):
        if d and d.get("kind") == "ServiceMonitor":
            n += 1
            s = d["spec"]
            assert d["apiVersion"] == "monitoring.coreos.com/v1", f
            assert s["selector"]["matchLabels"], f
            assert all(e["port"] and e["path"] == "/metrics" for e in s["endpoints"]), f
assert n == 2, n
PY

echo "packaging: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
