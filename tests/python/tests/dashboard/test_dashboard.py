"""The dashboard in a real headless browser against the real system (devstack): what a user sees and does."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from tests.dashboard.conftest import DEMO_EMAIL, DEMO_PASSWORD, System
from tests.support.tokens import tamper

pytestmark = pytest.mark.slow

# Events travel patient -> outbox relay -> broker -> analytics consumer before the page polls them.
EVENT_SECONDS_MS = 30_000


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def sign_in(page: Page, system: System, email: str = DEMO_EMAIL, password: str = DEMO_PASSWORD) -> None:
    page.goto(f"{system.url}/dashboard")
    form = page.locator("#login-form")
    form.get_by_label("Email").fill(email)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()


def patient_dialog(page: Page) -> Locator:
    return page.locator("#patient-dialog")


def fill_patient(dialog: Locator, *, name: str, email: str, address: str = "1 Harbour Road") -> None:
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Email", exact=True).fill(email)
    dialog.get_by_label("Address").fill(address)
    dialog.get_by_label("Date of birth").fill("1990-04-12")


def search(page: Page, text: str) -> None:
    page.get_by_label("Search name or email").fill(text)


def row(page: Page, name: str) -> Locator:
    return page.locator("#patients-rows tr").filter(has=page.get_by_role("cell", name=name, exact=True))


def create_via_api(system: System, name: str, email: str) -> dict[str, str]:
    with system.client(system.token()) as api:
        response = api.post(
            "/api/patients",
            json={
                "name": name,
                "email": email,
                "address": "2 Quay Street",
                "dateOfBirth": "1980-01-30",
                "registeredDate": "2024-05-01",
            },
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_sign_in_create_a_patient_and_watch_its_event_arrive(
    page: Page, system: System, screenshots: Path
) -> None:
    sign_in(page, system)
    expect(page.locator("#whoami")).to_have_text(f"{DEMO_EMAIL} (ADMIN)")
    expect(page.locator("#patients-rows tr")).to_have_count(10)
    expect(page.locator("#page-info")).to_have_text(re.compile(r"^1\u201310 of \d+$"))
    expect(page.locator("#health-overall")).to_have_text("All services are up.")
    for component in ("gateway", "auth", "patient", "analytics"):
        expect(page.locator(f"#health-list li[data-component='{component}'] .badge")).to_have_text("UP")

    name = unique("Ada Lovelace")
    email = f"{name.lower().replace(' ', '.')}@example.com"
    page.get_by_role("button", name="New patient").click()
    dialog = patient_dialog(page)
    fill_patient(dialog, name=name, email="not-an-email")
    dialog.get_by_role("button", name="Save").click()
    email_field = dialog.get_by_label("Email", exact=True)
    expect(page.locator("#patient-email-error")).to_have_text("Email should be valid")
    expect(email_field).to_have_attribute("aria-invalid", "true")
    expect(email_field).to_have_attribute("aria-describedby", "patient-email-error")
    page.screenshot(path=str(screenshots / "validation-error.png"))

    email_field.fill(email)
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#patients-status")).to_have_text(f"Created {name}.")
    search(page, name)
    expect(row(page, name)).to_contain_text(email)
    expect(page.locator("#page-info")).to_have_text("1\u20131 of 1")

    event = page.locator("#events li").filter(has_text=name)
    expect(event).to_contain_text("Created", timeout=EVENT_SECONDS_MS)
    expect(event).to_contain_text(email)
    expect(event.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d{2}-\d{2}T"))
    expect(page.locator("#total-created")).not_to_have_text("0")
    expect(page.locator("#chart svg title").last).to_have_text(
        re.compile(r"^\d{4}-\d{2}: [1-9]\d* registrations?$")
    )

    search(page, "")
    expect(page.locator("#page-info")).to_have_text(re.compile(r"^1\u201310 of \d+$"))
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True, animations="disabled")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_role("button", name="New patient")).to_be_in_viewport()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways"
    page.screenshot(path=str(screenshots / "dashboard-narrow.png"), full_page=True, animations="disabled")


def test_edit_of_a_patient_changed_meanwhile_is_refused_and_can_be_reloaded(
    page: Page, system: System
) -> None:
    name = unique("Grace Hopper")
    patient = create_via_api(system, name, f"{name.lower().replace(' ', '.')}@example.com")
    sign_in(page, system)
    search(page, name)
    row(page, name).get_by_role("button", name=f"Edit {name}").click()
    dialog = patient_dialog(page)
    expect(dialog.get_by_label("Address")).to_have_value("2 Quay Street")

    with system.client(system.token()) as api:
        current = api.get(f"/api/patients/{patient['id']}")
        changed = {k: current.json()[k] for k in ("name", "email", "dateOfBirth")}
        response = api.put(
            f"/api/patients/{patient['id']}",
            json={**changed, "address": "9 Changed Lane"},
            headers={"If-Match": current.headers["ETag"]},
        )
        assert response.status_code == 200, response.text
    updated = page.locator("#events li").filter(has_text=name).filter(has_text="Updated")
    expect(updated).to_contain_text(f"by {DEMO_EMAIL}", timeout=EVENT_SECONDS_MS)

    dialog.get_by_label("Address").fill("5 Mine Street")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator("#patient-form-error")).to_contain_text("someone else changed this patient")
    dialog.get_by_role("button", name="Load latest version").click()
    expect(dialog.get_by_label("Address")).to_have_value("9 Changed Lane")

    dialog.get_by_label("Address").fill("5 Mine Street")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_be_hidden()
    expect(row(page, name)).to_contain_text("5 Mine Street")


def test_duplicate_email_is_shown_next_to_the_email_field(page: Page, system: System) -> None:
    taken = create_via_api(system, unique("Alan Turing"), f"{unique('alan')}@example.com")
    sign_in(page, system)
    page.get_by_role("button", name="New patient").click()
    dialog = patient_dialog(page)
    fill_patient(dialog, name=unique("Someone Else"), email=taken["email"].upper())
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("#patient-email-error")).not_to_be_empty()
    expect(dialog.locator("#patient-form-error")).to_contain_text("Not saved")
    expect(dialog).to_be_visible()


def test_every_missing_field_shows_the_api_message_beside_it(page: Page, system: System) -> None:
    sign_in(page, system)
    page.get_by_role("button", name="New patient").click()
    dialog = patient_dialog(page)
    dialog.get_by_label("Registered").fill("")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("#patient-name-error")).to_have_text("Name is required")
    expect(page.locator("#patient-email-error")).to_have_text("Email is required")
    expect(page.locator("#patient-address-error")).to_have_text("Address is required")
    expect(page.locator("#patient-dateOfBirth-error")).to_have_text("Date of birth is required")
    expect(page.locator("#patient-registeredDate-error")).to_have_text("Registered date is required")
    expect(dialog.get_by_label("Name")).to_be_focused()


def test_admin_deletes_a_patient_and_sees_the_deleted_event(page: Page, system: System) -> None:
    name = unique("Katherine Johnson")
    create_via_api(system, name, f"{unique('katherine')}@example.com")
    sign_in(page, system)
    search(page, name)
    row(page, name).get_by_role("button", name=f"Delete {name}").click()
    confirm = page.get_by_role("dialog", name="Delete patient")
    expect(confirm).to_contain_text(name)
    confirm.get_by_role("button", name="Delete").click()
    expect(page.locator("#patients-status")).to_have_text(f"Deleted {name}.")
    expect(page.locator("#patients-rows")).to_contain_text("No patient matches.")
    event = page.locator("#events li").filter(has_text=name).filter(has_text="Deleted")
    expect(event).to_be_visible(timeout=EVENT_SECONDS_MS)


def test_a_user_without_admin_role_is_told_it_cannot_delete(page: Page, system: System) -> None:
    name = unique("Mary Jackson")
    create_via_api(system, name, f"{unique('mary')}@example.com")
    user_email, password = f"{unique('clerk')}@example.com", "clerk-password-1"
    with system.client(system.token()) as api:
        created = api.post("/auth/users", json={"email": user_email, "password": password, "role": "USER"})
        assert created.status_code == 201, created.text

    sign_in(page, system, user_email, password)
    expect(page.locator("#whoami")).to_have_text(f"{user_email} (USER)")
    search(page, name)
    row(page, name).get_by_role("button", name=f"Delete {name}").click()
    page.get_by_role("dialog", name="Delete patient").get_by_role("button", name="Delete").click()
    expect(page.locator("#patients-status")).to_contain_text("Not allowed: only administrators can delete")
    expect(row(page, name)).to_be_visible()


def test_patient_data_is_shown_as_text_never_run_as_markup(page: Page, system: System) -> None:
    payload = f'<img src=x onerror="window.__injected=1">{uuid.uuid4().hex[:6]}'
    create_via_api(system, payload, f"{unique('markup')}@example.com")
    sign_in(page, system)
    search(page, payload)
    expect(row(page, payload)).to_be_visible()
    expect(page.locator("#patients-rows img")).to_have_count(0)
    expect(page.locator("#events li").filter(has_text=payload)).to_be_visible(timeout=EVENT_SECONDS_MS)
    assert page.evaluate("window.__injected") is None


def test_paging_searching_and_the_session_survive_a_reload(page: Page, system: System) -> None:
    sign_in(page, system)
    info = page.locator("#page-info")
    expect(info).to_have_text(re.compile(r"^1\u201310 of \d+$"))
    total = int(info.inner_text().rsplit(" ", 1)[1])
    assert total >= 15, "the 15 seeded patients are missing"
    first_page = page.locator("#patients-rows tr").all_inner_texts()
    page.get_by_role("button", name="Next").click()
    expect(info).to_have_text(f"11\u2013{min(20, total)} of {total}")
    assert page.locator("#patients-rows tr").all_inner_texts() != first_page
    page.get_by_role("button", name="Previous").click()
    expect(info).to_have_text(re.compile(r"^1\u201310 of \d+$"))
    assert page.locator("#patients-rows tr").all_inner_texts() == first_page
    page.get_by_label("Rows per page").select_option("50")
    expect(info).to_have_text(f"1\u2013{min(50, total)} of {total}")

    page.get_by_label("Sort by").select_option(label="Name (Z\u2013A)")
    expect(page.locator("#patients-table")).to_have_attribute("aria-busy", "false")
    names = page.locator("#patients-rows td[data-label='Name']").all_inner_texts()
    assert names == sorted(names, key=str.lower, reverse=True)

    search(page, "SMITH")
    expect(page.locator("#patients-rows tr")).to_have_count(1)
    expect(row(page, "Jane Smith")).to_be_visible()
    expect(info).to_have_text("1\u20131 of 1")

    page.reload()
    expect(page.locator("#whoami")).to_have_text(f"{DEMO_EMAIL} (ADMIN)")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def test_a_token_the_api_refuses_sends_the_user_back_to_sign_in(page: Page, system: System) -> None:
    real = system.token()
    header, payload, _signature = real.split(".")
    forged = f"{header}.{payload}.{'A' * 86}"
    page.goto(f"{system.url}/dashboard")
    page.evaluate("token => sessionStorage.setItem('pm.dashboard.token', token)", forged)
    page.reload()
    expect(page.locator("#login-error")).to_have_text("Your session has ended. Please sign in again.")
    expect(page.locator("#app-view")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('pm.dashboard.token')") is None


def test_an_expired_access_token_is_renewed_silently_with_the_refresh_token(
    page: Page, system: System
) -> None:
    login = httpx.post(
        f"{system.url}/auth/login", json={"email": DEMO_EMAIL, "password": DEMO_PASSWORD}, timeout=10
    ).json()
    expired = tamper(login["token"], exp=int(time.time()) - 60)
    page.goto(f"{system.url}/dashboard")
    page.evaluate(
        "([token, refresh]) => { sessionStorage.setItem('pm.dashboard.token', token);"
        " sessionStorage.setItem('pm.dashboard.refresh', refresh); }",
        [expired, login["refreshToken"]],
    )
    page.reload()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    expect(page.locator("#whoami")).to_have_text(f"{DEMO_EMAIL} (ADMIN)")
    renewed = page.evaluate("sessionStorage.getItem('pm.dashboard.token')")
    assert renewed not in (expired, login["token"])
    assert page.evaluate("sessionStorage.getItem('pm.dashboard.refresh')") != login["refreshToken"]
    # The refresh token the page started from is spent now.
    spent = httpx.post(
        f"{system.url}/auth/token/refresh", json={"refreshToken": login["refreshToken"]}, timeout=10
    )
    assert spent.status_code == 401


def test_sign_out_ends_the_session_for_the_whole_system(page: Page, system: System) -> None:
    sign_in(page, system)
    token = page.evaluate("sessionStorage.getItem('pm.dashboard.token')")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 5
    status = 200
    while status != 401 and time.monotonic() < deadline:
        status = httpx.get(f"{system.url}/api/patients", headers=headers, timeout=10).status_code
        time.sleep(0.2)
    assert status == 401


def test_a_wrong_password_is_refused_with_a_clear_message(page: Page, system: System) -> None:
    page.goto(f"{system.url}/dashboard")
    form = page.locator("#login-form")
    form.get_by_label("Email").fill(DEMO_EMAIL)
    form.get_by_label("Password").fill("not-the-password")
    form.get_by_role("button", name="Sign in").click()
    expect(page.locator("#login-error")).to_have_text("Wrong email or password.")
    expect(page.locator("#app-view")).to_be_hidden()


def test_an_admin_opens_the_waterfall_of_a_patients_create(
    page: Page, system: System, screenshots: Path
) -> None:
    sign_in(page, system)
    name = unique("Traced Patient")
    page.get_by_role("button", name="New patient").click()
    dialog = patient_dialog(page)
    fill_patient(dialog, name=name, email=f"{name.lower().replace(' ', '.')}@example.com")
    dialog.get_by_role("button", name="Save").click()
    expect(page.locator("#patients-status")).to_have_text(f"Created {name}.")
    page.get_by_role("button", name="View the trace of this create").click()

    spans = page.locator("#waterfall-spans li")
    # The create crosses every service, and analytics' processing arrives last.
    expect(spans.filter(has_text="process patient")).to_have_count(1, timeout=EVENT_SECONDS_MS)
    for service in ("gateway", "patient", "billing", "analytics"):
        expect(page.locator(f"#waterfall-spans li[data-service='{service}']").first).to_be_visible()
    expect(spans.first).to_contain_text("gateway")
    expect(spans.first).to_contain_text("POST /api/patients")
    expect(page.locator("#waterfall-title")).to_have_text(
        re.compile(r"^Trace [0-9a-f]{32} \(\d+ spans, \d+ ms\)$")
    )
    expect(page.locator("#traces-rows tr").first).to_be_visible()
    page.locator("#traces").screenshot(path=str(screenshots / "traces.png"), animations="disabled")
