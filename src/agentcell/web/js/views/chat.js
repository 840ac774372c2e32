// Chat with the agent: sessions on the side, the turn streamed as it runs — text rendered as
// sanitized markdown, tool calls and delegations folded — and the live desktop beside it
// while the browser agent works.
import {get, post, stream} from "/static/js/api.js";
import {clear, errorBox, h} from "/static/js/dom.js";
import {markdown, openRelayed} from "/static/js/render.js";

// When each streamed piece of text was on screen (epoch ms, the frame after it was drawn into
// the page), for bench/web.py.
const shown = (window.agentcellShown = window.agentcellShown || []);

export async function mount(root) {
  const list = h("ul", {id: "chat-sessions", "aria-label": "Chats"});
  const log = h("div", {id: "chat-log", "aria-live": "polite"});
  const input = h("textarea", {id: "chat-input", rows: 3, "aria-label": "Message to the agent",
    placeholder: "Ask the agent to do something in your cell…"});
  const send = h("button", {type: "submit", id: "chat-send"}, "Send");
  const stop = h("button", {type: "button", id: "chat-stop", class: "secondary", hidden: true}, "Stop");
  const desktop = h("aside", {class: "chat-desktop", hidden: true, "aria-label": "Live desktop"});
  const layout = h("div", {class: "chat"},
    h("section", {class: "chat-sessions"},
      h("button", {type: "button", id: "chat-new", onclick: () => open(null)}, "New chat"), list),
    h("section", {class: "chat-main"}, log,
      h("form", {id: "chat-form", onsubmit: (e) => { e.preventDefault(); turn(); }}, input, send, stop)),
    desktop);
  clear(root, layout);
  let current = null, controller = null;

  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); turn(); }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  log.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-port]");
    if (!link) return;
    e.preventDefault();
    openRelayed(link, post).catch((error) => log.append(errorBox(error)));
  });

  async function refresh() {
    const sessions = await get("/v1/sessions");
    clear(list, sessions.map((s) => h("li", {},
      h("button", {type: "button", "aria-current": String(current === s.id), dataset: {session: s.id},
        onclick: () => open(s.id)}, s.title || "Untitled"),
    )));
    return sessions;
  }

  async function open(id) {
    current = id;
    clear(log);
    await refresh();
    if (id) for (const m of await get(`/v1/sessions/${id}/messages`)) log.append(pastMessage(m));
    log.scrollTop = log.scrollHeight;
    input.focus();
  }

  async function turn() {
    const content = input.value.trim();
    if (!content || controller) return;
    try {
      if (!current) {
        current = (await post("/v1/sessions", {title: content.slice(0, 80)})).id;
        await refresh();
      }
    } catch (error) { log.append(errorBox(error)); return; }
    input.value = "";
    log.append(h("div", {class: "message user"}, content));
    const answer = new Answer(log, (on) => showDesktop(desktop, layout, on));
    controller = new AbortController();
    send.disabled = true; stop.hidden = false;
    try {
      await stream(`/v1/sessions/${current}/messages`, {content},
        (name, data) => answer.add(name, data), controller.signal);
    } catch (error) {
      if (error.name !== "AbortError") answer.fail(error);
    } finally {
      controller = null; send.disabled = false; stop.hidden = true;
      answer.finish();
    }
  }

  const sessions = await refresh();
  const wanted = location.hash.split("/")[2];
  await open(sessions.some((s) => s.id === wanted) ? wanted : (sessions[0] || {}).id || null);
  return () => controller && controller.abort();
}

// One assistant message as it streams: a text block per agent, tool calls and sub-agents folded.
class Answer {
  constructor(log, onBrowser) {
    this.log = log;
    this.onBrowser = onBrowser;
    this.el = h("div", {class: "message assistant"});
    this.scopes = [{agent: "coordinator", el: this.el, text: null, raw: ""}];
    this.tools = new Map();
    log.append(this.el);
  }

  scope() { return this.scopes[this.scopes.length - 1]; }

  add(name, data) {
    if (name === "text") this.text(data.text);
    else if (name === "tool_call") this.toolCall(data);
    else if (name === "tool_result") this.toolResult(data);
    else if (name === "agent") this.agent(data);
    else if (name === "done" && !this.el.textContent.trim()) this.text(data.output || "");
    else if (name === "error") this.fail(data);
    this.log.scrollTop = this.log.scrollHeight;
  }

  text(piece) {
    const scope = this.scope();
    if (!scope.text) { scope.text = h("div", {class: "text"}); scope.raw = ""; scope.el.append(scope.text); }
    scope.raw += piece;
    clear(scope.text, markdown(scope.raw));
    requestAnimationFrame(() => {
      shown.push(performance.timeOrigin + performance.now());
      if (shown.length > 5000) shown.shift();
    });
  }

  toolCall(data) {
    const args = JSON.stringify(data.args, null, 2);
    const fold = h("details", {class: "tool", dataset: {call: data.call_id}},
      h("summary", {}, `${data.agent} · ${data.tool}`), h("pre", {}, args));
    this.tools.set(data.call_id, fold);
    this.scope().el.append(fold);
    this.scope().text = null;
  }

  toolResult(data) {
    const fold = this.tools.get(data.call_id);
    if (!fold) return;
    fold.append(h("pre", {class: "result"}, data.content));
    if (!data.ok) fold.classList.add("failed");
  }

  agent(data) {
    if (data.action === "start") {
      const fold = h("details", {class: "agent", open: true, dataset: {agent: data.agent}},
        h("summary", {}, `${data.agent}: ${data.task}`));
      this.scope().el.append(fold);
      this.scope().text = null;
      this.scopes.push({agent: data.agent, el: fold, text: null, raw: ""});
      if (data.agent === "browser") this.onBrowser(true);
    } else if (this.scopes.length > 1) {
      const done = this.scopes.pop();
      done.el.open = false;
      if (!data.ok) done.el.classList.add("failed");
      this.scope().text = null;
    }
  }

  fail(error) { this.el.append(errorBox(error)); }
  finish() { this.el.classList.add("finished"); }
}

function pastMessage(message) {
  if (message.role === "user") return h("div", {class: "message user"}, message.content);
  const answer = new Answer(h("div"), () => {});
  for (const event of message.events) answer.add(event.event, event);
  if (!message.events.some((e) => e.event === "text")) answer.text(message.content);
  answer.finish();
  return answer.el;
}

// The live desktop beside the chat while the browser agent works (the full image has one).
async function showDesktop(aside, layout, on) {
  if (!on || !aside.hidden) return;
  try {
    const desktop = await get("/v1/cell/desktop");
    clear(aside, h("iframe", {src: desktop.url, title: "The cell's live desktop", id: "chat-desktop-frame"}));
    aside.hidden = false;
    layout.classList.add("with-desktop");
  } catch { /* no desktop in this image: the chat goes on without it */ }
}
