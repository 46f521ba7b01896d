"""The Consul registrar against a real Consul agent: registration, idempotence, outages, restarts and ACLs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import consul
import pytest
from prometheus_client import CollectorRegistry

from mcpfleet_cli.devcluster.cluster import free_port
from mcpfleet_contracts.mcpserver import parse_spec
from mcpfleet_operator.builders.consul import Registration, build_registration
from mcpfleet_operator.builders.model import Owner
from mcpfleet_operator.consul import REQUEST_TIMEOUT_SECONDS, STATE_REASONS, ConsulRegistrar, RegistrationState
from mcpfleet_operator.settings import OperatorSettings
from tests.consul_agent import ConsulAgent, running_consul
from tests.integration.conftest import eventually

pytestmark = pytest.mark.integration

KEY = ("team-a", "k8s")
OWNER = Owner("k8s", "team-a", "uid-k8s")
SERVICE_ID = "mcpfleet-k8s-ops-team-a-k8s"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def registration(digest: str | None = DIGEST_A, owner: Owner = OWNER, **spec: Any) -> Registration:
    parsed = parse_spec({"type": "k8s-ops", "consul": {"checkInterval": "7s", "checkTimeout": "3s"}, **spec})
    # Nothing listens on port 1: the check goes critical, which changes nothing about the registration.
    built = build_registration(owner, parsed, address="127.0.0.1", port=1, tools_digest=digest)
    assert built is not None
    return built


@dataclass
class States:
    """on_state's calls, in order."""

    calls: list[tuple[tuple[str, str], RegistrationState]] = field(default_factory=list)

    async def __call__(self, key: tuple[str, str], state: RegistrationState) -> None:
        self.calls.append((key, state))

    @property
    def last(self) -> RegistrationState:
        return self.calls[-1][1]


