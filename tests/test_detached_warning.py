"""``lifetime="detached"`` in an embedded session: a one-time warning, the object still works.

No other driver can ever connect to an embedded session (``init()`` without
an address), so a detached actor or placement group cannot outlive the
process. asyncray says so once per session; a driver connected to a shared
head, where detached does outlive the driver, is never warned.
"""

from __future__ import annotations

import warnings

import pytest

import asyncray
from asyncray.util import placement_group, remove_placement_group

pytestmark = pytest.mark.timeout(60)

MATCH = r'lifetime="detached" in an embedded session'


@asyncray.remote
class Keeper:
    def ping(self) -> str:
        return "pong"


@asyncray.remote
def embedded_here() -> bool:
    return asyncray._api.is_embedded()


def _detached_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if 'lifetime="detached"' in str(w.message)]


def test_a_detached_actor_in_an_embedded_session_warns_once_and_still_works(shutdown_only):
    asyncray.init(num_cpus=2)
    assert asyncray._api.is_embedded()
    with pytest.warns(RuntimeWarning, match=MATCH) as record:
        first = Keeper.options(name="keeper", lifetime="detached").remote()
        second = Keeper.options(lifetime="detached").remote()
    messages = _detached_warnings(record.list)
    assert len(messages) == 1
    text = messages[0]
    assert "An actor created with" in text
    assert "asyncray start --head" in text
    assert 'init(address="auto")' in text
    assert record.list[0].filename == __file__  # attributed to the user's line
    assert asyncray.get([first.ping.remote(), second.ping.remote()]) == ["pong", "pong"]
    assert asyncray.get(asyncray.get_actor("keeper").ping.remote()) == "pong"
    Keeper.options(lifetime="detached").remote()  # no second warning (the suite's filter: error)


def test_each_embedded_session_warns_again(shutdown_only):
    for _ in range(2):
        asyncray.init(num_cpus=2)
        with pytest.warns(RuntimeWarning, match=MATCH):
            Keeper.options(lifetime="detached").remote()
        asyncray.shutdown()


def test_non_detached_actors_and_groups_do_not_warn(shutdown_only):
    asyncray.init(num_cpus=2)
    actor = Keeper.options(lifetime="non_detached").remote()
    assert asyncray.get(actor.ping.remote()) == "pong"
    pg = placement_group([{"CPU": 1}])
    assert pg.wait(10)
    remove_placement_group(pg)


def test_a_detached_placement_group_in_an_embedded_session_warns_once(shutdown_only):
    asyncray.init(num_cpus=2)
    with pytest.warns(RuntimeWarning, match=MATCH) as record:
        pg = placement_group([{"CPU": 1}], lifetime="detached")
    messages = _detached_warnings(record.list)
    assert len(messages) == 1 and "A placement group created with" in messages[0]
    assert "asyncray start --head" in messages[0]
    assert pg.wait(10)
    remove_placement_group(pg)
    again = placement_group([{"CPU": 1}], lifetime="detached")  # no second warning
    assert again.wait(10)
    remove_placement_group(again)


def test_a_worker_of_an_embedded_session_is_embedded(ray_start):
    assert asyncray.get(embedded_here.remote()) is True


def test_a_driver_connected_to_a_head_is_not_warned(connected):
    # The suite turns warnings into errors: any warning here fails the test.
    assert not asyncray._api.is_embedded()
    keeper = Keeper.options(name="keeper", lifetime="detached").remote()
    assert asyncray.get(keeper.ping.remote()) == "pong"
    pg = placement_group([{"CPU": 1}], lifetime="detached")
    assert pg.wait(10)
    remove_placement_group(pg)
    asyncray.kill(keeper)


def test_the_workers_of_a_head_are_not_embedded(connected):
    assert asyncray.get(embedded_here.remote()) is False
