// The web console of cron-scheduler: one page with hash routes (#/schedules,
// #/schedules/{id}, #/fleet, #/cron), a client of the REST API on this origin.
//
// Every value from the API is rendered as text (createElement, textContent, attributes
// set one by one): nothing is ever parsed as HTML, so a `last_error` or a `workflow_id`
// holding markup is shown as it is and never runs. The page's Content-Security-Policy
// allows this file and app.css only, so an inline script could not run either.
//
// With authentication on, the console asks for a token, keeps it in sessionStorage (gone
// when the tab closes) and sends it as `Authorization: Bearer`. It shows what that token
// may read: a user token lists its own schedules only, and the fleet is for admins.

const TOKEN_KEY = "cron-scheduler.token";
const PAGE_SIZE = 50;
const STRIP_TICKS = 60;
const RUNS_PAGE = 25;
const FLEET_REFRESH_MS = 5000;
const REFUSED = "The token was refused (wrong, or expired): paste a valid one.";

const main = document.getElementById("main");
const notice = document.getElementById("notice");

/** What the console knows of its caller: role is "open" (auth off), "admin", "user". */
const session = { role: undefined };
let generation = 0;
let timer = null;
/** What an action says, shown once the page it leads to is drawn. */
let afterwards = null;

// ---------------------------------------------------------------- DOM, as text only

/** An element with attributes (`class`, `on<event>`, others set as attributes) and
 * children (nodes, or anything else as a text node). */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  add(node, children);
  return node;
}

function add(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(node) {
  main.replaceChildren(node);
}

function say(text, kind = "ok") {
  notice.hidden = false;
  notice.className = `notice notice-${kind}`;
  notice.textContent = text;
}

function quiet() {
  notice.hidden = true;
  notice.textContent = "";
}

/** A class name made from an API value (an enum), whatever it holds. */
function cls(value) {
  return String(value ?? "none").toLowerCase().replace(/[^a-z0-9_]/g, "");
}

function badge(value, prefix) {
  return h("span", { class: `badge ${prefix}-${cls(value)}` }, value ?? "none");
}

/** A schedule's rule in one line: its cron expression, or "every PT1H30M". */
function rule(s) {
  return s.interval ? `every ${s.interval}` : s.cron_expr;
}

function link(hash, ...children) {
  return h("a", { href: hash }, ...children);
}

function scheduleHref(id) {
  return `#/schedules/${encodeURIComponent(id)}`;
}

function card(title, ...children) {
  return h("section", { class: "card" }, h("h2", null, title), ...children);
}

function field(label, control) {
  return h("label", { class: "field" }, h("span", null, label), control);
}

function select(name, value, options) {
  const node = h("select", { name });
  for (const [v, label] of options) {
    node.append(h("option", { value: v, selected: v === (value || "") }, label));
  }
  return node;
}

/** A table: `headers` a list of titles, `rows` the <tr> elements. */
function grid(props, headers, rows) {
  return h(
    "table",
    { ...props, class: `grid ${props.class || ""}`.trim() },
    h("thead", null, h("tr", null, headers.map((t) => h("th", null, t)))),
    h("tbody", null, rows),
  );
}

/** Rows of fire times: UTC, the zone's local time, how far. */
function fireRows(times) {
  return times.map(([iso, local]) =>
    h("tr", null, h("td", null, utc(iso)), h("td", null, local), h("td", { class: "muted" }, relative(iso))),
  );
}

/** A form that never submits anywhere (the CSP says `form-action 'none'`): its `submit`
 * runs `handle` instead. */
function form(id, className, handle, ...children) {
  const onsubmit = (event) => {
    event.preventDefault();
    return handle(event);
  };
  return h("form", { id, class: className, onsubmit }, ...children);
}

function dl(rows) {
  return h(
    "dl",
    { class: "facts" },
    rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v ?? "—")]),
  );
}

// ---------------------------------------------------------------- times