@dataclass
class Harness:
    registrar: ConsulRegistrar
    states: States
    registry: CollectorRegistry

    def operations(self, operation: str, result: str = "ok") -> float:
        labels = {"operation": operation, "result": result}
        return self.registry.get_sample_value("mcpfleet_operator_consul_operations_total", labels) or 0.0

    def gauge(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(("MCPFLEET_OPERATOR_", "CONSUL_")):
            monkeypatch.delenv(name)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    with running_consul(tmp_path / "consul") as started:
        yield started


@contextlib.asynccontextmanager
async def registrar(address: str | None, **settings: Any) -> AsyncIterator[Harness]:
    config = OperatorSettings(consul_address=address, consul_retry_seconds=1, metrics_port=0, **settings)
    harness = Harness(ConsulRegistrar(config, registry := CollectorRegistry(), states := States()), states, registry)
    await harness.registrar.start()
    try:
        yield harness
    finally:
        await harness.registrar.close()


class Relay:
    """A TCP relay between the registrar and the agent: closing it is a network partition that the agent,
    unlike a stopped dev agent, survives with its registrations; ``hang`` accepts and never answers."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.hang = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self.hang:
                await reader.read()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers.add(upstream_writer)
            await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


@pytest.fixture
async def relay(agent: ConsulAgent) -> AsyncIterator[Relay]:
    started = Relay(agent.http_port)
    await started.open()
    yield started
    await started.close()


def foreign_register(agent: ConsulAgent, service_id: str, meta: dict[str, str]) -> None:
    """A registration someone else made, through Consul's own client (blocking: run it in a thread)."""
    client = consul.Consul(host="127.0.0.1", port=agent.http_port, token=agent.management_token)
    client.agent.service.register("someone-else", service_id=service_id, port=80, tags=["mcpfleet"], meta=meta)


# ----------------------------------------------------------------------- tests


@pytest.mark.usefixtures("clean_env")
async def test_registration_is_visible_with_tags_meta_and_check(agent: ConsulAgent) -> None:
    wanted = registration()
    async with registrar(agent.address) as harness:
        state = await harness.registrar.ensure(KEY, wanted)

        assert state == RegistrationState(True, "Registered", "registered in Consul as mcp-team-a-k8s", SERVICE_ID)
        assert harness.states.calls == [(KEY, state)]
        listed = agent.services()[SERVICE_ID]
        assert listed["Service"] == "mcp-team-a-k8s"
        assert (listed["Address"], listed["Port"]) == ("127.0.0.1", 1)
        assert listed["Tags"] == ["mcp", "mcpfleet", "type:k8s-ops", "prefix:k8s", "transport:streamable-http"]
        assert listed["Meta"]["tools_digest"] == DIGEST_A
        assert listed["Meta"]["k8s_namespace"] == "team-a"
        assert listed["Meta"]["mcpserver"] == "k8s"
        [check] = [c for c in agent.checks().values() if c["ServiceID"] == SERVICE_ID]
        assert (check["Type"], check["Interval"], check["Timeout"]) == ("http", "7s", "3s")
        assert harness.gauge("mcpfleet_operator_consul_up") == 1
        assert harness.gauge("mcpfleet_operator_consul_registrations", state="desired") == 1
        assert harness.gauge("mcpfleet_operator_consul_registrations", state="registered") == 1
        assert harness.registrar.desired() == {KEY: wanted}


@pytest.mark.usefixtures("clean_env")
async def test_the_same_registration_is_not_written_twice_not_even_after_an_operator_restart(
    agent: ConsulAgent,
) -> None:
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        content_hash = agent.get(f"/v1/agent/service/{SERVICE_ID}")["ContentHash"]
        again = await harness.registrar.ensure(KEY, registration())
        assert again.registered
        assert harness.operations("register") == 1
        assert len(harness.states.calls) == 1

    async with registrar(agent.address) as restarted:
        state = await restarted.registrar.ensure(KEY, registration())
        assert state.reason == "Registered"
        assert restarted.operations("register") == 0
        assert restarted.states.calls == [(KEY, state)]
    assert agent.get(f"/v1/agent/service/{SERVICE_ID}")["ContentHash"] == content_hash


@pytest.mark.usefixtures("clean_env")
async def test_a_new_tools_digest_updates_the_registration(agent: ConsulAgent) -> None:
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration(DIGEST_A))
        state = await harness.registrar.ensure(KEY, registration(DIGEST_B))

        assert state.registered
        assert agent.services()[SERVICE_ID]["Meta"]["tools_digest"] == DIGEST_B
        assert harness.operations("register") == 2
        assert len(harness.states.calls) == 1


@pytest.mark.usefixtures("clean_env")
async def test_remove_deregisters_and_a_repeated_remove_changes_nothing(agent: ConsulAgent) -> None:
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        state = await harness.registrar.remove(KEY)

        assert state == RegistrationState(False, "Deregistered", "not registered in Consul")
        assert SERVICE_ID not in agent.services()
        assert [call[1].reason for call in harness.states.calls] == ["Registered", "Deregistered"]
        assert harness.registrar.desired() == {}

        await harness.registrar.remove(KEY)
        assert harness.operations("deregister") == 1
        assert len(harness.states.calls) == 2


@pytest.mark.usefixtures("clean_env")
async def test_a_type_change_replaces_the_old_registration(agent: ConsulAgent) -> None:
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        custom = registration(type="custom", image="example/srv:1")
        state = await harness.registrar.ensure(KEY, custom)

        assert state.service_id == "mcpfleet-custom-team-a-k8s"
        assert set(agent.services()) == {"mcpfleet-custom-team-a-k8s"}


@pytest.mark.usefixtures("clean_env")
async def test_consul_down_is_reported_at_once_and_a_restarted_consul_gets_the_registration(
    agent: ConsulAgent,
) -> None:
    async with registrar(agent.address) as harness:
        agent.stop()
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS + 5):
            state = await harness.registrar.ensure(KEY, registration())

        assert not state.registered
        assert state.reason == "ConsulUnreachable"
        assert agent.address in state.message
        assert harness.states.last == state
        assert harness.gauge("mcpfleet_operator_consul_up") == 0

        await asyncio.to_thread(agent.start)

        async def registered_again() -> bool:
            return SERVICE_ID in agent.services() and harness.states.last.reason == "Registered"

        await eventually(registered_again, within=20)
        assert [call[1].reason for call in harness.states.calls] == ["ConsulUnreachable", "Registered"]
        assert harness.gauge("mcpfleet_operator_consul_up") == 1


