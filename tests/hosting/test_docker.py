"""Hosted servers on a real Docker engine with the runtime image (``build_runtime_image``):
hardened containers, tools through the real gateway with the SDK client, logs, failures,
the health sweep, reconcile and the egress rules. Skipped, saying why, where no engine
answers or the image of this tree is not built (``.ci/run`` provides both)."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading

import docker
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from apps.gateway.models import UpstreamServer
from apps.hosting import firewall, images, runtimes
from apps.hosting.models import AllowedImage, Instance
from apps.hosting.selectors import instance_logs
from apps.hosting.services import (
    instance_deploy,
    instance_health_sweep,
    instance_reconcile,
    instance_terminate,
)
from apps.workspaces.services import workspace_set_rate_limit

pytestmark = pytest.mark.django_db(transaction=True)
TMP = "/tmp"  # noqa: S108 - the containers' own /tmp
CATALOG = importlib.import_module("apps.hosting.migrations.0004_seed_catalog").CATALOG


@pytest.fixture(scope="session")
def engine():
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"no Docker engine answers ({exc}); `.ci/docker.sh up` starts one")
    return client


@pytest.fixture(scope="session")
def runtime_image(engine) -> str:
    try:
        base = engine.images.get(images.BASE_IMAGE).id
        reference = f"{images.REPOSITORY}:{images.content_tag(base)}"
        return engine.images.get(reference).id
    except docker.errors.ImageNotFound:
        pytest.skip("the runtime image of this tree is not built: python manage.py build_runtime_image")


@pytest.fixture
def docker_catalog(runtime_image, settings, engine) -> dict[str, AllowedImage]:
    """The seeded catalog pinned to the image (transactional tests empty the tables), the
    Docker runtime selected; every container and network a test made is removed after it."""
    settings.MCPNEST_HOSTING_RUNTIME = "docker"
    runtimes._docker_runtime = None
    catalog = {}
    for entry in CATALOG:
        values = {**entry, "image": runtime_image, "runtime_image": True, "verified": True}
        catalog[entry["slug"]] = AllowedImage.objects.update_or_create(slug=values.pop("slug"), defaults=values)[0]
    catalog["notes"] = AllowedImage.objects.update_or_create(
        slug="notes",
        defaults={"name": "Notes", "image": runtime_image, "mcp_command": "python -m apps.hosting.servers.notes"},
    )[0]
    yield catalog
    for container in engine.containers.list(all=True, filters={"label": runtimes.INSTANCE_LABEL}):
        container.remove(force=True)
    for network in engine.networks.list(filters={"label": runtimes.WORKSPACE_LABEL}):
        network.remove()
    runtimes._docker_runtime = None


def _running(instance: Instance) -> Instance:
    assert (instance.status, instance.healthy) == (Instance.Status.RUNNING, True), instance.error
    return instance


def test_memory_and_everything_run_hardened_and_answer_through_the_gateway(
    cast, issue, gateway, docker_catalog, engine
):
    alice = cast.access(cast.alice)
    memory = _running(instance_deploy(access=alice, image=docker_catalog["memory"], env={}))
    everything = _running(instance_deploy(access=alice, image=docker_catalog["everything"], env={}, profile="medium"))

    for instance, cpus, memory_bytes in ((memory, 0.25, 256 << 20), (everything, 0.5, 512 << 20)):
        attrs = engine.containers.get(instance.runtime_id).attrs
        host, config = attrs["HostConfig"], attrs["Config"]
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["ReadonlyRootfs"] is True and host["Privileged"] is False
        assert set(host["Tmpfs"]) == {TMP} and {"noexec", "nosuid", "nodev"} <= set(host["Tmpfs"][TMP].split(","))
        assert config["User"] == "65534:65534"
        assert host["PidsLimit"] == 128 and host["Init"] is True
        assert host["Memory"] == memory_bytes
        assert host["CpuQuota"] == int(cpus * runtimes.CPU_PERIOD)  # clamped to the profile once healthy
        assert attrs["Mounts"] == [] and not host["Binds"]
        assert host["PortBindings"]["8080/tcp"][0]["HostIp"] == "127.0.0.1"
        assert host["NetworkMode"] == f"mcpnest-ws{cast.acme.pk}-none"
        assert config["Labels"][runtimes.INSTANCE_LABEL] == str(instance.pk)
        assert attrs["Config"]["Image"] == docker_catalog["memory"].image

    workspace_set_rate_limit(access=alice, per_minute=100_000)
    url, token = f"{gateway()}/api/gw/acme", issue(cast.carol)
    echo, create, read = (
        f"{everything.tool_prefix}echo",
        f"{memory.tool_prefix}create_entities",
        f"{memory.tool_prefix}read_graph",
    )

    async def session():
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
        async with http, Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            echoed = await client.call_tool(echo, {"message": "through a container"})
            await client.call_tool(
                create,
                {"entities": [{"name": "mcpnest", "entityType": "project", "observations": ["hosted"]}]},
            )
            graph = await client.call_tool(read, {})
        return names, echoed, graph

    names, echoed, graph = asyncio.run(session())
    assert {echo, create, read} <= names
    assert "through a container" in echoed.content[0].text
    assert "mcpnest" in graph.content[0].text

    assert any("bridge: ready" in line for line in instance_logs(access=alice, instance=memory).lines)

    for instance in (memory, everything):
        assert instance_terminate(access=alice, instance=instance).status == Instance.Status.STOPPED
    assert engine.containers.list(all=True, filters={"label": runtimes.INSTANCE_LABEL}) == []
    assert engine.networks.list(filters={"label": runtimes.WORKSPACE_LABEL}) == []
    assert not UpstreamServer.objects.filter(workspace=cast.acme, slug__startswith="h-").exists()


def test_a_server_without_its_credential_fails_naming_it(cast, docker_catalog):
    keyed = AllowedImage.objects.create(
        slug="keyed",
        name="Keyed notes",
        image=docker_catalog["notes"].image,
        mcp_command="python -m apps.hosting.servers.notes --require NOTES_API_KEY",
        # Optional in the form, so the server itself is what refuses to start.
        required_env_vars=[{"key": "NOTES_API_KEY", "label": "Key", "type": "password", "help": "", "required": False}],
    )
    failed = instance_deploy(access=cast.access(cast.alice), image=keyed, env={})
    assert failed.status == Instance.Status.FAILED
    assert "NOTES_API_KEY" in failed.error and "exited before it was ready" in failed.error


def test_a_server_that_needs_the_internet_still_deploys_and_answers_like_bad_credentials(cast, docker_catalog):
    """brave-search without egress: it starts, lists its tools, and a search fails as it
    would with a wrong key (no network), never a hang or a failed deploy."""
    alice = cast.access(cast.alice)
    brave = _running(instance_deploy(access=alice, image=docker_catalog["brave-search"], env={"BRAVE_API_KEY": "x"}))
    server = UpstreamServer.objects.get(pk=brave.upstream_server_id)
    assert server.is_live


def test_the_health_sweep_and_reconcile_catch_what_the_engine_did(cast, docker_catalog, engine):
    alice = cast.access(cast.alice)
    crashed = _running(instance_deploy(access=alice, image=docker_catalog["notes"], env={}))
    engine.containers.get(crashed.runtime_id).kill()
    assert instance_health_sweep() == 1
    crashed.refresh_from_db()
    assert crashed.status == Instance.Status.FAILED and "exited" in crashed.error

    vanished = _running(instance_deploy(access=alice, image=docker_catalog["notes"], env={}))
    orphan = _running(instance_deploy(access=alice, image=docker_catalog["notes"], env={}))
    engine.containers.get(vanished.runtime_id).remove(force=True)  # someone ran docker rm
    Instance.objects.filter(pk=orphan.pk).delete()  # a container whose row is gone
    assert instance_reconcile() == (1, 1)
    vanished.refresh_from_db()
    assert vanished.status == Instance.Status.FAILED and "container is gone" in vanished.error
    assert engine.containers.list(all=True, filters={"label": f"{runtimes.INSTANCE_LABEL}={orphan.pk}"}) == []
    assert instance_reconcile() == (0, 0)


@pytest.fixture
def egress_rules():
    try:
        firewall.add()
    except firewall.FirewallError as exc:
        pytest.skip(f"cannot install the egress rules here: {exc}")
    yield


@pytest.fixture
def host_service():
    """A TCP service on every address of the host, as a careless one would be."""
    server = socket.create_server(("0.0.0.0", 0))  # noqa: S104 - reachable from containers on purpose
    port = server.getsockname()[1]

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.sendall(b"hello from the host\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield port
    server.close()


PROBE = """
import socket, sys
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3) as conn:
            print(target, "open", conn.recv(64).decode().strip())
    except OSError as exc:
        print(target, "blocked", type(exc).__name__)
