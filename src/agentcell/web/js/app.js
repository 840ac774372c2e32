// The web page (DESIGN §12): sign-in, then one view at a time, chosen by the address's #hash.
import {ApiError, call, get, setCsrf} from "/static/js/api.js";
import {clear, errorBox, h} from "/static/js/dom.js";

const USER_VIEWS = [
  ["chat", "Chat"], ["files", "Files"], ["jobs", "Jobs"], ["terminal", "Terminal"],
  ["desktop", "Desktop"], ["cell", "Cell"], ["network", "Network & secrets"],
];
const ADMIN_VIEWS = [["users", "Users"], ["cells", "Cells"], ["audit", "Audit"]];

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let me = null;
let leave = null; // the current view's clean-up
let shown = 0; // which show() is the latest: an earlier, slower one gives way

function views() { return me && me.admin ? ADMIN_VIEWS : USER_VIEWS; }

async function show() {
  const ticket = ++shown;
  if (leave) { try { leave(); } catch { /* a view's own trouble */ } leave = null; }
  const names = views().map(([name]) => name);
  const wanted = location.hash.replace(/^#\/?/, "").split("/")[0];
  const name = names.includes(wanted) ? wanted : names[0];
  for (const link of nav.querySelectorAll("a")) {
    link.toggleAttribute("aria-current", link.dataset.view === name);
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
  }
  // Each view mounts into a fresh element: one that a newer show() replaced is left alone.
  const root = h("div", {class: "view"});
  clear(main, root);
  main.dataset.view = name;
  delete main.dataset.ready;
  try {
    const view = await import(`/static/js/views/${name}.js`);
    const cleanUp = (await view.mount(root, {me})) || null;
    if (ticket !== shown) { if (cleanUp) cleanUp(); return; }
    leave = cleanUp;
    performance.mark("agentcell:view", {detail: name}); // interactive (bench/web.py)
    main.dataset.ready = name; // the view has what it first shows
  } catch (error) {
    if (ticket === shown) clear(root, errorBox(error));
  }
}

function signedIn(session) {
  me = session.me;
  setCsrf(session.csrf_token);
  document.body.classList.add("signed-in");
  clear(who, h("span", {}, "Signed in as ", h("strong", {id: "who-name"}, me.admin ? "admin" : me.name)),
    h("button", {type: "button", id: "sign-out", onclick: signOut}, "Sign out"));
  clear(nav, views().map(([name, label]) =>
    h("a", {href: `#/${name}`, dataset: {view: name}}, label)));
  show();
}

async function signOut() {
  try { await call("DELETE", "/v1/session"); } catch { /* it has ended anyway */ }
  location.hash = "";
  location.reload();
}

function signInForm(problem) {
  document.body.classList.remove("signed-in");
  clear(nav);
  clear(who);
  const key = h("input", {id: "api-key", type: "password", autocomplete: "off", required: true,
    spellcheck: false, placeholder: "ac_…"});
  const status = h("div", {id: "sign-in-status", "aria-live": "polite"}, problem ? errorBox(problem) : null);
  const form = h("form", {id: "sign-in", class: "card narrow", onsubmit: async (e) => {
    e.preventDefault();
    try {
      const session = await call("POST", "/v1/session", {json: {api_key: key.value}});
      key.value = "";
      signedIn(session);
    } catch (error) {
      clear(status, errorBox(error));
      key.select();
    }
  }},
  h("h1", {}, "Sign in"),
  h("label", {for: "api-key"}, "API key"),
  key,
  h("p", {class: "hint"}, "Your API key (or, for the admin, the admin token). It is sent once and " +
    "traded for a sign-in of this browser; it is not kept by the page."),
  h("button", {type: "submit"}, "Sign in"),
  status);
  clear(main, form);
  key.focus();
}

window.addEventListener("hashchange", () => me && show());
window.addEventListener("agentcell:signed-out", () => signInForm(new ApiError(401, {error: {
  message: "your sign-in has ended", hint: "sign in again"}})));

get("/v1/session").then(signedIn, (error) => signInForm(error.status === 401 ? null : error));
