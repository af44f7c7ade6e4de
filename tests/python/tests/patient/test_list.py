"""The patient list at scale: keyset paging by Link headers, index-backed search, the total's estimate.

Against real PostgreSQL (the service) and, for search and paging, SQLite (the repository directly).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from pm.common.db import Database, migrate
from pm.common.tokens import TokenVerifier
from pm.patient.adapters import tables
from pm.patient.adapters.repository import SqlPatientRepository
from pm.patient.bootstrap import MIGRATIONS
from pm.patient.domain.model import PatientQuery, parse_sort
from tests.patient.conftest import BillingServer, Running, start_service

SORTS = [
    "name",
    "-name",
    "email",
    "-email",
    "address",
    "-address",
    "dateOfBirth",
    "-dateOfBirth",
    "registeredDate",
    "-registeredDate",
    "-registeredDate,name",
    "dateOfBirth,-name",
]
# Few distinct values: most rows tie on every sort key but the id.
NAMES = ["Ann Lee", "ann lee", "Bob Stone", "Émile Zola", "bob stone", "Cy Smithers"]


def insert_patients(database: Database, count: int, *, name: Callable[[int], str] | None = None) -> None:
    """Rows written straight to the table (the API path opens billing accounts: too slow for thousands)."""
    now = sa.func.now()
    emails = [f"p{i}.{uuid.uuid4().hex[:6]}@example.org" for i in range(count)]
    rows = [
        {
            "id": uuid.uuid4(),
            "name": name(i) if name else NAMES[i % len(NAMES)],
            "email": emails[i],
            "email_key": emails[i].lower(),
            "address": f"{i % 3} Main Street",
            "date_of_birth": date(1980, 1, 1) + timedelta(days=i % 4),
            "registered_date": date(2024, 1, 1) + timedelta(days=i % 2),
            "version": 1,
        }
        for i in range(count)
    ]
    with database.engine.begin() as conn:
        conn.execute(sa.insert(tables.patients).values(created_at=now, updated_at=now), rows)


def links(response: httpx.Response) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]*)>; rel="(\w+)"', response.headers["Link"])}


def walk(client: httpx.Client, start: str, rel: str) -> list[list[str]]:
    """Pages (lists of ids) met following `rel` links from `start`, in the order met."""
    pages = []
    url: str | None = start
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, response.text
        pages.append([p["id"] for p in response.json()])
        url = links(response).get(rel)
        assert len(pages) < 100, "the links go round in circles"
    return pages


@pytest.fixture
def limited_service(
    patient_db: Database,
    verifier: TokenVerifier,
    billing_server: BillingServer,
    kafka_bootstrap: str,
    topic: str,
) -> Iterator[Running]:
    """The service with an exact-count limit of 20, so that a small table crosses it."""
    yield from start_service(
        patient_db,
        verifier,
        billing_server.target,
        kafka_bootstrap,
        topic,
        extra_env={"PM_PATIENT_EXACT_COUNT_LIMIT": "20"},
    )


@pytest.fixture
def limited_client(limited_service: Running, mint: Callable[..., str]) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=limited_service.url, timeout=10.0, headers={"Authorization": f"Bearer {mint()}"}
    ) as http:
        yield http


@pytest.mark.parametrize("sort", SORTS)
def test_links_walk_every_row_once_forward_and_back_for_every_sort(
    client: httpx.Client, patient_db: Database, sort: str
) -> None:
    insert_patients(patient_db, 47)
    everything = client.get("/patients", params={"size": 100, "sort": sort}).json()
    expected = [p["id"] for p in everything]
    assert len(expected) == 47

    first = client.get("/patients", params={"size": 5, "sort": sort})
    forward = walk(client, str(first.url), "next")
    assert [i for page in forward for i in page] == expected
    assert [len(page) for page in forward] == [5] * 9 + [2]

    backward = walk(client, links(first)["last"], "prev")
    assert [i for page in reversed(backward) for i in page] == expected
    assert len(backward[0]) == 5, "the last link gives the final full page"

    # Turning round mid-way: prev from a page reached by next is the page before it.
    third = client.get(links(client.get(links(first)["next"]))["next"])
    assert [p["id"] for p in client.get(links(third)["prev"]).json()] == expected[5:10]


def test_page_numbers_still_work_and_link_to_cursors(client: httpx.Client, patient_db: Database) -> None:
    insert_patients(patient_db, 12)
    expected = [p["id"] for p in client.get("/patients", params={"size": 100}).json()]
    third = client.get("/patients", params={"page": 2, "size": 4})
    assert [p["id"] for p in third.json()] == expected[8:12]
    assert set(links(third)) == {"first", "prev", "last"}
    assert [p["id"] for p in client.get(links(third)["prev"]).json()] == expected[4:8]
    second = client.get("/patients", params={"page": 1, "size": 4})
    assert [p["id"] for p in client.get(links(second)["next"]).json()] == expected[8:12]
    assert "cursor=" in links(second)["next"] and "page=" not in links(second)["next"]

    beyond = client.get("/patients", params={"page": 9, "size": 4})
    assert beyond.json() == [] and beyond.headers["X-Total-Count"] == "12"
    assert [p["id"] for p in client.get(links(beyond)["prev"]).json()] == expected[8:12]


def test_links_keep_the_gateway_prefix_and_the_search(client: httpx.Client, patient_db: Database) -> None:
    insert_patients(patient_db, 9)
    response = client.get(
        "/patients",
        params={"size": 2, "search": " bob ", "sort": "-name"},
        headers={"X-Forwarded-Prefix": "/api"},
    )
    found = links(response)
    assert set(found) == {"first", "next", "last"}
    for url in found.values():
        parts = urlsplit(url)
        assert parts.path == "/api/patients"
        query = parse_qs(parts.query)
        assert query["search"] == ["bob"] and query["sort"] == ["-name"] and query["size"] == ["2"]


def _tamper(cursor: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-3] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_altered_or_mismatched_cursors_are_refused(client: httpx.Client, patient_db: Database) -> None:
    insert_patients(patient_db, 6)
    next_url = links(client.get("/patients", params={"size": 2}))["next"]
    cursor = parse_qs(urlsplit(next_url).query)["cursor"][0]
    assert client.get("/patients", params={"size": 2, "cursor": cursor}).status_code == 200

    for params in (
        {"cursor": _tamper(cursor)},
        {"cursor": cursor[:-4]},
        {"cursor": "bm90IGEgY3Vyc29y"},
        {"cursor": cursor, "sort": "-name"},
        {"cursor": cursor, "search": "ann"},
    ):
        response = client.get("/patients", params={"size": 2, **params})
        assert response.status_code == 400, params
        assert response.headers["Content-Type"].startswith("application/problem+json")
        assert "cursor" in response.json()["errors"]
    bad_characters = client.get("/patients", params={"cursor": "abc$"})
    assert bad_characters.status_code == 400


def _decodings(text: str) -> list[str]:
    """`text` and every base64 reading of it (both alphabets, every alignment), as text."""
    readings = [text]
    for alphabet in (base64.urlsafe_b64decode, base64.standard_b64decode):
        for shift in range(4):
            part = text[shift:]
            try:
                raw = alphabet(part + "=" * (-len(part) % 4))
            except ValueError:
                continue
            readings += [raw.decode("utf-8", "ignore"), raw.decode("latin-1"), raw.decode("utf-16", "ignore")]
    return [reading.lower() for reading in readings]


def test_cursors_carry_no_personal_data(client: httpx.Client, patient_db: Database) -> None:
    insert_patients(patient_db, 12, name=lambda i: f"Quentin Zabriskie{i:02d}")
    secrets = ["quentin", "zabriskie", "example.org", "main street", "1980", "2024"]
    cursors = []
    for sort in ("name", "-email", "address", "dateOfBirth,-name", "registeredDate"):
        for search in (None, "zabriskie"):
            params = {"size": 3, "sort": sort, **({"search": search} if search else {})}
            second = client.get(links(client.get("/patients", params=params))["next"])
            assert second.status_code == 200
            cursors += [
                parse_qs(urlsplit(url).query)["cursor"][0]
                for url in links(second).values()
                if "cursor=" in url
            ]
    assert len(cursors) >= 20
    for cursor in cursors:
        for reading in _decodings(cursor):
            assert not any(secret in reading for secret in secrets), (cursor, reading)


def test_a_cursor_whose_row_was_deleted_is_refused_clearly(
    client: httpx.Client, patient_db: Database
) -> None:
    insert_patients(patient_db, 6)
    first = client.get("/patients", params={"size": 2})
    edge = first.json()[-1]["id"]
    with patient_db.engine.begin() as conn:
        conn.execute(sa.delete(tables.patients).where(tables.patients.c.id == uuid.UUID(edge)))
    response = client.get(links(first)["next"])
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert "first page" in response.json()["errors"]["cursor"]


@pytest.mark.parametrize("sort", ["name", "-registeredDate,name", "-email"])
def test_page_numbers_past_the_middle_give_the_same_rows(
    client: httpx.Client, patient_db: Database, sort: str
) -> None:
    insert_patients(patient_db, 23)
    expected = [p["id"] for p in client.get("/patients", params={"size": 100, "sort": sort}).json()]
    for page in range(8):
        response = client.get("/patients", params={"page": page, "size": 4, "sort": sort})
        assert [p["id"] for p in response.json()] == expected[page * 4 : page * 4 + 4], page
        assert response.headers["X-Total-Count"] == "23"
        assert ("next" in links(response)) == (page < 5), page
        assert ("prev" in links(response)) == (page > 0), page


def test_the_count_follows_inserts_deletes_and_truncation(patient_db: Database) -> None:
    def counted() -> int:
        with patient_db.transaction() as session:
            page = SqlPatientRepository(session, exact_count_limit=1).find(PatientQuery(0, 1))
        assert not page.total_estimated
        return page.total

    insert_patients(patient_db, 7)
    assert counted() == 7
    with patient_db.engine.begin() as conn:
        conn.execute(sa.delete(tables.patients).where(tables.patients.c.name == NAMES[0]))
    assert counted() == 5
    insert_patients(patient_db, 3)
    assert counted() == 8
    with patient_db.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE patients"))
    assert counted() == 0
    insert_patients(patient_db, 2)
    assert counted() == 2


def test_search_matches_substrings_and_short_searches_match_the_start(
    client: httpx.Client, patient_db: Database
) -> None:
    insert_patients(patient_db, 12)
    smith = client.get("/patients", params={"search": "MITH", "size": 100})
    assert {p["name"] for p in smith.json()} == {"Cy Smithers"} and smith.headers["X-Total-Count"] == "2"
    by_email = client.get("/patients", params={"search": "p11.", "size": 100})
    assert [p["email"][:4] for p in by_email.json()] == ["p11."]
    short = client.get("/patients", params={"search": "bo", "size": 100})
    assert {p["name"] for p in short.json()} == {"Bob Stone", "bob stone"}
    # "ee" is inside "Ann Lee" but starts no name or email: short searches match the start only.
    assert client.get("/patients", params={"search": "ee"}).json() == []
    assert client.get("/patients", params={"search": "%"}).headers["X-Total-Count"] == "0"
    assert client.get("/patients", params={"search": "zzzq"}).json() == []


def test_search_uses_the_trigram_index_on_postgresql(client: httpx.Client, patient_db: Database) -> None:
    insert_patients(patient_db, 3, name=lambda i: f"Zed Smithson {i}")
    with patient_db.engine.begin() as conn:
        # Enough rows that a scan of the table or of a sort index costs more than the trigram lookup
        # (seconds, longer than the default statement timeout on a loaded machine: seven indexes per row).
        conn.execute(sa.text("SET LOCAL statement_timeout = 0"))
        conn.execute(
            sa.text(
                "INSERT INTO patients SELECT gen_random_uuid(), 'Person ' || i, 'p' || i || '@example.net', "
                "'p' || i || '@example.net', 'Main Street', date '1980-01-01', date '2024-01-01', NULL, 1, "
                "now(), now() FROM generate_series(1, 50000) AS i"
            )
        )
        conn.execute(sa.text("ANALYZE patients"))
        plan = "\n".join(
            conn.execute(
                sa.text(
                    "EXPLAIN SELECT id FROM patients "
                    "WHERE lower(name) LIKE '%smithson%' OR email_key LIKE '%smithson%'"
                )
            ).scalars()
        )
    assert "ix_patients_name_trgm" in plan and "ix_patients_email_trgm" in plan, plan
    found = client.get("/patients", params={"search": "smithson"})
    assert sorted(p["name"] for p in found.json()) == [f"Zed Smithson {i}" for i in range(3)]
    assert found.headers["X-Total-Count"] == "3"


def test_the_total_is_exact_up_to_the_limit_then_a_flagged_estimate(
    limited_client: httpx.Client, patient_db: Database
) -> None:
    insert_patients(patient_db, 20)
    with patient_db.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE patients"))
    exact = limited_client.get("/patients", params={"size": 5})
    assert exact.headers["X-Total-Count"] == "20"
    assert exact.headers["X-Total-Count-Estimated"] == "false"

    insert_patients(patient_db, 30)
    with patient_db.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE patients"))
    # The whole list is counted by triggers on PostgreSQL: exact at any size.
    everyone = limited_client.get("/patients", params={"size": 5})
    assert everyone.headers["X-Total-Count-Estimated"] == "false"
    assert everyone.headers["X-Total-Count"] == "50"
    searched = limited_client.get("/patients", params={"search": "example.org"})
    assert searched.headers["X-Total-Count-Estimated"] == "true"
    assert int(searched.headers["X-Total-Count"]) > 20
    few = limited_client.get("/patients", params={"search": "Smithers"})
    assert few.headers["X-Total-Count-Estimated"] == "false"
    assert few.headers["X-Total-Count"] == "8"  # i % 6 == 5: 3 of the first 20 rows, 5 of the next 30


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'patient.db'}"
    migrate(url, MIGRATIONS)
    database = Database(url)
    yield database
    database.dispose()


@pytest.mark.parametrize("sort", ["name", "-registeredDate,name", "-email"])
def test_sqlite_pages_by_cursor_and_searches_with_like(sqlite_db: Database, sort: str) -> None:
    insert_patients(sqlite_db, 23)
    keys = parse_sort(sort)
    with sqlite_db.transaction() as session:
        repository = SqlPatientRepository(session)
        expected = [p.id for p in repository.find(PatientQuery(0, 100, None, keys)).items]
        seen: list[uuid.UUID] = []
        page = repository.find(PatientQuery(0, 4, None, keys))
        while True:
            seen.extend(p.id for p in page.items)
            if page.next is None:
                break
            page = repository.find(PatientQuery(0, 4, None, keys, page.next))
        assert seen == expected
        found = repository.find(PatientQuery(0, 100, "MITHER", keys))
        assert {p.name for p in found.items} == {"Cy Smithers"} and found.total == len(found.items)
