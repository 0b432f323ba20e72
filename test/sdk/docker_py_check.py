"""docker-py (Debian's python3-docker) against berthd: the calls SDK users
make most, at the API versions docker-py asks for. Prints one line per check
and exits non-zero on the first failure."""
import sys
import docker
from docker.errors import ImageNotFound, NotFound, ContainerError, APIError

host = sys.argv[1]

for version in ["1.41", "1.45", "auto"]:
    c = docker.DockerClient(base_url=host, version=version)
    assert c.ping() is True
    v = c.version()
    assert v["ApiVersion"] and v["Os"] == "linux", v
    info = c.info()
    assert "Containers" in info and "Images" in info, info
    print(f"{version}: ping version info ok (api {c.api.api_version})")

c = docker.DockerClient(base_url=host, version="1.41")
img = c.images.get("busybox")
assert "busybox:latest" in img.tags, img.tags
assert any("busybox:latest" in i.tags for i in c.images.list())
print("images ok")

out = c.containers.run("busybox", ["echo", "hello from docker-py"], remove=True)
assert out == b"hello from docker-py\n", out
print("run ok")

ctr = c.containers.run("busybox", ["sh", "-c", "echo started; sleep 30"], detach=True, name="sdk-detached", labels={"via": "docker-py"})
for _ in range(100):
    if b"started" in ctr.logs():
        break
ctr.reload()
assert ctr.status == "running", ctr.status
assert ctr.labels["via"] == "docker-py"
assert [x.name for x in c.containers.list(filters={"label": "via=docker-py"})] == ["sdk-detached"]
ctr.stop(timeout=1)
res = ctr.wait()
assert res["StatusCode"] == 137, res
ctr.remove()
print("detached lifecycle ok")

try:
    c.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    raise AssertionError("expected ContainerError")
except ContainerError as e:
    assert e.exit_status == 3
try:
    c.images.get("no-such-image:nope")
    raise AssertionError("expected ImageNotFound")
except ImageNotFound:
    pass
try:
    c.containers.get("no-such-container")
    raise AssertionError("expected NotFound")
except NotFound:
    pass
try:
    c.containers.create("busybox", ["true"], name="bad/name")
    raise AssertionError("expected APIError")
except APIError as e:
    assert e.status_code == 400, e.status_code
print("errors ok")
