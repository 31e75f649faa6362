"use strict";
// The revsync dashboard. Polls the JSON API every 2 s (searches run on demand). Every value
// from the API reaches the page as text (textContent / text nodes); nothing is parsed as HTML.
(function () {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let query = new URLSearchParams(window.location.search).get("q") || "";

  class AuthError extends Error {}

  // Builds an element. Strings among the children become text nodes.
  function el(tag, props, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "class") node.className = String(value);
      else if (key === "title") node.title = String(value);
      else if (key === "type") node.type = String(value);
      else if (key === "href") node.href = String(value); // built by the server, https only
      else if (key.startsWith("data-")) node.setAttribute(key, String(value));
      else throw new Error("unsupported property " + key);
    }
    for (const child of children || []) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function api(path, options) {
    const response = await fetch(path, Object.assign({
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      cache: "no-store",
    }, options || {}));
    if (response.status === 401) throw new AuthError("not authenticated");
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    if (!response.ok) {
      throw new Error((body && body.error) || ("HTTP " + response.status));
    }
    return body;
  }

  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? String(iso) : d.toLocaleString();
  }

  function ms(value) {
    if (value === null || value === undefined) return "";
    return value < 1000 ? Math.round(value) + " ms" : (value / 1000).toFixed(1) + " s";
  }

  function pct(share) {
    return share === null || share === undefined ? "n/a" : (share * 100).toFixed(1) + " %";
  }

  function customerCell(ev) {
    const c = ev.customer;
    if (!c) return el("td", { class: "customer" }, [ev.customer_key || ""]);
    return el("td", { class: "customer" }, [
      el("span", { class: "customer-name", text: c.name || c.company || ev.customer_key || "" }),
      c.email ? el("div", { class: "muted customer-email", text: c.email }) : null,
    ]);
  }

  function recordItem(r) {
    const id = r.sf_id
      ? (r.url ? el("a", { href: r.url, class: "sf-id", text: r.sf_id })
               : el("span", { class: "sf-id", text: r.sf_id }))
      : el("span", { class: "muted", text: r.key_field + " " + r.key });
    let what;
    if (r.outcome !== "written") what = r.outcome + (r.message ? ": " + r.message : "");
    else if (r.created === true) what = "created";
    else if (r.created === false) what = "updated";
    else what = "written";
    return el("li", { "data-outcome": r.outcome, title: r.key_field + " = " + r.key }, [
      el("span", { class: "sobject", text: r.sobject }), " ", id, " ",
      el("span", { class: "badge " + r.outcome, text: what }),
    ]);
  }

  function eventRow(ev) {
    return el("tr", { "data-event-id": ev.id }, [
      el("td", { text: ev.id }),
      el("td", { text: ev.kind }),
      el("td", { class: "reference", text: ev.reference }),
      customerCell(ev),
      el("td", {}, [
        el("span", { class: "badge " + ev.status, text: ev.status }),
        ev.last_error ? el("div", { class: "muted", text: ev.last_error }) : null,
      ]),
      el("td", { class: "num", text: ev.delivery_count }),
      el("td", { text: when(ev.first_received_at) }),
      el("td", { class: "num", text: ms(ev.latency_ms) }),
      el("td", {}, [el("ul", { class: "records" }, ev.records.map(recordItem))]),
    ]);
  }

  function renderEvents(table, emptyNote, events) {
    table.tBodies[0].replaceChildren(...events.map(eventRow));
    if (emptyNote) emptyNote.hidden = events.length > 0;
  }

  function deadLetterRow(d) {
    const button = el("button", {
      type: "button", class: "replay", "data-replay": d.id, text: "Replay",
    });
    button.disabled = d.status !== "open";
    button.addEventListener("click", () => replay(d.id, button));
    return el("tr", { "data-dead-letter-id": d.id, "data-status": d.status }, [
      el("td", { text: d.id }),
      el("td", {}, [
        el("span", { class: "sobject", text: d.sobject }),
        el("div", { class: "muted", text: d.key_field + " = " + d.key }),
        el("details", {}, [
          el("summary", { text: "fields" }),
          el("pre", { class: "fields", text: JSON.stringify(d.fields, null, 2) }),
        ]),
      ]),
      el("td", { class: "error-code", text: d.error_code }),
      el("td", { class: "dead-letter-message", text: d.message }),
      el("td", { text: d.event_ids.join(", ") }),
      el("td", { text: when(d.created_at) }),
      el("td", {}, [button]),
    ]);
  }

  function renderDeadLetters(letters) {
    $("dead-letters").tBodies[0].replaceChildren(...letters.map(deadLetterRow));
    $("dead-letters-empty").hidden = letters.length > 0;
  }

  function pair(label, value, child) {
    return [el("dt", { text: label }), el("dd", {}, [value, child])];
  }

  function renderBudget(b) {
    const used = b.org_used === null ? "unknown" : b.org_used + " / " + b.org_max;
    const bar = el("progress", {});
    bar.max = 1;
    bar.value = b.org_used_share || 0;
    $("budget").replaceChildren(
      ...pair("revsync calls (24 h)", String(b.revsync_calls_24h)),
      ...pair("Org used / max", used),
      ...pair("Org used", pct(b.org_used_share), bar),
      ...pair("revsync share of org usage", pct(b.revsync_share)),
      ...pair("Reported", b.observed_at ? when(b.observed_at) : "not yet"),
    );
  }

  function card(label, value, id) {
    return el("div", { class: "card", "data-stat": id }, [
      el("span", { class: "n", text: value }), el("span", { class: "l", text: label }),
    ]);
  }

  function renderStats(s) {
    $("overview").replaceChildren(
      card("events", s.events.events, "events"),
      card("pending", s.events.pending, "pending"),
      card("processed", s.events.processed, "processed"),
      card("failed", s.events.failed, "failed"),
      card("deliveries", s.events.deliveries, "deliveries"),
      card("quarantined", s.events.quarantined_held, "quarantined"),
      card("outbox pending", s.outbox.pending, "outbox-pending"),
      card("in flight", s.outbox.in_flight, "outbox-in-flight"),
      card("written", s.outbox.written, "outbox-written"),
      card("open dead letters", s.outbox.dead_letters_open, "dead-letters-open"),
    );
    const t = s.throughput;
    $("throughput").tBodies[0].replaceChildren(...t.flows.map((f) =>
      el("tr", { "data-flow": f.kind }, [
        el("td", { text: f.kind }),
        el("td", { class: "num", text: f.processed_last_minute }),
        el("td", { class: "num", text: f.processed_last_hour }),
        el("td", { class: "num", text: ms(f.latency_avg_ms) }),
        el("td", { class: "num", text: ms(f.latency_max_ms) }),
      ])));
    $("outbox-throughput").textContent =
      "Written to Salesforce: " + t.outbox_written_last_minute + " in the last minute, " +
      t.outbox_written_last_hour + " in the last hour; " + t.dead_letters_last_hour +
      " dead letters in the last hour.";
  }

  function renderSearch(result) {
    const table = $("search-results");
    if (!result) {
      table.hidden = true;
      $("search-summary").textContent = "";
      return;
    }
    table.hidden = result.events.length === 0;
    renderEvents(table, null, result.events);
    $("search-summary").textContent = result.events.length === 0
      ? "Nothing found for “" + result.query + "”."
      : result.events.length + " event(s) for “" + result.query + "”.";
  }

  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text;
    s.classList.toggle("error", !!isError);
  }

  function notice(text, isError) {
    const n = $("replay-result");
    n.textContent = text;
    n.hidden = false;
    n.classList.toggle("error", !!isError);
  }

  async function refresh() {
    try {
      const [events, letters, budget, stats] = await Promise.all([
        api("/api/v1/events?limit=50"),
        api("/api/v1/dead-letters?status=open"),
        api("/api/v1/budget"),
        api("/api/v1/stats"),
      ]);
      renderEvents($("events"), $("events-empty"), events.events);
      renderDeadLetters(letters.dead_letters);
      renderBudget(budget);
      renderStats(stats);
      setStatus("updated " + new Date().toLocaleTimeString(), false);
      document.body.setAttribute("data-loaded", "true");
    } catch (e) {
      if (e instanceof AuthError) {
        setStatus("Not signed in: open /dashboard?token=… again.", true);
      } else {
        setStatus("update failed: " + e.message, true);
      }
    }
  }

  // A search scans the store, so it runs when asked for, not on every poll.
  async function runSearch() {
    if (!query) {
      renderSearch(null);
      return;
    }
    try {
      renderSearch(await api("/api/v1/search?q=" + encodeURIComponent(query)));
    } catch (e) {
      $("search-results").hidden = true;
      $("search-summary").textContent = "Search failed: " + e.message;
    }
  }

  async function replay(id, button) {
    button.disabled = true;
    try {
      await api("/api/v1/dead-letters/" + encodeURIComponent(id) + "/replay", { method: "POST" });
      notice("Dead letter " + id + " replayed: its record is back in the outbox.", false);
    } catch (e) {
      notice("Replay of dead letter " + id + " failed: " + e.message, true);
      button.disabled = false;
    }
    await Promise.all([refresh(), runSearch()]);
  }

  async function loop() {
    await refresh();
    window.setTimeout(loop, POLL_MS);
  }

  $("search-input").value = query;
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    query = $("search-input").value.trim();
    const url = query ? "?q=" + encodeURIComponent(query) : window.location.pathname;
    window.history.replaceState(null, "", url);
    runSearch();
  });
  $("search-clear").addEventListener("click", () => {
    query = "";
    $("search-input").value = "";
    window.history.replaceState(null, "", window.location.pathname);
    runSearch();
  });
  runSearch();
  loop();
})();