/** An instant in UTC, as `2025-01-31 06:30:00 UTC`, in a <time> that keeps the original. */
function utc(iso) {
  if (!iso) return "—";
  const text = `${String(iso).replace("T", " ").replace(/\.\d+/, "").replace(/Z$/, "")} UTC`;
  return h("time", { datetime: iso }, text);
}

/** The same instant in an IANA zone, with its offset (the browser knows the zones). */
function inZone(iso, zone) {
  try {
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: zone,
      year: "numeric",
      month: "2-digit",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hourCycle: "h23",
      timeZoneName: "shortOffset",
    }).formatToParts(new Date(iso));
    const p = Object.fromEntries(parts.map((x) => [x.type, x.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second} ${p.timeZoneName}`;
  } catch {
    return "—";
  }
}

/** "in 4 min", "2 h ago". */
function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  // The instants are the database's clock, the browser's may differ a little.
  if (abs < 3) return "just now";
  const size =
    abs < 90 ? `${abs} s` : abs < 5400 ? `${Math.round(abs / 60)} min`
    : abs < 172800 ? `${Math.round(abs / 3600)} h` : `${Math.round(abs / 86400)} d`;
  return seconds >= 0 ? `in ${size}` : `${size} ago`;
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const detail = body && body.error;
    super(detail ? detail.message : `HTTP ${status}`);
    this.status = status;
    this.code = detail ? detail.code : null;
    this.field = detail ? detail.field : null;
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, body, headers = {}) {
  const all = { Accept: "application/json", ...headers };
  const bearer = sessionStorage.getItem(TOKEN_KEY);
  if (bearer) all.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) all["Content-Type"] = "application/json";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: all,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, { error: { message: `the service cannot be reached (${e.message})` } });
  }
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) throw new ApiError(resp.status, data, resp.headers.get("Retry-After"));
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

function problem(e) {
  if (e.status === 429) return `Too many requests: retry in ${e.retryAfter || "a few"} s.`;
  const where = e.field ? ` (${e.field})` : "";
  return `${e.message}${where}`;
}

/** Runs an action of a button, disabled meanwhile. Then the page is drawn again (or the
 * console goes to `next`), and only then does it say what happened: a message on the
 * screen is about the page on the screen. */
async function act(button, work, next) {
  button.disabled = true;
  try {
    afterwards = { text: await work(), kind: "ok" };
    if (next) location.hash = next;
    else await route({ keepNotice: false });
  } catch (e) {
    if (e.status === 401) return signIn(REFUSED);
    say(problem(e), "error");
  } finally {
    button.disabled = false;
  }
}

function randomKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `console-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

// ---------------------------------------------------------------- who is calling

/** Finds out whether a token is needed and what it may see: the worker status is for
 * admins only, so 200 is an admin (or auth off), 403 a user, 401 no valid token. */
async function probe() {
  const bearer = sessionStorage.getItem(TOKEN_KEY);
  try {
    await api("GET", "/worker/status");
    session.role = bearer ? "admin" : "open";
  } catch (e) {
    if (e.status === 401) {
      session.role = null;
      session.refused = Boolean(bearer);
    }
    else if (e.status === 403) session.role = "user";
    else session.role = bearer ? "unknown" : "open";
  }
  const who = document.getElementById("who");
  const out = document.getElementById("sign-out");
  who.textContent = {
    open: "authentication off: acting as admin",
    admin: "admin token",
    user: "user token: your schedules only",
    unknown: "token set",
  }[session.role] || "";
  out.hidden = !bearer;
  for (const a of document.querySelectorAll("[data-nav=fleet]")) {
    a.hidden = session.role === "user";
  }
}

/** The sign-in form; `message` says why it is shown again (a token refused). */
function signIn(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  session.role = null;
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    required: true,
    placeholder: "Bearer token",
  });
  const signInForm = form(
    "sign-in",
    "card sign-in",
    async (event) => {
      const value = input.value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      quiet();
      await probe();
      if (session.role === null) {
        signIn(REFUSED);
      } else {
        await route();
      }
    },
    h("h1", null, "Sign in"),
    h(
      "p",
      null,
      "This service needs a token. It is kept in this tab only (session storage) and sent " +
        "with each call as a bearer header.",
    ),
    message ? h("p", { id: "sign-in-error", class: "error" }, message) : null,
    field("Token", input),
    h("button", { type: "submit" }, "Use this token"),
  );
  generation++;
  show(signInForm);
  input.focus();
}

