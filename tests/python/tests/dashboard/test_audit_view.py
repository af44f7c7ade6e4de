"""The audit trail of a patient in the dashboard (ADMIN), in a real browser against the devstack."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import DEMO_EMAIL, System
from tests.dashboard.test_dashboard import create_via_api, row, search, sign_in, unique

pytestmark = pytest.mark.slow


def test_an_admin_sees_who_accessed_a_patient_newest_first(page: Page, system: System) -> None:
    name = unique("Grace Hopper")
    created = create_via_api(system, name, f"{unique('grace')}@example.com")
    with system.client(system.token()) as api:
        assert api.get(f"/api/patients/{created['id']}").status_code == 200

    sign_in(page, system)
    search(page, name)
    row(page, name).get_by_role("button", name=f"Audit trail of {name}").click()
    dialog = page.get_by_role("dialog", name="Audit trail")
    expect(dialog).to_contain_text(name)
    entries = dialog.locator("#audit-rows tr")
    expect(entries).to_have_count(2)
    expect(entries.nth(0)).to_contain_text("patient.read")
    expect(entries.nth(1)).to_contain_text("patient.create")
    expect(entries.nth(1)).to_contain_text(DEMO_EMAIL)
    expect(dialog.locator("#audit-status")).to_have_text("The 2 most recent entries, newest first.")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def test_a_user_is_offered_no_audit_trail(page: Page, system: System) -> None:
    name = unique("Dorothy Vaughan")
    create_via_api(system, name, f"{unique('dorothy')}@example.com")
    user_email, password = f"{unique('clerk')}@example.com", "clerk-password-1"
    with system.client(system.token()) as api:
        created = api.post("/auth/users", json={"email": user_email, "password": password, "role": "USER"})
        assert created.status_code == 201, created.text

    sign_in(page, system, user_email, password)
    search(page, name)
    expect(row(page, name).get_by_role("button", name=f"Edit {name}")).to_be_visible()
    expect(row(page, name).get_by_role("button", name=f"Audit trail of {name}")).to_have_count(0)
