"""The metrics port locked by the daemon's own web configuration file
(metrics.webConfig.*), proven on the rendered objects: the Secret holds the
values' file, the container gets the flag and the mounts, the probes and the
scrapes speak HTTPS (the scrapes with basic auth), the combinations that
cannot work are refused; and the image, started as the kubelet would start
the rendered Pod with a real certificate, answers the rendered probes."""
import base64
import hashlib
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_chart import (CHART, OPERATOR_KINDS, container, free_port, kubelet_docker_args, one,  # noqa: E402
                        operator_validate, pod_spec, render)

VALUES = "web-config-values.yaml"
ON = ["metrics.webConfig.enabled=true"]
TLS_ONLY = ON + ["metrics.webConfig.config.tls_server_config.cert_file=/etc/random-refresher/tls/tls.crt",
                 "metrics.webConfig.config.tls_server_config.key_file=/etc/random-refresher/tls/tls.key",
                 "metrics.webConfig.tlsSecretName=rr-tls"]
# A bcrypt hash of nothing in particular, for renderings.
HASH = "$2y$10$MMQ.H7d.ZlRkmhpnCWAb6OS.BHzvY3qvz8lqFLCOIgk/x09eeVLJG"
FILE = "/etc/random-refresher/web/web-config.yml"


def values_config():
    return yaml.safe_load(open(os.path.join(CHART, "ci", VALUES)))["metrics"]["webConfig"]["config"]


def secret_file(docs):
    secret = one(docs, "Secret", "-web-config")
    assert secret["type"] == "Opaque" and list(secret["data"]) == ["web-config.yml"]
    return base64.b64decode(secret["data"]["web-config.yml"]).decode()


def test_the_secret_holds_the_values_file_and_its_checksum_rolls_the_pods():
    docs = render(VALUES)
    text = secret_file(docs)
    assert yaml.safe_load(text) == values_config()
    assert one(docs, "Secret")["metadata"]["name"] == "rr-random-refresher-web-config"
    ds = one(docs, "DaemonSet")
    annotations = ds["spec"]["template"]["metadata"]["annotations"]
    assert annotations["checksum/web-config"] == hashlib.sha256(text.encode()).hexdigest()
    # Another file, another checksum (a new Pod template: the Pods roll).
    other = one(render(VALUES, sets=["metrics.webConfig.config.tls_server_config.min_version=TLS13"]), "DaemonSet")
    assert other["spec"]["template"]["metadata"]["annotations"]["checksum/web-config"] != annotations["checksum/web-config"]
    # podAnnotations are kept beside it.
    ds = one(render(VALUES, sets=["podAnnotations.example\\.com/owner=platform"]), "DaemonSet")
    assert ds["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == "platform"


def test_the_container_gets_the_flag_and_the_read_only_mounts():
    docs = render(VALUES)
    spec, _ = pod_spec(docs)
    c = container(docs)
    assert f"--web-config-file={FILE}" in c["args"]
    # The daemon's own port, on every address, as without the file.
    assert "--listen-address=[::]:9742" in c["args"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 9742, "protocol": "TCP"}]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["web-config"] == {"name": "web-config", "mountPath": "/etc/random-refresher/web", "readOnly": True}
    assert mounts["web-config-tls"] == {"name": "web-config-tls", "mountPath": "/etc/random-refresher/tls", "readOnly": True}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["web-config"]["secret"] == {"secretName": "rr-random-refresher-web-config", "defaultMode": 0o440}
    assert vols["web-config-tls"]["secret"] == {"secretName": "random-refresher-tls", "defaultMode": 0o440}
    # The file's paths are where the Secrets are mounted.
    tls = values_config()["tls_server_config"]
    for key in ("cert_file", "key_file", "client_ca_file"):
        assert tls[key].startswith(mounts["web-config-tls"]["mountPath"] + "/"), tls[key]
    # Without tlsSecretName no certificate Secret is mounted (the file may
    # name one in extraVolumes).
    c = container(render(VALUES, sets=["metrics.webConfig.tlsSecretName="]))
    assert [m["name"] for m in c["volumeMounts"] if m["name"].startswith("web-config")] == ["web-config"]


