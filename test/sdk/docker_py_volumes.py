"""docker-py (Debian's python3-docker) volumes against berthd: create, list
with filters, get, use from containers (named, bind, anonymous), remove
conflicts, prune. Prints one line per check; exits non-zero on failure."""
import sys
import docker
from docker.errors import APIError, NotFound

host, bind_dir = sys.argv[1], sys.argv[2]
c = docker.DockerClient(base_url=host, version="auto")

v = c.volumes.create(name="py-vol", labels={"via": "docker-py"})
assert v.name == "py-vol" and v.attrs["Labels"] == {"via": "docker-py"}, v.attrs
assert [x.name for x in c.volumes.list(filters={"label": "via=docker-py"})] == ["py-vol"]
assert c.volumes.get("py-vol").attrs["Mountpoint"].endswith("/volumes/py-vol/_data")
print("create list get ok")

out = c.containers.run("busybox", ["sh", "-c", "echo sdk > /v/f; cat /b/host; touch /b/ro 2>&1 || true"], remove=True,
                       volumes={"py-vol": {"bind": "/v", "mode": "rw"}, bind_dir: {"bind": "/b", "mode": "ro"}})
assert out == b"from host\ntouch: /b/ro: Read-only file system\n", out
out = c.containers.run("busybox", ["cat", "/again/f"], remove=True, mounts=[docker.types.Mount("/again", "py-vol", read_only=True)])
assert out == b"sdk\n", out
print("run with volumes and mounts ok")

ctr = c.containers.create("busybox", ["true"], volumes=["py-vol:/v"], name="py-user")
try:
    v.remove()
    raise AssertionError("removing a volume in use must fail")
except APIError as e:
    assert e.status_code == 409 and "volume is in use" in str(e), e
ctr.remove()
v.remove()
try:
    c.volumes.get("py-vol")
    raise AssertionError("volume must be gone")
except NotFound:
    pass
print("remove ok")

c.volumes.create(name="py-prune", labels={"via": "docker-py"})
res = c.volumes.prune(filters={"label": "via=docker-py", "all": "true"})
assert res["VolumesDeleted"] == ["py-prune"], res
print("prune ok")
