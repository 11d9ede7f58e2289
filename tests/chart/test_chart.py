"""The Helm chart, proven without a cluster: helm lint, the Kubernetes and
Prometheus Operator schemas, checkov, assertions on the rendered objects, and
the real image started the way the kubelet would start the rendered Pod.

Run by tests/run.sh, which installs helm, kubernetes-validate, checkov, the
operator models (npm) and builds the image; RR_HELM, RR_NPM_TOOLS, RR_IMAGE
and RR_BINARY tell these tests where they are.
"""
import contextlib
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
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
    ("metrics.host=::", "/metrics/host"),
    ("metrics.host=localhost", "/metrics/host"),
    ("nfd.cpuSources={/dev/hwrng}", "/nfd/cpuSources/0"),
    ("refresher.sources={rndrs}", "/refresher/sources/0"),
    ("refreshr.interval=30s", "refreshr"),
])
def test_the_schema_rejects_bad_values_with_the_path(bad, where):
    p = render(sets=[bad], check=False)
    assert p.returncode != 0
    assert where in p.stderr, p.stderr


def test_entropy_per_byte_out_of_range_names_the_range_and_auto_renders():
    p = render(sets=["refresher.entropyPerByte=9"], check=False)
    assert p.returncode != 0
    assert "/refresher/entropyPerByte" in p.stderr and "want 8" in p.stderr, p.stderr
    assert "oneOf" not in p.stderr and "want string" not in p.stderr, p.stderr
    # --set gives 7 as a number and 7.5 as a string: both are taken.
    for value, arg in [("auto", "--entropy-per-byte=auto"), ("7.5", "--entropy-per-byte=7.5"),
                       ("7", "--entropy-per-byte=7")]:
        spec, _ = pod_spec(render(sets=[f"refresher.entropyPerByte={value}"]))
        assert arg in spec["containers"][0]["args"], spec["containers"][0]["args"]
    for bad in ["bogus", "8.5"]:
        assert render(sets=[f"refresher.entropyPerByte={bad}"], check=False).returncode != 0, bad


def test_a_null_node_selector_still_selects_the_labeled_nodes():
    spec, _ = pod_spec(render(sets=["nodeSelector=null"]))
    assert spec["nodeSelector"] == {"feature": "hw-rng"}, spec.get("nodeSelector")


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
    # IPv6 and IPv4 alike: a [::] socket takes both (unless bindv6only).
    assert "--listen-address=[::]:9742" in c["args"]
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