def test_an_existing_secret_is_mounted_as_it_is():
    sets = ON + ["metrics.webConfig.existingSecret=my-web-config"]
    docs = render(sets=sets)
    assert not [d for d in docs if d["kind"] == "Secret"]
    spec, _ = pod_spec(docs)
    assert {"name": "web-config", "secret": {"secretName": "my-web-config", "defaultMode": 0o440}} in spec["volumes"]
    assert f"--web-config-file={FILE}" in spec["containers"][0]["args"]
    # The chart cannot read it: no checksum, and the scheme as told.
    assert "checksum/web-config" not in (one(docs, "DaemonSet")["spec"]["template"]["metadata"].get("annotations") or {})
    assert "scheme" not in container(docs)["livenessProbe"]["httpGet"]
    c = container(render(sets=sets + ["metrics.webConfig.existingSecretTLS=true"]))
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"


def test_the_probes_are_https_when_the_file_has_tls():
    for docs in (render(VALUES), render(sets=TLS_ONLY)):
        c = container(docs)
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics", "scheme": "HTTPS"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics", "scheme": "HTTPS"}
        assert c["livenessProbe"]["periodSeconds"] == 30  # the rest of the probe is kept
    # Basic auth alone: plain HTTP, and the probe paths need no password.
    c = container(render(sets=ON + [f"metrics.webConfig.config.basic_auth_users.prometheus={HASH}"]))
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    # A probe of the user's own that is no httpGet is left as it is.
    c = container(render(sets=TLS_ONLY + ["livenessProbe.httpGet=null", "livenessProbe.tcpSocket.port=metrics"]))
    assert "httpGet" not in c["livenessProbe"] and c["livenessProbe"]["tcpSocket"] == {"port": "metrics"}


def test_the_monitors_scrape_over_https_with_basic_auth_and_are_valid_for_the_operator():
    docs = render(VALUES)
    sm = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
    pm = one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    given = yaml.safe_load(open(os.path.join(CHART, "ci", VALUES)))
    for ep, key in ((sm, "serviceMonitor"), (pm, "podMonitor")):
        assert ep["port"] == "metrics" and ep["scheme"] == "https" and ep["path"] == "/metrics"
        assert ep["tlsConfig"] == given[key]["tlsConfig"]
        assert ep["basicAuth"] == given[key]["basicAuth"]
        assert "authorization" not in ep and "bearerTokenFile" not in ep
    objs = [d for d in docs if d["kind"] in OPERATOR_KINDS]
    # https even with the monitors' scheme left at http, and basicAuth alone.
    objs += [d for d in render(sets=TLS_ONLY + ["serviceMonitor.enabled=true", "podMonitor.enabled=true"])
             if d["kind"] in OPERATOR_KINDS]
    assert sorted(o["kind"] for o in objs) == ["PodMonitor", "PodMonitor", "ServiceMonitor", "ServiceMonitor"]
    assert all((o["spec"].get("endpoints") or o["spec"].get("podMetricsEndpoints"))[0]["scheme"] == "https" for o in objs)
    p = operator_validate(objs)
    assert p.returncode == 0, p.stdout + p.stderr
    # The validator is not a rubber stamp: a BasicAuth that is no selector fails.
    bad = yaml.safe_load(yaml.safe_dump(objs[0]))
    (bad["spec"].get("endpoints") or bad["spec"]["podMetricsEndpoints"])[0]["basicAuth"] = {"username": "prometheus"}
    assert operator_validate([bad]).returncode == 1


