"""The device-selector grammar (shared/selector.py) that fleet run and POST /api/jobs share."""

from __future__ import annotations

import pytest

from shared.selector import Candidate, Term, matches, parse_selector, select

DEVICES = [Candidate("pi-1", "lab", "Raspberry Pi 5 Model B"),
           Candidate("pi-2", "lab", "Raspberry Pi 4"),
           Candidate("orin-1", "field", "Jetson AGX Orin"),
           Candidate("x86", "lab2", "")]


def ids(selector: str) -> list[str]:
    return [d.device_id for d in select(DEVICES, selector, key=lambda d: d)]


def test_terms_are_ids_fleets_or_boards() -> None:
    assert parse_selector(" pi-*, fleet=lab ,board=Orin,,") == [
        Term("id", "pi-*"), Term("fleet", "lab"), Term("board", "Orin")]


@pytest.mark.parametrize(("selector", "chosen"), [
    ("pi-*", ["pi-1", "pi-2"]),
    ("orin-1", ["orin-1"]),
    ("pi-?", ["pi-1", "pi-2"]),
    ("PI-*", []),  # ids and fleets are case-sensitive globs
    ("fleet=lab", ["pi-1", "pi-2"]),
    ("fleet=lab*", ["pi-1", "pi-2", "x86"]),
    ("board=pi 5", ["pi-1"]),  # a board is a case-blind substring
    ("board=RASPBERRY", ["pi-1", "pi-2"]),
    ("board=", ["pi-1", "pi-2", "orin-1", "x86"]),
    ("orin-1,pi-2", ["pi-2", "orin-1"]),  # any term: the devices' own order, each once
    ("pi-*,board=pi", ["pi-1", "pi-2"]),
    ("colour=red", []),  # not a known key: an id glob, which no id matches
    ("", []),
    ("nothing", []),
])
def test_any_matching_term_selects_a_device(selector: str, chosen: list[str]) -> None:
    assert ids(selector) == chosen


def test_one_device_can_be_asked_about() -> None:
    assert matches("fleet=field", DEVICES[2]) and not matches("fleet=field", DEVICES[0])


def test_fleet_run_and_the_http_api_select_alike() -> None:
    from collector.http.fleet import select_devices
    from edgemeter.commands.fleet import DeviceView, select
    from shared.messages import Status
    from tests.http.test_fleet import Row, _manifest

    rows = [Row("pi-01", manifest=_manifest("Raspberry Pi 5")), Row("pi-02", fleet="lab2"),
            Row("jet-1", fleet="lab2", manifest=_manifest("Jetson Orin Nano"))]
    views = [DeviceView(r.device_id, r.fleet, Status(device_id=r.device_id, fleet=r.fleet,
                                                     status="online", bd_seq=1,
                                                     manifest=r.manifest))
             for r in rows]
    for selector in ("pi-*", "fleet=lab2", "board=orin, pi-01", "board=raspberry", "nobody"):
        api = [r.device_id for r in select_devices(rows, selector)]
        cli = [v.device_id for v in select(views, selector)]
        assert cli == api, selector
