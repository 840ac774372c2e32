// A terminal in the cell (xterm.js over /v1/cell/terminal): keystrokes in, output out, resized
// with the window. A reload reattaches to the same shell within its grace period.
import {FitAddon} from "/vendor/xterm-fit.js";
import {Terminal} from "/vendor/xterm.js";
import {post} from "/static/js/api.js";
import {clear, errorBox, h} from "/static/js/dom.js";

const KEPT = "agentcell.terminal"; // this tab's terminal id (not a secret: it needs a token)

export async function mount(root) {
  if (!document.querySelector("link[data-xterm]")) {
    document.head.append(h("link", {rel: "stylesheet", href: "/vendor/xterm.css", dataset: {xterm: "1"}}));
  }
  const status = h("span", {id: "terminal-status", role: "status"}, "connecting…");
  const screen = h("div", {id: "terminal", "aria-label": "Terminal"});
  const fresh = h("button", {type: "button", id: "terminal-new", class: "secondary"}, "New terminal");
  clear(root, h("div", {class: "toolbar"}, status, h("span", {class: "grow"}), fresh), screen);
  const term = new Terminal({cursorBlink: true, fontSize: 14, scrollback: 5000});
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(screen);
  fit.fit();
  let socket = null;

  async function attach(session) {
    if (socket) socket.close();
    const {url} = await post("/v1/cell/terminal-tokens");
    const address = new URL(url, location.href);
    address.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    address.searchParams.set("cols", term.cols);
    address.searchParams.set("rows", term.rows);
    if (session) address.searchParams.set("session", session);
    const ws = (socket = new WebSocket(address));
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      if (typeof e.data !== "string") { term.write(new Uint8Array(e.data)); return; }
      const message = JSON.parse(e.data);
      if (message.type === "ready") {
        sessionStorage.setItem(KEPT, message.session);
        status.textContent = "connected";
        term.focus();
      } else if (message.type === "exit") {
        sessionStorage.removeItem(KEPT);
        status.textContent = `the shell exited with ${message.code}`;
      } else if (message.type === "error") {
        status.textContent = message.message;
      }
    };
    ws.onclose = (e) => {
      if (ws !== socket) return;
      if (e.code === 4001) status.textContent = "this terminal was opened elsewhere";
      else if (!status.textContent.startsWith("the shell exited")) status.textContent = "disconnected";
    };
  }

  const encoder = new TextEncoder();
  term.onData((data) => socket && socket.readyState === 1 && socket.send(encoder.encode(data)));
  term.onResize(({cols, rows}) => socket && socket.readyState === 1 &&
    socket.send(JSON.stringify({type: "resize", cols, rows})));
  const onWindow = () => fit.fit();
  window.addEventListener("resize", onWindow);
  fresh.addEventListener("click", () => attach(null).catch((error) => clear(status, error.message)));
  try { await attach(sessionStorage.getItem(KEPT)); }
  catch (error) { root.prepend(errorBox(error)); }
  return () => {
    window.removeEventListener("resize", onWindow);
    if (socket) { const ws = socket; socket = null; ws.close(); }
    term.dispose();
  };
}