// ---------------------------------------------------------------- pages

async function schedulesPage(params) {
  const status = params.get("status") || "";
  const filters = {
    user_id: params.get("user_id") || "",
    workflow_id: params.get("workflow_id") || "",
    status,
    health: params.get("health") || "",
  };
  const cursor = params.get("cursor") || "";
  const list = await api(
    "GET",
    `/schedules${query({
      user_id: filters.user_id,
      workflow_id: filters.workflow_id,
      status,
      health: filters.health,
      limit: PAGE_SIZE,
      cursor,
    })}`,
  );

  const filterForm = form(
    "filters",
    "toolbar",
    (event) => {
      const data = new FormData(event.target);
      const chosen = {};
      for (const key of ["user_id", "workflow_id", "status", "health"]) {
        chosen[key] = String(data.get(key) || "").trim();
      }
      location.hash = `#/schedules${query(chosen)}`;
    },
    field("User", h("input", { name: "user_id", value: filters.user_id, placeholder: "any" })),
    field(
      "Workflow",
      h("input", { name: "workflow_id", value: filters.workflow_id, placeholder: "any" }),
    ),
    field(
      "Status",
      select("status", status, [
        ["", "any"],
        ["active", "active"],
        ["paused", "paused"],
        ["completed", "completed"],
      ]),
    ),
    field(
      "Health",
      select("health", filters.health, [
        ["", "any"],
        ["ok", "ok"],
        ["late", "late"],
        ["failing", "failing"],
      ]),
    ),
    h("button", { type: "submit" }, "Filter"),
    link("#/schedules", "Clear"),
  );
  const idInput = h("input", { id: "find-id", name: "schedule_id", placeholder: "schedule id" });
  const findForm = form(
    "find",
    "toolbar",
    (event) => {
      const id = idInput.value.trim();
      if (id) location.hash = scheduleHref(id);
    },
    field("Open by id", idInput),
    h("button", { type: "submit" }, "Open"),
  );

  const rows = list.schedules.map((s) =>
    h(
      "tr",
      { "data-schedule-id": s.schedule_id },
      h("td", null, link(scheduleHref(s.schedule_id), s.schedule_id)),
      h("td", null, s.workflow_id, h("span", { class: "muted" }, ` v${s.version}`)),
      h("td", null, s.user_id),
      h("td", null, h("code", null, rule(s)), h("div", { class: "muted" }, s.timezone)),
      h("td", null, badge(s.status, "status")),
      h("td", null, badge(s.health, "health")),
      h("td", null, s.last_run_status ? badge(s.last_run_status, "run") : "—"),
      h(
        "td",
        null,
        s.next_fire_times.length
          ? [utc(s.next_fire_times[0]), h("div", { class: "muted" }, relative(s.next_fire_times[0]))]
          : "—",
      ),
    ),
  );
  const table = grid(
    { id: "schedules" },
    ["Schedule", "Workflow", "User", "Expression", "Status", "Health", "Last run", "Next fire"],
    rows,
  );
  const base = { ...filters };
  const pager = h(
    "p",
    { class: "pager" },
    cursor ? link(`#/schedules${query(base)}`, "← First page") : null,
    list.next_cursor
      ? link(`#/schedules${query({ ...base, cursor: list.next_cursor })}`, "Next page →")
      : h("span", { class: "muted" }, cursor ? "Last page." : ""),
  );
  const empty = list.schedules.length
    ? null
    : h(
        "p",
        { class: "muted empty" },
        list.next_cursor
          ? "No match on this page of the scan; there may be more on the next."
          : "No schedules match.",
      );
  return h(
    "div",
    null,
    h("h1", null, "Schedules"),
    filterForm,
    findForm,
    table,
    empty,
    pager,
  );
}

