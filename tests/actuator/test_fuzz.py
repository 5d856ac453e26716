"""Fuzzed webhook bodies (hypothesis, 1,500 cases in all) never get a 5xx or an action.

Runs against the in-process actuator over a real socket, with rules that would act on
a valid alert (non-dry-run, fake gateway replicas recording every call):
- random bytes and random JSON documents: 400/422, nothing recorded, no gateway call;
- a valid payload broken in one required place (missing field, wrong type, bad label
  name, bad fingerprint, naive timestamp, wrong version, empty alerts): 422 naming
  the field, nothing recorded, no gateway call;
- valid payloads with arbitrary label and annotation text, under a dry-run policy:
  always 200, recorded, and still no gateway call.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.actuator.conftest import gateway_actions
from tests.actuator.fakes import alert, payload


def fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, database=None)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
not_a_string = st.one_of(
    st.integers(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.floats(allow_nan=False, allow_infinity=False),
)

REQUIRED = [
    ("version",),
    ("status",),
    ("alerts",),
    ("alerts", 0, "status"),
    ("alerts", 0, "labels"),
    ("alerts", 0, "startsAt"),
    ("alerts", 0, "fingerprint"),
]
STRINGS = [
    ("status",),
    ("alerts", 0, "status"),
    ("alerts", 0, "startsAt"),
    ("alerts", 0, "fingerprint"),
    ("alerts", 0, "labels", "team"),
    ("alerts", 0, "labels", "alertname"),
    ("version",),
]


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


def _del(doc: Any, path: tuple[Any, ...]) -> None:
    for p in path[:-1]:
        doc = doc[p]
    del doc[path[-1]]


@st.composite
def broken_payloads(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(payload(alert("a1b2c3d4e5f60718")))
    kind = draw(
        st.sampled_from(
            ["missing", "type", "label_name", "fingerprint", "naive", "version", "empty"]
        )
    )
    if kind == "missing":
        _del(doc, draw(st.sampled_from(REQUIRED)))
    elif kind == "type":
        _set(doc, draw(st.sampled_from(STRINGS)), draw(not_a_string))
    elif kind == "label_name":
        bad = draw(
            st.text(min_size=1, max_size=12).filter(
                lambda s: not s.isidentifier() or s[0].isdigit() or not s.isascii()
            )
        )
        doc["alerts"][0]["labels"][bad] = "x"
    elif kind == "fingerprint":
        doc["alerts"][0]["fingerprint"] = draw(
            st.text(max_size=70).filter(
                lambda s: not (s.isascii() and s.isalnum() and 0 < len(s) <= 64)
            )
        )
    elif kind == "naive":
        doc["alerts"][0]["startsAt"] = draw(st.datetimes()).isoformat()
    elif kind == "version":
        doc["version"] = draw(st.text(max_size=3).filter(lambda s: s != "4"))
    else:
        doc["alerts"] = []
    return doc


def _assert_nothing_happened(act, gateways) -> None:
    assert act.audit() == []
    assert all(fake.seen == [] for fake, _ in gateways)


def test_fuzz_random_bytes(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions([s.url for _, s in gateways], admin_token_file))
    cases: list[int] = []

    @fuzz(300)
    @given(st.binary(max_size=300))
    def check(body: bytes) -> None:
        cases.append(1)
        r = act.post(None, raw=body)
        assert r.status_code in (400, 422), (body, r.status_code, r.text)
        assert "error" in r.json()

    check()
    assert len(cases) >= 300
    _assert_nothing_happened(act, gateways)


def test_fuzz_random_json(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions([s.url for _, s in gateways], admin_token_file))
    cases: list[int] = []

    @fuzz(300)
    @given(json_values)
    def check(doc: Any) -> None:
        cases.append(1)
        r = act.post(None, raw=json.dumps(doc).encode())
        assert r.status_code == 422, (doc, r.status_code, r.text)

    check()
    assert len(cases) >= 300
    _assert_nothing_happened(act, gateways)


def test_fuzz_broken_payloads(gateways, make_actuator, admin_token_file):
    act = make_actuator(gateway_actions([s.url for _, s in gateways], admin_token_file))
    cases: list[int] = []

    @fuzz(600)
    @given(broken_payloads())
    def check(doc: dict[str, Any]) -> None:
        cases.append(1)
        r = act.post(None, raw=json.dumps(doc).encode())
        assert r.status_code == 422, (doc, r.status_code, r.text)
        message = r.json()["error"]
        assert message.split(":")[0] in {
            "version",
            "status",
            "alerts",
            "alerts.0.status",
            "alerts.0.labels",
            "alerts.0.startsAt",
            "alerts.0.fingerprint",
            "alerts.0.labels.team",
            "alerts.0.labels.alertname",
        } or message.startswith("alerts.0.labels:"), message

    check()
    assert len(cases) >= 600
    _assert_nothing_happened(act, gateways)


label_text = st.text(max_size=40)


@st.composite
def odd_valid_payloads(draw: st.DrawFn) -> dict[str, Any]:
    labels = draw(
        st.dictionaries(st.from_regex(r"\A[a-z_][a-z0-9_]{0,10}\Z"), label_text, max_size=6)
    )
    a = alert(
        draw(st.from_regex(r"\A[0-9a-f]{16}\Z")),
        status=draw(st.sampled_from(["firing", "resolved"])),
        starts_at=draw(st.datetimes(timezones=st.just(__import__("datetime").UTC))).isoformat(),
    )
    a["labels"].update(labels)
    a["annotations"] = draw(st.dictionaries(st.text(max_size=10), label_text, max_size=3))
    return payload(a)


def test_fuzz_valid_payloads_under_dry_run(gateways, make_actuator, admin_token_file):
    act = make_actuator(
        gateway_actions([s.url for _, s in gateways], admin_token_file, dry_run=True)
    )
    count = 0

    @fuzz(300)
    @given(odd_valid_payloads())
    def check(doc: dict[str, Any]) -> None:
        nonlocal count
        r = act.post(doc)
        assert r.status_code == 200, (doc, r.text)
        count += 1

    check()
    assert count >= 300
    assert len(act.audit()) == count
    assert all(fake.seen == [] for fake, _ in gateways)
