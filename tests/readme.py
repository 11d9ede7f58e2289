"""The shell blocks of the README, the documents under docs/ and the chart's
README, as a new user would paste them.

Every ```sh block carries a marker on the line before it, and this fails on
one that does not, so no command escapes both running and saying why not:

  <!-- tested -->          each command runs, from the repository root, and
                           must exit 0 (run once more before it counts as
                           failed: a health check fails one good block in
                           1,250 by chance);
  <!-- tested: daemon -->  each command is a daemon: it must answer
                           /healthz on 127.0.0.1:9742 and exit 0 on SIGTERM;
  <!-- rendered -->        its `helm` commands are rendered as written by
                           tests/chart/test_chart.py (kubectl needs a
                           cluster); the block must hold one;
  <!-- not run: WHY -->    a command that cannot run on a test machine, and
                           what tests the same thing instead.

`random-refresher` is the binary in target/release (put first on PATH, as
an installed one would be), and `docker` is $RR_DOCKER_BUILD where that is
set: Debian's client, which reaches the engine's own BuildKit as the README
says, where a newer client on PATH would want the buildx plugin. Run by
tests/readme.sh."""
import glob
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "chart/README.md"] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))
MARKER = re.compile(r"^<!-- (tested|tested: daemon|rendered|not run: (.+)) -->$")
FENCE = re.compile(r"^( *)```(\S*)\s*$")


def blocks(path):
    """Each ```sh block of a document: (line, marker or None, [commands])."""
    lines = open(os.path.join(ROOT, path)).read().split("\n")
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        if lang != "sh":
            continue
        before = next((l.strip() for l in reversed(lines[:start]) if l.strip()), "")
        found.append((start + 1, MARKER.match(before), commands(body)))
    return found


def commands(body):
    """Lines joined where they end in a backslash; comments and blanks dropped."""
    out, pending = [], ""
    for line in body:
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        out.append(pending + line)
        pending = ""
    return out


def env():
    e = dict(os.environ)
    path = [os.path.join(ROOT, "target", "release")]
    if e.get("RR_DOCKER_BUILD"):
        shims = os.path.join(ROOT, "target", "readme-bin")
        os.makedirs(shims, exist_ok=True)
        link = os.path.join(shims, "docker")
        if os.path.islink(link):
            os.unlink(link)
        os.symlink(e["RR_DOCKER_BUILD"], link)
        path.append(shims)
    e["PATH"] = os.pathsep.join(path + [e["PATH"]])
    return e


def run_once(command):
    p = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=900)
    return p.returncode == 0, p.stderr


def healthy():
    try:
        with urllib.request.urlopen("http://127.0.0.1:9742/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def run_daemon(command):
    p = subprocess.Popen(["bash", "-c", "exec " + command], cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline, why = time.monotonic() + 60, ""
    while not healthy():
        if p.poll() is not None or time.monotonic() > deadline:
            why = "never answered /healthz on 127.0.0.1:9742"
            break
        time.sleep(0.3)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if not why and p.returncode != 0:
        why = "exit %d after SIGTERM" % p.returncode
    return not why, why + "\n" + p.stderr.read()


def anchors(path):
    """GitHub's anchors for a document's headings."""
    out, inside = set(), False
    for line in open(os.path.join(ROOT, path)).read().split("\n"):
        if FENCE.match(line):
            inside = not inside
        elif not inside and re.match(r"^#+ ", line):
            text = re.sub(r"[^\w\- ]", "", re.sub(r"^#+ ", "", line).strip().lower())
            out.add(text.replace(" ", "-"))
    return out


def broken_links(path):
    """Links to a file of the repository, or an anchor in one, that lead nowhere."""
    text = open(os.path.join(ROOT, path)).read()
    bad = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
        if not os.path.exists(os.path.join(ROOT, resolved)):
            bad.append(target)
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            bad.append(target)
    return bad


def main():
    passed, failures = 0, []
    for path in DOCS:
        failures += ["%s: a link that leads nowhere: %s" % (path, t) for t in broken_links(path)]
    for path in DOCS:
        for line, marker, cmds in blocks(path):
            where = "%s:%d" % (path, line)
            if marker is None:
                failures.append("%s: a shell block with no marker (tested, tested: daemon, rendered, not run: WHY)" % where)
                continue
            kind = marker.group(1)
            if kind == "rendered":
                if not any(re.match(r"^helm\s", c) for c in cmds):
                    failures.append("%s: marked rendered, but holds no helm command" % where)
                continue
            if kind.startswith("not run"):
                continue
            for c in cmds:
                ok, why = run_daemon(c) if kind == "tested: daemon" else run_once(c)
                if not ok and kind == "tested":
                    ok, why = run_once(c)
                if ok:
                    passed += 1
                else:
                    failures.append("%s: failed: %s\n%s" % (where, c, "\n".join(why.strip().split("\n")[-5:])))
    for f in failures:
        print("readme: " + f, file=sys.stderr)
    print("readme: %d passed, %d failed" % (passed, len(failures)))
    return 1 if failures or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
