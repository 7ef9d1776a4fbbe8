#!/usr/bin/env python3
"""Offline validation of avlgate's packaging, run by .ci/run.

1. The Helm chart (helm/avlgate) is linted (strict) and rendered with Helm's own Go SDK
   (PyPI helm-python-sdk), with the default values and with helm/avlgate/ci/*-values.yaml
   (every optional feature on); values are checked against values.schema.json.
2. Every rendered object and every manifest under deploy/kubernetes/ is validated against the
   Kubernetes JSON schemas (PyPI kubernetes-validate, strict: unknown fields are errors) for the
   oldest Kubernetes the chart supports and the newest schemas bundled. ServiceMonitor is a CRD:
   it is validated against deploy/schemas/servicemonitor-v1.schema.json, a hand-written subset of
   the prometheus-operator CRD covering every field the chart can render.
3. Consistency checks a schema cannot make: Service / PDB / ServiceMonitor selectors match the pod
   labels, named ports exist with the right protocol, probes hit /readyz and /healthz on the
   metrics port, terminationGracePeriodSeconds covers preStop + drain deadline, the pod runs as
   non-root with a read-only root file system and no capabilities, every AVLGATE_* variable is a
   setting the gateway knows (src/config.rs, plus the ones agreed for issue 7 and not merged yet),
   every $(VAR) reference is defined before use.
4. The Grafana dashboard parses, declares the DS_PROMETHEUS input, and every metric in its
   queries exists in src/metrics.rs.
5. Self-check: the fixtures in deploy/testdata/ are broken on purpose and each must be rejected
   for the expected reason; if one passes, the validator itself is broken and this fails.

Exit status 0 only if everything passed. Needs no network, no cluster and no helm binary.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "avlgate"
MANIFESTS = ROOT / "deploy" / "kubernetes"
DASHBOARD = ROOT / "deploy" / "grafana" / "avlgate-dashboard.json"
SERVICEMONITOR_SCHEMA = ROOT / "deploy" / "schemas" / "servicemonitor-v1.schema.json"
FIXTURES = ROOT / "deploy" / "testdata"
METRICS_RS = ROOT / "src" / "metrics.rs"
CONFIG_RS = ROOT / "src" / "config.rs"

# The chart's kubeVersion floor (mixed TCP+UDP LoadBalancer Services are GA in 1.26) and the
# newest schemas kubernetes-validate bundles.
KUBE_VERSIONS = ["1.26", kubernetes_validate.utils.latest_version()]

# Settings agreed for issue 7 (and the Kafka / command issues) that may not be in src/config.rs
# on this branch yet. A name that reaches config.rs is reported so it can be dropped from here.
PENDING_ENV: set[str] = set()
# Metrics being added in the same issues (connection limits, commands).
PENDING_METRICS: set[str] = set()
DEFAULT_DRAIN_TIMEOUT_SECS = 25


class Report:
    """Collects failures; each carries a short code so the self-check can demand specific ones."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.notes: list[str] = []

    def fail(self, code: str, message: str) -> None:
        self.failures.append((code, message))

    def codes(self) -> set[str]:
        return {c for c, _ in self.failures}


# --- inputs from the Rust sources ------------------------------------------------------------


PROTOCOL_SETTING = re.compile(r"AVLGATE_PROTOCOLS__[A-Z0-9_]+?__[A-Z0-9_]+")


def known_env() -> set[str]:
    text = CONFIG_RS.read_text()
    names = set(re.findall(r'env\s*=\s*"(AVLGATE_[A-Z0-9_]+)"', text))
    if not names:
        raise SystemExit(f"no AVLGATE_* settings found in {CONFIG_RS}: parser out of date?")
    return names


def known_metrics() -> set[str]:
    text = METRICS_RS.read_text()
    names = set(re.findall(r'pub\s+const\s+[A-Z0-9_]+\s*:\s*&str\s*=\s*"([a-z0-9_]+)"', text))
    if not names:
        raise SystemExit(f"no metric constants found in {METRICS_RS}: parser out of date?")
    return names


# --- Kubernetes objects ----------------------------------------------------------------------