"""


@pytest.fixture
def outside():
    """A host "on the internet" that never leaves this machine: a network namespace behind
    a veth pair, routed by the host, serving TCP on 10.251.7.2:9999 (as the hosting recipe
    in ../shared/docs/hosting/ tests egress)."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip) to make a network namespace")
    name, veth = f"mcpnest-out-{os.getpid()}", "vmcpout"

    def ip(*args: str, check: bool = True) -> None:
        subprocess.run(["ip", *args], check=check, capture_output=True)  # noqa: S603, S607

    ip("link", "del", veth, check=False)
    ip("netns", "del", name, check=False)
    try:
        ip("netns", "add", name)
        ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}-ns")
        ip("link", "set", f"{veth}-ns", "netns", name)
        ip("addr", "add", "10.251.7.1/24", "dev", veth)
        ip("link", "set", veth, "up")
        ip("netns", "exec", name, "ip", "addr", "add", "10.251.7.2/24", "dev", f"{veth}-ns")
        ip("netns", "exec", name, "ip", "link", "set", f"{veth}-ns", "up")
        ip("netns", "exec", name, "ip", "route", "add", "default", "via", "10.251.7.1")
    except subprocess.CalledProcessError as exc:
        ip("link", "del", veth, check=False)
        ip("netns", "del", name, check=False)
        pytest.skip(f"cannot make a network namespace here: {exc.stderr.decode().strip()}")
    server = subprocess.Popen(  # noqa: S603 - our own one-line server
        ["ip", "netns", "exec", name, sys.executable, "-c", OUTSIDE_SERVER],  # noqa: S607
        stdout=subprocess.PIPE,
    )
    assert server.stdout.readline().strip() == b"listening"
    try:
        yield "10.251.7.2:9999"
    finally:
        server.kill()
        server.wait()
        ip("link", "del", veth, check=False)
        ip("netns", "del", name, check=False)


