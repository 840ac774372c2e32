// The audit log (admin: everyone's events, or one user's), newest first, a page at a time,
// filtered by kind and a time window (GET /v1/audit ?kind= &user= &since= &until= &limit=
// &before=); "More" asks for the events older than the last one shown.
import {get} from "/static/js/api.js";
import {clear, errorBox, h, when} from "/static/js/dom.js";
import {badge, busy, field, row, table} from "/static/js/views/common.js";

const KINDS = ["admin", "cell", "desktop", "egress", "exec", "file", "job", "jupyter", "network",
  "port", "process", "schedule", "secret", "session", "signin", "signout", "terminal", "user"];
const HEADERS = ["#", "When", "User", "Action", "Target", "Detail", "Result", "Exit", "Duration", "Started by"];

export async function mount(root, ctx) {
  const kind = h("input", {type: "text", list: "audit-kinds", pattern: "[a-z_.]*", maxlength: "64",
    spellcheck: "false", autocomplete: "off", placeholder: "every kind"});
  const limit = h("select", {}, [20, 50, 100, 500].map((n) => h("option", {value: String(n), selected: n === 100}, String(n))));
  const user = h("select", {}, h("option", {value: ""}, "every user"));
  const since = h("input", {type: "datetime-local", step: "1"});
  const until = h("input", {type: "datetime-local", step: "1"});
  const show = h("button", {type: "submit", id: "audit-submit"}, "Show");
  const status = h("div", {id: "audit-status", "aria-live": "polite"});
  const box = h("div", {id: "audit-box"});
  const more = h("button", {type: "button", id: "audit-more", class: "secondary", hidden: true}, "More");
  const moreStatus = h("div", {id: "audit-more-status", "aria-live": "polite"});
  let names = new Map(), query = {}, before = null;

  const fetchPage = async () => {
    const params = {...query};
    if (before !== null) params.before = String(before);
    const page = await get("/v1/audit", params);
    before = page.next_before;
    more.hidden = before === null;
    return page.events;
  };
  const first = async () => {
    query = {limit: limit.value};
    if (kind.value.trim()) query.kind = kind.value.trim();
    if (user.value) query.user = user.value;
    // datetime-local is the browser's local time: sent as an instant with its offset (UTC).
    if (since.value) query.since = new Date(since.value).toISOString();
    if (until.value) query.until = new Date(until.value).toISOString();
    before = null;
    const events = await fetchPage();
    clear(box, events.length ? table("audit-table", HEADERS, events.map((e) => eventRow(e, names)))
      : h("p", {class: "muted", id: "audit-empty"}, "No events."));
  };
  more.addEventListener("click", () => busy(more, "Loading…", moreStatus, async () => {
    const events = await fetchPage();
    box.querySelector("#audit-table tbody").append(...events.map((e) => eventRow(e, names)));
  }));

  const form = h("form", {id: "audit-form", class: "card", onsubmit: (e) => {
    e.preventDefault();
    busy(show, "Loading…", status, first);
  }},
  h("datalist", {id: "audit-kinds"}, KINDS.map((k) => h("option", {value: k}))),
  field("audit-kind", "Kind (e.g. job, exec, egress, secret)", kind,
    "One kind: job takes job.create, job.cancel…; empty for every kind."),
  ctx && ctx.me && ctx.me.admin ? field("audit-user", "User", user) : null,
  field("audit-since", "From", since),
  field("audit-until", "Until", until),
  field("audit-limit", "Events a page", limit),
  h("div", {class: "toolbar"}, show), status);

  root.append(h("h1", {}, "Audit"), form, h("section", {class: "card", "aria-label": "Events"},
    box, h("div", {class: "toolbar"}, more), moreStatus));
  if (ctx && ctx.me && ctx.me.admin) { // user names for ids (the admin sees everyone's events)
    try {
      const users = await get("/v1/users");
      names = new Map(users.map((u) => [u.id, u.name]));
      user.append(...users.map((u) => h("option", {value: u.id}, u.name)));
    } catch { /* ids do */ }
  }
  await busy(show, "Loading…", status, first);
}

function eventRow(e, names) {
  const user = names.has(e.user_id) ? h("span", {title: e.user_id}, names.get(e.user_id)) : e.user_id;
  return row({id: `audit-row-${e.id}`, dataset: {action: e.action}},
    String(e.id), when(e.at), user, h("code", {}, e.action), e.target, e.detail,
    [badge(e.ok ? "ok" : "failed"), e.status ? ` ${e.status}` : ""], e.exit_code ?? "",
    e.duration_ms === null || e.duration_ms === undefined ? "" : `${Math.round(e.duration_ms)} ms`,
    e.started_by);
}
