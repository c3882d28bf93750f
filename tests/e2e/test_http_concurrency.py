"""Many tills at once against `loyalty serve --workers 2`, on both databases: the same
purchases and redemptions posted several times each, in shuffled order, by different
clients at the same moment, and a few transactions posted with different contents at once.
Every effect must happen exactly once, every answer for one key must be the same, and no
request may fail with a 5xx.

The storm runs once per backend (a module fixture); the tests check what it left: the
responses, and the database read directly.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from math import floor
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select

from loyalty_engine.ledger.check import check_balances
from loyalty_engine.store import tables
from loyalty_engine.store.database import open_engine
from tests.api_support import bearer
from tests.e2e.cli import SHIPPED_RULES, ok, purchase
from tests.e2e.server import Server, ago, create_key, fresh_database, just_now, serving

REPLAYED = "Idempotent-Replayed"
MEMBERS = [f"M-C{m}" for m in range(5)]
PURCHASES = 40
CLIENTS = 12
SEED_POINTS = 50  # each member's spendable points before the storm
SPEND = 20  # each redemption
# M-C0 tries three redemptions of 20 with 50 points: exactly two of them can succeed.
REDEMPTIONS = [f"RD-{m}-{k}" for m in MEMBERS for k in range(2)] + ["RD-M-C0-2"]
CONFLICTED = [f"X-{k}" for k in range(4)]
ENROLLED = [f"M-E{k}" for k in range(4)]  # new members, each enrolled three times at once
# (idempotency key, which body, path, body)
Request = tuple[str, int, str, dict[str, Any]]


@dataclass(frozen=True)
class Sent:
    """One request of the storm and what came back."""

    key: str  # the idempotency key (transaction or redemption id)
    variant: int  # which body, for keys posted with different bodies
    status: int
    replayed: str | None
    content: bytes
    began: float  # time.monotonic() when sent
    ended: float  # and when the answer was in


@dataclass
class Storm:
    backend: str
    db_url: str
    server: Server
    sent: list[Sent]
    expected_points: dict[str, int]  # transaction id -> points under Bean There
    expected_stamps: dict[str, int]  # member -> coffee stamps bought in the storm
    member_of: dict[str, str]  # transaction id -> member
    conflicted_totals: dict[tuple[str, int], int] = field(default_factory=dict)

    def by_key(self) -> dict[str, list[Sent]]:
        grouped: dict[str, list[Sent]] = defaultdict(list)
        for sent in self.sent:
            grouped[sent.key].append(sent)
        return grouped

    def query(self, statement: Any) -> list[Any]:
        engine = open_engine(self.db_url)
        try:
            with engine.connect() as conn:
                return list(conn.execute(statement).all())
        finally:
            engine.dispose()


def _basket(n: int) -> tuple[list[tuple[str, str, str, str]], Decimal, int, int]:
    """Purchase n's lines, total, points under Bean There (a euro a point, whole beans
    double, rounded down; dated on no Tuesday or Friday) and coffee stamps."""
    cups = 1 + n % 3
    lines = [("FLAT-WHITE", "coffee", str(cups), "3.60")]
    beans = Decimal(0)
    if n % 4 == 0:
        lines.append(("BEANS-1KG", "coffee-beans", "1", "12.50"))
        beans = Decimal("12.50")
    if n % 5 == 0:
        lines.append(("CROISSANT", "pastry", "2", "2.55"))
    total = sum((Decimal(q) * Decimal(p) for _, _, q, p in lines), Decimal(0))
    return lines, total, floor(total + beans), cups


def _requests(rng: random.Random) -> tuple[list[Request], dict[str, int], dict[str, int],
                                           dict[str, str], dict[tuple[str, int], int]]:
    """Every request of the storm, with the points and stamps each purchase should give."""
    sent: list[Request] = []
    points: dict[str, int] = {}
    stamps: dict[str, int] = Counter()
    member_of: dict[str, str] = {}
    for n in range(PURCHASES):
        member = MEMBERS[n % len(MEMBERS)]
        transaction = f"P-{n:02d}"
        lines, total, points[transaction], cups = _basket(n)
        stamps[member] += cups
        member_of[transaction] = member
        body = purchase(transaction, member, ago(1 + n % 10), lines, str(total),
                        store_id=f"AMS-0{1 + n % 3}")
        sent += [(transaction, 0, "/v1/purchases", body)] * rng.randint(3, 5)
    for redemption in REDEMPTIONS:
        member = redemption[3:-2]
        body = {"redemption_id": redemption, "member_id": member, "program_id": "bean-there",
                "occurred_at": just_now(), "points": SPEND}
        sent += [(redemption, 0, "/v1/redemptions", body)] * 2
    for member in ENROLLED:
        body = {"member_id": member, "program_id": "bean-there",
                "attributes": {"home_store": "AMS-01"}, "consents": {"marketing": True}}
        sent += [(member, 0, "/v1/members", body)] * 3
    totals: dict[tuple[str, int], int] = {}
    for transaction in CONFLICTED:
        for variant, cups in enumerate((1, 2, 3)):
            body = purchase(transaction, "M-C4", ago(2),
                            [("FLAT-WHITE", "coffee", str(cups), "3.60")],
                            str(Decimal("3.60") * cups), store_id="AMS-01")
            totals[(transaction, variant)] = 360 * cups
            # The first variant twice: a replay racing the other bodies.
            sent += [(transaction, variant, "/v1/purchases", body)] * (2 if variant == 0 else 1)
    return sent, points, dict(stamps), member_of, totals


def _rounds(requests: list[Request], rng: random.Random) -> list[list[Request]]:
    """The requests in rounds of at most CLIENTS, every copy of a key in the same round (so
    different clients send them at the same moment), the keys in shuffled order."""
    copies: dict[str, list[Request]] = defaultdict(list)
    for request in requests:
        copies[request[0]].append(request)
    keys = list(copies)
    rng.shuffle(keys)
    rounds: list[list[Request]] = [[]]
    for key in keys:
        if len(rounds[-1]) + len(copies[key]) > CLIENTS:
            rounds.append([])
        rounds[-1] += copies[key]
    for wave in rounds:
        rng.shuffle(wave)
    return rounds


def _storm(server: Server, token: str, rounds: list[list[Request]]) -> list[Sent]:
    """CLIENTS threads, each with its own connection: in every round they wait for each
    other, then each sends its request of the round, if it has one."""
    start = threading.Barrier(CLIENTS)

    def client(number: int) -> list[Sent]:
        done = []
        with httpx2.Client(base_url=server.url, headers=bearer(token), timeout=60) as http:
            for wave in rounds:
                start.wait(timeout=60)
                if number >= len(wave):
                    continue
                key, variant, path, body = wave[number]
                began = time.monotonic()
                response = http.post(path, json=body)
                done.append(Sent(key, variant, response.status_code,
                                 response.headers.get(REPLAYED), response.content,
                                 began, time.monotonic()))
        return done

    with ThreadPoolExecutor(CLIENTS) as pool:
        return [sent for done in pool.map(client, range(CLIENTS)) for sent in done]


def _seed(server: Server, token: str, db_url: str) -> None:
    """SEED_POINTS spendable points for each member: 25.00 of whole beans three weeks ago,
    made spendable by the activation step (run with the CLI, as the scheduler would)."""
    with httpx2.Client(base_url=server.url, headers=bearer(token), timeout=30) as http:
        for member in MEMBERS:
            seeded = http.post("/v1/purchases", json=purchase(
                f"SEED-{member}", member, ago(21),
                [("BEANS-1KG", "coffee-beans", "2", "12.50")], "25.00"))
            assert seeded.status_code == 201, seeded.text
            assert seeded.json()["points"] == {"bean-there": SEED_POINTS}
        ok("points", "activate", "--allow-future", "--program", "bean-there", database=db_url)
        for member in MEMBERS:
            shown = http.get(f"/v1/members/{member}").json()
            assert shown["programs"][0]["points"] == SEED_POINTS, shown


@pytest.fixture(scope="module",
                params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Storm]:
    """The shipped programs, members with 50 spendable points each, two workers, and the
    storm: 40 purchases posted 3-5 times each, 11 redemptions twice each, 4 enrolments
    three times each, and 4 transactions posted with three different bodies at once."""
    backend = str(request.param)
    folder = tmp_path_factory.mktemp(f"storm-{backend}")
    with fresh_database(backend, folder, request) as db_url, ThreadPoolExecutor(2) as pool:
        # The CLI stores the programs and makes a key while the server starts.
        applied = pool.submit(ok, "rules", "apply", SHIPPED_RULES, database=db_url)
        made = pool.submit(create_key, db_url, "tills", "pos", "AMS-*")
        with serving(db_url, folder / "server.log", workers=2) as server:
            applied.result()
            token = made.result()
            _seed(server, token, db_url)
            rng = random.Random(20260601)
            requests, points, stamps, member_of, totals = _requests(rng)
            sent = _storm(server, token, _rounds(requests, rng))
            assert len(sent) == len(requests)
            yield Storm(backend, db_url, server, sent, points, stamps, member_of, totals)


def test_no_request_failed(storm: Storm) -> None:
    statuses = Counter(s.status for s in storm.sent)
    assert set(statuses) <= {201, 409, 422}, (statuses, storm.server.log()[-5000:])
    assert "Traceback" not in storm.server.log()
    # Both worker processes came up (they accept from one listening socket).
    assert storm.server.log().count("Application startup complete") == 2


def test_the_copies_of_a_key_were_in_flight_together(storm: Storm) -> None:
    """The storm did race: most keys had two copies being served at the same time."""
    raced = 0
    for answers in storm.by_key().values():
        first_done = min(a.ended for a in answers)
        raced += sum(a.began < first_done for a in answers) > 1
    assert raced >= len(storm.by_key()) // 2, (raced, len(storm.by_key()))


def test_every_answer_for_one_key_and_body_is_the_same(storm: Storm) -> None:
    for key, answers in storm.by_key().items():
        for variant in {a.variant for a in answers}:
            same = [a for a in answers if a.variant == variant]
            assert len({a.status for a in same}) == 1, (key, variant, same)
            if same[0].status == 201:
                assert len({a.content for a in same}) == 1, (key, variant, same)
                # The first answer is the one that did it; every other one replays it.
                assert sorted(str(a.replayed) for a in same) == (
                    ["None"] + ["true"] * (len(same) - 1)), (key, same)
                continue
            # A refusal is not stored, so it is never a replay.
            assert all(a.replayed is None for a in same), (key, same)
            if same[0].status == 422:  # a redemption over the balance, refused alike
                assert len({a.content for a in same}) == 1, (key, variant, same)
                continue
            # A 409's detail may be worded by the service (a twin's purchase committed while
            # this request was in flight: "already recorded") or by the idempotency layer (a
            # stored response was found first: "already posted"); the rest is the same.
            assert same[0].status == 409, (key, same)
            problems = [json.loads(a.content) for a in same]
            assert all(repr(key) in p["detail"] for p in problems), problems
            assert len({json.dumps({**p, "detail": None}) for p in problems}) == 1, problems


def test_each_purchase_is_recorded_once_with_its_points(storm: Storm) -> None:
    answers = storm.by_key()
    first_points: dict[str, int] = defaultdict(int)
    for transaction, points in storm.expected_points.items():
        statuses = {a.status for a in answers[transaction]}
        assert statuses == {201}, (transaction, answers[transaction])
        body = json.loads(answers[transaction][0].content)
        assert body["points"] == ({"bean-there": points} if points else {}), (transaction, body)
        first_points[storm.member_of[transaction]] += points

    p, ledger = tables.purchases, tables.ledger_entries
    rows = storm.query(select(p.c.transaction_id, func.count())
                       .where(p.c.transaction_id.like("P-%")).group_by(p.c.transaction_id))
    assert dict(rows) == dict.fromkeys(storm.expected_points, 1)
    earned = storm.query(
        select(ledger.c.member_id, func.sum(ledger.c.points), func.count())
        .join(p, p.c.id == ledger.c.purchase_id)
        .where(p.c.transaction_id.like("P-%"), ledger.c.kind == "earn")
        .group_by(ledger.c.member_id))
    assert {m: int(s) for m, s, _ in earned} == dict(first_points)
    assert sum(n for _, _, n in earned) == PURCHASES  # one earn entry per purchase
    responses = storm.query(select(func.count()).select_from(tables.api_responses).where(
        tables.api_responses.c.endpoint == "purchases",
        tables.api_responses.c.idem_key.like("%P-%")))
    assert responses == [(PURCHASES,)]


def test_stamps_and_vouchers_count_every_purchase_once(storm: Storm) -> None:
    v = tables.vouchers
    issued = dict(storm.query(select(v.c.member_id, func.count())
                              .where(v.c.reward_id == "free-coffee").group_by(v.c.member_id)))
    for member, stamps in storm.expected_stamps.items():
        # The conflicted transactions add one accepted body each for M-C4.
        if member == "M-C4":
            stamps += sum(total // 360 for (tx, variant), total in storm.conflicted_totals.items()
                          if _accepted(storm, tx) == variant)
        assert issued.get(member, 0) == stamps // 9, (member, stamps, issued)


def _accepted(storm: Storm, transaction: str) -> int:
    winners = {a.variant for a in storm.by_key()[transaction] if a.status == 201}
    assert len(winners) == 1, (transaction, storm.by_key()[transaction])
    return winners.pop()


def test_redemptions_spend_once_and_never_beyond_the_balance(storm: Storm) -> None:
    answers = storm.by_key()
    succeeded = {r for r in REDEMPTIONS if answers[r][0].status == 201}
    refused = {r for r in REDEMPTIONS if answers[r][0].status == 422}
    assert succeeded | refused == set(REDEMPTIONS)
    # 50 points each: both of every member's two go through; of M-C0's three, two do.
    assert len(refused) == 1 and next(iter(refused)).startswith("RD-M-C0-"), refused
    refusal = json.loads(answers[next(iter(refused))][0].content)
    assert "'M-C0' has 10 spendable points" in refusal["detail"], refusal
    assert "20 are needed" in refusal["detail"], refusal

    r, ledger = tables.redemptions, tables.ledger_entries
    assert {row[0] for row in storm.query(select(r.c.redemption_id))} == succeeded
    spent = storm.query(select(ledger.c.member_id, func.sum(ledger.c.points), func.count())
                        .where(ledger.c.kind == "redeem").group_by(ledger.c.member_id))
    assert {m: (int(s), n) for m, s, n in spent} == {
        m: (-SPEND * 2, 2) for m in MEMBERS}
    balances = storm.query(select(tables.balances.c.member_id, tables.balances.c.points)
                           .where(tables.balances.c.program_id == "bean-there"))
    assert dict(balances) == {m: SEED_POINTS - 2 * SPEND for m in MEMBERS}


def test_a_key_posted_with_different_bodies_at_once_takes_one(storm: Storm) -> None:
    answers = storm.by_key()
    p = tables.purchases
    for transaction in CONFLICTED:
        accepted = _accepted(storm, transaction)
        for answer in answers[transaction]:
            expected = 201 if answer.variant == accepted else 409
            assert answer.status == expected, (transaction, answers[transaction])
        stored = storm.query(select(p.c.total_minor).where(p.c.transaction_id == transaction))
        assert stored == [(storm.conflicted_totals[(transaction, accepted)],)]


def test_each_new_member_is_enrolled_once(storm: Storm) -> None:
    answers = storm.by_key()
    for member in ENROLLED:
        assert {a.status for a in answers[member]} == {201}, answers[member]
        enrolled = json.loads(answers[member][0].content)
        assert enrolled["attributes"] == {"home_store": "AMS-01"}
        assert [c["flag"] for c in enrolled["consents"]] == ["marketing"]
    for table in (tables.members, tables.enrolments, tables.member_consents):
        rows = storm.query(select(table.c.member_id, func.count())
                           .where(table.c.member_id.like("M-E%"))
                           .group_by(table.c.member_id))
        assert dict(rows) == dict.fromkeys(ENROLLED, 1), table.name


def test_each_members_ledger_adds_up_to_one_of_everything(storm: Storm) -> None:
    """Seed + every purchase once (the conflicted ones as accepted) - two redemptions each,
    in the ledger and in the cached balances (spendable + pending)."""
    answers = storm.by_key()
    expected = dict.fromkeys(MEMBERS, SEED_POINTS - 2 * SPEND)
    for transaction, points in storm.expected_points.items():
        expected[storm.member_of[transaction]] += points
    for transaction in CONFLICTED:
        accepted = next(a for a in answers[transaction] if a.status == 201)
        expected["M-C4"] += json.loads(accepted.content)["points"].get("bean-there", 0)
    ledger, balances = tables.ledger_entries, tables.balances
    summed = storm.query(select(ledger.c.member_id, func.sum(ledger.c.points))
                         .group_by(ledger.c.member_id))
    assert {m: int(s) for m, s in summed} == expected
    cached = storm.query(select(balances.c.member_id, balances.c.points + balances.c.pending)
                         .where(balances.c.program_id == "bean-there"))
    assert dict(cached) == expected


def test_the_cached_balances_and_lots_agree_with_the_ledger(storm: Storm) -> None:
    engine = open_engine(storm.db_url)
    try:
        report = check_balances(engine)
    finally:
        engine.dispose()
    assert report.mismatches == []
    assert report.checked == len(MEMBERS)
