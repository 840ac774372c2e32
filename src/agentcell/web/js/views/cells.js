// Cells (admin): every cell of this server, kept live, with its memory; pause, stop or remove
// one (idle cells only: one at work answers 409), the idle rules applied on demand, and the
// deployment's egress rules (the default policy, the ceiling, the extra ports).
import {get, post, put} from "/static/js/api.js";
import {bytes, clear, errorBox, h, when} from "/static/js/dom.js";
import {badge, busy, every, field, lines, list, row, syncTable} from "/static/js/views/common.js";

const POLL_MS = 3000;
const MODES = ["none", "allowlist", "public"];

const section = (id, title, ...children) => h("section", {class: "card", id, "aria-labelledby": `${id}-h`},
  h("h2", {id: `${id}-h`}, title), ...children);

export async function mount(root) {
  const box = h("div", {id: "cells-box"}, h("p", {class: "muted"}, "Loading…"));
  const status = h("div", {id: "cells-status", "aria-live": "polite"});
  const acted = h("div", {id: "cells-action-status", "aria-live": "polite"});
  const network = h("div", {id: "admin-network-box"});
  let names = new Map();
  const load = async () => {
    try {
      const cells = await get("/v1/admin/cells");
      if (cells.some((c) => c.owner && !names.has(c.owner))) {
        names = new Map((await get("/v1/users")).map((u) => [u.id, u.name]));
      }
      clear(status);
      syncTable(box, "cells-list",
        ["Owner", "State", "Memory", "Active", "Cell", "Container", "Created", "Last active", "Actions"],
        cells, (c) => c.cell_id, (c) => cellRow(c, names, acted, load), "No cells: one is made at a user's first call.");
    } catch (error) {
      clear(status, errorBox(error));
    }
  };
  root.append(h("h1", {}, "Cells"),
    section("cells", "Cells", reapBar(load), status, acted, box),
    section("admin-network", "Egress rules", network));
  get("/v1/admin/network").then((n) => network.append(networkForm(n)),
    (error) => clear(network, errorBox(error)));
  const stop = every(POLL_MS, load, box);
  await stop.first;
  return stop;
}

function cellRow(c, names, status, reload) {
  const name = names.get(c.owner) || c.owner;
  const owner = c.owner ? h("span", {title: c.owner}, name) : h("span", {class: "muted"}, "warm pool");
  // An action on the owner's cell: progress on its button, the answer or the refusal above.
  const act = (verb, text, progress, ask, call) => h("button", {type: "button", id: `cell-${verb}-${c.owner}`,
    class: verb === "remove" ? "danger" : "secondary", "aria-label": `${text} the cell of ${name}`,
    onclick: async (e) => {
      if (ask && !confirm(ask)) return;
      let done = null;
      if (await busy(e.target, progress, status, async () => { done = await call(); })) {
        clear(status, h("p", {class: "muted"}, `The cell of ${name} is ${done.state}.`));
        reload();
      }
    }}, text);
  const path = `/v1/admin/cells/${encodeURIComponent(c.owner)}`;
  const actions = c.owner ? h("div", {class: "toolbar"},
    c.state === "running" ? act("pause", "Pause", "Pausing…", null, () => post(`${path}/pause`)) : null,
    ["running", "paused"].includes(c.state) ? act("stop", "Stop", "Stopping…",
      `Stop the cell of ${name}? Its processes end; their next call starts it again.`, () => post(`${path}/stop`)) : null,
    c.state !== "removed" ? act("remove", "Remove", "Removing…",
      `Remove the cell of ${name}? The workspace is kept for their next call's cell.`, () => post(`${path}/remove`)) : null) : "";
  return row({id: `cell-row-${c.cell_id}`, dataset: {owner: c.owner}},
    owner, badge(c.state), c.memory_bytes === null || c.memory_bytes === undefined ? "" : bytes(c.memory_bytes),
    String(c.active), h("code", {}, c.cell_id),
    h("code", {title: c.container_id}, c.container_id.slice(0, 12)), when(c.created_at), when(c.last_active_at),
    actions);
}

function reapBar(reload) {
  const result = h("div", {id: "cells-reap-result", "aria-live": "polite"});
  const reap = h("button", {type: "button", id: "cells-reap", "aria-describedby": "cells-reap-hint", onclick: async (e) => {
    let r = null;
    if (await busy(e.target, "Applying…", result, async () => { r = await post("/v1/admin/cells/reap"); })) {
      clear(result, h("p", {class: "muted"},
        `Paused ${r.paused}, stopped ${r.stopped}, removed ${r.removed}; ${r.died} had died.`));
      reload();
    }
  }}, "Apply the idle rules now");
  return [h("div", {class: "toolbar"}, reap),
    h("p", {class: "hint", id: "cells-reap-hint"}, "Pauses, stops and removes idle cells as the server " +
      "does on its own timer; a cell with work in progress (a job, a terminal, a relay) is left alone."),
    result];
}

function networkForm(current) {
  const mode = h("select", {}, MODES.map((m) => h("option", {value: m}, m)));
  const ceiling = h("select", {}, MODES.map((m) => h("option", {value: m}, m)));
  const allow = h("textarea", {rows: 4, spellcheck: "false", placeholder: "pypi.org\nfiles.pythonhosted.org"});
  const deny = h("textarea", {rows: 3, spellcheck: "false"});
  const ports = h("input", {type: "text", spellcheck: "false", placeholder: "22, 8443"});
  const save = h("button", {type: "submit", id: "admin-network-save"}, "Save the egress rules");
  const status = h("div", {id: "admin-network-status", "aria-live": "polite"});
  const fill = (n) => {
    mode.value = n.default.mode;
    allow.value = lines(n.default.allow);
    deny.value = lines(n.default.deny);
    ceiling.value = n.ceiling;
    ports.value = n.ports.join(", ");
  };
  fill(current);
  return h("form", {id: "admin-network-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = {
      default: {mode: mode.value, allow: list(allow.value), deny: list(deny.value)},
      ceiling: ceiling.value,
      ports: list(ports.value).map(Number),
    };
    let n = null;
    if (await busy(save, "Saving…", status, async () => { n = await put("/v1/admin/network", body); })) {
      fill(n);
      clear(status, h("p", {class: "muted", id: "admin-network-saved"}, "Saved: it applies to every cell's next connection."));
    }
  }},
  field("admin-network-mode", "Default mode (users who set no policy)", mode),
  field("admin-network-allow", "Default allowed hosts, one a line", allow),
  field("admin-network-deny", "Default denied hosts, one a line", deny),
  field("admin-network-ceiling", "Widest mode a user may choose", ceiling),
  field("admin-network-ports", "Ports besides 80 and 443", ports, "Separated by commas or spaces."),
  h("div", {class: "toolbar"}, save), status);
}