def load_documents(text: str, origin: str, report: Report) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        report.fail("yaml", f"{origin}: not YAML: {e}")
        return []
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "apiVersion" not in d:
            report.fail("yaml", f"{origin}: a document without apiVersion/kind")
    return [d for d in docs if isinstance(d, dict) and "kind" in d and "apiVersion" in d]


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name', '?')}"


def validate_schemas(objs: list[dict[str, Any]], origin: str, report: Report) -> None:
    sm_schema = json.loads(SERVICEMONITOR_SCHEMA.read_text())
    for obj in objs:
        if obj["kind"] == "ServiceMonitor":
            errors = sorted(
                jsonschema.Draft202012Validator(sm_schema).iter_errors(obj), key=lambda e: e.path
            )
            for e in errors:
                path = "/".join(str(p) for p in e.absolute_path)
                report.fail("schema", f"{origin}: {name_of(obj)}: {path}: {e.message}")
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.absolute_path)
                report.fail("schema", f"{origin}: {name_of(obj)} (k8s {version}): {path}: {e.message}")
                break
            except kubernetes_validate.SchemaNotFoundError as e:
                report.fail("schema", f"{origin}: {name_of(obj)}: {e.message}")
                break


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _env_settings(
    container: dict[str, Any], objs: list[dict[str, Any]], origin: str, report: Report
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (envFrom ConfigMaps, then env)."""
    configmaps = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref is None:
            continue
        cm = configmaps.get(ref.get("name"))
        if cm is None:
            report.fail("ref", f"{origin}: envFrom ConfigMap {ref.get('name')!r} is not defined here")
            continue
        env.update({k: str(v) for k, v in (cm.get("data") or {}).items()})
    defined = set(env)
    for var in container.get("env", []):
        name = var["name"]
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(var.get("value", ""))):
            if ref not in defined:
                report.fail("env-order", f"{origin}: {name} references $({ref}) before it is defined")
        defined.add(name)
        env[name] = str(var.get("value", "<from " + ",".join(var.get("valueFrom", {})) + ">"))
    return env


def check_consistency(
    objs: list[dict[str, Any]], origin: str, report: Report, env_names: set[str]
) -> None:
    deployments = [o for o in objs if o["kind"] == "Deployment"]
    if len(deployments) != 1:
        report.fail("deployment", f"{origin}: expected one Deployment, found {len(deployments)}")
        return
    dep = deployments[0]
    dep_name = dep["metadata"]["name"]
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    if not _matches(dep["spec"]["selector"].get("matchLabels", {}), pod_labels):
        report.fail("selector", f"{origin}: the Deployment's selector does not match its pod labels")

    containers = {c["name"]: c for c in spec["containers"]}
    c = containers.get("avlgate")
    if c is None:
        report.fail("deployment", f"{origin}: no container named avlgate")
        return
    ports = {p.get("name"): p for p in c.get("ports", [])}
    want_ports = {"devices-tcp": "TCP", "devices-udp": "UDP", "metrics": "TCP"}
    for pname, proto in want_ports.items():
        p = ports.get(pname)
        if p is None or p.get("protocol", "TCP") != proto:
            report.fail("ports", f"{origin}: container port {pname}/{proto} missing")
    if "devices-tcp" in ports and "devices-udp" in ports:
        if ports["devices-tcp"]["containerPort"] != ports["devices-udp"]["containerPort"]:
            report.fail("ports", f"{origin}: TCP and UDP device ports differ")

    # Probes: readiness and liveness on the metrics port.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet")
        if not get or get.get("path") != path or get.get("port") not in ("metrics", ports.get("metrics", {}).get("containerPort")):
            report.fail("probe", f"{origin}: {probe} must GET {path} on the metrics port")

    # Security.
    psc, csc = spec.get("securityContext", {}), c.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")) or not isinstance(uid, int) or uid == 0:
        report.fail("security", f"{origin}: the pod must run as a numeric non-root user")
    if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation", True):
        report.fail("security", f"{origin}: read-only root file system, no privilege escalation")
    if "ALL" not in csc.get("capabilities", {}).get("drop", []):
        report.fail("security", f"{origin}: capabilities must drop ALL")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(res.get(kind, {})):
            report.fail("resources", f"{origin}: resources.{kind} must set cpu and memory")

    # Environment.
    env = _env_settings(c, objs, origin, report)
    for name in env:
        # Protocol settings are one variable each, AVLGATE_PROTOCOLS__<PROTOCOL>__<KEY>; the
        # gateway checks protocol and key against its registry at start (unknown ones stop it).
        if PROTOCOL_SETTING.fullmatch(name):
            continue
        if name.startswith("AVLGATE_") and name not in env_names:
            report.fail("env-unknown", f"{origin}: {name} is not a setting of the gateway")
    pod_name = next((v for v in c.get("env", []) if v["name"] == "POD_NAME"), None)
    if not pod_name or pod_name.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        report.fail("env", f"{origin}: POD_NAME must come from the downward API (metadata.name)")

    # Graceful termination: preStop sleep + drain deadline must fit in the grace period.
    drain = int(env.get("AVLGATE_DRAIN_TIMEOUT_SECS", DEFAULT_DRAIN_TIMEOUT_SECS))
    pre_stop = 0
    cmd = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if len(cmd) == 2 and cmd[0] == "sleep":
        pre_stop = int(cmd[1])
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= pre_stop + drain:
        report.fail("grace", f"{origin}: terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + drain {drain}")

    # Volumes.
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        if m["name"] not in volumes:
            report.fail("ref", f"{origin}: volumeMount {m['name']} has no volume")
        if m.get("subPath"):
            report.fail("ref", f"{origin}: volumeMount {m['name']} uses subPath: updates would not reach the pod")

    # Services, PDB, HPA, ServiceMonitor refer to this Deployment's pods and ports.
    services = [o for o in objs if o["kind"] == "Service"]
    exposed: set[str] = set()
    for svc in services:
        if not _matches(svc["spec"].get("selector", {}), pod_labels):
            report.fail("selector", f"{origin}: {name_of(svc)} selects no avlgate pod")
        for sp in svc["spec"].get("ports", []):
            target = sp.get("targetPort", sp["port"])
            cp = ports.get(target) if isinstance(target, str) else next(
                (p for p in ports.values() if p["containerPort"] == target and p.get("protocol", "TCP") == sp.get("protocol", "TCP")), None)
            if cp is None or cp.get("protocol", "TCP") != sp.get("protocol", "TCP"):
                report.fail("ports", f"{origin}: {name_of(svc)} port {sp.get('name')} targets no container port of its protocol")
            elif isinstance(target, str):
                exposed.add(target)
    if "devices-tcp" not in exposed:
        report.fail("ports", f"{origin}: no Service exposes the device port over TCP")
    for pdb in (o for o in objs if o["kind"] == "PodDisruptionBudget"):
        if not _matches(pdb["spec"]["selector"].get("matchLabels", {}), pod_labels):
            report.fail("selector", f"{origin}: {name_of(pdb)} selects no avlgate pod")
    for hpa in (o for o in objs if o["kind"] == "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if ref.get("kind") != "Deployment" or ref.get("name") != dep_name:
            report.fail("ref", f"{origin}: {name_of(hpa)} does not scale the Deployment {dep_name}")
    for sm in (o for o in objs if o["kind"] == "ServiceMonitor"):
        sel = sm["spec"].get("selector", {}).get("matchLabels", {})
        targets = [s for s in services if _matches(sel, s["metadata"].get("labels", {}))]
        if not targets:
            report.fail("selector", f"{origin}: {name_of(sm)} selects no Service")
        for ep in sm["spec"].get("endpoints", []):
            if not any(ep.get("port") in {p.get("name") for p in s["spec"]["ports"]} for s in targets):
                report.fail("ports", f"{origin}: {name_of(sm)} endpoint port {ep.get('port')!r} is not a port of the selected Service")


def check_objects(objs: list[dict[str, Any]], origin: str, report: Report, env_names: set[str]) -> None:
    validate_schemas(objs, origin, report)
    check_consistency(objs, origin, report, env_names)


# --- Helm ------------------------------------------------------------------------------------


def render_chart(values: dict[str, Any] | None, origin: str, report: Report) -> list[dict[str, Any]]:
    lint = helm.lint(CHART, values, strict=True, namespace="avlgate", kube_version="v1.26.0")
    for m in lint.get("messages", []):
        if m.get("severity", 0) >= 2:
            report.fail("lint", f"{origin}: helm lint: {m.get('path')}: {m.get('error')}")
    for e in lint.get("errors") or []:
        report.fail("lint", f"{origin}: helm lint: {e}")
    objs: list[dict[str, Any]] = []
    with helm.Chart.load(CHART) as chart:
        try:
            chart.validate_schema(values)
        except helm.HelmError as e:
            report.fail("values", f"{origin}: values.schema.json: {e}")
            return []
        try:
            rendered = chart.render(values=values, name="avlgate", namespace="avlgate", is_install=True)
        except helm.HelmError as e:
            report.fail("render", f"{origin}: render: {e}")
            return []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt") or not text.strip():
            continue
        objs.extend(load_documents(text, f"{origin}:{path}", report))
    return objs


def values_file(path: Path) -> dict[str, Any]:
    return helm.values_from_yaml(path.read_text())


# --- Grafana ---------------------------------------------------------------------------------


def check_dashboard(path: Path, metrics: set[str], report: Report) -> set[str]:
    origin = path.name
    try:
        dash = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        report.fail("dashboard", f"{origin}: not JSON: {e}")
        return set()
    if not any(i.get("name") == "DS_PROMETHEUS" and i.get("pluginId") == "prometheus" for i in dash.get("__inputs", [])):
        report.fail("dashboard", f"{origin}: no DS_PROMETHEUS datasource input")
    panels = list(dash.get("panels", []))
    for p in list(panels):
        panels.extend(p.get("panels", []))
    ids = [p.get("id") for p in panels]
    if len(ids) != len(set(ids)):
        report.fail("dashboard", f"{origin}: duplicate panel ids")
    used: set[str] = set()
    exprs = 0
    for p in panels:
        for t in p.get("targets", []):
            expr = t.get("expr", "")
            exprs += 1
            if t.get("datasource", p.get("datasource", {})).get("uid") != "${DS_PROMETHEUS}":
                report.fail("dashboard", f"{origin}: panel {p.get('title')!r} does not use ${{DS_PROMETHEUS}}")
            names = re.findall(r"\b(avlgate_[a-z0-9_]+)", expr)
            if not names:
                report.fail("dashboard", f"{origin}: panel {p.get('title')!r}: query uses no avlgate metric: {expr}")
            for n in names:
                base = re.sub(r"_(bucket|sum|count)$", "", n)
                if n in metrics or n in PENDING_METRICS:
                    used.add(n)
                elif base in metrics:
                    used.add(base)
                else:
                    report.fail("metric-unknown", f"{origin}: panel {p.get('title')!r}: {n} is not in src/metrics.rs")
    if exprs == 0:
        report.fail("dashboard", f"{origin}: no queries")
    return used


# --- self-check ------------------------------------------------------------------------------


def expect_rejected(what: str, codes: set[str], run: Callable[[Report], None]) -> str | None:
    """Runs a check on a deliberately broken fixture; it must fail with every code in `codes`."""
    r = Report()
    run(r)
    missing = codes - r.codes()
    if missing:
        return f"self-check: {what} was not rejected for {sorted(missing)} (got {sorted(r.codes())})"
    return None


def self_check(env_names: set[str], metrics: set[str]) -> list[str]:
    problems: list[str | None] = []

    def each_doc_rejected(r: Report) -> None:
        path = FIXTURES / "schema-invalid.yaml"
        docs = load_documents(path.read_text(), path.name, r)
        rejected = 0
        for i, d in enumerate(docs):
            one = Report()
            validate_schemas([d], f"{path.name}#{i}", one)
            rejected += bool(one.failures)
        if docs and rejected == len(docs):
            r.fail("schema", f"all {len(docs)} documents rejected")

    problems.append(expect_rejected("testdata/schema-invalid.yaml (every document)", {"schema"}, each_doc_rejected))
    problems.append(expect_rejected(
        "testdata/inconsistent.yaml",
        {"selector", "ports", "probe", "grace", "env-unknown", "env-order", "security", "ref"},
        lambda r: check_consistency(load_documents((FIXTURES / "inconsistent.yaml").read_text(), "inconsistent.yaml", r), "inconsistent.yaml", r, env_names),
    ))
    problems.append(expect_rejected(
        "testdata/values-comma-in-kafka-option.yaml", {"render"},
        lambda r: render_chart(values_file(FIXTURES / "values-comma-in-kafka-option.yaml"), "values-comma", r),
    ))
    problems.append(expect_rejected(
        "testdata/values-embedded-anonymous.yaml", {"render"},
        lambda r: render_chart(values_file(FIXTURES / "values-embedded-anonymous.yaml"), "values-embedded-anonymous", r),
    ))
    problems.append(expect_rejected(
        "testdata/values-wrong-types.yaml", {"values"},
        lambda r: render_chart(values_file(FIXTURES / "values-wrong-types.yaml"), "values-wrong-types", r),
    ))
    problems.append(expect_rejected(
        "testdata/dashboard-unknown-metric.json", {"metric-unknown", "dashboard"},
        lambda r: check_dashboard(FIXTURES / "dashboard-unknown-metric.json", metrics, r),
    ))
    return [p for p in problems if p]


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    report = Report()
    config_env = known_env()
    env_names = config_env | PENDING_ENV
    metrics = known_metrics()
    for name in sorted(PENDING_ENV & config_env):
        report.notes.append(f"{name} is now in src/config.rs: drop it from PENDING_ENV")
    for name in sorted(PENDING_METRICS & metrics):
        report.notes.append(f"{name} is now in src/metrics.rs: drop it from PENDING_METRICS")

    checked = 0
    # Plain manifests: deploy/kubernetes/*.yaml as applied together, optional/ on top.
    base = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        base.extend(load_documents(path.read_text(), str(path.relative_to(ROOT)), report))
    optional = []
    for path in sorted((MANIFESTS / "optional").glob("*.yaml")):
        optional.extend(load_documents(path.read_text(), str(path.relative_to(ROOT)), report))
    check_objects(base + optional, "deploy/kubernetes", report, env_names)
    checked += len(base) + len(optional)

    # The chart, default values and every ci/*-values.yaml.
    value_sets: list[tuple[str, dict[str, Any] | None]] = [("chart defaults", None)]
    value_sets += [(str(p.relative_to(ROOT)), values_file(p)) for p in sorted((CHART / "ci").glob("*-values.yaml"))]
    kinds_seen: set[str] = set()
    for origin, values in value_sets:
        objs = render_chart(values, origin, report)
        if objs:
            check_objects(objs, origin, report, env_names)
        kinds_seen |= {o["kind"] for o in objs}
        checked += len(objs)
    for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "ServiceMonitor", "ConfigMap", "Secret"):
        if kind not in kinds_seen:
            report.fail("coverage", f"no value set renders a {kind}: the all-features values no longer turn everything on")

    used = check_dashboard(DASHBOARD, metrics, report)
    for name in sorted(metrics - used):
        report.notes.append(f"dashboard: {name} (src/metrics.rs) has no panel")

    print("self-check: feeding deploy/testdata/ (a Helm `fail` log line from it is expected)", flush=True)
    problems = self_check(env_names, metrics)

    for n in report.notes:
        print(f"note: {n}")
    for code, msg in report.failures:
        print(f"FAIL [{code}] {msg}")
    for p in problems:
        print(f"FAIL {p}")
    if report.failures or problems:
        print(f"packaging validation FAILED ({len(report.failures) + len(problems)} problems)")
        return 1
    print(
        f"packaging OK: {checked} objects (plain manifests, chart with {len(value_sets)} value sets) "
        f"valid for Kubernetes {' and '.join(KUBE_VERSIONS)} and consistent; dashboard queries use known metrics; "
        f"self-check rejected every broken fixture"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