const RUN_STATUSES = [
  "pending",
  "launching",
  "running",
  "succeeded",
  "failed",
  "timed_out",
  "skipped",
  "missed",
  "cancelled",
  "failed_launch",
];

async function schedulePage(id, params) {
  const path = `/schedules/${encodeURIComponent(id)}`;
  const runStatus = params.get("runs") || "";
  const runCursor = params.get("cursor") || "";
  const [schedule, strip, history] = await Promise.all([
    api("GET", path),
    api("GET", `${path}/runs${query({ limit: STRIP_TICKS })}`),
    api("GET", `${path}/runs${query({ limit: RUNS_PAGE, status: runStatus, cursor: runCursor })}`),
  ]);
  let preview = null;
  try {
    preview = await api("POST", "/cron/preview", {
      cron_expr: schedule.cron_expr,
      interval: schedule.interval,
      anchor: schedule.anchor,
      timezone: schedule.timezone,
      count: 1,
    });
  } catch {
    preview = null;
  }
  const s = schedule;
  const zone = s.timezone;

  const header = h(
    "div",
    { class: "title" },
    h("h1", { id: "schedule-id" }, s.schedule_id),
    badge(s.status, "status"),
    badge(s.health, "health"),
  );
  const words = h(
    "p",
    { id: "description", class: "describe" },
    preview ? preview.description : "",
    h("span", { class: "muted" }, preview ? ` (${zone})` : `${rule(s)} (${zone})`),
  );
  const warnings = s.warnings.length
    ? h("ul", { class: "warnings" }, s.warnings.map((w) => h("li", null, w)))
    : null;

  // Actions.
  const pause = h(
    "button",
    {
      id: s.paused ? "resume" : "pause",
      type: "button",
      onclick: (event) =>
        act(event.target, async () => {
          await api("POST", `${path}/pause`, { paused: !s.paused });
          return s.paused ? "Resumed: it fires from its next tick." : "Paused: its pending runs are cancelled.";
        }),
    },
    s.paused ? "Resume" : "Pause",
  );
  const trigger = h(
    "button",
    {
      id: "trigger",
      type: "button",
      onclick: (event) =>
        act(event.target, async () => {
          const run = await api("POST", `${path}/trigger`, undefined, {
            "Idempotency-Key": randomKey(),
          });
          return `Triggered: run ${run.run_id} is ${run.status}.`;
        }),
    },
    "Trigger now",
  );
  const confirmBox = h("span", { class: "confirm", hidden: true });
  const del = h(
    "button",
    {
      id: "delete",
      type: "button",
      class: "danger",
      onclick: () => {
        confirmBox.hidden = false;
        del.hidden = true;
      },
    },
    "Delete…",
  );
  add(
    confirmBox,
    [
      `Delete ${s.schedule_id}? Its pending runs are cancelled; its history stays readable. `,
      h(
        "button",
        {
          id: "confirm-delete",
          type: "button",
          class: "danger",
          onclick: (event) =>
            act(
              event.target,
              async () => {
                await api("DELETE", path);
                return `Deleted ${s.schedule_id}.`;
              },
              "#/schedules",
            ),
        },
        "Yes, delete",
      ),
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            confirmBox.hidden = true;
            del.hidden = false;
          },
        },
        "Cancel",
      ),
    ],
  );
  const from = h("input", { name: "from", type: "datetime-local", step: 1, required: true });
  const to = h("input", { name: "to", type: "datetime-local", step: 1, required: true });
  const backfill = form(
    "backfill",
    "toolbar",
    (event) => {
      const asUtc = (v) => new Date(`${v.length === 16 ? `${v}:00` : v}Z`).toISOString();
      act(event.submitter || event.target, async () => {
        const r = await api("POST", `${path}/backfill`, { from: asUtc(from.value), to: asUtc(to.value) });
        return `Backfill: ${r.ticks} ticks, ${r.created} created, ${r.revived} revived, ${r.existing} left as they were.`;
      });
    },
    field("Backfill from (UTC)", from),
    field("to (UTC)", to),
    h("button", { type: "submit" }, "Backfill"),
  );
  const actions = h(
    "div",
    { class: "actions" },
    h("div", { class: "toolbar" }, pause, trigger, del, confirmBox),
    backfill,
  );

  // Next fire times.
  const next = s.next_fire_times.length
    ? grid(
        { id: "next-fire-times", class: "compact" },
        ["UTC", zone, ""],
        fireRows(s.next_fire_times.map((t) => [t, inZone(t, zone)])),
      )
    : h("p", { class: "muted" }, `None: the schedule is ${s.status}.`);

  const policies = dl([
    ["Workflow", `${s.workflow_id} v${s.version}`],
    ["User", s.user_id],
    s.interval
      ? ["Interval", h("code", null, `${s.interval} from ${s.anchor}`)]
      : ["Expression", h("code", null, s.cron_expr)],
    ["Time zone", zone],
    ["Start", s.start_at ? utc(s.start_at) : "none"],
    ["End", s.end_at ? utc(s.end_at) : "none"],
    ["Jitter", `${s.jitter_ms} ms`],
    ["Overlap", s.overlap_policy],
    ["Catch-up", s.catchup_policy],
    [
      "DST",
      `gap: ${s.dst_gap || "default"}, fold: ${s.dst_fold || "default"}`,
    ],
    [
      "Calendars",
      `${(s.exclude_calendars || []).join(", ") || "none"}; on excluded: ${s.on_excluded || "skip"}`,
    ],
    ["Last fire", s.last_fire_at ? [utc(s.last_fire_at), ` (${relative(s.last_fire_at)})`] : "never"],
    ["Missed, not recorded", `${s.missed_uncounted}${s.missed_uncounted_exact ? "" : " or more"}`],
    ["Created", utc(s.created_at)],
    ["Updated", utc(s.updated_at)],
  ]);

  // The strip: the latest ticks, oldest on the left.
  const ticks = strip.runs.slice().reverse();
  const stripNode = ticks.length
    ? h(
        "div",
        { id: "ticks", class: "strip" },
        ticks.map((r) =>
          h("span", {
            class: `tick run-${cls(r.status)}`,
            title: `${r.scheduled_for} ${r.status}${r.reason ? ` (${r.reason})` : ""}`,
            "data-status": r.status,
          }),
        ),
      )
    : h("p", { class: "muted" }, "No ticks yet.");
  const legend = h(
    "p",
    { class: "legend muted" },
    [
      ["succeeded", "succeeded"],
      ["running", "in flight"],
      ["pending", "pending"],
      ["failed", "failed"],
      ["skipped", "skipped, missed, cancelled"],
    ].map(([status, label]) => h("span", null, h("span", { class: `tick run-${status}` }), ` ${label} `)),
  );

  // Run history.
  const statusFilter = select("runs", runStatus, [["", "any status"], ...RUN_STATUSES.map((x) => [x, x])]);
  statusFilter.addEventListener("change", () => {
    location.hash = `${scheduleHref(id)}${query({ runs: statusFilter.value })}`;
  });
  const runRows = history.runs.map((r) =>
    h(
      "tr",
      { "data-run-id": r.run_id },
      h("td", null, utc(r.scheduled_for)),
      h("td", null, badge(r.status, "run")),
      h("td", null, r.trigger),
      h("td", null, r.reason ?? ""),
      h("td", { class: "num" }, r.attempt),
      h("td", { class: "error-text" }, r.last_error ?? ""),
      h("td", null, r.launched_at ? utc(r.launched_at) : ""),
      h("td", null, r.finished_at ? utc(r.finished_at) : ""),
    ),
  );
  const runsTable = history.runs.length
    ? grid(
        { id: "runs" },
        ["Tick (UTC)", "Status", "Trigger", "Reason", "Attempts", "Error", "Launched", "Finished"],
        runRows,
      )
    : h("p", { class: "muted" }, "No runs.");
  const runsPager = h(
    "p",
    { class: "pager" },
    runCursor ? link(`${scheduleHref(id)}${query({ runs: runStatus })}`, "← Newest") : null,
    history.next_cursor
      ? link(`${scheduleHref(id)}${query({ runs: runStatus, cursor: history.next_cursor })}`, "Older runs →")
      : null,
  );

  return h(
    "div",
    null,
    h("p", { class: "crumbs" }, link("#/schedules", "← Schedules")),
    header,
    words,
    warnings,
    actions,
    h(
      "div",
      { class: "columns" },
      card(
        "Next fire times",
        next,
        s.cron_expr
          ? h(
              "p",
              { class: "muted" },
              link(`#/cron${query({ expr: s.cron_expr, tz: zone })}`, "Open in the cron playground"),
            )
          : null,
      ),
      card("Definition and policies", policies),
    ),
    card(`Last ${ticks.length} ticks`, stripNode, legend),
    card("Run history", h("div", { class: "toolbar" }, field("Show", statusFilter)), runsTable, runsPager),
  );
}

