// The cell (DESIGN §3, §11): its state and limits kept live, restart and remove, the processes
// background execs kept, listening ports opened in a new tab, JupyterLab, and the API key.
// Listing processes or ports starts a stopped cell (and counts as activity), so they load on
// demand and when the cell runs, never on the timer.
import {del, get, post} from "/static/js/api.js";
import {bytes, clear, errorBox, h, when} from "/static/js/dom.js";
import {badge, busy, every, row, shownOnce, table} from "/static/js/views/common.js";

const POLL_MS = 3000;

const button = (id, text, onclick, extra = {}) => h("button", {type: "button", id, onclick, ...extra}, text);
const section = (id, title, ...children) => h("section", {class: "card", id, "aria-labelledby": `${id}-h`},
  h("h2", {id: `${id}-h`}, title), ...children);

export async function mount(root) {
  const state = h("span", {id: "cell-state", "aria-live": "polite"}, "…");
  const info = h("dl", {id: "cell-info", class: "facts"});
  const status = h("div", {id: "cell-status", "aria-live": "polite"});
  const polled = h("div", {id: "cell-load-status", "aria-live": "polite"});
  const processes = h("div", {id: "cell-processes-box"});
  const ports = h("div", {id: "cell-ports-box"});
  const inside = h("div", {id: "cell-inside-status", "aria-live": "polite"});
  let running = null;

  const loadInside = async () => { // processes and ports: this starts the cell if it is not
    clear(inside);
    try {
      const [procs, open] = await Promise.all([get("/v1/cell/processes"), get("/v1/cell/ports")]);
      showProcesses(processes, procs, loadInside);
      showPorts(ports, open);
    } catch (error) {
      clear(inside, errorBox(error));
    }
  };
  const load = async () => {
    try {
      const cell = await get("/v1/cell");
      clear(polled);
      clear(state, badge(cell.state));
      clear(info, facts(cell));
      if (cell.state === "running" && running !== true) loadInside();
      running = cell.state === "running";
    } catch (error) {
      clear(polled, errorBox(error));
    }
  };

  // One change of the cell at a time: both buttons wait while either works.
  const change = (label, ask, fn) => async (e) => {
    if (!confirm(ask)) return;
    const other = e.target === restart ? remove : restart;
    other.disabled = true;
    const ok = await busy(e.target, label, status, fn);
    other.disabled = false;
    if (ok) { running = null; await load(); }
  };
  const restart = button("cell-restart", "Restart", change("Restarting…",
    "Restart your cell? Running code, Python variables and kept processes go; files stay.",
    () => post("/v1/cell/restart")), {class: "secondary"});
  const remove = button("cell-remove", "Remove cell", change("Removing…",
    "Remove your cell's container? The workspace is kept; the next call makes a new cell.", async () => {
      await del("/v1/cell");
      clear(processes); clear(ports);
    }), {class: "danger"});
  const refresh = button("cell-refresh", "Refresh processes and ports", (e) =>
    busy(e.target, "Loading…", inside, loadInside), {"aria-describedby": "cell-refresh-hint", class: "secondary"});

  root.append(h("h1", {}, "Your cell"),
    section("cell-summary", "State", h("div", {class: "toolbar"}, state, restart, remove), status, polled, info,
      h("p", {class: "hint"}, "Removing the cell keeps the workspace: only the container goes.")),
    section("cell-inside", "Inside the cell", h("div", {class: "toolbar"}, refresh),
      h("p", {class: "hint", id: "cell-refresh-hint"}, "Looking inside starts the cell if it is not running."),
      inside, h("h3", {}, "Kept processes"), processes, h("h3", {}, "Listening ports"), ports),
    section("cell-jupyter-section", "JupyterLab", jupyterPart()),
    section("cell-key", "Your API key", keyPart()));
  const stop = every(POLL_MS, load, info);
  await stop.first;
  return stop;
}