@pytest.mark.usefixtures("clean_env")
async def test_a_consul_restarted_empty_gets_its_registrations_back_within_a_retry_interval(
    agent: ConsulAgent,
) -> None:
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        await asyncio.to_thread(agent.restart)

        async def restored() -> bool:
            return SERVICE_ID in agent.services() and harness.operations("register") == 2

        await eventually(restored, within=20)
        assert agent.services()[SERVICE_ID]["Meta"]["tools_digest"] == DIGEST_A
        assert [c for c in agent.checks().values() if c["ServiceID"] == SERVICE_ID]
        assert harness.operations("verify") >= 1
        assert harness.states.last.reason == "Registered"


@pytest.mark.usefixtures("clean_env")
async def test_a_deletion_during_a_partition_is_carried_out_when_consul_is_reachable_again(
    agent: ConsulAgent, relay: Relay
) -> None:
    async with registrar(relay.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        await relay.close()

        state = await harness.registrar.remove(KEY)
        assert state.reason == "ConsulUnreachable"
        assert state.registered, "the registration is still in Consul until the deregistration gets through"
        assert SERVICE_ID in agent.services()

        await relay.open()

        async def deregistered() -> bool:
            return SERVICE_ID not in agent.services() and harness.states.last.reason == "Deregistered"

        await eventually(deregistered, within=20)


@pytest.mark.usefixtures("clean_env")
async def test_a_consul_that_never_answers_costs_one_request_timeout(agent: ConsulAgent, relay: Relay) -> None:
    async with registrar(relay.address) as harness:
        # Cut the connections the client keeps open, then accept new ones without ever answering.
        await relay.close()
        relay.hang = True
        await relay.open()
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS * 2 + 5):
            state = await harness.registrar.ensure(KEY, registration())
        assert state.reason == "ConsulUnreachable"
        assert not harness.states.last.registered


@pytest.mark.usefixtures("clean_env")
async def test_services_that_are_not_ours_are_left_alone(agent: ConsulAgent) -> None:
    await asyncio.to_thread(foreign_register, agent, "foreign-1", {"k8s_namespace": "team-z", "mcpserver": "x"})
    await asyncio.to_thread(foreign_register, agent, "foreign-2", {})
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        verified = harness.operations("verify")

        async def verified_twice() -> bool:
            return harness.operations("verify") >= verified + 2

        await eventually(verified_twice, within=20)
        assert {"foreign-1", "foreign-2", SERVICE_ID} <= set(agent.services())
        assert harness.operations("deregister") == 0


@pytest.mark.usefixtures("clean_env")
async def test_a_duplicate_registration_of_a_managed_server_is_removed(agent: ConsulAgent) -> None:
    # Left over from a run when the server had another type: same server, another id.
    await asyncio.to_thread(
        foreign_register, agent, "mcpfleet-cmdb-team-a-k8s", {"k8s_namespace": "team-a", "mcpserver": "k8s"}
    )
    async with registrar(agent.address) as harness:
        await harness.registrar.ensure(KEY, registration())
        assert set(agent.services()) == {SERVICE_ID}


async def test_without_an_address_registration_is_disabled(clean_env: None) -> None:
    async with registrar(None) as harness:
        state = await harness.registrar.ensure(KEY, registration())
        assert (state.registered, state.reason) == (False, "Disabled")
        assert "MCPFLEET_OPERATOR_CONSUL_ADDRESS" in state.message
        assert (await harness.registrar.remove(KEY)).reason == "Disabled"
        assert harness.operations("register") + harness.operations("register", "error") == 0


