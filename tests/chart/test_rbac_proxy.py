"""The optional kube-rbac-proxy sidecar (kubeRBACProxy.*), proven on the
rendered objects: the daemon on the Pod's loopback, the proxy on the Pod's
port with TLS, the probes and the scrapes through it, and its RBAC."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_chart import container, one, pod_spec, render  # noqa: E402

ON = ["kubeRBACProxy.enabled=true"]
TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount"


def proxy(docs):
    spec, _ = pod_spec(docs)
    found = [c for c in spec["containers"] if c["name"] == "kube-rbac-proxy"]
    assert len(found) == 1, [c["name"] for c in spec["containers"]]
    return found[0]


def test_the_sidecar_renders_with_its_args_port_and_security_context():
    docs = render("rbac-proxy-values.yaml")
    c = proxy(docs)
    assert c["image"] == "brancz/kube-rbac-proxy:v0.20.2"
    assert c["args"][:3] == ["--secure-listen-address=:8443", "--upstream=http://127.0.0.1:9742/",
                             "--ignore-paths=/healthz,/readyz"]
    # hostPort.enabled maps the node's port to the proxy, not to the loopback-only daemon.
    assert c["ports"] == [{"name": "https-metrics", "containerPort": 8443, "protocol": "TCP", "hostPort": 9742}]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and not sc.get("privileged")
    assert c["resources"]["limits"]["memory"]


def test_port_image_and_extra_args_are_values():
    docs = render(sets=ON + ["kubeRBACProxy.port=9443", "kubeRBACProxy.image.registry=registry.example:5000",
                             "kubeRBACProxy.image.tag=v9.9.9", "kubeRBACProxy.extraArgs={--tls-min-version=VersionTLS13}"])
    c = proxy(docs)
    assert c["image"] == "registry.example:5000/brancz/kube-rbac-proxy:v9.9.9"
    assert "--secure-listen-address=:9443" in c["args"] and "--tls-min-version=VersionTLS13" in c["args"]
    assert c["ports"][0]["containerPort"] == 9443
    assert one(docs, "Service")["spec"]["ports"][0]["targetPort"] == "https-metrics"
    digest = "sha256:" + "b" * 64
    assert proxy(render(sets=ON + ["kubeRBACProxy.image.digest=" + digest]))["image"] == "brancz/kube-rbac-proxy@" + digest


def test_the_daemon_binds_the_pods_loopback_and_declares_no_port():
    c = container(render(sets=ON))
    assert c["name"] == "random-refresher"
    assert "--listen-address=127.0.0.1:9742" in c["args"]
    assert not [a for a in c["args"] if a.startswith("--listen-address=[")]
    assert "ports" not in c
    # The metrics port follows metrics.port on both sides.
    docs = render(sets=ON + ["metrics.port=9100"])
    assert "--listen-address=127.0.0.1:9100" in container(docs)["args"]
    assert "--upstream=http://127.0.0.1:9100/" in proxy(docs)["args"]


def test_probes_are_https_on_the_proxy_port_which_passes_them_unauthenticated():
    docs = render(sets=ON)
    c, p = container(docs), proxy(docs)
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https-metrics", "scheme": "HTTPS"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https-metrics", "scheme": "HTTPS"}
    assert c["livenessProbe"]["periodSeconds"] == 30  # the rest of the probe is kept
    ignored = [a.split("=", 1)[1].split(",") for a in p["args"] if a.startswith("--ignore-paths=")]
    assert ignored == [["/healthz", "/readyz"]]
    assert "/metrics" not in ignored[0]
    # The proxy's own probes: it accepts connections.
    assert p["livenessProbe"]["tcpSocket"] == {"port": "https-metrics"}
    assert p["readinessProbe"]["tcpSocket"] == {"port": "https-metrics"}
    # A user's probe is redirected the same way.
    c = container(render(sets=ON + ["livenessProbe.httpGet.path=/healthz", "livenessProbe.httpGet.port=9742"]))
    assert c["livenessProbe"]["httpGet"]["port"] == "https-metrics" and c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_services_and_monitors_scrape_the_proxy_over_https_with_a_token():
    docs = render("rbac-proxy-values.yaml")
    for svc in [d for d in docs if d["kind"] == "Service"]:
        assert [(p["name"], p["targetPort"]) for p in svc["spec"]["ports"]] == [("https-metrics", "https-metrics")]
    auth = {"type": "Bearer", "credentials": {"name": "prometheus-scrape-token", "key": "token"}}
    sm = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    pm = one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    for ep in (sm, pm):
        assert ep["port"] == "https-metrics" and ep["scheme"] == "https" and ep["path"] == "/metrics"
        assert ep["tlsConfig"] == {"insecureSkipVerify": True}
        assert ep["authorization"] == auth and "bearerTokenFile" not in ep
    # Without a token Secret the ServiceMonitor sends Prometheus's own token file.
    sm = one(render(sets=ON + ["serviceMonitor.enabled=true", "serviceMonitor.tlsConfig.serverName=rr"]),
             "ServiceMonitor")["spec"]["endpoints"][0]
    assert sm["bearerTokenFile"] == TOKEN + "/token" and "authorization" not in sm
    assert sm["tlsConfig"] == {"insecureSkipVerify": True, "serverName": "rr"}
    # A PodMonitor cannot read Prometheus's file: it needs the Secret.
    p = render(sets=ON + ["podMonitor.enabled=true"], check=False)
    assert p.returncode != 0 and "kubeRBACProxy.scrapeTokenSecret.name" in p.stderr


def test_the_monitors_behind_the_proxy_are_valid_for_the_prometheus_operator():
    from test_chart import OPERATOR_KINDS, operator_validate
    objs = [d for d in render("rbac-proxy-values.yaml") if d["kind"] in OPERATOR_KINDS]
    objs += [one(render(sets=ON + ["serviceMonitor.enabled=true"]), "ServiceMonitor")]
    assert sorted(o["kind"] for o in objs) == ["PodMonitor", "ServiceMonitor", "ServiceMonitor"]
    p = operator_validate(objs)
    assert p.returncode == 0, p.stdout + p.stderr


def test_the_token_is_mounted_in_the_sidecar_only_and_the_rbac_lets_it_review():
    docs = render(sets=ON)
    spec, _ = pod_spec(docs)
    # automountServiceAccountToken stays false: the projected volume below is
    # what it would mount, in the proxy alone.
    assert spec["automountServiceAccountToken"] is False
    vol = next(v for v in spec["volumes"] if v["name"] == "kube-api-access")
    sources = vol["projected"]["sources"]
    assert sources[0]["serviceAccountToken"]["path"] == "token"
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert {"name": "kube-api-access", "mountPath": TOKEN, "readOnly": True} in proxy(docs)["volumeMounts"]
    assert not [m for m in container(docs)["volumeMounts"] if m["name"] == "kube-api-access"]
    role = one(docs, "ClusterRole")
    assert role["rules"] == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "hwrng"}]
    assert spec["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize("values", ["default-values.yaml", "monitors-values.yaml", "least-privilege-values.yaml"])
def test_disabled_renders_nothing_of_it_and_leaves_the_defaults(values):
    docs = render(values)
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert render(values, sets=["kubeRBACProxy.enabled=false", "kubeRBACProxy.port=9443"]) == docs
    spec, _ = pod_spec(docs)
    assert [c["name"] for c in spec["containers"]] == ["random-refresher"]
    assert not [v for v in spec.get("volumes", []) if v["name"] == "kube-api-access"]
    c = container(docs)
    assert "--listen-address=[::]:9742" in c["args"]
    assert c["ports"][0]["name"] == "metrics"
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    for d in docs:
        if d["kind"] == "ServiceMonitor":
            ep = d["spec"]["endpoints"][0]
            assert ep["port"] == "metrics" and ep["scheme"] == "http" and "bearerTokenFile" not in ep
        if d["kind"] == "PodMonitor":
            ep = d["spec"]["podMetricsEndpoints"][0]
            assert ep["port"] == "metrics" and ep["scheme"] == "http" and "authorization" not in ep


def test_the_static_pod_refuses_the_proxy():
    p = render("static-pod-values.yaml", sets=ON, check=False)
    assert p.returncode != 0 and "kubeRBACProxy.enabled" in p.stderr and "static Pod" in p.stderr, p.stderr


def test_the_helm_test_pod_asks_the_proxy_for_readyz_only_over_https():
    hooks = lambda docs: [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    urls = lambda pod: [a for c in pod["spec"]["containers"] for a in c["args"] if a.startswith("--url=")]
    (plain,) = hooks(render())
    assert [u.split("/")[-1] for u in urls(plain)] == ["readyz", "metrics"], urls(plain)
    assert all(u.startswith("--url=http://") for u in urls(plain)), urls(plain)
    (proxied,) = hooks(render(sets=ON))
    (url,) = urls(proxied)
    assert url.startswith("--url=https://") and url.endswith(":9742/readyz"), url


@pytest.mark.parametrize("bad, where", [
    ("kubeRBACProxy.port=0", "/kubeRBACProxy/port"),
    ("kubeRBACProxy.port=70000", "/kubeRBACProxy/port"),
    ("kubeRBACProxy.port=https", "/kubeRBACProxy/port"),
    ("kubeRBACProxy.image.pullPolicy=Sometimes", "/kubeRBACProxy/image/pullPolicy"),
    ("kubeRBACProxy.image.digest=sha256:xyz", "/kubeRBACProxy/image/digest"),
    ("kubeRBACProxy.extraArgs={tls}", "/kubeRBACProxy/extraArgs/0"),
    ("kubeRBACProxy.enable=true", "enable"),
])
def test_the_schema_rejects_bad_proxy_values(bad, where):
    p = render(sets=[bad], check=False)
    assert p.returncode != 0
    assert where in p.stderr, p.stderr