function facts(cell) {
  const lim = cell.limits;
  const pairs = [
    ["Image", h("code", {id: "cell-image"}, cell.image)],
    ["Limits", h("span", {id: "cell-limits"}, `${lim.memory_mb} MB memory · ${lim.cpus} CPU · ` +
      `${lim.pids} processes · ${lim.tmp_mb} MB /tmp · ${lim.workspace_mb} MB workspace`)],
    ["Usage", h("span", {id: "cell-usage"}, usage(cell))],
    ["Network", h("span", {id: "cell-network"}, cell.network, " ", h("a", {href: "#/network"}, "(change)"))],
    ["Created", h("span", {id: "cell-created"}, when(cell.created_at) || "—")],
    ["Last active", h("span", {id: "cell-last-active"}, when(cell.last_active_at) || "—")],
  ];
  return pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]);
}

function usage(cell) {
  const memory = cell.memory_bytes === null || cell.memory_bytes === undefined ? "—"
    : `${bytes(cell.memory_bytes)} of ${cell.limits.memory_mb} MB memory`;
  const disk = cell.workspace_bytes === null || cell.workspace_bytes === undefined ? ""
    : ` · ${bytes(cell.workspace_bytes)} of ${cell.limits.workspace_mb} MB workspace`;
  return memory + disk;
}

function showProcesses(box, procs, reload) {
  const status = h("div", {id: "process-status", "aria-live": "polite"});
  if (!procs.length) {
    clear(box, h("p", {class: "muted", id: "cell-processes-empty"}, "None: background execs keep processes here."));
    return;
  }
  clear(box, status, table("cell-processes", ["PID", "Parent", "Command", "Started by", ""], procs.map((p) =>
    row({id: `process-row-${p.pid}`}, String(p.pid), String(p.ppid), h("code", {}, p.command), p.origin,
      button(`process-kill-${p.pid}`, "Kill", async (e) => {
        if (!confirm(`Kill process ${p.pid} (${p.command}) and everything it started?`)) return;
        if (await busy(e.target, "Killing…", status, () => del(`/v1/cell/processes/${p.pid}`))) reload();
      }, {"aria-label": `Kill process ${p.pid}`, class: "danger"})))));
}

function showPorts(box, open) {
  const status = h("div", {id: "port-status", "aria-live": "polite"});
  if (!open.length) {
    clear(box, h("p", {class: "muted", id: "cell-ports-empty"}, "No program listens on a TCP port in the cell."));
    return;
  }
  clear(box, status, table("cell-ports", ["Port", "Address", "Program", ""], open.map((p) =>
    row({id: `port-row-${p.port}`}, String(p.port), p.address, h("code", {}, p.command || ""),
      button(`port-open-${p.port}`, "Open", (e) => busy(e.target, "Opening…", status, async () => {
        // A short-lived token in the URL, traded for a cookie of that port's on arrival.
        const token = await post("/v1/cell/port-tokens", {port: p.port});
        window.open(token.url, "_blank", "noopener");
      }), {"aria-label": `Open port ${p.port} in a new tab`})))));
}

function jupyterPart() {
  const status = h("div", {id: "cell-jupyter-status", "aria-live": "polite"});
  const start = button("cell-jupyter", "Start JupyterLab", (e) => busy(e.target, "Starting…", status, async () => {
    const lab = await post("/v1/cell/jupyter");
    window.open(lab.browser_url, "_blank", "noopener");
    clear(status, h("p", {class: "muted"}, "JupyterLab opened in a new tab."));
  }));
  return [h("p", {class: "hint"}, "JupyterLab runs in your cell (the full image has it) and opens in a new tab."),
    h("div", {class: "toolbar"}, start), status];
}

function keyPart() {
  const status = h("div", {id: "key-status", "aria-live": "polite"});
  const shown = h("div", {id: "key-shown"});
  const rotate = button("key-rotate", "Rotate my API key", async (e) => {
    if (!confirm("Make a new API key? The old one stops working at once, and so do your other sign-ins.")) return;
    let made = null;
    if (await busy(e.target, "Rotating…", status, async () => { made = await post("/v1/me/key"); })) {
      clear(shown, shownOnce("key-new", "Your new API key", made.api_key));
    }
  }, {class: "danger"});
  return [h("p", {class: "hint"}, "Programs and the CLI use your API key; this page stays signed in."),
    h("div", {class: "toolbar"}, rotate), status, shown];
}