def states_by_reason(harness: Harness) -> dict[str, float]:
    """mcpfleet_operator_consul_registration_states, by reason (every reason has its series, 0 included)."""
    found = {r: harness.gauge("mcpfleet_operator_consul_registration_states", reason=r) for r in STATE_REASONS}
    assert None not in found.values(), f"a reason has no series: {found}"
    return {reason: value or 0.0 for reason, value in found.items()}


@pytest.mark.usefixtures("clean_env")
async def test_the_state_gauge_counts_servers_by_the_reason_of_their_registration(agent: ConsulAgent) -> None:
    other_key = ("team-b", "k8s")
    other = registration(owner=Owner("k8s", "team-b", "uid-k8s-b"))
    async with registrar(agent.address) as harness:
        assert set(states_by_reason(harness).values()) == {0.0}
        await harness.registrar.ensure(KEY, registration())
        assert states_by_reason(harness)["Registered"] == 1

        agent.stop()
        async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS + 5):
            await harness.registrar.ensure(other_key, other)
        during = states_by_reason(harness)
        assert during["ConsulUnreachable"] >= 1, during
        assert sum(during.values()) == 2, f"each wanted registration counts under exactly one reason: {during}"

        await asyncio.to_thread(agent.start)

        async def both_registered() -> bool:
            now = states_by_reason(harness)
            return now["Registered"] == 2 and sum(now.values()) == 2

        await eventually(both_registered, within=20)

        await harness.registrar.remove(KEY)
        await harness.registrar.remove(other_key)
        assert set(states_by_reason(harness).values()) == {0.0}, "a finished removal is no longer counted"


async def test_the_state_gauge_counts_servers_while_registration_is_off(clean_env: None) -> None:
    async with registrar(None) as harness:
        await harness.registrar.ensure(KEY, registration())
        assert states_by_reason(harness)["Disabled"] == 1
        assert states_by_reason(harness)["Registered"] == 0


# ------------------------------------------------------------------------ ACLs


@pytest.fixture
def acl_agent(tmp_path: Path) -> Iterator[ConsulAgent]:
    started = ConsulAgent(tmp_path / "consul-acl", management_token=str(uuid.uuid4()))
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.usefixtures("clean_env")
async def test_with_acls_the_token_registers_and_no_token_is_denied_with_the_policy_to_grant(
    acl_agent: ConsulAgent,
) -> None:
    assert acl_agent.management_token is not None
    async with registrar(acl_agent.address, consul_token=acl_agent.management_token) as harness:
        assert (await harness.registrar.ensure(KEY, registration())).reason == "Registered"
        assert SERVICE_ID in acl_agent.services()
        assert (await harness.registrar.remove(KEY)).reason == "Deregistered"

    async with registrar(acl_agent.address) as harness:
        state = await harness.registrar.ensure(KEY, registration())
        assert (state.registered, state.reason) == (False, "ACLDenied")
        assert 'service "mcp-team-a-k8s" { policy = "write" }' in state.message
        assert acl_agent.management_token not in state.message
        assert SERVICE_ID not in acl_agent.services()


@pytest.mark.usefixtures("clean_env")
async def test_the_token_file_is_read_again_on_retry(acl_agent: ConsulAgent, tmp_path: Path) -> None:
    assert acl_agent.management_token is not None
    token_file = tmp_path / "token"
    token_file.write_text(str(uuid.uuid4()) + "\n")
    async with registrar(acl_agent.address, consul_token_file=token_file) as harness:
        state = await harness.registrar.ensure(KEY, registration())
        assert state.reason == "ACLDenied"

        token_file.write_text(acl_agent.management_token + "\n")

        async def registered() -> bool:
            return harness.states.last.reason == "Registered" and SERVICE_ID in acl_agent.services()

        await eventually(registered, within=20)


@pytest.mark.usefixtures("clean_env")
async def test_an_unreadable_token_file_is_named(agent: ConsulAgent, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    async with registrar(agent.address, consul_token_file=missing) as harness:
        state = await harness.registrar.ensure(KEY, registration())
        assert state.reason == "ConsulTokenUnreadable"
        assert str(missing) in state.message
