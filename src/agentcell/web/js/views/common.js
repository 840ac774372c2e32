// What the jobs, cell, network and admin views share: labelled fields, busy buttons, tables,
// state badges, polling, and a secret shown once. Not a view itself (app.js never routes here).
import {clear, errorBox, h} from "/static/js/dom.js";

// A label, its control and an optional hint, in one block.
export function field(id, text, control, hint) {
  control.id = id;
  return h("div", {class: "field"}, h("label", {for: id}, text), control,
    hint ? h("p", {class: "hint", id: `${id}-hint`}, hint) : null);
}

export function badge(state) {
  return h("span", {class: `badge state-${state}`}, state);
}

// Run fn with the button disabled and saying what it does; its error goes into `status`.
// True when fn succeeded.
export async function busy(button, label, status, fn) {
  const text = button.textContent;
  button.disabled = true;
  button.textContent = label;
  if (status) clear(status);
  try {
    await fn();
    return true;
  } catch (error) {
    if (!status) throw error;
    clear(status, errorBox(error));
    return false;
  } finally {
    button.disabled = false;
    button.textContent = text;
  }
}

// <table class="table" id=…> with a header row; rows are <tr> elements (or null).
export function table(id, headers, rows, caption) {
  return h("div", {class: "table-wrap"}, h("table", {class: "table", id},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", {scope: "col"}, name)))),
    h("tbody", {}, rows)));
}

export function row(props, ...cells) {
  return h("tr", props, cells.map((cell) => h("td", {}, cell)));
}

// A polled table whose unchanged rows stay in place (focus and selection survive refreshes):
// make(item) builds an item's <tr>, rebuilt only when the item's JSON has changed.
export function syncTable(box, id, headers, items, keyOf, make, empty) {
  if (!items.length) {
    if (!box.querySelector(`#${id}-empty`)) clear(box, h("p", {class: "muted", id: `${id}-empty`}, empty));
    return;
  }
  let body = box.querySelector(`#${id} > tbody`);
  if (!body) {
    clear(box, table(id, headers, []));
    body = box.querySelector("tbody");
  }
  const focused = body.contains(document.activeElement) ? document.activeElement.id : "";
  const old = new Map([...body.children].map((tr) => [tr.dataset.key, tr]));
  const rows = items.map((item) => {
    const key = String(keyOf(item)), sig = JSON.stringify(item);
    const kept = old.get(key);
    if (kept && kept.dataset.sig === sig) return kept;
    const tr = make(item);
    Object.assign(tr.dataset, {key, sig});
    return tr;
  });
  const now = [...body.children];
  if (rows.length === now.length && rows.every((tr, i) => tr.dataset.key === now[i].dataset.key)) {
    rows.forEach((tr, i) => tr !== now[i] && now[i].replaceWith(tr)); // same order: swap changed
  } else {
    body.replaceChildren(...rows);
  }
  const again = focused && !body.contains(document.activeElement) && document.getElementById(focused);
  if (again) again.focus(); // a rebuilt row keeps the keyboard where it was
}

// Call fn now and then every `ms` after it has answered (never two at once); a hidden tab
// skips its turns. Returns the stop function, for a view's clean-up (it also stops by itself
// once `mine`, an element of the view, has left the page); `stop.first` settles after the
// first call, for a mount to wait on.
export function every(ms, fn, mine) {
  let timer = null, stopped = false;
  const tick = async () => {
    if (mine && !mine.isConnected) stopped = true;
    if (stopped) return;
    if (!document.hidden) {
      try { await fn(); } catch { /* fn shows its own errors */ }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  const stop = () => { stopped = true; clearTimeout(timer); };
  stop.first = tick();
  return stop;
}

// A key or token the API shows this once: a read-only field, Copy, and a warning.
export function shownOnce(id, title, secret) {
  const value = h("input", {id: `${id}-value`, type: "text", readonly: true, value: secret,
    spellcheck: "false", autocomplete: "off", class: "secret-once"});
  const copied = h("span", {class: "muted", id: `${id}-copied`, "aria-live": "polite"});
  const box = h("div", {class: "card shown-once", id, role: "status"},
    h("h3", {}, title),
    h("p", {class: "warning"}, "It is shown this once: copy it now and keep it safe. " +
      "It cannot be shown again (rotate it to get a new one)."),
    h("label", {for: value.id}, title),
    h("div", {class: "toolbar"}, value,
      h("button", {type: "button", id: `${id}-copy`, onclick: () => copy(value, copied)}, "Copy"),
      h("button", {type: "button", id: `${id}-done`, class: "secondary", onclick: () => box.remove()}, "Done"),
      copied));
  value.addEventListener("focus", () => value.select());
  return box;
}

async function copy(input, said) {
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select(); // no clipboard API here (not a secure context): the old way
    document.execCommand("copy");
  }
  said.textContent = "Copied";
}

// Lines or commas of a textarea as a list; and back.
export function list(text) {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

export function lines(items) {
  return (items || []).join("\n");
}
