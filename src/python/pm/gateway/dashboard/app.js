// The dashboard: talks only to the public API behind the gateway, with the token from POST /auth/login,
// renewed silently through POST /auth/token/refresh before it expires; "Sign out" ends the session.
// Every piece of data reaches the page through textContent or attributes, never as markup.
"use strict";

(() => {
  const TOKEN_KEY = "pm.dashboard.token";
  const REFRESH_KEY = "pm.dashboard.refresh";
  // Renew this long before the access token expires, but not before 80% of its lifetime has passed.
  const REFRESH_AHEAD_MS = 60000;
  // Longer than the gateway's own upstream timeout (15 s), so that its 504 problem arrives before we give up.
  const REQUEST_TIMEOUT_MS = 20000;
  const EVENTS_EVERY_MS = 2000;
  const HEALTH_EVERY_MS = 10000;
  const SEARCH_DELAY_MS = 300;
  const EVENT_LIMIT = 20;
  const CHART_MONTHS = 60;
  const CHART_LABELS = 4;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const FIELDS = ["name", "email", "address", "dateOfBirth", "registeredDate"];
  const EVENT_LABELS = {
    PATIENT_CREATED: "Created",
    PATIENT_UPDATED: "Updated",
    PATIENT_DELETED: "Deleted",
    PATIENT_PURGED: "Purged",
  };
  const CHANGE_LABELS = { CREATED: "Created", UPDATED: "Updated", DELETED: "Deleted", PURGED: "Purged" };
  const HISTORY_SIZE = 10;

  const $ = (id) => document.getElementById(id);

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    node.append(...children);
    return node;
  }

  function svg(tag, attributes = {}, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // ---------------------------------------------------------------- API access

  class ApiError extends Error {
    constructor(status, problem, message) {
      super(message);
      this.status = status;
      this.problem = problem || {};
    }
  }

  function problemMessage(status, problem) {
    if (problem && typeof problem.detail === "string" && problem.detail) return problem.detail;
    if (problem && typeof problem.title === "string" && problem.title) return problem.title;
    return `The server answered ${status}.`;
  }

  async function readBody(response) {
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch {
      return null;
    }
  }

  async function api(path, { method = "GET", body, headers = {}, auth = true } = {}) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    const sent = { Accept: "application/json, application/problem+json", ...headers };
    if (body !== undefined) sent["Content-Type"] = "application/json";
    if (auth && session.token) sent.Authorization = `Bearer ${session.token}`;
    let response;
    let data;
    try {
      response = await fetch(path, {
        method,
        headers: sent,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: controller.signal,
        cache: "no-store",
      });
      data = await readBody(response);
    } catch {
      throw new ApiError(
        0,
        null,
        controller.signal.aborted ? "The gateway did not answer in time." : "The gateway cannot be reached.",
      );
    } finally {
      clearTimeout(timer);
    }
    if (response.status === 401 && auth && session.token) {
      signOut("Your session has ended. Please sign in again.");
    }
    if (!response.ok) throw new ApiError(response.status, data, problemMessage(response.status, data));
    return { response, data };
  }

  // ---------------------------------------------------------------- session

  const session = { token: null, claims: null, refreshToken: null, expiryTimer: null, renewing: null };

  function decodeClaims(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
    } catch {
      return null;
    }
  }

  // Tokens of the session: the access token (verified by every service) and the refresh token that
  // renews it. The refresh token is spent on use, so renewals never overlap (one promise at a time).
  function adoptTokens(token, refreshToken) {
    const claims = decodeClaims(token);
    if (!claims || typeof claims.exp !== "number" || claims.exp * 1000 <= Date.now()) return false;
    session.token = token;
    session.claims = claims;
    session.refreshToken = typeof refreshToken === "string" ? refreshToken : null;
    sessionStorage.setItem(TOKEN_KEY, token);
    if (session.refreshToken) sessionStorage.setItem(REFRESH_KEY, session.refreshToken);
    else sessionStorage.removeItem(REFRESH_KEY);
    clearTimeout(session.expiryTimer);
    const left = claims.exp * 1000 - Date.now();
    session.expiryTimer = session.refreshToken
      ? setTimeout(renewSession, Math.max(1000, left - REFRESH_AHEAD_MS, left * 0.8))
      : setTimeout(() => signOut("Your session has expired. Please sign in again."), Math.min(left, 2 ** 31 - 1));
    $("whoami").textContent = `${claims.sub} (${claims.role})`;
    return true;
  }

  function renewSession() {
    if (session.renewing) return session.renewing;
    const refreshToken = session.refreshToken;
    session.renewing = (async () => {
      try {
        const { data } = await api("/auth/token/refresh", {
          method: "POST",
          body: { refreshToken },
          auth: false,
        });
        if (!data || !adoptTokens(data.token, data.refreshToken)) throw new Error("no usable token");
      } catch {
        if (session.refreshToken === refreshToken) signOut("Your session has ended. Please sign in again.");
      } finally {
        session.renewing = null;
      }
    })();
    return session.renewing;
  }

  function startSession(token, refreshToken) {
    if (!adoptTokens(token, refreshToken)) return false;
    $("session").hidden = false;
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("broker-toggle").hidden = session.claims.role !== "ADMIN";
    $("traces").hidden = !isAdmin();
    loadPatients();
    loadTraces();
    live.start();
    return true;
  }

  function signOut(message) {
    session.token = null;
    session.claims = null;
    session.refreshToken = null;
    clearTimeout(session.expiryTimer);
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(REFRESH_KEY);
    live.stop();
    closeDialog($("patient-dialog"));
    closeDialog($("delete-dialog"));
    $("session").hidden = true;
    $("app-view").hidden = true;
    $("broker-view").hidden = true;
    brokerView.open = false;
    $("login-view").hidden = false;
    $("login-password").value = "";
    $("login-error").textContent = message || "";
    $("login-email").focus();
  }

  // The sign-out button ends the session at auth (its tokens stop working everywhere), then here;
  // here even when auth cannot be reached.
  async function onSignOut() {
    if (session.token) {
      try {
        await api("/auth/logout", { method: "POST" });
      } catch {
        // Signed out in this tab anyway; the access token expires within minutes.
      }
    }
    signOut("");
  }

  async function onLogin(event) {
    event.preventDefault();
    const error = $("login-error");
    error.textContent = "";
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    if (!email || !password) {
      error.textContent = "Enter your email and password.";
      return;
    }
    const button = event.submitter || event.target.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const { data } = await api("/auth/login", { method: "POST", body: { email, password }, auth: false });
      if (!data || typeof data.token !== "string" || !startSession(data.token, data.refreshToken)) {
        error.textContent = "The sign-in answer held no usable token.";
      }
    } catch (err) {
      if (err.status === 401) error.textContent = "Wrong email or password.";
      else if (err.status === 429) error.textContent = `Too many attempts. ${err.message}`;
      else error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- patients table

  // `url` is the page reached by a next/prev link (a keyset cursor: as cheap on page 5,000 as on page 1);
  // null means page `page` by number (a new search, sort or size starts there).
  const table = {
    search: "", sort: "name", size: 10, page: 0, total: 0, estimated: false, url: null, links: {},
    searchTimer: null, loading: 0,
  };

  function pageLinks(header) {
    const links = {};
    for (const [, url, rel] of (header || "").matchAll(/<([^>]*)>;\s*rel="(\w+)"/g)) links[rel] = url;
    return links;
  }

  function patientsUrl() {
    if (table.url) return table.url;
    const query = new URLSearchParams({
      page: String(table.page),
      size: String(table.size),
      sort: table.sort,
    });
    if (table.search) query.set("search", table.search);
    return `/api/patients?${query}`;
  }

  async function loadPatients() {
    const request = ++table.loading;
    const status = $("patients-status");
    $("patients-table").setAttribute("aria-busy", "true");
    try {
      const { response, data } = await api(patientsUrl());
      if (request !== table.loading) return;
      const rows = Array.isArray(data) ? data : [];
      const total = Number.parseInt(response.headers.get("X-Total-Count") || "", 10);
      table.total = Number.isFinite(total) ? total : rows.length;
      table.estimated = response.headers.get("X-Total-Count-Estimated") === "true";
      table.links = pageLinks(response.headers.get("Link"));
      if (rows.length === 0 && table.page > 0 && table.total > 0) {
        table.url = null;
        table.page = Math.max(0, Math.ceil(table.total / table.size) - 1);
        loadPatients();
        return;
      }
      renderPatients(rows);
      if (!status.dataset.sticky) setPatientsStatus("", false, false);
    } catch (err) {
      if (request !== table.loading || !session.token) return;
      setPatientsStatus(`Could not load patients: ${err.message}`, true, false);
    } finally {
      if (request === table.loading) $("patients-table").setAttribute("aria-busy", "false");
    }
  }

  // The outcome of an action (created, deleted, not allowed) stays until the user does something else;
  // a loading failure goes as soon as the table loads again.
  function setPatientsStatus(message, isError = false, sticky = true) {
    const status = $("patients-status");
    status.textContent = message;
    status.classList.toggle("error", Boolean(isError));
    status.dataset.sticky = message && sticky ? "1" : "";
  }

  function renderPatients(rows) {
    const body = $("patients-rows");
    body.replaceChildren(
      ...rows.map((patient) =>
        el(
          "tr",
          { "data-id": patient.id },
          el("td", { "data-label": "Name", text: patient.name || "" }),
          el("td", { "data-label": "Email" }, ...breakableEmail(patient.email || "")),
          el("td", { "data-label": "Address", text: patient.address || "" }),
          el("td", { "data-label": "Date of birth", class: "date", text: patient.dateOfBirth || "" }),
          el("td", { "data-label": "Registered", class: "date", text: patient.registeredDate || "" }),
          el(
            "td",
            {},
            el(
              "div",
              { class: "row-actions" },
              actionButton("Edit", `Edit ${patient.name}`, () => openEdit(patient.id)),
              actionButton("History", `History of ${patient.name}`, () => openHistory(patient)),
              actionButton("Delete", `Delete ${patient.name}`, () => askDelete(patient), "danger"),
              ...(isAdmin() ? [actionButton("Audit", `Audit trail of ${patient.name}`, () => openAudit(patient))] : []),
            ),
          ),
        ),
      ),
    );
    if (rows.length === 0) {
      body.append(
        el("tr", {}, el("td", { colspan: "6", class: "empty", text: table.search ? "No patient matches." : "No patients yet." })),
      );
    }
    const first = rows.length ? table.page * table.size + 1 : 0;
    const last = table.page * table.size + rows.length;
    $("page-info").textContent = `${first}–${last} of ${table.estimated ? "about " : ""}${table.total}`;
    $("page-prev").disabled = table.page === 0;
    $("page-next").disabled = !table.links.next;
  }

  // Long addresses wrap before the "@" rather than anywhere in the middle of a word.
  function breakableEmail(email) {
    const at = email.indexOf("@");
    return at > 0 ? [email.slice(0, at), el("wbr"), email.slice(at)] : [email];
  }

  function actionButton(label, accessibleName, onClick, variant = "secondary") {
    const button = el("button", { type: "button", class: `small ${variant}`, "aria-label": accessibleName, text: label });
    button.addEventListener("click", onClick);
    return button;
  }

  // ---------------------------------------------------------------- create / edit

  const editing = { id: null, etag: null };

  function fieldInput(field) {
    return $(`patient-${field}`);
  }

  function clearFormErrors() {
    for (const field of FIELDS) {
      fieldInput(field).removeAttribute("aria-invalid");
      $(`patient-${field}-error`).textContent = "";
    }
    $("patient-form-error").replaceChildren();
  }

  function showFieldError(field, message) {
    fieldInput(field).setAttribute("aria-invalid", "true");
    $(`patient-${field}-error`).textContent = message;
  }

  function showFormError(message, action) {
    const box = $("patient-form-error");
    box.replaceChildren(el("span", { text: message }));
    if (action) {
      const button = el("button", { type: "button", class: "small secondary", text: action.label });
      button.addEventListener("click", action.run);
      box.append(" ", button);
    }
  }

  function today() {
    const now = new Date();
    const local = new Date(now.getTime() - now.getTimezoneOffset() * 60000);
    return local.toISOString().slice(0, 10);
  }

  function openCreate() {
    editing.id = null;
    editing.etag = null;
    $("patient-form").reset();
    clearFormErrors();
    $("patient-form-title").textContent = "New patient";
    fieldInput("registeredDate").value = today();
    openDialog($("patient-dialog"));
    fieldInput("name").focus();
  }

  function fillForm(patient) {
    for (const field of FIELDS) fieldInput(field).value = patient[field] || "";
  }

  async function openEdit(id) {
    setPatientsStatus("");
    try {
      const { response, data } = await api(`/api/patients/${encodeURIComponent(id)}`);
      editing.id = id;
      editing.etag = response.headers.get("ETag");
      clearFormErrors();
      fillForm(data || {});
      $("patient-form-title").textContent = `Edit ${data && data.name ? data.name : "patient"}`;
      openDialog($("patient-dialog"));
      fieldInput("name").focus();
    } catch (err) {
      if (!session.token) return;
      setPatientsStatus(err.status === 404 ? "That patient no longer exists." : `Could not open the patient: ${err.message}`, true);
      if (err.status === 404) loadPatients();
    }
  }

  async function reloadEditing() {
    try {
      const { response, data } = await api(`/api/patients/${encodeURIComponent(editing.id)}`);
      editing.etag = response.headers.get("ETag");
      clearFormErrors();
      fillForm(data || {});
      showFormError("Loaded the latest version. Make your changes again and save.");
    } catch (err) {
      showFormError(err.status === 404 ? "This patient has been deleted." : err.message);
    }
  }

  function formBody() {
    const body = {};
    for (const field of FIELDS) {
      const value = fieldInput(field).value.trim();
      // Empty fields are left out so that the API reports them as missing with its own message.
      if (value) body[field] = value;
    }
    return body;
  }

  async function onSave(event) {
    event.preventDefault();
    clearFormErrors();
    const save = $("patient-save");
    save.disabled = true;
    const creating = editing.id === null;
    // A create is always traced (a sampled traceparent of our own), so that its waterfall can be opened.
    const traced = newTraceparent();
    try {
      const { data } = creating
        ? await api("/api/patients", { method: "POST", body: formBody(), headers: { traceparent: traced.header } })
        : await api(`/api/patients/${encodeURIComponent(editing.id)}`, {
            method: "PUT",
            body: formBody(),
            headers: editing.etag ? { "If-Match": editing.etag } : {},
          });
      closeDialog($("patient-dialog"));
      const name = data && data.name ? data.name : "the patient";
      setPatientsStatus(creating ? `Created ${name}.` : `Saved ${name}.`);
      if (creating && isAdmin()) offerTrace(traced.traceId);
      loadPatients();
    } catch (err) {
      showSaveError(err);
    } finally {
      save.disabled = false;
    }
  }

  function showSaveError(err) {
    if (!session.token) return;
    const errors = err.problem && typeof err.problem.errors === "object" ? err.problem.errors : null;
    if (err.status === 400 && errors) {
      const unplaced = [];
      for (const [field, message] of Object.entries(errors)) {
        if (FIELDS.includes(field)) showFieldError(field, String(message));
        else unplaced.push(`${field}: ${message}`);
      }
      showFormError(unplaced.length ? `Please correct: ${unplaced.join("; ")}` : "Please correct the highlighted fields.");
      const invalid = FIELDS.find((field) => field in errors);
      if (invalid) fieldInput(invalid).focus();
    } else if (err.status === 409) {
      showFieldError("email", err.message);
      showFormError(`Not saved: ${err.message}`);
      fieldInput("email").focus();
    } else if (err.status === 412) {
      showFormError("Not saved: someone else changed this patient after you opened it.", {
        label: "Load latest version",
        run: reloadEditing,
      });
    } else if (err.status === 403) {
      showFormError(`Not allowed: your role (${session.claims.role}) cannot do this. ${err.message}`);
    } else if (err.status === 404) {
      showFormError("Not saved: this patient has been deleted.");
    } else {
      showFormError(`Not saved: ${err.message}`);
    }
  }

  // ---------------------------------------------------------------- delete

  let deleting = null;

  function askDelete(patient) {
    setPatientsStatus("");
    deleting = patient;
    $("delete-question").textContent = `Delete ${patient.name} (${patient.email})? The patient leaves the list; its history is kept.`;
    openDialog($("delete-dialog"));
  }

  async function onDeleteClosed() {
    const patient = deleting;
    deleting = null;
    if (!patient || $("delete-dialog").returnValue !== "delete") return;
    try {
      await api(`/api/patients/${encodeURIComponent(patient.id)}`, { method: "DELETE" });
      setPatientsStatus(`Deleted ${patient.name}.`);
    } catch (err) {
      if (!session.token) return;
      if (err.status === 403) setPatientsStatus(`Not allowed: only administrators can delete patients. ${err.message}`, true);
      else if (err.status === 404 || err.status === 410) setPatientsStatus(`${patient.name} was already deleted.`, true);
      else setPatientsStatus(`Could not delete ${patient.name}: ${err.message}`, true);
    }
    loadPatients();
  }

  // ---------------------------------------------------------------- history

  const history = { patient: null, next: null, loading: 0 };

  function openHistory(patient) {
    setPatientsStatus("");
    history.patient = patient;
    history.next = null;
    $("history-title").textContent = `History of ${patient.name}`;
    $("history-rows").replaceChildren();
    openDialog($("history-dialog"));
    loadHistory(`/api/patients/${encodeURIComponent(patient.id)}/history?size=${HISTORY_SIZE}`, false);
  }

  async function loadHistory(url, more) {
    const request = ++history.loading;
    const status = $("history-status");
    status.textContent = "Loading…";
    status.classList.remove("error");
    $("history-older").disabled = true;
    try {
      const { response, data } = await api(url);
      if (request !== history.loading) return;
      const versions = Array.isArray(data) ? data : [];
      const rows = versions.map((version) => {
        const record = version.patient;
        return el(
          "tr",
          { "data-version": String(version.version) },
          el("td", { "data-label": "Version", class: "number", text: String(version.version) }),
          el("td", { "data-label": "Change", text: CHANGE_LABELS[version.changeType] || version.changeType }),
          el("td", { "data-label": "When", text: formatTime(version.changedAt) }),
          el("td", { "data-label": "By", text: version.actor || "" }),
          el("td", { "data-label": "Name", text: record ? record.name : "(erased)" }),
          el("td", { "data-label": "Email" }, ...(record ? breakableEmail(record.email) : ["(erased)"])),
        );
      });
      if (more) $("history-rows").append(...rows);
      else $("history-rows").replaceChildren(...rows);
      history.next = pageLinks(response.headers.get("Link")).next || null;
      $("history-older").disabled = !history.next;
      status.textContent = "";
    } catch (err) {
      if (request !== history.loading || !session.token) return;
      status.textContent = `Could not load the history: ${err.message}`;
      status.classList.add("error");
    }
  }

  function openDialog(dialog) {
    if (!dialog.open) dialog.showModal();
  }

  function closeDialog(dialog) {
    if (dialog.open) dialog.close();
  }

  // ---------------------------------------------------------------- audit trail (ADMIN)
  // Who accessed a patient's record, newest first, from /api/audit-events. Opening it is itself recorded.

  const AUDIT_PAGE = 50;

  async function openAudit(patient) {
    const status = $("audit-status");
    $("audit-patient").textContent = patient.name || patient.id;
    $("audit-rows").replaceChildren();
    status.textContent = "Loading…";
    status.className = "status";
    openDialog($("audit-dialog"));
    try {
      const { data } = await api(`/api/audit-events?patient=${encodeURIComponent(patient.id)}&size=${AUDIT_PAGE}`);
      const entries = Array.isArray(data) ? data : [];
      $("audit-rows").replaceChildren(
        ...entries.map((entry) =>
          el(
            "tr",
            {},
            cell("When", formatTime(entry.at)),
            cell("Who", entry.actor),
            cell("Role", entry.role),
            cell("Action", entry.action),
            cell("Status", entry.status),
            cell("Client", entry.client),
          ),
        ),
      );
      status.textContent = entries.length
        ? `The ${entries.length} most recent entr${entries.length === 1 ? "y" : "ies"}, newest first.`
        : "No access recorded yet.";
    } catch (err) {
      status.textContent = err.message;
      status.className = "status error";
    }
  }

  // ---------------------------------------------------------------- analytics

  function setTotal(id, value) {
    $(id).textContent = typeof value === "number" ? value.toLocaleString() : "–";
  }

  function renderSummary(summary) {
    setTotal("total-created", summary.patientsCreated);
    setTotal("total-updated", summary.patientsUpdated);
    setTotal("total-deleted", summary.patientsDeleted);
    setTotal("total-current", summary.currentPatients);
    renderChart(Array.isArray(summary.registrationsPerMonth) ? summary.registrationsPerMonth : []);
  }

  function monthLabel(month) {
    const [year, number] = String(month).split("-").map(Number);
    if (!year || !number) return String(month);
    return new Date(Date.UTC(year, number - 1, 1)).toLocaleDateString(undefined, {
      month: "short",
      year: "2-digit",
      timeZone: "UTC",
    });
  }

  // Months without registrations are absent from the summary; a time axis needs them as zero bars.
  function continuousMonths(months) {
    const counts = new Map();
    for (const m of months) {
      if (m && /^\d{4}-\d{2}$/.test(m.month) && typeof m.count === "number") counts.set(m.month, m.count);
    }
    const keys = [...counts.keys()].sort();
    if (keys.length === 0) return [];
    const result = [];
    let [year, month] = keys[0].split("-").map(Number);
    const [lastYear, lastMonth] = keys[keys.length - 1].split("-").map(Number);
    while (year < lastYear || (year === lastYear && month <= lastMonth)) {
      const key = `${year}-${String(month).padStart(2, "0")}`;
      result.push({ month: key, count: counts.get(key) || 0 });
      month += 1;
      if (month > 12) {
        month = 1;
        year += 1;
      }
    }
    return result;
  }

  function renderChart(months) {
    const holder = $("chart");
    const data = continuousMonths(months).slice(-CHART_MONTHS);
    if (data.length === 0) {
      holder.replaceChildren(el("p", { class: "status", text: "No registrations recorded yet." }));
      return;
    }
    const width = 420;
    const height = 220;
    const pad = { top: 24, right: 12, bottom: 36, left: 36 };
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const max = Math.max(1, ...data.map((m) => m.count));
    const total = data.reduce((sum, m) => sum + m.count, 0);
    const step = plotW / data.length;
    const barW = Math.max(2, step * 0.7);
    // Up to five years of months: label a few of them (always the latest) and number the bars only
    // while they are wide enough to carry a number; every bar keeps its exact count in its tooltip.
    const labelEvery = Math.ceil(data.length / CHART_LABELS);
    const numbered = data.length <= 24;
    const peak = data.reduce((best, m) => (m.count > best.count ? m : best), data[0]);
    const chart = svg("svg", {
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": "chart-title chart-desc",
      class: "bars",
    });
    chart.append(
      svg(
        "desc",
        { id: "chart-desc" },
        `${total} registrations over ${data.length} months from ${data[0].month} to ` +
          `${data[data.length - 1].month}; most in one month: ${peak.count} in ${peak.month}.`,
      ),
    );
    const baseline = pad.top + plotH;
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: pad.top, y2: pad.top, class: "grid" }));
    chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: baseline, y2: baseline, class: "axis" }));
    chart.append(svg("text", { x: pad.left - 6, y: pad.top + 4, class: "tick", "text-anchor": "end" }, String(max)));
    chart.append(svg("text", { x: pad.left - 6, y: baseline, class: "tick", "text-anchor": "end" }, "0"));
    data.forEach((m, i) => {
      const barH = (m.count / max) * plotH;
      const x = pad.left + i * step + (step - barW) / 2;
      const middle = x + barW / 2;
      const group = svg("g", { class: "bar" });
      group.append(svg("title", {}, `${m.month}: ${m.count} registration${m.count === 1 ? "" : "s"}`));
      group.append(svg("rect", { x, y: baseline - barH, width: barW, height: barH, rx: 1 }));
      if (numbered && m.count > 0) {
        group.append(svg("text", { x: middle, y: baseline - barH - 6, "text-anchor": "middle", class: "value" }, String(m.count)));
      }
      if ((data.length - 1 - i) % labelEvery === 0) {
        // Labels at the edges are anchored inwards so that they are not clipped.
        const anchor = middle > width - pad.right - 24 ? "end" : middle < pad.left + 24 ? "start" : "middle";
        const labelX = anchor === "end" ? width - pad.right : anchor === "start" ? pad.left : middle;
        group.append(svg("text", { x: labelX, y: baseline + 18, "text-anchor": anchor, class: "tick" }, monthLabel(m.month)));
      }
      chart.append(group);
    });
    holder.replaceChildren(chart);
  }

  function formatTime(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return String(iso || "");
    return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  function renderEvents(events, fresh) {
    $("events").replaceChildren(
      ...events.map((event) => {
        const type = EVENT_LABELS[event.eventType] || String(event.eventType || "Event");
        const item = el(
          "li",
          { class: fresh.has(event.eventId) ? "event fresh" : "event", "data-event-id": event.eventId || "" },
          el("span", { class: `badge ${String(event.eventType || "").toLowerCase()}`, text: type }),
          el(
            "span",
            { class: "who" },
            el("strong", { text: event.name || "(no name)" }),
            " ",
            el("span", { class: "muted", text: event.email || "" }),
          ),
          el("span", { class: "muted small-text", text: `patient ${event.patientId || "?"}${event.actor ? ` · by ${event.actor}` : ""}` }),
          el("time", { datetime: event.occurredAt || "", text: formatTime(event.occurredAt) }),
        );
        return item;
      }),
    );
    if (events.length === 0) $("events").append(el("li", { class: "empty", text: "No events yet." }));
  }

  // Polling loops. The next poll is scheduled when the previous one ends, so a slow gateway never piles up
  // requests; a generation number retires the loops of a previous session; hidden tabs do not poll.
  const live = {
    generation: 0,
    running: false,
    seen: null,
    timers: { events: null, health: null },
    busy: { events: false, health: false },

    start() {
      this.stop();
      this.running = true;
      this.seen = null;
      this.resume();
    },

    stop() {
      this.running = false;
      this.generation += 1;
      clearTimeout(this.timers.events);
      clearTimeout(this.timers.health);
    },

    resume() {
      if (!this.running) return;
      this.loop("events", EVENTS_EVERY_MS, () => this.events());
      this.loop("health", HEALTH_EVERY_MS, loadHealth);
    },

    async loop(name, every, poll) {
      if (this.busy[name]) return;
      clearTimeout(this.timers[name]);
      const generation = this.generation;
      this.busy[name] = true;
      try {
        await poll();
      } finally {
        this.busy[name] = false;
      }
      if (this.running && generation === this.generation && !document.hidden) {
        this.timers[name] = setTimeout(() => this.loop(name, every, poll), every);
      }
    },

    async events() {
      const status = $("events-status");
      try {
        const { data } = await api(`/api/analytics/events?limit=${EVENT_LIMIT}`);
        const events = Array.isArray(data) ? data : [];
        const ids = events.map((e) => e.eventId);
        if (this.seen === null || ids.join() !== this.seen.join()) {
          const before = new Set(this.seen || ids);
          renderEvents(events, new Set(ids.filter((id) => !before.has(id))));
          // The totals follow the events; if they cannot be read now, the next poll tries again.
          this.seen = (await this.summary()) ? ids : null;
        }
        status.textContent = `Live: checking every ${EVENTS_EVERY_MS / 1000} s.`;
        status.classList.remove("error");
      } catch (err) {
        if (!session.token) return;
        status.textContent = `Live updates interrupted (${err.message}); retrying.`;
        status.classList.add("error");
      }
    },

    async summary() {
      try {
        const { data } = await api("/api/analytics/summary");
        renderSummary(data || {});
        return true;
      } catch (err) {
        if (session.token) {
          $("chart").replaceChildren(el("p", { class: "status error", text: `Could not load the summary: ${err.message}` }));
        }
        return false;
      }
    },
  };

  // ---------------------------------------------------------------- health

  async function loadHealth() {
    const overall = $("health-overall");
    const list = $("health-list");
    let body;
    let status;
    try {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
      try {
        const response = await fetch("/health", { cache: "no-store", signal: controller.signal });
        status = response.status;
        body = await readBody(response);
      } finally {
        clearTimeout(timer);
      }
    } catch {
      overall.textContent = "The gateway cannot be reached.";
      overall.className = "status error";
      list.replaceChildren();
      return;
    }
    const components = body && typeof body.components === "object" && body.components ? body.components : {};
    const entries = [["gateway", { status: status === 200 || status === 503 ? "UP" : "DOWN" }], ...Object.entries(components)];
    list.replaceChildren(
      ...entries.map(([name, component]) => {
        const state = component && typeof component === "object" ? String(component.status || "UNKNOWN") : String(component);
        const detail = component && typeof component === "object" && component.detail ? String(component.detail) : "";
        return el(
          "li",
          { "data-component": name },
          el("span", { class: "component", text: name }),
          el("span", { class: `badge ${state === "UP" ? "up" : state === "DEGRADED" ? "degraded" : "down"}`, text: state }),
          detail ? el("span", { class: "muted small-text", text: detail }) : "",
        );
      }),
    );
    const down = entries.filter(([, c]) => !(c && (c.status === "UP" || c.status === "DEGRADED"))).map(([name]) => name);
    const impaired = entries.filter(([, c]) => c && c.status === "DEGRADED").map(([name]) => name);
    overall.textContent = down.length
      ? `Degraded: ${down.join(", ")} down.`
      : impaired.length
        ? `Working; impaired: ${impaired.join(", ")}.`
        : "All services are up.";
    overall.className = down.length ? "status error" : "status ok";
  }

  // ---------------------------------------------------------------- broker (ADMIN)
  // Topics and offsets, a partition's newest messages, analytics' consumer lag, the outbox backlog and the
  // dead letters, from /api/broker/*. Loaded when the view is opened and on "Refresh", never polled.

  const MESSAGE_PAGE = 20;
  const brokerView = { open: false, partition: null, before: null };

  function cell(label, text) {
    return el("td", { "data-label": label, text: text === null || text === undefined ? "–" : String(text) });
  }

  function toggleBroker(open) {
    brokerView.open = open;
    $("broker-view").hidden = !open;
    $("app-view").hidden = open;
    $("broker-toggle").textContent = open ? "Patients" : "Broker";
    $("broker-toggle").setAttribute("aria-pressed", String(open));
    if (open) loadBroker();
  }

  async function loadBroker() {
    $("broker-status").textContent = "Loading…";
    $("broker-status").className = "status";
    const results = await Promise.allSettled([loadOutbox(), loadTopics(), loadLag(), loadDeadLetters()]);
    const failed = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
    $("broker-status").textContent = failed.length ? failed.join(" ") : `Updated ${new Date().toLocaleTimeString()}.`;
    $("broker-status").className = failed.length ? "status error" : "status";
  }

  async function loadOutbox() {
    const { data } = await api("/api/broker/outbox");
    const oldest = data.pending ? `, the oldest waiting ${Math.round(data.oldestPendingSeconds)} s` : "";
    $("outbox-summary").textContent = `${data.pending} event${data.pending === 1 ? "" : "s"} waiting to be published${oldest}. ${
      data.brokerReachable ? "The relay reaches the broker." : data.error || "The broker is unreachable."
    }`;
    $("outbox-summary").className = data.brokerReachable ? "status" : "status error";
  }

  // A broker table: one row per partition of each entry the endpoint lists, or the broker's error.
  async function loadPartitionRows(path, rowsId, columns, entries, row) {
    const { data } = await api(path);
    const rows = $(rowsId);
    if (!data.reachable) {
      rows.replaceChildren(el("tr", {}, el("td", { colspan: String(columns), class: "status error", text: data.error || "The broker is unreachable." })));
      return;
    }
    rows.replaceChildren(...entries(data).flatMap((entry) => entry.partitions.map((p) => row(entry, p))));
  }

  function loadTopics() {
    return loadPartitionRows("/api/broker/topics", "topics-rows", 6, (data) => data.topics, (topic, p) =>
      el(
        "tr",
        { "data-topic": topic.name, "data-partition": String(p.partition) },
        cell("Topic", topic.name),
        cell("Partition", p.partition),
        cell("First offset", p.firstOffset),
        cell("Next offset", p.nextOffset),
        cell("Messages", p.messages),
        el(
          "td",
          { class: "row-actions" },
          actionButton("Messages", `Messages of ${topic.name} partition ${p.partition}`, () => {
            brokerView.partition = { topic: topic.name, partition: p.partition };
            brokerView.before = null;
            loadMessages(false);
          }),
        ),
      ),
    );
  }

  async function loadMessages(older) {
    const { topic, partition } = brokerView.partition;
    const query = new URLSearchParams({ limit: String(MESSAGE_PAGE) });
    if (older && brokerView.before !== null) query.set("before", String(brokerView.before));
    $("messages-panel").hidden = false;
    $("messages-title").textContent = `Messages of ${topic}, partition ${partition}`;
    try {
      const { data } = await api(`/api/broker/topics/${encodeURIComponent(topic)}/partitions/${partition}/messages?${query}`);
      brokerView.before = data.olderBefore;
      $("messages-older").hidden = data.olderBefore === null;
      const items = data.messages.map((m) =>
        el(
          "li",
          { "data-offset": String(m.offset) },
          el("strong", { text: `#${m.offset}` }),
          " ",
          el("span", { class: "muted", text: `${m.timestamp ? formatTime(m.timestamp) : "no time"} · key ${m.key ?? "–"} · ${m.size} bytes` }),
          m.error ? el("p", { class: "status error", text: `Not a usable event: ${m.error}` }) : "",
          m.event ? el("pre", { text: JSON.stringify(m.event, null, 1) }) : "",
          m.headers.length ? el("p", { class: "muted small-text", text: m.headers.map((h) => `${h.name}: ${h.value ?? ""}`).join(" · ") }) : "",
        ),
      );
      $("messages").replaceChildren(...(items.length ? items : [el("li", { class: "empty", text: "No messages." })]));
    } catch (err) {
      $("messages").replaceChildren(el("li", { class: "status error", text: err.message }));
    }
  }

  function loadLag() {
    return loadPartitionRows("/api/broker/consumer-groups", "lag-rows", 5, (data) => data.groups, (group, p) =>
      el(
        "tr",
        { "data-partition": String(p.partition) },
        cell("Group", `${group.group} (${group.topic})`),
        cell("Partition", p.partition),
        cell("Committed", p.committedOffset),
        cell("Next offset", p.nextOffset),
        cell("Lag", p.lag),
      ),
    );
  }

  async function loadDeadLetters() {
    const { data } = await api("/api/broker/dead-letters?limit=100");
    const rows = $("dead-letters-rows");
    rows.replaceChildren(
      ...data.items.map((letter) =>
        el(
          "tr",
          { "data-letter": String(letter.id) },
          el("td", { "data-label": "Parked" }, el("time", { datetime: letter.parkedAt, text: formatTime(letter.parkedAt) })),
          cell("Where", `${letter.topic} / ${letter.partition} @ ${letter.offset}`),
          cell("Key", letter.key),
          cell("Why", `${letter.reason}: ${letter.error}`),
          el(
            "td",
            { class: "row-actions" },
            actionButton("Redrive", `Redrive message ${letter.id}`, () => deadLetterAction(`/api/broker/dead-letters/${letter.id}/redrive`, "POST")),
            actionButton("Discard", `Discard message ${letter.id}`, () => deadLetterAction(`/api/broker/dead-letters/${letter.id}`, "DELETE"), "danger"),
          ),
        ),
      ),
    );
    if (data.items.length === 0) rows.append(el("tr", {}, el("td", { colspan: "5", class: "empty", text: "Nothing is parked." })));
    $("redrive-all").disabled = data.total === 0;
    $("discard-all").disabled = data.total === 0;
  }

  function describeRedrive(outcome) {
    return `Redrive: ${outcome.recorded} counted, ${outcome.duplicates} already counted, ${outcome.stillParked} still parked.`;
  }

  async function deadLetterAction(path, method) {
    const status = $("dead-letters-status");
    try {
      const { data } = await api(path, { method });
      status.textContent = data && "recorded" in data ? describeRedrive(data) : `Discarded ${data && "discarded" in data ? data.discarded : 1}.`;
      status.className = "status ok";
    } catch (err) {
      status.textContent = err.message;
      status.className = "status error";
    }
    await Promise.allSettled([loadDeadLetters(), loadLag()]);
  }

  // ---------------------------------------------------------------- traces (ADMIN)

  const TRACE_LIMIT = 20;
  const TRACE_WAIT_MS = 15000;
  // Longer than the default interval at which services export their spans (OTEL_BSP_SCHEDULE_DELAY, 5 s).
  const LATE_SPANS_MS = 6000;

  function isAdmin() {
    return Boolean(session.claims && session.claims.role === "ADMIN");
  }

  function randomHex(bytes) {
    const values = new Uint8Array(bytes);
    crypto.getRandomValues(values);
    return Array.from(values, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function newTraceparent() {
    const traceId = randomHex(16);
    return { traceId, header: `00-${traceId}-${randomHex(8)}-01` };
  }

  function offerTrace(traceId) {
    const offer = $("patient-trace");
    offer.replaceChildren(
      actionButton("View trace", "View the trace of this create", () => showTrace(traceId, true)),
    );
    offer.hidden = false;
  }

  function setTracesStatus(message, isError = false) {
    const status = $("traces-status");
    status.textContent = message;
    status.classList.toggle("error", Boolean(isError));
  }

  async function loadTraces() {
    if (!isAdmin()) return;
    try {
      const { data } = await api(`/api/traces?limit=${TRACE_LIMIT}`);
      renderTraces(Array.isArray(data) ? data : []);
      setTracesStatus(Array.isArray(data) && data.length ? "" : "No traces kept yet.");
    } catch (err) {
      setTracesStatus(err.message, true);
    }
  }

  function renderTraces(traces) {
    const rows = traces.map((t) =>
      el(
        "tr",
        {},
        el("td", { "data-label": "Started", text: formatTime(t.startTime) }),
        el("td", { "data-label": "Root span", text: `${t.rootSpan.service}: ${t.rootSpan.name}` }),
        el("td", { "data-label": "Services", text: t.services.join(", ") }),
        el("td", { "data-label": "Duration", text: `${t.durationMs.toFixed(1)} ms` }),
        el("td", { "data-label": "Errors", text: String(t.errors) }),
        el("td", {}, actionButton("Open", `Open trace ${t.traceId}`, () => showTrace(t.traceId))),
      ),
    );
    $("traces-rows").replaceChildren(...rows);
  }

  // Spans arrive in batches from every service: a fresh trace is asked for again until analytics'
  // processing span is there (or the wait is over), and then for a few seconds more, drawn again as the
  // spans of services that export later (billing, say) arrive.
  let shownTrace = null;
  async function showTrace(traceId, wait = false) {
    const section = $("traces");
    section.hidden = false;
    shownTrace = traceId;
    setTracesStatus("Loading the trace…");
    const deadline = Date.now() + (wait ? TRACE_WAIT_MS : 0);
    for (;;) {
      let trace = null;
      try {
        ({ data: trace } = await api(`/api/traces/${encodeURIComponent(traceId)}`));
      } catch (err) {
        if (err.status !== 404 || Date.now() > deadline) {
          setTracesStatus(err.status === 404 ? "That trace is not kept (yet)." : err.message, true);
          return;
        }
      }
      // Each service exports on its own schedule: a create's trace is whole once the gateway's request
      // span (the root) and analytics' processing span (the far end) have both arrived.
      const complete =
        trace &&
        trace.spans.some((s) => s.kind === "CONSUMER") &&
        trace.spans.some((s) => s.service === "gateway" && s.kind === "SERVER");
      if (trace && (complete || Date.now() > deadline)) {
        renderWaterfall(trace);
        setTracesStatus("");
        section.scrollIntoView({ block: "start" });
        loadTraces();
        if (wait) await followLateSpans(traceId, trace.spans.length);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }

  async function followLateSpans(traceId, shown) {
    const until = Date.now() + LATE_SPANS_MS;
    while (Date.now() < until && shownTrace === traceId) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      let trace;
      try {
        ({ data: trace } = await api(`/api/traces/${encodeURIComponent(traceId)}`));
      } catch {
        return;
      }
      if (shownTrace === traceId && trace.spans.length > shown) {
        renderWaterfall(trace);
        shown = trace.spans.length;
      }
    }
  }

  // Depth-first from the roots, so that every span sits under its parent.
  function orderedSpans(spans) {
    const ids = new Set(spans.map((s) => s.spanId));
    const children = new Map();
    for (const span of spans) {
      const parent = ids.has(span.parentSpanId) ? span.parentSpanId : null;
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(span);
    }
    const ordered = [];
    const visit = (parent, depth) => {
      for (const span of children.get(parent) || []) {
        ordered.push({ span, depth });
        visit(span.spanId, depth + 1);
      }
    };
    visit(null, 0);
    return ordered;
  }

  function renderWaterfall(trace) {
    const starts = trace.spans.map((s) => Date.parse(s.startTime));
    const begin = Math.min(...starts);
    const end = Math.max(...trace.spans.map((s) => Date.parse(s.startTime) + s.durationMs));
    const total = Math.max(end - begin, 1);
    $("waterfall-title").textContent = `Trace ${trace.traceId} (${trace.spans.length} spans, ${total.toFixed(0)} ms)`;
    const items = orderedSpans(trace.spans).map(({ span, depth }) => {
      const left = ((Date.parse(span.startTime) - begin) / total) * 100;
      const width = (span.durationMs / total) * 100;
      const bar = el("span", { class: `span-bar kind-${span.kind}${span.status === "ERROR" ? " error" : ""}` });
      bar.style.left = `${left}%`;
      bar.style.width = `${width}%`;
      const time = el("span", { class: "span-time", text: `${span.durationMs.toFixed(1)} ms` });
      time.style.left = `${Math.min(left + width, 90)}%`;
      const label = el(
        "span",
        { class: "span-label", title: `${span.service} ${span.kind} ${span.name}` },
        el("span", { class: "span-service", text: span.service }),
        el("span", { text: span.name }),
      );
      label.style.paddingLeft = `${depth * 0.8}rem`;
      return el("li", { "data-kind": span.kind, "data-service": span.service }, label, el("span", { class: "span-track" }, bar, time));
    });
    $("waterfall-spans").replaceChildren(...items);
    $("waterfall").hidden = false;
  }

  // ---------------------------------------------------------------- wiring

  function bind() {
    $("login-form").addEventListener("submit", onLogin);
    $("sign-out").addEventListener("click", onSignOut);
    $("broker-toggle").addEventListener("click", () => toggleBroker(!brokerView.open));
    $("broker-refresh").addEventListener("click", loadBroker);
    $("messages-older").addEventListener("click", () => loadMessages(true));
    $("redrive-all").addEventListener("click", () => deadLetterAction("/api/broker/dead-letters/redrive", "POST"));
    $("discard-all").addEventListener("click", () => {
      if (window.confirm("Discard every parked message for good?")) deadLetterAction("/api/broker/dead-letters", "DELETE");
    });
    $("new-patient").addEventListener("click", () => {
      setPatientsStatus("");
      openCreate();
    });
    $("patient-form").addEventListener("submit", onSave);
    $("traces-refresh").addEventListener("click", loadTraces);
    $("patient-cancel").addEventListener("click", () => closeDialog($("patient-dialog")));
    $("delete-dialog").addEventListener("close", onDeleteClosed);
    $("history-close").addEventListener("click", () => closeDialog($("history-dialog")));
    $("history-older").addEventListener("click", () => {
      if (history.next) loadHistory(history.next, true);
    });
    $("patient-filters").addEventListener("submit", (event) => event.preventDefault());
    $("patient-search").addEventListener("input", (event) => {
      clearTimeout(table.searchTimer);
      table.searchTimer = setTimeout(() => {
        table.search = event.target.value.trim();
        table.page = 0;
        table.url = null;
        setPatientsStatus("");
        loadPatients();
      }, SEARCH_DELAY_MS);
    });
    $("patient-sort").addEventListener("change", (event) => {
      table.sort = event.target.value;
      table.page = 0;
      table.url = null;
      loadPatients();
    });
    $("patient-size").addEventListener("change", (event) => {
      table.size = Number(event.target.value);
      table.page = 0;
      table.url = null;
      loadPatients();
    });
    $("page-prev").addEventListener("click", () => {
      table.page = Math.max(0, table.page - 1);
      table.url = table.page > 0 && table.links.prev ? table.links.prev : null;
      loadPatients();
    });
    $("page-next").addEventListener("click", () => {
      if (!table.links.next) return;
      table.page += 1;
      table.url = table.links.next;
      loadPatients();
    });
    // Polling stops while the tab is hidden and catches up at once when it is shown again.
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) live.resume();
    });
  }

  bind();
  const saved = sessionStorage.getItem(TOKEN_KEY);
  const savedRefresh = sessionStorage.getItem(REFRESH_KEY);
  if (!saved || !startSession(saved, savedRefresh)) {
    signOut(saved ? "Your session has expired. Please sign in again." : "");
    if (saved && savedRefresh) {
      // The access token expired while the tab was away; the session itself may still be alive.
      session.refreshToken = savedRefresh;
      renewSession().then(() => {
        if (session.token) startSession(session.token, session.refreshToken);
      });
    }
  }
})();