def test_the_static_pod_is_host_networked_with_its_port_on_the_node():
    # The kubelet starts it before any API server or network plugin: a Pod
    # network would keep it waiting for the plugin (NetworkNotReady).
    spec = render("static-pod-values.yaml")[0]["spec"]
    assert spec["hostNetwork"] is True and not spec["hostPID"] and not spec["hostIPC"]
    # Its port is the node's: hostPort equals containerPort, as the API
    # requires of host-networked Pods (hostPort.* applies to the DaemonSet).
    assert spec["containers"][0]["ports"] == [{"name": "metrics", "containerPort": 9742, "hostPort": 9742, "protocol": "TCP"}]
    ports = render("static-pod-values.yaml", sets=["metrics.port=19999", "hostPort.enabled=true", "hostPort.port=1234"])[0]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "metrics", "containerPort": 19999, "hostPort": 19999, "protocol": "TCP"}]
    # No node selector or affinity: the kubelet that reads the manifest
    # folder is the choice, and it refuses a Pod whose selector its own
    # labels do not match (before any API server, only --node-labels).
    assert "nodeSelector" not in spec and "affinity" not in spec
    assert "nodeSelector" not in render("static-pod-values.yaml", sets=["nfd.enabled=true"])[0]["spec"]
    # The DaemonSets keep the Pod network.
    for d in render(sets=["nfd.enabled=true"]):
        if d["kind"] == "DaemonSet":
            assert d["spec"]["template"]["spec"]["hostNetwork"] is False, d["metadata"]["name"]


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
        ('random_refresher_source_available{source="s",node="down"}', "1x120"),
        ('random_refresher_source_up{source="s",node="up"}', "1x120"),
        ('random_refresher_source_available{source="s",node="up"}', "1x120"),
        # A source the node never had: unavailable, and no page.
        ('random_refresher_source_up{source="s",node="never-had"}', "0x120"),
        ('random_refresher_source_available{source="s",node="never-had"}', "0x120"),
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
    # Prometheus's own series for a target, with the Operator's labels.
    "RandomRefresherTargetDown": ("pod", "rr-random-refresher-aaaaa", [
        ('up{job="random-refresher",namespace="hwrng",pod="rr-random-refresher-aaaaa"}', "0x120"),
        ('up{job="random-refresher",namespace="hwrng",pod="rr-random-refresher-cpu-bbbbb"}', "1x120"),
        ('up{job="other",namespace="hwrng",pod="other-ccccc"}', "0x120"),
        ('up{job="random-refresher",namespace="elsewhere",pod="rr-random-refresher-ddddd"}', "0x120"),
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


def test_each_alerts_for_and_the_failing_block_window_are_values():
    def rules(*sets):
        rule = one(render("monitors-values.yaml", sets=sets), "PrometheusRule")
        return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    defaults = {name: r["for"] for name, r in rules().items()}
    assert defaults == {
        "RandomRefresherHealthTestsFailing": "15m", "RandomRefresherSourceDown": "5m",
        "RandomRefresherHwrngQuarantined": "1m", "RandomRefresherEntropyEstimateLow": "30m",
        "RandomRefresherCrngNotReady": "5m", "RandomRefresherNoRefresh": "5m", "RandomRefresherTargetDown": "10m",
        "RandomRefresherNotReady": "15m", "RandomRefresherDaemonSetIncomplete": "30m"}
    assert rules()["RandomRefresherHealthTestsFailing"]["expr"].count("[1h]") == 2
    short = rules("prometheusRule.for.sourceDown=10s", "prometheusRule.failingBlockWindow=1m")
    assert short["RandomRefresherSourceDown"]["for"] == "10s"
    assert short["RandomRefresherHealthTestsFailing"]["expr"].count("[1m]") == 2
    for bad in ["prometheusRule.for.sourceDown=5 minutes", "prometheusRule.failingBlockWindow=0m",
                "prometheusRule.for.noSuchAlert=5m"]:
        assert render("monitors-values.yaml", sets=[bad], check=False).returncode != 0, bad


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
    # Two labels: a device (the DaemonSet that mounts /dev/hwrng selects on
    # it) and a CPU instruction (the CPU-only DaemonSet's), never one for both.
    device, cpu = rule["spec"]["rules"]
    assert device["labels"] == {"feature.node.kubernetes.io/hw-rng": "true"}
    assert cpu["labels"] == {"feature.node.kubernetes.io/cpu-rng": "true"}
    for r in (device, cpu):
        # One alternative per sign, so that any one of them labels the node.
        assert all(len(m["matchFeatures"]) == 1 and len(m["matchFeatures"][0]["matchExpressions"]) <= 2
                   for m in r["matchAny"])
    signs = [m["matchFeatures"][0] for m in device["matchAny"]]
    modules = {k for s in signs if s["feature"] == "kernel.loadedmodule" for k in s["matchExpressions"]}
    assert {"virtio_rng", "tpm", "bcm2835_rng", "arm_smccc_trng"} <= modules
    assert "cpu.cpuid" not in {s["feature"] for s in signs}
    cpu_signs = [m["matchFeatures"][0] for m in cpu["matchAny"]]
    assert {s["feature"] for s in cpu_signs} == {"cpu.cpuid"}
    assert {"RDSEED", "RNG"} == {k for s in cpu_signs for k in s["matchExpressions"]}
    (only,) = one(render(sets=["nfd.enabled=true", "nfd.cpuInstructions=false"]), "NodeFeatureRule")["spec"]["rules"]
    assert only["labels"] == device["labels"]
    p = render(sets=["nfd.enabled=true", "nfd.cpuLabelName=hw-rng"], check=False)
    assert p.returncode != 0 and "must differ" in p.stderr
    # The schema is not a rubber stamp.
    bad = json.loads(json.dumps(rule))
    bad["spec"]["rules"][0]["matchAny"][0]["matchFeatures"][0]["matchExpressions"]["virtio_rng"]["op"] = "Present"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


# --- which nodes each workload runs on ----------------------------------------

def workloads(docs):
    """The daemon workloads rendered, {name: Pod spec}: the DaemonSets, or the static Pod."""
    found = {}
    for d in docs:
        if d["kind"] == "DaemonSet":
            found[d["metadata"]["name"]] = d["spec"]["template"]["spec"]
        elif d["kind"] == "Pod" and "helm.sh/hook" not in (d["metadata"].get("annotations") or {}):
            found[d["metadata"]["name"]] = d["spec"]
    return found


def nfd_labels(docs, node):
    """The labels the rendered NodeFeatureRule gives a node, evaluated as
    nfd-master evaluates a rule (the operators the chart uses): every
    matchFeatures entry and any one matchAny entry must hold. `node` holds
    the features, NFD's names: flag features (kernel.loadedmodule, cpu.cpuid)
    as sets, instance features (pci.device) as lists of attribute dicts."""
    def holds(present, value, e):
        return {"Exists": lambda: present, "DoesNotExist": lambda: not present,
                "In": lambda: present and value in e["value"],
                "NotIn": lambda: not present or value not in e["value"]}[e["op"]]()

    def feature(f):
        data = node.get(f["feature"], set())
        if isinstance(data, (set, frozenset)):
            return all(holds(k in data, None, e) for k, e in f["matchExpressions"].items())
        return any(all(holds(k in i, i.get(k), e) for k, e in f["matchExpressions"].items()) for i in data)

    labels = {}
    for rule in [d for d in docs if d["kind"] == "NodeFeatureRule"]:
        for r in rule["spec"]["rules"]:
            ok = all(feature(f) for f in r.get("matchFeatures", []))
            if "matchAny" in r:
                ok = ok and any(all(feature(f) for f in m["matchFeatures"]) for m in r["matchAny"])
            if ok:
                labels.update(r["labels"])
    return labels


def schedules_on(spec, labels):
    """Whether a DaemonSet's Pod goes to a node with these labels: its
    nodeSelector and its required node affinity, as the scheduler reads them."""
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if not required:
        return True

    def holds(e):
        value = labels.get(e["key"])
        return {"In": lambda: value in e["values"], "NotIn": lambda: value not in e["values"],
                "Exists": lambda: e["key"] in labels, "DoesNotExist": lambda: e["key"] not in labels}[e["operator"]]()
    return any(t.get("matchExpressions") and all(holds(e) for e in t["matchExpressions"])
               for t in required["nodeSelectorTerms"])


def hostpath_volumes(spec):
    return {v["hostPath"]["path"]: v["hostPath"].get("type") for v in spec.get("volumes", []) if "hostPath" in v}


# Nodes as NFD sees them, and whether they have a /dev/hwrng.
VIRTIO_RNG_PCI = {"vendor": "1af4", "device": "1044", "class": "00ff"}
NFD_NODES = {
    "rdseed-only": ({"cpu.cpuid": {"RDSEED", "RDRAND", "AVX2"}, "kernel.loadedmodule": {"e1000e"}}, False),
    "virtio-rng-and-rdseed": ({"cpu.cpuid": {"RDSEED"}, "kernel.loadedmodule": {"virtio_rng"},
                               "pci.device": [VIRTIO_RNG_PCI]}, True),
    "virtio-rng-builtin": ({"cpu.cpuid": set(), "pci.device": [VIRTIO_RNG_PCI]}, True),
    "raspberry-pi": ({"cpu.cpuid": set(), "kernel.loadedmodule": {"bcm2835_rng"}}, True),
    "arm64-feat-rng-only": ({"cpu.cpuid": {"RNG", "ASIMD"}, "kernel.loadedmodule": set()}, False),
    "rdrand-only": ({"cpu.cpuid": {"RDRAND"}, "kernel.loadedmodule": {"e1000e"}}, False),
}


@pytest.mark.parametrize("node", NFD_NODES)
@pytest.mark.parametrize("cpu_instructions", [True, False])
def test_with_nfd_each_labeled_node_runs_one_daemonset_that_can_start_there(node, cpu_instructions):
    """nfd.enabled=true with no nodeSelector given: the DaemonSets select on
    the NodeFeatureRule's own labels, each labeled node gets exactly one Pod,
    and it is one the node can start: the device's hostPath only where the
    device is."""
    features, has_device = NFD_NODES[node]
    docs = render(sets=["nfd.enabled=true", f"nfd.cpuInstructions={str(cpu_instructions).lower()}"])
    labels = nfd_labels(docs, features)
    ours = [w for w, spec in workloads(docs).items() if schedules_on(spec, labels)]
    has_cpu = bool(features["cpu.cpuid"] & {"RDSEED", "RNG"})
    if has_device:
        assert ours == ["rr-random-refresher"], (labels, ours)
    elif has_cpu and cpu_instructions:
        assert ours == ["rr-random-refresher-cpu"], (labels, ours)
    else:
        assert ours == [], (labels, ours)
    for name in ours:
        spec = workloads(docs)[name]
        if not has_device:
            # The kubelet refuses a hostPath CharDevice that the node lacks.
            assert "/dev/hwrng" not in hostpath_volumes(spec), spec["volumes"]
            c = spec["containers"][0]
            kubelet_docker_args(c, spec, node, missing={"/dev/hwrng", "/sys/class/misc/hw_random"})
            assert not [a for a in c["args"] if "hwrng" in a], c["args"]
            assert c["securityContext"]["privileged"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}


def test_the_cpu_only_daemonset_is_its_own_and_seen_by_the_services_and_alerts():
    docs = render("monitors-values.yaml", sets=["nfd.enabled=true"])
    ds = {d["metadata"]["name"]: d for d in docs if d["kind"] == "DaemonSet"}
    assert set(ds) == {"rr-random-refresher", "rr-random-refresher-cpu"}
    main, cpu = ds["rr-random-refresher"], ds["rr-random-refresher-cpu"]
    # The device's DaemonSet keeps its selector (immutable: an upgrade that
    # turns nfd on must not change it), and neither selects the other's Pods.
    assert main["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "random-refresher",
                                                      "app.kubernetes.io/instance": "rr"}
    for a, b in [(main, cpu), (cpu, main)]:
        sel, labels = a["spec"]["selector"]["matchLabels"], b["spec"]["template"]["metadata"]["labels"]
        assert not sel.items() <= labels.items(), (a["metadata"]["name"], b["metadata"]["name"])
    args = cpu["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--source=")] == ["--source=rdseed", "--source=rndrrs"]
    # One Service, PodMonitor and alert set over both.
    for d in docs:
        sel = {"Service": lambda: d["spec"]["selector"], "PodMonitor": lambda: d["spec"]["selector"]["matchLabels"]}.get(d["kind"])
        if sel:
            for w in (main, cpu):
                assert sel().items() <= w["spec"]["template"]["metadata"]["labels"].items(), d["kind"]
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    svc = one(docs, "Service")
    assert not svc["spec"]["selector"].items() <= test_pod["metadata"]["labels"].items()
    rule = one(docs, "PrometheusRule")
    incomplete = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r.get("alert") == "RandomRefresherDaemonSetIncomplete")
    for name in ds:
        assert re.search(r'daemonset=~"([^"]+)"', incomplete["expr"]) and re.fullmatch(
            re.search(r'daemonset=~"([^"]+)"', incomplete["expr"]).group(1), name), incomplete["expr"]
    assert "rr-random-refresher-cpu" in subprocess.run(
        [helm(), "install", "rr", CHART, "--dry-run=client", "-n", "hwrng", "--set", "nfd.enabled=true"],
        capture_output=True, text=True).stdout.split("NOTES:")[1]