async function fleetPage() {
  const st = await api("GET", "/worker/status");
  const switchButton = h(
    "button",
    {
      id: st.worker_enabled ? "worker-stop" : "worker-start",
      type: "button",
      class: st.worker_enabled ? "danger" : "",
      onclick: (event) =>
        act(event.target, async () => {
          await api("POST", st.worker_enabled ? "/worker/stop" : "/worker/start");
          return st.worker_enabled
            ? "Worker stopped: no ticks are made and nothing launches."
            : "Worker started.";
        }),
    },
    st.worker_enabled ? "Stop the worker" : "Start the worker",
  );
  const figures = h(
    "div",
    { class: "figures" },
    [
      ["Worker", st.worker_enabled ? "running" : "stopped", st.worker_enabled ? "good" : "bad"],
      ["Leader", st.leader ? st.leader.node_id : "none", st.leader ? "" : "bad"],
      ["Epoch", st.leader ? st.leader.epoch : "—", ""],
      ["Due schedules", st.due_schedules, ""],
      ["Pending runs", st.pending_runs, ""],
      ["Overdue runs", st.overdue_runs, st.overdue_runs > 0 ? "bad" : ""],
      ["Launch lag", `${Number(st.lag_seconds).toFixed(1)} s`, st.lag_seconds > 10 ? "bad" : ""],
    ].map(([label, value, kind]) =>
      h("div", { class: `figure ${kind}` }, h("div", { class: "label" }, label), h("div", { class: "value" }, value)),
    ),
  );
  const nodes = grid(
    { id: "nodes" },
    ["Node", "Role", "Version", "Started", "Last seen"],
    st.nodes.map((n) =>
      h(
        "tr",
        null,
        h("td", null, n.node_id, n.node_id === st.node_id ? h("span", { class: "muted" }, " (answered)") : null),
        h("td", null, badge(n.role, "role")),
        h("td", null, n.version),
        h("td", null, utc(n.started_at)),
        h("td", null, utc(n.last_seen_at), h("span", { class: "muted" }, ` ${relative(n.last_seen_at)}`)),
      ),
    ),
  );
  timer = setTimeout(() => {
    if (location.hash.startsWith("#/fleet")) route({ keepNotice: true });
  }, FLEET_REFRESH_MS);
  return h(
    "div",
    null,
    h("h1", null, `Fleet: ${st.cluster_name}`),
    figures,
    h("div", { class: "toolbar" }, switchButton),
    card(
      "Leader",
      dl([
        ["Node", st.leader ? st.leader.node_id : "none holds the lock"],
        ["Epoch", st.leader ? st.leader.epoch : "—"],
        ["Since", st.leader && st.leader.since ? utc(st.leader.since) : "—"],
        ["Last tick pass", st.last_tick_at ? [utc(st.last_tick_at), ` (${relative(st.last_tick_at)})`] : "—"],
        ["Answered by", `${st.node_id}${st.is_leader ? " (the leader)" : ""}`],
      ]),
    ),
    card(`Live nodes (${st.nodes.length})`, nodes),
    h("p", { class: "muted" }, `Refreshed every ${FLEET_REFRESH_MS / 1000} s.`),
  );
}

