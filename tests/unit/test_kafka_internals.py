"""The aiokafka internals alto-stream relies on, so that an upgrade that moves them fails here.

The transport reads and writes private attributes where aiokafka has no public
API; here those of a static member's twin detection (``KafkaConsumer._rejoining``,
alto_stream/runtime/kafka/consumer.py) and of the committed offsets' metadata
(``KafkaConsumer.committed``).
"""

from __future__ import annotations

import inspect

from aiokafka.consumer.group_coordinator import BaseCoordinator, GroupCoordinator
from aiokafka.protocol.group import JoinGroupRequest


def test_the_group_coordinator_keeps_the_member_id_and_the_instance_id_it_joins_with() -> None:
    init = inspect.getsource(BaseCoordinator.__init__) + inspect.getsource(
        GroupCoordinator.__init__
    )
    assert "self._group_instance_id = group_instance_id" in init
    reset = inspect.getsource(GroupCoordinator.reset_generation)
    assert "self.member_id = JoinGroupRequest.UNKNOWN_MEMBER_ID" in reset
    assert JoinGroupRequest.UNKNOWN_MEMBER_ID == ""  # what _rejoining tests for
    joins = inspect.getsource(inspect.getmodule(GroupCoordinator))  # type: ignore[arg-type]
    assert "self._coordinator._group_instance_id," in joins  # the JoinGroup request's


def test_the_client_keeps_its_connections_by_node_and_knows_if_each_is_live() -> None:
    # KafkaConsumer._connected reads them (the "Kafka unreachable since" line).
    from aiokafka.client import AIOKafkaClient
    from aiokafka.conn import AIOKafkaConnection

    assert "self._conns = {}" in inspect.getsource(AIOKafkaClient.__init__)
    assert "del self._conns[conn_id]" in inspect.getsource(AIOKafkaClient._get_conn)
    assert callable(AIOKafkaConnection.connected)


def test_the_coordinator_fetches_committed_offsets_with_their_metadata() -> None:
    # KafkaConsumer.committed reads the metadata a commit carried (records done above
    # the offset, alto_stream.runtime.offsets.DoneAbove); committed() drops it.
    from aiokafka.consumer.consumer import AIOKafkaConsumer
    from aiokafka.structs import OffsetAndMetadata

    assert "self._coordinator = " in inspect.getsource(AIOKafkaConsumer)
    assert inspect.iscoroutinefunction(GroupCoordinator.fetch_committed_offsets)
    source = inspect.getsource(GroupCoordinator)
    assert "OffsetAndMetadata(offset, metadata)" in source
    assert OffsetAndMetadata._fields[:2] == ("offset", "metadata")


def test_the_coordinator_can_be_asked_to_rejoin() -> None:
    # KafkaConsumer.rejoin: a partition fenced with no newer owner is handed out again.
    source = inspect.getsource(GroupCoordinator.request_rejoin)
    assert "self._rejoin_needed_fut.set_result(None)" in source
    assert "self._rejoin_needed_fut.done()" in inspect.getsource(GroupCoordinator.need_rejoin)


def test_describe_groups_is_capped_where_aiokafka_reads_its_answers_right() -> None:
    # KafkaOps.group_members (``topics delete``): aiokafka 0.14 sends DescribeGroups v3
    # to Kafka 4.1 but reads the answer with v2's layout ("Buffer underrun").
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import DescribeGroupsRequest_v0

    from alto_stream.runtime.kafka.ops import _DescribeGroups

    assert [c.API_VERSION for c in _DescribeGroups._CLASSES] == [0, 1, 2]
    request = _DescribeGroups(["g"]).prepare({15: (0, 5)})
    assert request.API_VERSION == 2 and request.RESPONSE_TYPE.API_VERSION == 2
    assert isinstance(_DescribeGroups(["g"]).prepare({15: (0, 0)}), DescribeGroupsRequest_v0)
    assert callable(AIOKafkaAdminClient._send_request)
    assert callable(AIOKafkaAdminClient.find_coordinator)


def test_the_heartbeat_task_can_be_started_before_the_assignment_callback_returns() -> None:
    # KafkaConsumer._keep_heartbeating starts it for a long take-over; aiokafka starts it
    # again after the join only when none runs, and the join sets the generation first.
    start = inspect.getsource(GroupCoordinator._start_heartbeat_task)
    assert "if self._heartbeat_task is None:" in start
    rejoin = inspect.getsource(GroupCoordinator._do_rejoin_group)
    assert rejoin.index("perform_group_join()") < rejoin.index("self._on_join_complete(")
    ensure = inspect.getsource(GroupCoordinator.ensure_active_group)
    assert ensure.index("_stop_heartbeat_task()") < ensure.index("_do_rejoin_group(")
