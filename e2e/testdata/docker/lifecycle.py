"""A container's life through docker-py, unmodified, against Arrow.

Run by e2e/docker_py_test.go with DOCKER_HOST pointing at a test arrowd's
Docker socket, and in the environment: ARCHIVE (a `docker save` tarball of
the busybox test image), TAG (its tag), PORT (a free host port) and PAGE (a
random word the web server serves). Every step asserts what it got; the
script prints "lifecycle ok" last, and exits non-zero on the first
failure.
"""

import os
import sys
import time
import urllib.request

import docker

archive, tag = os.environ["ARCHIVE"], os.environ["TAG"]
port, page = int(os.environ["PORT"]), os.environ["PAGE"]

print("docker-py", docker.__version__, flush=True)
client = docker.from_env()
assert client.ping() is True
version = client.version()
assert "Arrow" in version["Platform"]["Name"], version

# images.load: the tarball's tag comes back.
with open(archive, "rb") as f:
    images = client.images.load(f.read())
assert any(tag in im.tags for im in images), [im.tags for im in images]
assert tag in [t for im in client.images.list() for t in im.tags]

# An attached run: output and a failing exit status.
out = client.containers.run(tag, ["sh", "-c", "echo attached"], remove=True)
assert out == b"attached\n", out
try:
    client.containers.run(tag, ["sh", "-c", "echo bad >&2; exit 3"], remove=True, stderr=True)
    raise AssertionError("exit 3 raised no ContainerError")
except docker.errors.ContainerError as e:
    assert e.exit_status == 3, e.exit_status

# Detached, with a published port.
script = (
    "echo %s > /www/index.html && httpd -p 80 -h /www && echo serving; "
    "while true; do sleep 1; done" % page
)
c = client.containers.run(
    tag, ["sh", "-c", script], detach=True, name="pyweb",
    ports={"80/tcp": ("127.0.0.1", port)}, labels={"e2e": "docker-py"},
)
c.reload()
assert c.status == "running", c.status
assert c.name == "pyweb", c.name
assert c.labels.get("e2e") == "docker-py", c.labels
bound = c.attrs["NetworkSettings"]["Ports"]["80/tcp"]
assert bound and bound[0]["HostPort"] == str(port), bound

# The server answers from the host (it may still be starting).
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
            body = r.read().decode()
        break
    except OSError as e:
        if time.monotonic() > deadline:
            raise AssertionError("GET the published port: %s" % e)
        time.sleep(0.2)
assert body.strip() == page, body

# list, with a label filter, as compose and others filter.
found = client.containers.list(filters={"label": "e2e=docker-py"})
assert [x.id for x in found] == [c.id], found

# logs: what the server printed.
deadline = time.monotonic() + 30
while b"serving" not in c.logs():
    assert time.monotonic() < deadline, c.logs()
    time.sleep(0.2)

# exec_run: output and exit status, streams demultiplexed.
res = c.exec_run(["sh", "-c", "cat /www/index.html; echo err >&2; exit 4"], demux=True)
assert res.exit_code == 4, res
assert res.output[0].decode().strip() == page, res.output
assert res.output[1] == b"err\n", res.output

# stop: exited, kept; remove: gone.
c.stop(timeout=5)
c.reload()
assert c.status == "exited", c.status
assert c.id in [x.id for x in client.containers.list(all=True)]
assert c.id not in [x.id for x in client.containers.list()]
c.remove()
try:
    client.containers.get(c.id)
    raise AssertionError("removed container still there")
except docker.errors.NotFound:
    pass
assert client.containers.list(all=True) == []

print("lifecycle ok", flush=True)
sys.exit(0)
