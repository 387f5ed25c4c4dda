#!/usr/bin/env python3
"""Writes the monitoring component's PrometheusRule from deploy/monitoring/alerts.rules.yaml.

alerts.rules.yaml is the single source of the alert rules: promtool checks and unit-tests it
(deploy/validate.sh), Prometheus without the operator loads it as it is, and the PrometheusRule
of deploy/k8s/components/monitoring carries the same `groups` under `spec`, comments included.
Run this after editing the rules; deploy/validate.sh (deploy/check_manifests.py) fails when the
rendered PrometheusRule differs from alerts.rules.yaml.

Usage: sync-prometheusrule.py [--check]   (--check: exit 1, writing nothing, if out of date)
Needs only the standard library.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
RULES = ROOT / "deploy/monitoring/alerts.rules.yaml"
TARGET = ROOT / "deploy/k8s/components/monitoring/prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/monitoring/alerts.rules.yaml by deploy/monitoring/sync-prometheusrule.py:
# edit the rules there, run the script, commit both. deploy/validate.sh fails when this
# PrometheusRule's spec.groups differs from alerts.rules.yaml's groups.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: token-platform
  labels:
    app.kubernetes.io/part-of: token-platform
spec:
"""


def render() -> str:
    lines = RULES.read_text().splitlines()
    try:
        start = lines.index("groups:")
    except ValueError:
        sys.exit(f"{RULES}: no top-level `groups:` line")
    body = [("  " + line) if line.strip() else "" for line in lines[start:]]
    return HEADER + "\n".join(body) + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv[1:]:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run deploy/monitoring/sync-prometheusrule.py",
                  file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