@pytest.mark.parametrize("sets, message", [
    (["staticPod=true"], "static Pod"),
    (["kubeRBACProxy.enabled=true"], "kubeRBACProxy.enabled both lock the metrics port"),
    (["metrics.webConfig.existingSecret=mine"], "config or existingSecret, not both"),
    (["metrics.webConfig.config.tls_server_config.client_auth_type=RequireAndVerifyClientCert"],
     "use VerifyClientCertIfGiven"),
])
def test_combinations_that_cannot_work_are_refused(sets, message):
    p = render(VALUES, sets=sets, check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr


def test_an_empty_file_and_basic_auth_behind_the_proxy_are_refused():
    p = render(sets=ON, check=False)
    assert p.returncode != 0 and "needs the file" in p.stderr, p.stderr
    for monitor in ("serviceMonitor", "podMonitor"):
        p = render("rbac-proxy-values.yaml", sets=[f"{monitor}.basicAuth.username.name=s", f"{monitor}.basicAuth.username.key=u",
                                                   f"{monitor}.basicAuth.password.name=s", f"{monitor}.basicAuth.password.key=p"],
                   check=False)
        assert p.returncode != 0 and f"{monitor}.basicAuth with kubeRBACProxy.enabled" in p.stderr, p.stderr


def test_the_helm_test_pod_speaks_https_and_asks_metrics_only_without_users():
    def urls(docs):
        pod = next(d for d in docs if d["kind"] == "Pod" and d["metadata"]["annotations"].get("helm.sh/hook") == "test")
        return [a for c in pod["spec"]["containers"] for a in c["args"] if a.startswith("--url=")]
    svc = "rr-random-refresher.hwrng.svc:9742"
    # Basic auth: /metrics wants a password the test Pod is not given.
    assert urls(render(VALUES)) == [f"--url=https://{svc}/readyz"]
    assert urls(render(sets=TLS_ONLY)) == [f"--url=https://{svc}/readyz", f"--url=https://{svc}/metrics"]
    # A Secret the chart cannot read may hold users.
    assert urls(render(sets=ON + ["metrics.webConfig.existingSecret=mine"])) == [f"--url=http://{svc}/readyz"]
    assert urls(render()) == [f"--url=http://{svc}/readyz", f"--url=http://{svc}/metrics"]


@pytest.mark.parametrize("values", ["default-values.yaml", "monitors-values.yaml", "least-privilege-values.yaml"])
def test_disabled_renders_nothing_of_it(values):
    docs = render(values)
    sets = ["metrics.webConfig.enabled=false", "metrics.webConfig.tlsSecretName=rr-tls",
            f"metrics.webConfig.config.basic_auth_users.prometheus={HASH}"]
    assert render(values, sets=sets) == docs
    assert not [d for d in docs if d["kind"] == "Secret"]
    assert not [a for a in container(docs)["args"] if a.startswith("--web-config-file")]


@pytest.mark.parametrize("bad, where", [
    ("metrics.webConfig.config.basic_auth_users.prometheus=secret", "/metrics/webConfig/config/basic_auth_users/prometheus"),
    (f"metrics.webConfig.config.basic_auth_users.a:b={HASH}", "'a:b' does not match"),
    ("metrics.webConfig.config.tls_server_config.min_version=TLS11", "/metrics/webConfig/config/tls_server_config/min_version"),
    ("metrics.webConfig.config.tls_server_config.cipher_suites={TLS_AES_128_GCM_SHA256}", "cipher_suites"),
    ("metrics.webConfig.config.http_server_config.http2=false", "http_server_config"),
    ("metrics.webConfig.config.tls_server_config.client_auth_type=RequestClientCert",
     "/metrics/webConfig/config/tls_server_config/client_auth_type"),
    ("metrics.webConfig.enable=true", "enable"),
    ("serviceMonitor.basicAuth.username.key=", "/serviceMonitor/basicAuth/username/key"),
    ("podMonitor.basicAuth.user=prometheus", "user"),
])
def test_the_schema_rejects_bad_web_config_values(bad, where):
    p = render(VALUES, sets=[bad], check=False)
    assert p.returncode != 0
    assert where in p.stderr, p.stderr


def test_the_schema_wants_a_client_ca_when_client_certificates_are_verified_and_both_halves_of_basic_auth():
    tls = TLS_ONLY + ["metrics.webConfig.config.tls_server_config.client_auth_type=VerifyClientCertIfGiven"]
    p = render(sets=tls, check=False)
    assert p.returncode != 0 and "client_ca_file" in p.stderr, p.stderr
    render(sets=tls + ["metrics.webConfig.config.tls_server_config.client_ca_file=/etc/random-refresher/tls/ca.crt"])
    render(sets=TLS_ONLY + ["metrics.webConfig.config.tls_server_config.client_auth_type=NoClientCert"])
    p = render(sets=["serviceMonitor.basicAuth.username.name=s", "serviceMonitor.basicAuth.username.key=u"], check=False)
    assert p.returncode != 0 and "/serviceMonitor/basicAuth" in p.stderr and "password" in p.stderr, p.stderr


# --- the image, started as the kubelet would start the rendered Pod -----------

SERVER_NAME = "random-refresher.hwrng.svc"


def openssl(*args, cwd):
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def issue(folder, ca_dir, serial):
    """A server certificate for SERVER_NAME and 127.0.0.1 from the CA in
    ca_dir, with its key, in folder (tls.crt, tls.key, ca.crt), as
    cert-manager writes a kubernetes.io/tls Secret."""
    os.makedirs(folder)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "tls.key",
            "-subj", "/CN=" + SERVER_NAME, "-out", "tls.csr", cwd=folder)
    with open(os.path.join(folder, "ext.cnf"), "w") as f:
        f.write(f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", os.path.join(ca_dir, "ca.crt"), "-CAkey", os.path.join(ca_dir, "ca.key"),
            "-set_serial", str(serial), "-days", "2", "-extfile", "ext.cnf", "-out", "tls.crt", cwd=folder)
    shutil.copy(os.path.join(ca_dir, "ca.crt"), folder)
    for name in ("tls.csr", "ext.cnf"):
        os.remove(os.path.join(folder, name))


