"""The Helm chart, proven without a cluster: helm lint, the Kubernetes and
Prometheus Operator schemas, checkov, assertions on the rendered objects, and
the real image started the way the kubelet would start the rendered Pod.

Run by tests/run.sh, which installs helm, kubernetes-validate, checkov, the
operator models (npm) and builds the image; RR_HELM, RR_NPM_TOOLS, RR_IMAGE
and RR_BINARY tell these tests where they are.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(ROOT, "chart")
HERE = os.path.dirname(os.path.abspath(__file__))
CI_FILES = sorted(f for f in os.listdir(os.path.join(CHART, "ci")) if f.endswith(".yaml"))
K8S_VERSIONS = ["1.25.0", "1.29.0", "1.33.0", "1.37.0"]
OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def helm():
    return os.environ.get("RR_HELM") or shutil.which("helm") or pytest.fail("no helm (run tests/run.sh)")


def render(*values_files, sets=(), check=True):
    cmd = [helm(), "template", "rr", CHART, "--namespace", "hwrng"]
    for f in values_files:
        cmd += ["-f", os.path.join(CHART, "ci", f) if not os.path.isabs(f) else f]
    for s in sets:
        cmd += ["--set", s]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if not check:
        return p
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def one(docs, kind, name_suffix=""):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return found[0]


def pod_spec(docs):
    for d in docs:
        if d["kind"] == "DaemonSet":
            return d["spec"]["template"]["spec"], d["spec"]["template"]["metadata"]["labels"]
        if d["kind"] == "Pod" and "helm.sh/hook" not in d["metadata"].get("annotations", {}):
            return d["spec"], d["metadata"]["labels"]
    pytest.fail("no workload rendered")


def container(docs):
    return pod_spec(docs)[0]["containers"][0]


# --- lint and schemas ---------------------------------------------------------

@pytest.mark.parametrize("values", [None] + CI_FILES)
def test_helm_lint_strict(values):
    cmd = [helm(), "lint", "--strict", CHART]
    if values:
        cmd += ["-f", os.path.join(CHART, "ci", values)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.parametrize("values", CI_FILES)
def test_renderings_are_valid_kubernetes_objects(values, tmp_path):
    docs = [d for d in render(values) if d["kind"] not in OPERATOR_KINDS]
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    for version in K8S_VERSIONS:
        p = subprocess.run(["kubernetes-validate", "--strict", "--quiet", "-k", version, str(path)],
                           capture_output=True, text=True)
        assert p.returncode == 0, f"{values} on {version}: {p.stdout}{p.stderr}"


def operator_validate(objs):
    tools = os.environ.get("RR_NPM_TOOLS") or pytest.fail("no RR_NPM_TOOLS (run tests/run.sh)")
    return subprocess.run(["node", os.path.join(ROOT, "tests/chart/validate-monitoring.mjs")],
                          input=json.dumps(objs), capture_output=True, text=True,
                          env={**os.environ, "RR_NPM_TOOLS": os.path.abspath(tools)})


def test_monitoring_objects_are_valid_for_the_prometheus_operator():
    objs = [d for d in render("monitors-values.yaml") if d["kind"] in OPERATOR_KINDS]
    assert {o["kind"] for o in objs} == OPERATOR_KINDS
    p = operator_validate(objs)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count(": valid") == 3
    # The validator is not a rubber stamp.
    bad = json.loads(json.dumps(objs[0]))
    bad["spec"]["endpoints" if bad["kind"] == "ServiceMonitor" else "podMetricsEndpoints"] = "everywhere"
    bad["spec"]["groups"] = 7
    assert operator_validate([bad]).returncode == 1


@pytest.mark.parametrize("values", CI_FILES)
def test_checkov_is_clean_or_every_skip_is_justified(values, tmp_path):
    docs = render(values)
    path = tmp_path / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    skips = yaml.safe_load(open(os.path.join(HERE, "checkov-skips.yaml")))
    for check, reason in skips.items():
        assert re.match(r"^CKV2?_K8S_\d+$", check) and len(reason) > 20, (check, reason)
    # --skip-download: checkov runs offline (it would fetch guideline links).
    p = subprocess.run(["checkov", "--skip-download", "--quiet", "--compact", "--framework", "kubernetes",
                        "--skip-check", ",".join(skips), "-f", str(path)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    # No lint bookkeeping on the user's objects.
    assert not [k for d in docs for k in (d["metadata"].get("annotations") or {}) if k.startswith("checkov.io")]


@pytest.mark.parametrize("bad, where", [
    ("refresher.batchSize=2501", "/refresher/batchSize"),
    ("refresher.batchSize=40002500", "/refresher/batchSize"),
    ("refresher.sinks={pool}", "/refresher/sinks/0"),
    ("refresher.interval=soon", "/refresher/interval"),
    ("image.digest=sha256:xyz", "/image/digest"),
    ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
    ("updateStrategy.rollingUpdate.maxUnavailable=ten", "/updateStrategy/rollingUpdate/maxUnavailable"),
    ("push.gateway=https://pgw:9091", "/push/gateway"),
    ("metrics.port=70000", "/metrics/port"),
    ("refreshr.interval=30s", "refreshr"),
])
def test_the_schema_rejects_bad_values_with_the_path(bad, where):
    p = render(sets=[bad], check=False)
    assert p.returncode != 0
    assert where in p.stderr, p.stderr


def test_a_service_monitor_without_a_service_is_refused():
    p = render(sets=["serviceMonitor.enabled=true", "service.enabled=false"], check=False)
    assert p.returncode != 0 and "needs service.enabled" in p.stderr


# --- the rendered objects -----------------------------------------------------

def test_default_daemonset():
    docs = render("default-values.yaml")
    ds = one(docs, "DaemonSet")
    spec, labels = pod_spec(docs)
    c = container(docs)
    assert ds["apiVersion"] == "apps/v1"
    assert spec["nodeSelector"] == {"feature": "hw-rng"}
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}
    assert not spec["hostNetwork"] and not spec["hostPID"] and not spec["hostIPC"]
    assert spec["automountServiceAccountToken"] is False
    vols = {v["name"]: v for v in spec["volumes"]}
    # Only the device and the one sysfs folder, never the host's /dev or /sys.
    assert vols["host-hwrng"]["hostPath"] == {"path": "/dev/hwrng", "type": "CharDevice"}
    assert vols["host-hw-random"]["hostPath"] == {"path": "/sys/class/misc/hw_random", "type": "Directory"}
    assert not [v for v in spec["volumes"] if v.get("hostPath", {}).get("path") in ("/dev", "/sys")]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/host/dev/hwrng"]["readOnly"] and mounts["/host/sys/class/misc/hw_random"]["readOnly"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9742, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    sc = c["securityContext"]
    assert sc["privileged"] and sc["readOnlyRootFilesystem"] and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["args"][0] == "run" and "--source=/host/dev/hwrng" in c["args"] and "--sink=kernel" in c["args"]
    assert "--metrics-label=node=$(NODE_NAME)" in c["args"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    assert c["image"] == "ghcr.io/random-refresher/random-refresher:0.1.0"
    for key in ["helm.sh/chart", "app.kubernetes.io/name", "app.kubernetes.io/instance",
                "app.kubernetes.io/version", "app.kubernetes.io/managed-by"]:
        assert key in ds["metadata"]["labels"] and key in labels
    sa = one(docs, "ServiceAccount")
    assert sa["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == sa["metadata"]["name"]


def test_least_privilege_mode():
    c = container(render("least-privilege-values.yaml"))
    spec, _ = pod_spec(render("least-privilege-values.yaml"))
    assert not [v for v in spec["volumes"] if "hostPath" in v], "no hostPath in least-privilege mode"
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    assert c["resources"]["limits"]["squat.ai/hwrng"] == 1
    assert "--source=/dev/hwrng" in c["args"] and not any(a.startswith("--sys-root") for a in c["args"])
    assert spec["priorityClassName"] == "system-node-critical"

    mix = container(render("mix-only-values.yaml"))
    assert mix["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "--sink=mix" in mix["args"] and "--source=rdseed" in mix["args"]


def test_services_select_the_daemon_pods():
    for values in ["default-values.yaml", "headless-hostport-values.yaml"]:
        docs = render(values)
        _, labels = pod_spec(docs)
        services = [d for d in docs if d["kind"] == "Service"]
        assert services
        for svc in services:
            sel = svc["spec"]["selector"]
            assert sel and all(labels.get(k) == v for k, v in sel.items()), svc["metadata"]["name"]
            assert svc["spec"]["ports"][0]["targetPort"] == "metrics"
    docs = render("headless-hostport-values.yaml")
    headless = one(docs, "Service", "-headless")
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    assert container(docs)["ports"][0]["hostPort"] == 19742
    assert not [d for d in docs if d["kind"] == "Service" and not d["metadata"]["name"].endswith("-headless")]
    sm = one(docs, "ServiceMonitor")
    assert sm["spec"]["selector"]["matchLabels"].items() <= headless["metadata"]["labels"].items()


def test_quarantine_mounts_sys_writable_and_keeps_a_marker():
    docs = render("quarantine-values.yaml")
    spec, _ = pod_spec(docs)
    c = spec["containers"][0]
    assert "--quarantine-hwrng" in c["args"] and "--state-dir=/run/random-refresher" in c["args"]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["host-hw-random"]["readOnly"] is False and mounts["host-hwrng"]["readOnly"] is True
    assert mounts["state"]["mountPath"] == "/run/random-refresher"
    # The marker outlives the Pod, as the host's rng_quality does.
    assert {"name": "state", "hostPath": {"path": "/run/random-refresher", "type": "DirectoryOrCreate"}} in spec["volumes"]
    assert "--hwrng=/host/dev/hwrng" in c["args"]
    # Off by default: /sys read-only.
    default = {m["name"]: m for m in container(render("default-values.yaml"))["volumeMounts"]}
    assert default["host-hw-random"]["readOnly"] is True
    p = render(sets=["devicePlugin.enabled=true", "refresher.quarantineHwrng=true"], check=False)
    assert p.returncode != 0 and "does not mount" in p.stderr


def test_push_values_become_flags():
    args = container(render("push-values.yaml"))["args"]
    assert "--push-gateway=http://prometheus-pushgateway.monitoring.svc:9091" in args
    assert "--push-interval=1m" in args and "--push-instance=$(NODE_NAME)" in args
    assert "--interval=5m" in args and "--batch-size=25000" in args


def test_static_pod_is_the_same_daemon_alone():
    docs = render("static-pod-values.yaml")
    assert [d["kind"] for d in docs] == ["Pod"]
    pod = docs[0]
    assert "serviceAccountName" not in pod["spec"]
    assert pod["spec"]["containers"][0]["args"] == container(render("default-values.yaml"))["args"]


def test_digest_pins_the_image():
    docs = render("digest-values.yaml")
    c = container(docs)
    assert c["image"] == ("registry.example.com/platform/random-refresher@sha256:"
                          "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    spec, labels = pod_spec(docs)
    assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert labels["team"] == "platform"


def test_helm_test_pod_gets_readyz_and_metrics_with_the_daemon_image():
    docs = render("default-values.yaml")
    pod = [d for d in docs if d["kind"] == "Pod" and d["metadata"]["annotations"].get("helm.sh/hook") == "test"][0]
    urls = [a for c in pod["spec"]["containers"] for a in c["args"] if a.startswith("--url=")]
    assert urls == ["--url=http://rr-random-refresher.hwrng.svc:9742/readyz",
                    "--url=http://rr-random-refresher.hwrng.svc:9742/metrics"]


def test_notes_explain_desired_zero_and_pod_security():
    p = subprocess.run([helm(), "install", "rr", CHART, "--dry-run=client", "--namespace", "hwrng"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "DESIRED is 0 until a node matches" in p.stdout
    assert "kubectl label node NODE feature=hw-rng" in p.stdout
    assert "pod-security.kubernetes.io/enforce=privileged" in p.stdout


def test_notes_warn_when_both_monitors_scrape_every_pod():
    cmd = [helm(), "install", "rr", CHART, "--dry-run=client", "--namespace", "hwrng"]
    both = subprocess.run(cmd + ["--set", "serviceMonitor.enabled=true", "--set", "podMonitor.enabled=true"],
                          capture_output=True, text=True)
    assert both.returncode == 0, both.stderr
    assert "scrapes every Pod twice" in both.stdout
    one_only = subprocess.run(cmd + ["--set", "serviceMonitor.enabled=true"], capture_output=True, text=True)
    assert "scrapes every Pod twice" not in one_only.stdout


# --- values that used to render a broken Pod ----------------------------------

def test_the_device_plugin_mode_reads_the_device_it_mounts():
    args = container(render(sets=["devicePlugin.enabled=true"]))["args"]
    assert "--source=/dev/hwrng" in args
    assert not [a for a in args if "/host/" in a], args
    assert "--source=/host/dev/hwrng" in container(render())["args"]
    # Sources given by hand are kept as given.
    args = container(render(sets=["devicePlugin.enabled=true", "refresher.sources={rdrand}"]))["args"]
    assert "--source=rdrand" in args and "--source=/dev/hwrng" not in args


def test_the_seed_file_value_mounts_a_writable_host_folder_for_its_sink():
    docs = render(sets=["seedFile.enabled=true"])
    spec, _ = pod_spec(docs)
    c = spec["containers"][0]
    assert "--sink=file:/var/lib/random-refresher/random-seed" in c["args"] and "--sink=kernel" in c["args"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "seed")
    assert mount["mountPath"] == "/var/lib/random-refresher" and not mount.get("readOnly")
    assert {"name": "seed", "hostPath": {"path": "/var/lib/random-refresher", "type": "DirectoryOrCreate"}} in spec["volumes"]
    # extraVolumes and extraVolumeMounts, node-exporter's names, for anything else.
    docs = render(sets=["extraVolumes[0].name=x", "extraVolumes[0].emptyDir.medium=Memory",
                        "extraVolumeMounts[0].name=x", "extraVolumeMounts[0].mountPath=/x"])
    spec, _ = pod_spec(docs)
    assert {"name": "x", "emptyDir": {"medium": "Memory"}} in spec["volumes"]
    assert {"name": "x", "mountPath": "/x"} in spec["containers"][0]["volumeMounts"]


def test_security_context_keys_merge_over_the_modes_default():
    sc = container(render(sets=["securityContext.runAsUser=0"]))["securityContext"]
    assert sc["privileged"] is True and sc["runAsUser"] == 0 and sc["readOnlyRootFilesystem"] is True
    sc = container(render(sets=["devicePlugin.enabled=true", "securityContext.readOnlyRootFilesystem=false"]))["securityContext"]
    assert sc["readOnlyRootFilesystem"] is False
    assert sc["capabilities"]["drop"] == ["ALL"] and sc["allowPrivilegeEscalation"] is False


# One table of durations for the binary and the schema: both accept or both refuse.
DURATIONS = [("30s", True), ("1m30s", True), ("500ms", True), ("5m", True), ("1h", True), ("2d", True),
             ("0s", False), ("0m", False), ("0ms0s", False), ("", False), ("30", False), ("-1s", False),
             ("soon", False)]


@pytest.mark.parametrize("value, ok", DURATIONS)
def test_one_duration_rule_for_the_binary_and_the_schema(value, ok):
    binary = os.environ.get("RR_BINARY") or os.path.join(ROOT, "target/release/random-refresher")
    p = subprocess.run([binary, "check", f"--read-timeout={value}", "--source", "/nonexistent/x"],
                       capture_output=True, text=True)
    binary_ok = "--read-timeout" not in p.stderr
    schema_ok = render(sets=[f"refresher.readTimeout={value}"], check=False).returncode == 0
    assert (binary_ok, schema_ok) == (ok, ok), p.stderr


# For each alert: series that fire it and series that do not, the label
# that tells them apart, and which value of it must fire.
ALERT_CASES = {
    "RandomRefresherHealthTestsFailing": ("node", "bad", [
        ('random_refresher_health_blocks_total{result="fail",source="s",node="bad"}', "0+10x120"),
        ('random_refresher_health_blocks_total{result="pass",source="s",node="bad"}', "0+100x120"),
        ('random_refresher_health_blocks_total{result="fail",source="s",node="good"}', "0x120"),
        ('random_refresher_health_blocks_total{result="pass",source="s",node="good"}', "0+100x120"),
    ]),
    "RandomRefresherSourceDown": ("node", "down", [
        ('random_refresher_source_up{source="s",node="down"}', "0x120"),
        ('random_refresher_source_up{source="s",node="up"}', "1x120"),
    ]),
    "RandomRefresherCrngNotReady": ("node", "unready", [
        ('random_refresher_kernel_crng_ready{node="unready"}', "0x120"),
        ('random_refresher_kernel_crng_ready{node="ready"}', "1x120"),
    ]),
    "RandomRefresherNoRefresh": ("node", "stuck", [
        ('random_refresher_last_refresh_timestamp_seconds{node="stuck"}', "0x120"),
        ('random_refresher_last_refresh_timestamp_seconds{node="fresh"}', "0+60x120"),
    ]),
    "RandomRefresherHwrngQuarantined": ("node", "held", [
        ('random_refresher_hwrng_quarantined{rng="r",node="held"}', "1x120"),
        ('random_refresher_hwrng_quarantined{rng="r",node="free"}', "0x120"),
    ]),
    "RandomRefresherEntropyEstimateLow": ("node", "weak", [
        ('random_refresher_min_entropy_claimed_per_byte{source="s",node="weak"}', "8x120"),
        ('random_refresher_min_entropy_estimate_per_byte{source="s",node="weak"}', "5x120"),
        ('random_refresher_min_entropy_claimed_per_byte{source="s",node="good"}', "8x120"),
        ('random_refresher_min_entropy_estimate_per_byte{source="s",node="good"}', "7.6x120"),
    ]),
    "RandomRefresherNotReady": ("pod", "rr-random-refresher-aaaaa", [
        ('kube_pod_status_ready{namespace="hwrng",pod="rr-random-refresher-aaaaa",condition="true"}', "0x120"),
        ('kube_pod_status_ready{namespace="hwrng",pod="rr-random-refresher-bbbbb",condition="true"}', "1x120"),
        ('kube_pod_status_ready{namespace="hwrng",pod="other-ccccc",condition="true"}', "0x120"),
    ]),
    "RandomRefresherDaemonSetIncomplete": ("daemonset", "rr-random-refresher", [
        ('kube_daemonset_status_number_ready{namespace="hwrng",daemonset="rr-random-refresher"}', "2x120"),
        ('kube_daemonset_status_desired_number_scheduled{namespace="hwrng",daemonset="rr-random-refresher"}', "3x120"),
        ('kube_daemonset_status_number_ready{namespace="hwrng",daemonset="other"}', "2x120"),
        ('kube_daemonset_status_desired_number_scheduled{namespace="hwrng",daemonset="other"}', "3x120"),
    ]),
}


def test_every_alert_fires_for_its_series_and_only_for_them(tmp_path):
    rule = one(render("monitors-values.yaml"), "PrometheusRule")
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert set(alerts) == set(ALERT_CASES), "every alert the chart ships has a case"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    tests = []
    for name, (label, fires, series) in ALERT_CASES.items():
        expr = alerts[name]["expr"]
        tests.append({
            "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series],
            # Evaluated after the hour the ratio alert looks back over: only
            # the firing series is over its threshold.
            "promql_expr_test": [{"expr": f"count by ({label}) ({expr})", "eval_time": "100m",
                                  "exp_samples": [{"labels": f'{{{label}="{fires}"}}', "value": 1}]}],
            # And `for` holds it back at first.
            "alert_rule_test": [{"eval_time": "0m", "alertname": name, "exp_alerts": []}],
        })
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m",
                                                         "tests": tests}))
    promtool = os.environ.get("RR_PROMTOOL") or shutil.which("promtool") or pytest.fail("no promtool")
    p = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_entropy_estimate_alert_fires_below_the_claim_less_the_margin(tmp_path):
    rule = one(render("monitors-values.yaml"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    alert = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == "RandomRefresherEntropyEstimateLow")
    labels = {"source": "/host/dev/hwrng"}
    series = lambda name, node, values: {"series": f'{name}{{source="/host/dev/hwrng",node="{node}"}}', "values": values}
    cases = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            series("random_refresher_min_entropy_claimed_per_byte", "good", "8x60"),
            series("random_refresher_min_entropy_estimate_per_byte", "good", "7.6x60"),
            series("random_refresher_min_entropy_claimed_per_byte", "weak", "8x60"),
            series("random_refresher_min_entropy_estimate_per_byte", "weak", "5x60"),
            # Before the first window the estimate is NaN: no alert.
            series("random_refresher_min_entropy_claimed_per_byte", "new", "8x60"),
            series("random_refresher_min_entropy_estimate_per_byte", "new", " ".join(["NaN"] * 60)),
        ],
        "promql_expr_test": [{"expr": alert["expr"], "eval_time": "40m",
                              "exp_samples": [{"labels": 'random_refresher_min_entropy_estimate_per_byte{source="/host/dev/hwrng",node="weak"}', "value": 5}]}],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "RandomRefresherEntropyEstimateLow", "exp_alerts": []},
            {"eval_time": "40m", "alertname": "RandomRefresherEntropyEstimateLow", "exp_alerts": [{
                "exp_labels": {**alert["labels"], **labels, "node": "weak"},
                "exp_annotations": {
                    k: v.replace("{{ $labels.source }}", "/host/dev/hwrng").replace("{{ $labels.node }}", "weak")
                        .replace('{{ $value | printf "%.2f" }}', "5.00")
                    for k, v in alert["annotations"].items()},
            }]},
        ],
    }]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(cases))
    promtool = os.environ.get("RR_PROMTOOL") or shutil.which("promtool") or pytest.fail("no promtool")
    p = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert alert["for"] == "30m" and labels


def test_a_sub_second_interval_keeps_the_no_refresh_alert_meaningful(tmp_path):
    rule = one(render(sets=["prometheusRule.enabled=true", "refresher.interval=500ms"]), "PrometheusRule")
    expr = next(r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == "RandomRefresherNoRefresh")
    assert expr.strip().endswith("> 2"), expr
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    cases = {"rule_files": ["rules.yaml"], "evaluation_interval": "15s", "tests": [{
        "interval": "15s",
        "input_series": [
            # Refreshed at every step (the timestamp follows time()), and stuck at 0.
            {"series": 'random_refresher_last_refresh_timestamp_seconds{node="fresh"}', "values": "0+15x60"},
            {"series": 'random_refresher_last_refresh_timestamp_seconds{node="stuck"}', "values": "0x60"},
        ],
        # The alert's expression as Prometheus evaluates it: only the stuck
        # node is over the threshold (with integer seconds it would be `> 0`,
        # and the fresh node would be there too, within a step).
        "promql_expr_test": [{"expr": expr, "eval_time": "10m",
                              "exp_samples": [{"labels": '{node="stuck"}', "value": 600}]}],
    }]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(cases))
    promtool = os.environ.get("RR_PROMTOOL") or shutil.which("promtool") or pytest.fail("no promtool")
    p = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_image_values_spelled_as_other_charts_spell_them():
    img = lambda *s: container(render(sets=list(s)))["image"]
    assert img() == "ghcr.io/random-refresher/random-refresher:0.1.0"
    assert img("image.registry=registry.example:5000", "image.repository=rr") == "registry.example:5000/rr:0.1.0"
    assert img("image.registry=a.example", "global.imageRegistry=b.example", "image.repository=rr") == "b.example/rr:0.1.0"
    assert img("image.repository=rr", "image.tag=1.2.3", "image.digest=sha256:" + "a" * 64) == "rr@sha256:" + "a" * 64
    sm = one(render(sets=["serviceMonitor.enabled=true", "serviceMonitor.jobLabel=app", "serviceMonitor.honorLabels=true",
                          "serviceMonitor.scheme=https", "serviceMonitor.tlsConfig.insecureSkipVerify=true"]), "ServiceMonitor")
    ep = sm["spec"]["endpoints"][0]
    assert sm["spec"]["jobLabel"] == "app" and ep["honorLabels"] is True and ep["scheme"] == "https"
    assert ep["tlsConfig"] == {"insecureSkipVerify": True}


def test_the_node_feature_rule_is_valid_and_labels_on_any_one_hwrng_sign():
    import jsonschema
    assert not [d for d in render() if d["kind"] == "NodeFeatureRule"], "off by default"
    rule = one(render(sets=["nfd.enabled=true"]), "NodeFeatureRule")
    schema = json.load(open(os.path.join(HERE, "nodefeaturerule.schema.json")))
    jsonschema.validate(rule, schema)
    (r,) = rule["spec"]["rules"]
    assert r["labels"] == {"feature.node.kubernetes.io/hw-rng": "true"}
    # One alternative per sign, so that any one of them labels the node.
    signs = [m["matchFeatures"][0] for m in r["matchAny"]]
    modules = {k for s in signs if s["feature"] == "kernel.loadedmodule" for k in s["matchExpressions"]}
    assert {"virtio_rng", "tpm", "bcm2835_rng", "arm_smccc_trng"} <= modules
    assert all(len(m["matchFeatures"]) == 1 and len(m["matchFeatures"][0]["matchExpressions"]) <= 2 for m in r["matchAny"])
    assert {"RDSEED", "RNG"} <= {k for s in signs if s["feature"] == "cpu.cpuid" for k in s["matchExpressions"]}
    # The schema is not a rubber stamp.
    bad = json.loads(json.dumps(rule))
    bad["spec"]["rules"][0]["matchAny"][0]["matchFeatures"][0]["matchExpressions"]["virtio_rng"]["op"] = "Present"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_helm_show_readme_shows_the_charts_readme():
    p = subprocess.run([helm(), "show", "readme", CHART], capture_output=True, text=True)
    assert p.returncode == 0 and "random-refresher" in p.stdout and "helm install" in p.stdout, p.stderr


# --- the chart against the binary ---------------------------------------------

@pytest.fixture(scope="module")
def live_metrics():
    """/metrics of a running daemon (the built binary, a file source)."""
    binary = os.environ.get("RR_BINARY") or os.path.join(ROOT, "target/release/random-refresher")
    data = os.path.join(ROOT, "target", "chart-test-source.bin")
    with open(data, "wb") as f:
        f.write(subprocess.run([binary, "once", "--source", "rdrand", "--sink", "stdout", "--batch-size", "250000"],
                               capture_output=True, check=True).stdout)
    port = free_port()
    # Write-only, as a shell's >/dev/null: a read-write /dev/null on stdout is
    # what a closed stdout looks like to the daemon, and `--sink stdout` refuses it.
    sink = open(os.devnull, "wb")
    proc = subprocess.Popen([binary, "run", "--source", data, "--sink", "stdout", "--interval", "1h",
                             "--listen-address", f"127.0.0.1:{port}", "--metrics-label", "node=n1"],
                            stdout=sink, stderr=subprocess.DEVNULL)
    try:
        yield wait_http(f"http://127.0.0.1:{port}/metrics")[1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        sink.close()


def metric_names(text):
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def referenced_metrics(expr):
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", re.sub(r'"[^"]*"', "", expr)))
    return {w for w in words if w.startswith(("random_refresher_", "process_", "kube_"))}


def test_alerts_and_dashboard_name_only_exported_metrics(live_metrics, tmp_path):
    exported = metric_names(live_metrics)
    # Histograms are exported as _bucket/_sum/_count.
    exported |= {n.rsplit("_", 1)[0] for n in exported if n.endswith(("_bucket", "_sum", "_count"))}
    rule = one(render("monitors-values.yaml"), "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    dash = json.load(open(os.path.join(CHART, "dashboards/random-refresher.json")))
    exprs += [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [dash["templating"]["list"][1]["query"]["query"]]
    ours = set().union(*(referenced_metrics(e) for e in exprs))
    kube_state = {m for m in ours if m.startswith("kube_")}
    assert kube_state <= {"kube_pod_status_ready", "kube_daemonset_status_number_ready",
                          "kube_daemonset_status_desired_number_scheduled"}
    # The quarantine gauge exists only with --quarantine-hwrng (tests/quarantine.rs reads it).
    missing = (ours - kube_state) - exported - {"random_refresher_source_read_duration_seconds_bucket",
                                                "random_refresher_hwrng_quarantined"}
    assert not missing, f"alerts or dashboard use metrics the daemon does not export: {missing}"
    assert {"random_refresher_health_blocks_total", "random_refresher_source_up",
            "random_refresher_last_refresh_timestamp_seconds"} <= ours
    # The rules are valid PromQL, as Prometheus itself reads them.
    promtool = os.environ.get("RR_PROMTOOL") or shutil.which("promtool") or pytest.fail("no promtool")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    p = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_quarantine_alert_fires_from_the_gauge(tmp_path):
    rule = one(render("monitors-values.yaml"), "PrometheusRule")
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    alert = next(r for g in rule["spec"]["groups"] for r in g["rules"]
                 if r.get("alert") == "RandomRefresherHwrngQuarantined")
    series = {"rng": "virtio_rng.0", "node": "n1"}
    expand = lambda t: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: series[m.group(1)], t)
    cases = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "15s",
        "tests": [{
            "interval": "15s",
            "input_series": [
                {"series": 'random_refresher_hwrng_quarantined{rng="virtio_rng.0",node="n1"}', "values": "0 1 1 1 1 1 1 1"},
                {"series": 'random_refresher_hwrng_quarantined{rng="virtio_rng.0",node="n2"}', "values": "0 0 0 0 0 0 0 0"},
            ],
            "alert_rule_test": [
                {"eval_time": "30s", "alertname": "RandomRefresherHwrngQuarantined", "exp_alerts": []},
                {"eval_time": "105s", "alertname": "RandomRefresherHwrngQuarantined", "exp_alerts": [{
                    "exp_labels": {**alert["labels"], **series},
                    "exp_annotations": {k: expand(v) for k, v in alert["annotations"].items()},
                }]},
            ],
        }],
    }
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(cases))
    promtool = os.environ.get("RR_PROMTOOL") or shutil.which("promtool") or pytest.fail("no promtool")
    p = subprocess.run([promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, want=200, seconds=90):
    deadline = time.time() + seconds
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                last = (r.status, r.read().decode())
        except urllib.error.HTTPError as e:
            last = (e.code, e.read().decode())
        except OSError as e:
            last = (None, str(e))
        if last[0] == want:
            return last
        time.sleep(0.5)
    pytest.fail(f"{url}: wanted {want}, last answer {last}")


def has_every_capability():
    with open("/proc/self/status") as f:
        bounding = next(int(l.split()[1], 16) for l in f if l.startswith("CapBnd:"))
    return bounding & (1 << 24)


def kubelet_docker_args(c, spec, node_name):
    """`docker run` arguments for the rendered container, as the kubelet would
    run it: args with $(VAR) expanded from env, the security context, the
    hostPath volumes and the device plugin's device."""
    env = {e["name"]: e.get("value", node_name) for e in c["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in c["args"]]
    run = ["--env", f"NODE_NAME={node_name}"]
    sc = c["securityContext"]
    if sc.get("privileged"):
        # What privileged grants: every capability, every device, no
        # seccomp filter. This sandbox's own bounding set lacks
        # CAP_SYS_RESOURCE, so `docker run --privileged` itself is refused
        # here; the rest of it is granted piece by piece.
        run += ["--cap-add=ALL", "--device-cgroup-rule=a *:* rwm", "--security-opt", "seccomp=unconfined"]
        if not has_every_capability():
            run.append("--cap-drop=SYS_RESOURCE")
    if sc.get("readOnlyRootFilesystem"):
        run.append("--read-only")
    if sc.get("allowPrivilegeEscalation") is False:
        run += ["--security-opt", "no-new-privileges"]
    caps = sc.get("capabilities", {})
    run += [f"--cap-drop={x}" for x in caps.get("drop", [])] + [f"--cap-add={x}" for x in caps.get("add", [])]
    if "runAsUser" in sc:
        run += ["--user", str(sc["runAsUser"])]
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        vol = vols[m["name"]]
        if "emptyDir" in vol:
            run += ["--tmpfs", m["mountPath"]]
        else:
            host = vol["hostPath"]["path"]
            run += ["-v", f"{host}:{m['mountPath']}:{'ro' if m.get('readOnly') else 'rw'}"]
    limits = c["resources"].get("limits", {})
    if any("hwrng" in k for k in limits):
        run += ["--device", "/dev/hwrng"]  # what the device plugin hands out
    if "memory" in limits:
        run += ["--memory", f"{memory_bytes(limits['memory'])}b"]
    return run, args


def memory_bytes(quantity):
    """A Kubernetes memory quantity in bytes (the suffixes the chart uses)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def test_the_largest_batch_the_schema_allows_runs_within_the_memory_limit(tmp_path):
    """The rendered Pod with batchSize at the schema's maximum, run under
    the rendered memory limit (as the kubelet's cgroup would hold it),
    delivers cycles of 40 MB from RDRAND to a seed file without being
    killed for memory."""
    image = os.environ.get("RR_IMAGE") or pytest.fail("no RR_IMAGE (run tests/run.sh)")
    values = tmp_path / "largest-batch.yaml"
    values.write_text(yaml.safe_dump({
        # Two seed files in the one mounted folder: no kernel credit, no capability.
        "refresher": {"batchSize": 40_000_000, "interval": "1s", "sources": ["rdrand"],
                      "sinks": ["file:/var/lib/random-refresher/second-seed"]},
        "seedFile": {"enabled": True, "hostPath": str(tmp_path)},
        "securityContext": {"runAsUser": 0},
    }))
    docs = render(str(values))
    spec, _ = pod_spec(docs)
    c = spec["containers"][0]
    assert render(sets=["refresher.batchSize=40000000"], check=False).returncode == 0
    # A large number in a values file is a float to Helm: rendered whole.
    assert "--batch-size=40000000" in c["args"], c["args"]
    run, args = kubelet_docker_args(c, spec, "node-1")
    assert "--memory" in run, run
    port, host_port = c["ports"][0]["containerPort"], free_port()
    name = f"rr-chart-{os.getpid()}-largest-batch"
    cmd = ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{host_port}:{port}", *run, image, *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    try:
        deadline = time.time() + 120
        text = ""
        while time.time() < deadline:
            _, text = wait_http(f"http://127.0.0.1:{host_port}/metrics")
            if re.search(r'random_refresher_cycles_total\{node="node-1",result="ok"\} [3-9]', text):
                break
            time.sleep(1)
        assert re.search(r'random_refresher_cycles_total\{node="node-1",result="ok"\} [3-9]', text), text[:2000]
        state = json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, text=True).stdout)[0]["State"]
        assert state["Running"] and not state["OOMKilled"], state
        assert os.path.getsize(tmp_path / "random-seed") == 40_000_000
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.mark.parametrize("values", ["default-values.yaml", "least-privilege-values.yaml", "quarantine-values.yaml",
                                    "seed-file-values.yaml"])
def test_the_image_answers_the_rendered_probes(values):
    image = os.environ.get("RR_IMAGE") or pytest.fail("no RR_IMAGE (run tests/run.sh)")
    docs = render(values)
    spec, _ = pod_spec(docs)
    c = spec["containers"][0]
    run, args = kubelet_docker_args(c, spec, "node-1")
    port = c["ports"][0]["containerPort"]
    host_port = free_port()
    name = f"rr-chart-{os.getpid()}-{values.split('-')[0]}"
    cmd = ["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{host_port}:{port}", *run, image, *args]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    try:
        for probe in ["livenessProbe", "readinessProbe"]:
            get = c[probe]["httpGet"]
            assert get["port"] == "metrics"
            wait_http(f"http://127.0.0.1:{host_port}{get['path']}")
        status, text = wait_http(f"http://127.0.0.1:{host_port}/metrics")
        assert 'node="node-1"' in text
        assert re.search(r'random_refresher_cycles_total\{node="node-1",result="ok"\} [1-9]', text), text[:2000]
        seed = next((v["hostPath"]["path"] for v in spec["volumes"] if v["name"] == "seed"), None)
        if seed:
            assert os.path.getsize(os.path.join(seed, "random-seed")) == 2500
    finally:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert "ERROR" not in logs.stderr, logs.stderr
