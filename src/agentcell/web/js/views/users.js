// Users (admin): who may use this server, their API keys (each shown once, when made or
// rotated), removing a user (their workspace only when asked), and the admin token itself.
import {del, get, post} from "/static/js/api.js";
import {clear, errorBox, h, when} from "/static/js/dom.js";
import {busy, field, row, shownOnce, table} from "/static/js/views/common.js";

const button = (id, text, onclick, extra = {}) => h("button", {type: "button", id, onclick, ...extra}, text);
const section = (id, title, ...children) => h("section", {class: "card", id, "aria-labelledby": `${id}-h`},
  h("h2", {id: `${id}-h`}, title), ...children);

export async function mount(root) {
  const box = h("div", {id: "users-box"}, h("p", {class: "muted"}, "Loading…"));
  const status = h("div", {id: "users-status", "aria-live": "polite"});
  const shown = h("div", {id: "user-key-box"}); // a key just made, shown once
  const load = async () => {
    try {
      showUsers(box, await get("/v1/users"), {status, shown, reload: load});
    } catch (error) {
      clear(status, errorBox(error));
    }
  };
  root.append(h("h1", {}, "Users"),
    section("users", "Users", addForm(shown, load), shown, status, box),
    section("admin-token-section", "The admin token", adminToken()));
  await load();
}

function addForm(shown, reload) {
  const name = h("input", {type: "text", required: true, maxlength: "64", autocomplete: "off",
    spellcheck: "false", placeholder: "alice"});
  const add = h("button", {type: "submit", id: "user-add-submit"}, "Add the user");
  const status = h("div", {id: "user-add-status", "aria-live": "polite"});
  return h("form", {id: "user-add", "aria-labelledby": "user-add-h", onsubmit: async (e) => {
    e.preventDefault();
    let made = null;
    if (await busy(add, "Adding…", status, async () => { made = await post("/v1/users", {name: name.value.trim()}); })) {
      name.value = "";
      clear(shown, shownOnce("user-key", `The API key of ${made.name}`, made.api_key));
      reload();
    }
  }},
  h("h3", {id: "user-add-h"}, "Add a user"),
  field("user-add-name", "Name", name),
  h("div", {class: "toolbar"}, add), status);
}

function showUsers(box, users, {status, shown, reload}) {
  if (!users.length) {
    clear(box, h("p", {class: "muted", id: "users-list-empty"}, "No users yet: add one above."));
    return;
  }
  clear(box, table("users-list", ["Name", "Id", "Key", "Created", "Actions"], users.map((u) => {
    const wipe = h("input", {type: "checkbox", id: `user-delete-workspace-${u.id}`});
    return row({id: `user-row-${u.id}`, dataset: {userId: u.id, name: u.name}},
      u.name, h("code", {}, u.id), u.key_prefix ? h("code", {}, `${u.key_prefix}…`) : "", when(u.created_at),
      h("div", {class: "toolbar"},
        button(`user-rotate-${u.id}`, "Rotate key", async (e) => {
          if (!confirm(`Make a new API key for ${u.name}? Their old key and sign-ins stop working.`)) return;
          let made = null;
          if (await busy(e.target, "Rotating…", status, async () => { made = await post(`/v1/users/${u.id}/key`); })) {
            clear(shown, shownOnce("user-key", `The new API key of ${u.name}`, made.api_key));
            reload();
          }
        }, {"aria-label": `Rotate the API key of ${u.name}`, class: "secondary"}),
        h("label", {class: "inline", for: wipe.id}, wipe, "also delete the workspace"),
        button(`user-remove-${u.id}`, "Remove", async (e) => {
          const also = wipe.checked ? " and DELETE their workspace (every file in it, for good)"
            : " (their workspace is kept)";
          if (!confirm(`Remove ${u.name} and their cell${also}?`)) return;
          const params = wipe.checked ? {delete_workspace: "true"} : undefined;
          if (await busy(e.target, "Removing…", status, () => del(`/v1/users/${u.id}`, params))) reload();
        }, {"aria-label": `Remove the user ${u.name}`, class: "danger"})));
  })));
}

function adminToken() {
  const status = h("div", {id: "admin-token-status", "aria-live": "polite"});
  const shown = h("div", {id: "admin-token-box"});
  const rotate = button("admin-token-rotate", "Rotate the admin token", async (e) => {
    if (!confirm("Make a new admin token? The old one stops working, and so do the admin's other sign-ins.")) return;
    let made = null;
    if (await busy(e.target, "Rotating…", status, async () => { made = await post("/v1/admin/token"); })) {
      clear(shown, shownOnce("admin-token", "The new admin token", made.api_key));
    }
  }, {class: "danger"});
  return [h("p", {class: "hint"}, "The server also writes the new token to its data dir's admin_token file. " +
    "This page stays signed in."), h("div", {class: "toolbar"}, rotate), status, shown];
}