async function cronPage(params) {
  const expr = params.get("expr") || "";
  const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const zone = params.get("tz") || browserZone;
  const count = params.get("count") || "5";
  const exprInput = h("input", {
    id: "cron-expr",
    name: "expr",
    value: expr,
    placeholder: "0 30 6 * * MON-FRI",
    required: true,
    size: 28,
  });
  const zoneInput = h("input", { id: "cron-tz", name: "tz", value: zone, size: 22 });
  const countInput = h("input", { name: "count", type: "number", min: 1, max: 100, value: count });
  const playground = form(
    "playground",
    "toolbar",
    (event) => {
      location.hash = `#/cron${query({
        expr: exprInput.value.trim(),
        tz: zoneInput.value.trim(),
        count: countInput.value,
      })}`;
    },
    field("Expression (5 or 6 fields) or interval (PT90M)", exprInput),
    field("Time zone", zoneInput),
    field("Count", countInput),
    h("button", { type: "submit" }, "Preview"),
  );
  let out = h("p", { class: "muted" }, "Nothing is stored: this only asks POST /cron/preview.");
  if (expr) {
    try {
      // A cron expression never starts with "P"; an ISO 8601 interval (PT90M) always does.
      const rule = expr.startsWith("P") ? { interval: expr } : { cron_expr: expr };
      const p = await api("POST", "/cron/preview", {
        ...rule,
        timezone: zone,
        count: Number(count),
      });
      out = h(
        "div",
        { id: "preview" },
        h("p", { class: "describe" }, p.description, h("span", { class: "muted" }, ` (${p.timezone})`)),
        grid(
          { class: "compact" },
          ["UTC", p.timezone, ""],
          fireRows(p.next.map((t) => [t.utc, t.local.replace("T", " ")])),
        ),
      );
    } catch (e) {
      if (e.status === 401) throw e;
      out = h("p", { id: "preview-error", class: "error" }, problem(e));
    }
  }
  return h("div", null, h("h1", null, "Cron playground"), playground, out);
}

