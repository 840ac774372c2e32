// Network policy and secrets (DESIGN §10): what the cell may reach through the egress proxy,
// and secrets the proxy puts into requests to their hosts (the cell only holds a placeholder
// in the env var of the secret's name; values are never shown, not even to their owner).
import {del, get, put} from "/static/js/api.js";
import {clear, errorBox, h, when} from "/static/js/dom.js";
import {busy, field, lines, list, row, table} from "/static/js/views/common.js";

const MODES = [
  ["none", "None: no network at all"],
  ["allowlist", "Allow list: only the hosts below"],
  ["public", "Public: any public address"],
];
const SECRET_NAME = /^[A-Z_][A-Z0-9_]{0,63}$/;

const button = (id, text, onclick, extra = {}) => h("button", {type: "button", id, onclick, ...extra}, text);
const section = (id, title, ...children) => h("section", {class: "card", id, "aria-labelledby": `${id}-h`},
  h("h2", {id: `${id}-h`}, title), ...children);

export async function mount(root) {
  const policy = h("div", {id: "network-box"}, h("p", {class: "muted"}, "Loading…"));
  const secrets = h("div", {id: "secret-box"});
  const secretStatus = h("div", {id: "secret-status", "aria-live": "polite"});
  const loadSecrets = async () => {
    try {
      showSecrets(secrets, (await get("/v1/secrets")).secrets, secretStatus, loadSecrets);
    } catch (error) {
      clear(secretStatus, errorBox(error));
    }
  };
  root.append(h("h1", {}, "Network & secrets"),
    section("network", "Network policy", policy),
    section("secrets", "Secrets",
      h("p", {class: "hint"}, "The cell never holds a secret's value: its env var holds a placeholder, " +
        "which the egress proxy swaps for the value only in requests to the secret's hosts."),
      secretStatus, secrets, secretForm(loadSecrets)));
  try {
    policy.replaceChildren(policyForm(await get("/v1/cell/network")));
  } catch (error) {
    clear(policy, errorBox(error));
  }
  await loadSecrets();
}

function policyForm(current) {
  const rank = MODES.findIndex(([m]) => m === current.ceiling);
  const mode = h("select", {}, MODES.map(([value, text], i) =>
    h("option", {value, disabled: i > rank}, i > rank ? `${text} (above the admin's ceiling)` : text)));
  const allow = h("textarea", {rows: 5, spellcheck: "false", placeholder: "pypi.org\n*.githubusercontent.com"});
  const deny = h("textarea", {rows: 3, spellcheck: "false", placeholder: "example.com"});
  const source = h("p", {id: "network-source", class: "muted"});
  const status = h("div", {id: "network-status", "aria-live": "polite"});
  const save = h("button", {type: "submit", id: "network-save"}, "Save the policy");
  const fill = (p) => {
    mode.value = p.mode;
    allow.value = lines(p.allow);
    deny.value = lines(p.deny);
    source.textContent = (p.source === "user" ? "Your own policy." : "The admin's default policy (you set none).") +
      ` Widest mode allowed: ${p.ceiling}. Ports the cell may reach: ${p.ports.join(", ")}.`;
  };
  fill(current);
  const reset = button("network-reset", "Reset to the default", async (e) => {
    if (!confirm("Forget your own policy and use the admin's default?")) return;
    let p = null;
    if (await busy(e.target, "Resetting…", status, async () => { p = await del("/v1/cell/network"); })) {
      fill(p);
      clear(status, h("p", {class: "muted"}, "Back to the default policy."));
    }
  }, {class: "secondary"});
  return h("form", {id: "network-form", onsubmit: async (e) => {
    e.preventDefault();
    const body = {mode: mode.value, allow: list(allow.value), deny: list(deny.value)};
    let p = null;
    if (await busy(save, "Saving…", status, async () => { p = await put("/v1/cell/network", body); })) {
      fill(p);
      clear(status, h("p", {class: "muted", id: "network-saved"}, "Saved: it applies to the next connection."));
    }
  }},
  source,
  field("network-mode", "Mode", mode),
  field("network-allow", "Allowed hosts (allow list mode), one a line", allow,
    "A host name, or *.domain for every name below it (not the domain itself)."),
  field("network-deny", "Denied hosts, one a line", deny, "Refused in every mode; a denied host wins over an allowed one."),
  h("div", {class: "toolbar"}, save, reset), status);
}

function showSecrets(box, secrets, status, reload) {
  if (!secrets.length) {
    clear(box, h("p", {class: "muted", id: "secret-list-empty"}, "No secrets yet."));
    return;
  }
  clear(box, table("secret-list", ["Name", "Hosts", "In the cell", "Updated", ""], secrets.map((s) =>
    row({id: `secret-row-${s.name}`, dataset: {name: s.name}},
      h("code", {}, s.name), s.hosts.join(", "), h("code", {}, `$${s.name}`), when(s.updated_at),
      h("div", {class: "toolbar"},
        button(`secret-replace-${s.name}`, "Replace", () => {
          const name = document.getElementById("secret-name");
          name.value = s.name;
          document.getElementById("secret-hosts").value = s.hosts.join(", ");
          document.getElementById("secret-value").focus();
        }, {"aria-label": `Replace the secret ${s.name}`, class: "secondary"}),
        button(`secret-delete-${s.name}`, "Delete", async (e) => {
          if (!confirm(`Delete the secret ${s.name}? New execs and jobs no longer get it.`)) return;
          if (await busy(e.target, "Deleting…", status, () => del(`/v1/secrets/${s.name}`))) reload();
        }, {"aria-label": `Delete the secret ${s.name}`, class: "danger"}))))));
}

function secretForm(reload) {
  const name = h("input", {type: "text", required: true, spellcheck: "false", autocomplete: "off",
    pattern: SECRET_NAME.source, maxlength: "64", placeholder: "GITHUB_TOKEN"});
  const value = h("input", {type: "password", required: true, autocomplete: "new-password", spellcheck: "false"});
  const hosts = h("input", {type: "text", required: true, spellcheck: "false", placeholder: "api.github.com, *.github.com"});
  const save = h("button", {type: "submit", id: "secret-save"}, "Save the secret");
  const status = h("div", {id: "secret-form-status", "aria-live": "polite"});
  return h("form", {id: "secret-form", "aria-labelledby": "secret-form-h", onsubmit: async (e) => {
    e.preventDefault();
    const body = {value: value.value, hosts: list(hosts.value)};
    if (await busy(save, "Saving…", status, () => put(`/v1/secrets/${name.value}`, body))) {
      clear(status, h("p", {class: "muted", id: "secret-saved"},
        `Saved ${name.value}: new execs and jobs see it as $${name.value}.`));
      value.value = "";
      reload();
    }
  }},
  h("h3", {id: "secret-form-h"}, "Add or replace a secret"),
  field("secret-name", "Name (the env var in the cell)", name, "Capitals, digits and _, e.g. GITHUB_TOKEN."),
  field("secret-value", "Value (on one line; never shown again)", value),
  field("secret-hosts", "Hosts it may be sent to", hosts, "Separated by commas or spaces; *.domain for every name below."),
  h("div", {class: "toolbar"}, save), status);
}
