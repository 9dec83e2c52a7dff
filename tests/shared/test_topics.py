"""Topics.check: a message that names a device may only travel on that device's topic."""

from __future__ import annotations

import pytest

from shared.messages import JobAck, Progress, Status, Telemetry
from shared.topics import Addressed, TopicKind, Topics
from tests.factories import make_result

ADDRESSED: list[tuple[TopicKind, Addressed]] = [
    (TopicKind.RESULT, make_result(device_id="pi-01", fleet="lab")),
    (TopicKind.STATUS, Status(device_id="pi-01", fleet="lab", status="online", bd_seq=1)),
    (TopicKind.TELEMETRY, Telemetry(device_id="pi-01", fleet="lab", uptime_s=1)),
    (TopicKind.PROGRESS, Progress(device_id="pi-01", fleet="lab", job_id="j", phase="load")),
    (TopicKind.ACK, JobAck(device_id="pi-01", fleet="lab", job_id="j", state="done")),
]


@pytest.mark.parametrize(("kind", "message"), ADDRESSED, ids=[k.value for k, _ in ADDRESSED])
def test_a_message_on_its_own_devices_topic_passes(kind: TopicKind, message: Addressed) -> None:
    topic = Topics.build("lab", "pi-01", kind)
    assert Topics.check(topic, message) is None
    address = Topics.parse(topic)
    assert address is not None and Topics.check(address, message) is None


@pytest.mark.parametrize(("kind", "message"), ADDRESSED, ids=[k.value for k, _ in ADDRESSED])
@pytest.mark.parametrize(("fleet", "device"), [("lab", "pi-02"), ("other", "pi-01")])
def test_a_message_naming_another_device_or_fleet_is_refused_with_both_names(
    kind: TopicKind, message: Addressed, fleet: str, device: str
) -> None:
    reason = Topics.check(Topics.build(fleet, device, kind), message)
    assert reason is not None and "\n" not in reason
    assert f"{fleet}/{device}" in reason and "'lab'/'pi-01'" in reason


def test_a_topic_that_is_not_edgemeters_is_refused() -> None:
    reason = Topics.check("sensors/kitchen/temp", make_result())
    assert reason is not None and "not an edgemeter v1 topic" in reason
