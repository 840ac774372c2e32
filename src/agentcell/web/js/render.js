// Model output and file previews as HTML: markdown rendered by marked, then sanitized by
// DOMPurify before it touches the page. A script in a model's answer never runs here.
import DOMPurify from "/vendor/dompurify.js";
import {marked} from "/vendor/marked.js";

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed"],
  FORBID_ATTR: ["style"],
};

const RELAYED = /^\/v1\/cell\/ports\/(\d+)\//; // a page served from the user's cell

DOMPurify.addHook("afterSanitizeAttributes", (node) => {
  if (node.tagName === "A") {
    node.setAttribute("target", "_blank");
    node.setAttribute("rel", "noopener noreferrer");
    delete node.dataset.port; // only ours below
    const relayed = RELAYED.exec(node.getAttribute("href") || "");
    if (relayed) node.dataset.port = relayed[1]; // opened with a port token: openRelayed
  }
});

// Open a link to a page of the user's cell: on the preview origin, with a short-lived port
// token (the page's sign-in does not reach relayed pages, by design).
export async function openRelayed(link, post) {
  const tab = window.open("about:blank", "_blank");
  if (tab) tab.opener = null;
  try {
    const {url} = await post("/v1/cell/port-tokens", {port: Number(link.dataset.port)});
    const target = new URL(url, location.href);
    const wanted = new URL(link.getAttribute("href"), location.href);
    target.pathname = wanted.pathname;
    for (const [k, v] of wanted.searchParams) target.searchParams.set(k, v);
    if (tab) tab.location = target.href;
  } catch (error) {
    if (tab) tab.close();
    throw error;
  }
}

// `breaks`: a model's single newlines are line breaks; a markdown file's are not.
export function markdown(text, {breaks = true} = {}) {
  return DOMPurify.sanitize(marked.parse(text || "", {gfm: true, breaks}), PURIFY);
}

// A CSV as rows of cells (quoted fields, doubled quotes), at most `limit` rows.
export function csvRows(text, limit = 500) {
  const rows = [];
  let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length && rows.length < limit; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n") { row.push(field.replace(/\r$/, "")); rows.push(row); row = []; field = ""; }
    else field += c;
  }
  if (field || row.length) rows.push([...row, field]);
  return rows;
}
