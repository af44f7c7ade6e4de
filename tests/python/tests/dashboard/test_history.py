"""A patient's history in the dashboard, in a real headless browser against the real system (devstack)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import System
from tests.dashboard.test_dashboard import create_via_api, row, search, sign_in, unique

pytestmark = pytest.mark.slow


def test_the_history_dialog_lists_versions_newest_first_and_pages_to_older_ones(
    page: Page, system: System
) -> None:
    name = unique("Grace Hopper")
    email = f"{unique('grace')}@example.com"
    created = create_via_api(system, name, email)
    with system.client(system.token()) as api:
        # Eleven updates: twelve versions, more than one page of ten.
        for n in range(1, 12):
            body = {k: created[k] for k in ("name", "email", "address", "dateOfBirth")}
            response = api.put(f"/api/patients/{created['id']}", json={**body, "address": f"{n} Navy Yard"})
            assert response.status_code == 200, response.text
    sign_in(page, system)
    search(page, name)
    row(page, name).get_by_role("button", name=f"History of {name}").click()
    dialog = page.get_by_role("dialog", name=f"History of {name}")
    expect(dialog).to_be_visible()
    rows = dialog.locator("#history-rows tr")
    expect(rows).to_have_count(10)
    expect(rows.first).to_contain_text("Updated")
    expect(rows.first.locator("td").first).to_have_text("12")
    expect(rows.first).to_contain_text("testuser@test.com")
    dialog.get_by_role("button", name="Older versions").click()
    expect(rows).to_have_count(12)
    expect(rows.last.locator("td").first).to_have_text("1")
    expect(rows.last).to_contain_text("Created")
    expect(rows.last).to_contain_text(name)
    expect(dialog.get_by_role("button", name="Older versions")).to_be_disabled()
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()