OUTSIDE_SERVER = """
import socket
server = socket.create_server(("10.251.7.2", 9999))
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    conn.sendall(b"hello from outside\\n")
    conn.close()
"""


def test_without_egress_a_container_reaches_neither_the_host_nor_beyond(
    cast, docker_catalog, engine, egress_rules, host_service, outside
):
    assert firewall.installed()
    runtime = runtimes.runtime_for_settings()
    outcome = {}
    for egress in ("none", "open"):
        network = runtime._network(cast.acme.pk, egress)
        network.reload()
        host_address = network.attrs["IPAM"]["Config"][0]["Gateway"]
        other = engine.networks.create("mcpnest-probe-other", labels={runtimes.WORKSPACE_LABEL: "0"})
        other.reload()
        other_address = other.attrs["IPAM"]["Config"][0]["Gateway"]  # the host, on a network not this one's
        targets = [f"{host_address}:{host_service}", f"{other_address}:{host_service}", outside]
        output = engine.containers.run(
            docker_catalog["notes"].image,
            entrypoint=["python3", "-c", PROBE, *targets],
            network=network.name,
            labels={runtimes.INSTANCE_LABEL: "0"},
            remove=True,
        )
        other.remove()
        outcome[egress] = output.decode()
    assert outcome["none"].count("blocked") == 3, outcome["none"]
    # The control: the same probe on an open network reaches the host and the outside, so
    # "blocked" above is the rules' doing, not a broken probe.
    assert "open hello from the host" in outcome["open"], outcome["open"]
    assert f"{outside} open hello from outside" in outcome["open"], outcome["open"]