def secret_volume(folder, files, version):
    """Files laid out as the kubelet lays out a Secret volume (its atomic
    writer): each name a link through ..data to a versioned folder, so that
    an update swaps them all at once. Mode 0440 as defaultMode says."""
    data = os.path.join(folder, f"..{version}")
    os.makedirs(data)
    for name, source in files.items():
        shutil.copy(source, os.path.join(data, name))
        os.chmod(os.path.join(data, name), 0o440)
    os.symlink(f"..{version}", os.path.join(folder, "..data.tmp"))
    os.replace(os.path.join(folder, "..data.tmp"), os.path.join(folder, "..data"))
    for name in files:
        if not os.path.islink(os.path.join(folder, name)):
            os.symlink(f"..data/{name}", os.path.join(folder, name))


def https_get(port, path, ca=None, auth=None):
    """GET over TLS from 127.0.0.1:port: without ca unverified, as the
    kubelet's HTTPS probe; with ca verified against it for SERVER_NAME, as
    the monitors' tlsConfig says. (status, body, the server's certificate)."""
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=SERVER_NAME)
    cert = conn.sock.getpeercert(binary_form=True)
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read().decode(), cert
    finally:
        conn.close()


def wait_https(port, path, seconds=60, **kw):
    deadline, last = time.time() + seconds, None
    while time.time() < deadline:
        try:
            last = https_get(port, path, **kw)
            if last[0] == 200:
                return last
        except OSError as e:  # not listening yet
            last = (None, str(e), None)
        time.sleep(0.5)
    pytest.fail(f"https://127.0.0.1:{port}{path}: last answer {last[:2]}")


def bcrypt_hash(user, password):
    htpasswd = shutil.which("htpasswd") or pytest.fail("no htpasswd (apache2-utils) to make a bcrypt hash")
    p = subprocess.run([htpasswd, "-nbBC", "10", user, password], capture_output=True, text=True, check=True)
    return p.stdout.strip().split(":", 1)[1]