def test_sources_without_the_device_mount_no_device_and_need_no_privilege():
    spec, _ = pod_spec(render(sets=["refresher.sources={rdseed}"]))
    c = spec["containers"][0]
    assert not hostpath_volumes(spec) and c["securityContext"]["privileged"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_ADMIN"]}
    spec, _ = pod_spec(render(sets=["refresher.sources={rdseed}", "devicePlugin.enabled=true"]))
    assert "squat.ai/hwrng" not in spec["containers"][0]["resources"].get("limits", {})
    # With the device among them, as before.
    spec, _ = pod_spec(render(sets=["refresher.sources={/host/dev/hwrng,rdseed}"]))
    assert hostpath_volumes(spec)["/dev/hwrng"] == "CharDevice" and spec["containers"][0]["securityContext"]["privileged"]
    p = render(sets=["refresher.sources={rdseed}", "refresher.quarantineHwrng=true"], check=False)
    assert p.returncode != 0 and "must list /host/dev/hwrng" in p.stderr


# --- the helm commands of the READMEs and docs/, as written --------------------

DOCS = ["README.md", "chart/README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def documented_helm_commands():
    """Every `helm` command in the code blocks of the READMEs: (file, line, argv)."""
    found = []
    for doc in DOCS:
        lines = open(os.path.join(ROOT, doc)).read().splitlines()
        in_code, i = False, 0
        while i < len(lines):
            line, start = lines[i].strip(), i + 1
            if line.startswith("```"):
                in_code = not in_code
            elif in_code and line.startswith("helm "):
                while line.endswith("\\"):
                    i += 1
                    line = line[:-1] + " " + lines[i].strip()
                argv = shlex.split(line, comments=True)
                if ">" in argv:  # a redirection of the rendering into a file
                    argv = argv[:argv.index(">")]
                found.append((doc, start, argv))
            i += 1
    return found


def helm_values(argv):
    """The --set and --set-json values a command passes, {key: value}."""
    values = {}
    for flag, arg in zip(argv, argv[1:]):
        if flag in ("--set", "--set-json"):
            key, value = arg.split("=", 1)
            values[key] = json.loads(value) if flag == "--set-json" else value
    return values


def test_the_readmes_helm_commands_render_and_select_the_nodes_they_mean():
    commands = documented_helm_commands()
    assert len(commands) >= 7 and {argv[1] for _, _, argv in commands} >= {"install", "template", "test"}, commands
    installed = {}
    for doc, line, argv in commands:
        where = f"{doc}:{line}: {shlex.join(argv)}"
        if argv[1] == "test":
            # `helm test NAME` runs the test hook of a release installed above.
            assert argv[2] in installed, where
            assert [d for d in installed[argv[2]] if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"], where
            continue
        assert argv[1] in ("install", "template", "upgrade"), where
        # Rendered as written (from the repository's root, where ./chart is),
        # with `helm template` in place of a live install.
        p = subprocess.run([helm(), "template", *argv[2:]], cwd=ROOT, capture_output=True, text=True)
        assert p.returncode == 0, f"{where}\n{p.stderr}"
        docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        installed[argv[2]] = docs
        values = helm_values(argv)
        given = values.get("nodeSelector") or {}
        found = workloads(docs)
        assert found, where
        for name, spec in found.items():
            selector = spec.get("nodeSelector") or {}
            # Helm merges a given nodeSelector into the default one: a
            # selector that kept feature=hw-rng beside another label would
            # need a node to carry both.
            if given or values.get("nfd.enabled") == "true":
                assert "feature" not in selector or "feature" in given, f"{where}: {name} {selector}"
            if values.get("staticPod") == "true":
                assert not selector and "affinity" not in spec and spec["hostNetwork"] is True, f"{where}: {spec}"
            elif values.get("nfd.enabled") == "true":
                rule_labels = [l for d in docs if d["kind"] == "NodeFeatureRule" for r in d["spec"]["rules"] for l in r["labels"]]
                device, cpu = rule_labels
                if name.endswith("-cpu"):  # a node without the device's label
                    want = {**{k: v for k, v in given.items() if k != device}, cpu: "true"}
                else:
                    want = {**given, device: "true"}
                assert selector == want, f"{where}: {name} {selector}"
            else:
                assert selector == (given or {"feature": "hw-rng"}), f"{where}: {name} {selector}"
            # A Pod mounts the device only if it reads it, so that a node
            # the selector picks can start it.
            reads = "--source=/host/dev/hwrng" in spec["containers"][0]["args"]
            assert reads == ("/dev/hwrng" in hostpath_volumes(spec)), f"{where}: {name}"
        if values.get("nfd.enabled") == "true":
            # Every node NFD labels gets exactly one Pod.
            for node, (features, _) in NFD_NODES.items():
                labels = nfd_labels(docs, features)
                if labels:
                    assert len([n for n, s in found.items() if schedules_on(s, labels)]) == 1, f"{where}: {node} {labels}"


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


class KubeletRefused(Exception):
    """The kubelet would not start the Pod: a hostPath volume failed its type
    check (the Pod stays in ContainerCreating, and the container never runs)."""


def kubelet_host_path(volume, missing=()):
    """The host path of a hostPath volume after the kubelet's type check
    (pkg/volume/hostpath): *OrCreate types create what is absent, the others
    must exist with that type. `missing` names host paths to treat as absent,
    as on a node that lacks them."""
    path, kind = volume["hostPath"]["path"], volume["hostPath"].get("type", "")
    exists = os.path.exists(path) and path not in missing
    if kind == "DirectoryOrCreate" and not exists:
        os.makedirs(path, mode=0o755, exist_ok=True)
    elif kind == "FileOrCreate" and not exists:
        open(path, "a").close()
    checks = {"Directory": os.path.isdir, "File": os.path.isfile,
              "CharDevice": lambda p: stat.S_ISCHR(os.stat(p).st_mode),
              "BlockDevice": lambda p: stat.S_ISBLK(os.stat(p).st_mode),
              "Socket": lambda p: stat.S_ISSOCK(os.stat(p).st_mode)}
    if kind in checks and (not exists or not checks[kind](path)):
        raise KubeletRefused(f'MountVolume.SetUp failed for volume "{volume["name"]}": '
                             f"hostPath type check failed: {path} is not a {kind}")
    return path


def kubelet_docker_args(c, spec, node_name, missing=()):
    """`docker run` arguments for the rendered container, as the kubelet would
    run it: args with $(VAR) expanded from env, the security context, the
    Pod's network, the hostPath volumes (type-checked as the kubelet checks
    them; `missing` host paths count as absent) and the device plugin's
    device. Raises KubeletRefused where the kubelet would not start it."""
    env = {e["name"]: e.get("value", node_name) for e in c["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in c["args"]]
    run = ["--env", f"NODE_NAME={node_name}"]
    if spec.get("hostNetwork"):
        run += ["--network", "host"]
    else:
        # A Pod's network namespace keeps the kernel's default, IPv6 on
        # (::1 on lo), as CNI plugins leave it; Docker turns IPv6 off in
        # containers on a network without it.
        run += ["--sysctl", "net.ipv6.conf.all.disable_ipv6=0"]
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
            host = kubelet_host_path(vol, missing)
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


# --- the Pods started as the kubelet would, on the nodes they are meant for ------

NETNS_GET = r"""
import json, sys, time, urllib.error, urllib.request
url, deadline, last = sys.argv[1], time.time() + float(sys.argv[2]), None
while time.time() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            last = [r.status, r.read().decode()]
    except urllib.error.HTTPError as e:
        last = [e.code, e.read().decode()]
    except OSError as e:
        last = [None, str(e)]
    if last[0] == 200:
        break
    time.sleep(0.5)
print(json.dumps(last))
"""


def get_in_pod_network(container_name, url, seconds=90):
    """GET url from inside the container's network namespace (the Pod's),
    retrying until a 200 or `seconds` have passed: [status, body]."""
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container_name],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert pid != "0", f"{container_name} is not running"
    p = subprocess.run(["nsenter", "--target", pid, "--net", sys.executable, "-c", NETNS_GET, url, str(seconds)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@contextlib.contextmanager
def started_as_the_kubelet_would(spec, tag, missing=()):
    """The rendered Pod's container running in Docker as the kubelet would
    run it on a node that lacks the `missing` host paths; yields its name and
    then the logs (a dict filled in when it stops)."""
    image = os.environ.get("RR_IMAGE") or pytest.fail("no RR_IMAGE (run tests/run.sh)")
    c = spec["containers"][0]
    run, args = kubelet_docker_args(c, spec, "node-1", missing)
    name = f"rr-chart-{os.getpid()}-{tag}"
    p = subprocess.run(["docker", "run", "-d", "--name", name, *run, image, *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    logs = {}
    try:
        yield name, logs
    finally:
        logs["stderr"] = subprocess.run(["docker", "logs", name], capture_output=True, text=True).stderr
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def probe_urls(c, host):
    port = next(p["containerPort"] for p in c["ports"] if p["name"] == "metrics")
    return [f"http://{host}:{port}{c[probe]['httpGet']['path']}" for probe in ("livenessProbe", "readinessProbe")]


def test_with_nfd_an_rdseed_node_without_hwrng_starts_its_pod_and_answers_the_probes():
    """The Pod that the NFD labels put on an RDSEED node without a hardware
    RNG, started there as the kubelet would: it starts (no hostPath it
    lacks), reads RDSEED, and answers its liveness and readiness probes."""
    features, _ = NFD_NODES["rdseed-only"]
    docs = render(sets=["nfd.enabled=true"])
    labels = nfd_labels(docs, features)
    (name,) = [w for w, spec in workloads(docs).items() if schedules_on(spec, labels)]
    spec = workloads(docs)[name]
    absent = {"/dev/hwrng", "/sys/class/misc/hw_random"}
    # What the device's DaemonSet would meet there (the Pod would sit in
    # ContainerCreating, never logging a line).
    main = workloads(docs)["rr-random-refresher"]
    with pytest.raises(KubeletRefused, match="/dev/hwrng"):
        kubelet_docker_args(main["containers"][0], main, "node-1", missing=absent)
    with started_as_the_kubelet_would(spec, "cpu-only", missing=absent) as (container_name, logs):
        for url in probe_urls(spec["containers"][0], "127.0.0.1"):
            status, body = get_in_pod_network(container_name, url)
            assert status == 200, (url, body)
        status, text = get_in_pod_network(container_name, "http://127.0.0.1:9742/metrics")
        assert re.search(r'random_refresher_cycles_total\{node="node-1",result="ok"\} [1-9]', text), text[:2000]
        assert re.search(r'random_refresher_source_up\{[^}]*source="rdseed"[^}]*\} 1', text), text[:2000]
    assert "ERROR" not in logs["stderr"], logs["stderr"]


@pytest.mark.parametrize("values", ["default-values.yaml", "least-privilege-values.yaml"])
def test_the_default_listen_address_answers_the_probes_on_ipv4_and_ipv6(values):
    """The probes reach a Pod on its IPv4 or its IPv6 address (single-stack
    either way, or dual-stack): the default [::] socket answers on both,
    here on the Pod's 127.0.0.1 and [::1]."""
    spec, _ = pod_spec(render(values))
    c = spec["containers"][0]
    with started_as_the_kubelet_would(spec, f"dual-stack-{values.split('-')[0]}") as (container_name, logs):
        for host in ("127.0.0.1", "[::1]"):
            for url in probe_urls(c, host):
                status, body = get_in_pod_network(container_name, url)
                assert status == 200, (url, status, body)
    assert "ERROR" not in logs["stderr"], logs["stderr"]


def test_the_static_pod_serves_on_the_nodes_own_addresses():
    """The static Pod started as the kubelet would: host-networked, with no
    network plugin, its probes answered at the node's 127.0.0.1 and [::1]."""
    port = free_port()
    spec = render("static-pod-values.yaml", sets=[f"metrics.port={port}"])[0]["spec"]
    c = spec["containers"][0]
    with started_as_the_kubelet_would(spec, "static") as (container_name, logs):
        for host in ("127.0.0.1", "[::1]"):
            for url in probe_urls(c, host):
                wait_http(url)  # from the node itself: the Pod's port is the node's
    assert "ERROR" not in logs["stderr"], logs["stderr"]