// ---------------------------------------------------------------- routing

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/schedules";
  const at = raw.indexOf("?");
  const path = at < 0 ? raw : raw.slice(0, at);
  const params = new URLSearchParams(at < 0 ? "" : raw.slice(at + 1));
  return { path, params };
}

/** Draws the page the address names. A page drawn anew by the user (not a refresh) clears
 * the message line, or shows what the action that led there said. */
async function route({ keepNotice } = { keepNotice: false }) {
  const gen = ++generation;
  if (timer) clearTimeout(timer);
  timer = null;
  if (session.role === undefined) await probe();
  if (session.role === null) return signIn(session.refused ? REFUSED : undefined);
  const { path, params } = parseHash();
  const section = path.split("/")[1] || "schedules";
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("current", a.dataset.nav === section);
  }
  let page;
  const one = path.match(/^\/schedules\/(.+)$/);
  if (path === "/schedules" || path === "/") page = () => schedulesPage(params);
  else if (one) page = () => schedulePage(decodeURIComponent(one[1]), params);
  else if (path === "/fleet") page = fleetPage;
  else if (path === "/cron") page = () => cronPage(params);
  else page = async () => h("p", null, "No such page. ", link("#/schedules", "Schedules"));
  try {
    const node = await page();
    if (gen !== generation) return;
    show(node);
    settle(keepNotice);
  } catch (e) {
    if (gen !== generation) return;
    if (e.status === 401) return signIn(REFUSED);
    const hint =
      e.status === 403 ? " This token may not see it." : e.status === 404 ? " (or not yours to see)" : "";
    show(h("div", { class: "card" }, h("p", { id: "page-error", class: "error" }, problem(e), hint)));
    settle(keepNotice);
  }
}

function settle(keepNotice) {
  if (afterwards) say(afterwards.text, afterwards.kind);
  else if (!keepNotice) quiet();
  afterwards = null;
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  quiet();
  session.role = undefined;
  route();
});
window.addEventListener("hashchange", () => route());
route();