def test_the_image_answers_the_rendered_https_probes_and_locks_metrics(tmp_path):
    """The ci values' Pod started as the kubelet would, its Secrets as
    volumes: the rendered Secret's file and a certificate from a CA made
    here. The kubelet's probes (HTTPS, unverified, no password) get 200;
    /metrics wants the password, and Prometheus's view (the CA, the
    monitor's serverName) verifies; plain HTTP is refused; the helm test
    Pod's client gets /readyz; a renewed certificate is served without a
    restart."""
    image = os.environ.get("RR_IMAGE") or pytest.fail("no RR_IMAGE (run tests/run.sh)")
    help_text = subprocess.run(["docker", "run", "--rm", image, "run", "--help"], capture_output=True, text=True).stdout
    if "--web-config-file" not in help_text:
        pytest.fail(f"{image} predates --web-config-file: rebuild it (tests/docker-setup.sh)")
    password = base64.b32encode(os.urandom(10)).decode()
    override = tmp_path / "password.yaml"
    override.write_text(yaml.safe_dump({"metrics": {"webConfig": {"config": {
        "basic_auth_users": {"prometheus": bcrypt_hash("prometheus", password)}}}}}))
    docs = render(VALUES, str(override))
    spec, _ = pod_spec(docs)
    c = spec["containers"][0]
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key",
            "-subj", "/CN=random-refresher test CA", "-days", "2", "-out", "ca.crt", cwd=ca_dir)
    issue(str(tmp_path / "issued-1"), str(ca_dir), 1)
    web_src = tmp_path / "web-config.yml"
    web_src.write_text(secret_file(docs))
    # The Secret volumes as the kubelet would fill them, as host folders.
    folders = {"web-config": tmp_path / "web", "web-config-tls": tmp_path / "tls"}
    secret_volume(str(folders["web-config"]), {"web-config.yml": str(web_src)}, 1)
    tls_files = lambda n: {k: str(tmp_path / f"issued-{n}" / k) for k in ("tls.crt", "tls.key", "ca.crt")}
    secret_volume(str(folders["web-config-tls"]), tls_files(1), 1)
    for v in spec["volumes"]:
        if v["name"] in folders:
            assert v["secret"]["defaultMode"] == 0o440
            del v["secret"]
            v["hostPath"] = {"path": str(folders[v["name"]]), "type": "Directory"}
    run, args = kubelet_docker_args(c, spec, "node-1")
    port, host_port = c["ports"][0]["containerPort"], free_port()
    name = f"rr-chart-{os.getpid()}-web-config"
    p = subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{host_port}:{port}", *run, image, *args],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    try:
        for probe in ("livenessProbe", "readinessProbe"):
            get = c[probe]["httpGet"]
            assert get["scheme"] == "HTTPS" and get["port"] == "metrics"
            wait_https(host_port, get["path"])
        status, body, first_cert = https_get(host_port, "/metrics")
        assert status == 401, (status, body)
        assert https_get(host_port, "/metrics", auth="prometheus:wrong")[0] == 401
        sm = one(docs, "ServiceMonitor")["spec"]["endpoints"][0]
        assert sm["tlsConfig"]["serverName"] == SERVER_NAME and sm["tlsConfig"]["ca"]["secret"]["key"] == "ca.crt"
        status, text, _ = wait_https(host_port, "/metrics", ca=str(ca_dir / "ca.crt"), auth="prometheus:" + password)
        assert re.search(r'random_refresher_cycles_total\{node="node-1",result="ok"\} [1-9]', text), text[:2000]
        # Every connection is TLS: a plain HTTP request gets no answer.
        conn = http.client.HTTPConnection("127.0.0.1", host_port, timeout=10)
        with pytest.raises((OSError, http.client.HTTPException)):
            conn.request("GET", "/healthz")
            conn.getresponse()
        conn.close()
        # The helm test Pod's client, in the Pod's network, at the Service's port.
        test_pod = next(d for d in docs if d["kind"] == "Pod" and d["metadata"]["annotations"].get("helm.sh/hook") == "test")
        for tc in test_pod["spec"]["containers"]:
            targs = [re.sub(r"^--url=https://[^/]+", f"--url=https://127.0.0.1:{port}", a) for a in tc["args"]]
            p = subprocess.run(["docker", "run", "--rm", "--network", f"container:{name}", "--user", "65534",
                                image, *targs], capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, (targs, p.stdout, p.stderr)
        # A renewal, written as the kubelet updates a Secret volume: the next
        # connection gets the new certificate, from the same process.
        issue(str(tmp_path / "issued-2"), str(ca_dir), 2)
        secret_volume(str(folders["web-config-tls"]), tls_files(2), 2)
        deadline, cert = time.time() + 30, first_cert
        while cert == first_cert and time.time() < deadline:
            time.sleep(0.5)
            cert = https_get(host_port, "/healthz")[2]
        assert cert != first_cert, "the renewed certificate was not served"
        with open(tmp_path / "issued-2" / "tls.crt") as f:
            assert cert == ssl.PEM_cert_to_DER_cert(f.read())
        assert https_get(host_port, "/metrics", ca=str(ca_dir / "ca.crt"), auth="prometheus:" + password)[0] == 200
        state = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}} {{.RestartCount}}", name],
                               capture_output=True, text=True).stdout.split()
        assert state == ["true", "0"], state
    finally:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
    assert "ERROR" not in logs.stderr, logs.stderr


def test_the_notes_first_scrape_follows_the_file():
    from test_chart import helm
    def notes(*args):
        p = subprocess.run([helm(), "install", "rr", CHART, "--dry-run=client", "--namespace", "hwrng", *args],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return next(l.strip() for l in p.stdout.split("NOTES:")[1].splitlines() if "/metrics" in l)
    assert notes("-f", os.path.join(CHART, "ci", VALUES)).startswith("curl -sk -u USER https://localhost:9742/metrics")
    assert notes(*[a for s in TLS_ONLY for a in ("--set", s)]).startswith("curl -sk https://localhost:9742/metrics")
    assert notes().startswith("curl -s localhost:9742/metrics")
