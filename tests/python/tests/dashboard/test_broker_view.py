"""The dashboard's Broker view (ADMIN) in a real browser against the devstack: topics, a parked message, redrive."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaProducer
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import System
from tests.dashboard.test_dashboard import EVENT_SECONDS_MS, sign_in

pytestmark = pytest.mark.slow


def park_garbage(system: System) -> tuple[str, int, int]:
    """Put bytes that are no PatientEvent on the patient topic; analytics parks them."""
    assert system.kafka, "set PM_DASHBOARD_KAFKA_BOOTSTRAP with PM_DASHBOARD_GATEWAY_URL"
    key = f"garbage-{uuid.uuid4().hex[:8]}"
    producer = KafkaProducer(bootstrap_servers=[system.kafka], acks="all")
    try:
        sent = producer.send("patient", key=key.encode(), value=b"\xff\x00 not a protobuf").get(timeout=10)
    finally:
        producer.close(timeout=5)
    return key, sent.partition, sent.offset


def test_the_broker_view_shows_topics_and_a_parked_message_and_redrives_it(
    page: Page, system: System, screenshots: Path
) -> None:
    key, partition, offset = park_garbage(system)
    sign_in(page, system)
    page.get_by_role("button", name="Broker").click()
    expect(page.get_by_role("heading", name="Broker", exact=True)).to_be_visible()
    expect(page.locator("#app-view")).to_be_hidden()
    expect(page.locator("#topics-rows tr[data-topic='patient']")).to_have_count(3)
    expect(page.locator("#outbox-summary")).to_contain_text("waiting to be published")
    expect(page.locator("#outbox-summary")).to_contain_text("The relay reaches the broker.")
    expect(page.locator("#lag-rows tr")).to_have_count(3)

    letter = page.locator("#dead-letters-rows tr").filter(has_text=key)
    deadline = time.monotonic() + EVENT_SECONDS_MS / 1000
    while letter.count() == 0:
        assert time.monotonic() < deadline, "the garbage never showed up under dead letters"
        time.sleep(1)
        page.get_by_role("button", name="Refresh").click()
        expect(page.locator("#broker-status")).to_contain_text("Updated")
    expect(letter).to_contain_text("decode error")
    expect(letter).to_contain_text(f"patient / {partition} @ {offset}")

    page.get_by_role("button", name=f"Messages of patient partition {partition}").click()
    message = page.locator(f"#messages li[data-offset='{offset}']")
    expect(message).to_contain_text(f"key {key}")
    expect(message).to_contain_text("Not a usable event")
    page.screenshot(path=str(screenshots / "broker.png"), full_page=True, animations="disabled")

    letter_id = letter.get_attribute("data-letter")
    page.get_by_role("button", name=f"Redrive message {letter_id}").click()
    expect(page.locator("#dead-letters-status")).to_have_text(
        "Redrive: 0 counted, 0 already counted, 1 still parked."
    )
    expect(letter).to_have_count(1)
    page.get_by_role("button", name=f"Discard message {letter_id}").click()
    expect(page.locator("#dead-letters-status")).to_have_text("Discarded 1.")
    expect(letter).to_have_count(0)

    page.get_by_role("button", name="Patients").click()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
