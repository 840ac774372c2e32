// The workspace: browse, preview (text, code, images, markdown, CSV as a table), upload
// (drag and drop, folders: zipped here, unpacked in the cell by /v1/files/extract), download,
// delete, ZIP.
import {zipSync} from "/vendor/fflate.js";
import {del, download, get, request, upload} from "/static/js/api.js";
import {bytes, clear, errorBox, h, when} from "/static/js/dom.js";
import {csvRows, markdown} from "/static/js/render.js";

const PREVIEW_MAX = 2 * 1024 * 1024;
const IMAGES = {png: "image/png", jpg: "image/jpeg", jpeg: "image/jpeg", gif: "image/gif",
  webp: "image/webp", svg: "image/svg+xml"};

export async function mount(root) {
  let folder = decodeURIComponent(location.hash.split("/").slice(2).join("/")) || ".";
  const crumbs = h("nav", {class: "crumbs", "aria-label": "Folder"});
  const table = h("tbody", {id: "file-list"});
  const preview = h("section", {id: "file-preview", class: "card", "aria-live": "polite"},
    h("p", {class: "muted"}, "Choose a file to preview it."));
  const status = h("div", {id: "file-status", "aria-live": "polite"});
  const picker = h("input", {type: "file", id: "file-input", multiple: true, class: "visually-hidden",
    onchange: () => { uploadFiles([...picker.files].map((f) => [f.name, f])); picker.value = ""; }});
  const folderPicker = h("input", {type: "file", id: "folder-input", webkitdirectory: true,
    class: "visually-hidden", onchange: () => {
      uploadFolder([...folderPicker.files].map((f) => [f.webkitRelativePath, f])); folderPicker.value = "";
    }});
  const drop = h("section", {id: "file-drop", class: "card"},
    h("div", {class: "toolbar"}, crumbs, h("span", {class: "grow"}),
      h("label", {class: "button", for: "file-input"}, "Upload files"), picker,
      h("label", {class: "button", for: "folder-input"}, "Upload a folder"), folderPicker,
      h("button", {type: "button", id: "file-zip", class: "secondary",
        onclick: () => guarded(() => download("/v1/files/zip", {path: folder}, zipName(folder)))},
      "Download as ZIP")),
    h("p", {class: "hint"}, "Drop files or folders here to upload them into this folder."),
    status,
    h("div", {class: "table-wrap"}, h("table", {class: "table"},
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Size"), h("th", {}, "Modified"),
        h("th", {}, h("span", {class: "visually-hidden"}, "Actions")))), table)));
  clear(root, h("div", {class: "files"}, drop, preview));

  async function guarded(work) {
    try { await work(); } catch (error) { clear(status, errorBox(error)); }
  }

  async function list() {
    clear(status);
    clear(crumbs, crumbTrail(folder, go));
    let entries = [], cursor = "";
    do {
      const page = await get("/v1/files", cursor ? {path: folder, cursor} : {path: folder});
      entries = entries.concat(page.entries);
      cursor = page.next_cursor;
    } while (cursor);
    entries.sort((a, b) => (a.type === "dir") === (b.type === "dir") ? a.name.localeCompare(b.name)
      : a.type === "dir" ? -1 : 1);
    clear(table, entries.length ? entries.map(row) : h("tr", {}, h("td", {colspan: 4, class: "muted"}, "Empty folder")));
  }

  function row(entry) {
    const isDir = entry.type === "dir";
    const name = h("button", {type: "button", class: "secondary link", dataset: {path: entry.path},
      onclick: () => isDir ? go(entry.path) : show(entry)}, isDir ? `${entry.name}/` : entry.name);
    const save = h("button", {type: "button", class: "secondary", "aria-label": `Download ${entry.name}`,
      onclick: () => guarded(() => isDir ? download("/v1/files/zip", {path: entry.path}, zipName(entry.path))
        : download("/v1/files/raw", {path: entry.path}, entry.name))}, "Download");
    const remove = h("button", {type: "button", class: "danger", "aria-label": `Delete ${entry.name}`,
      onclick: () => confirm(`Delete ${entry.path}${isDir ? " and everything in it" : ""}?`) &&
        guarded(async () => { await del("/v1/files", {path: entry.path, recursive: isDir}); await list(); })},
    "Delete");
    return h("tr", {}, h("td", {}, name), h("td", {}, isDir ? "" : bytes(entry.size)),
      h("td", {}, when(entry.modified_at)), h("td", {}, h("div", {class: "toolbar nowrap"}, save, remove)));
  }

  function go(path) {
    folder = path || ".";
    history.replaceState(null, "", `#/files/${folder === "." ? "" : encodeURI(folder)}`);
    guarded(list);
  }

  let showing = 0; // the latest preview asked for: a slower earlier one is dropped

  async function show(entry) {
    const ticket = ++showing;
    clear(preview, h("h2", {}, entry.name));
    if (entry.size > PREVIEW_MAX) {
      preview.append(h("p", {class: "muted"}, `Too large to preview (${bytes(entry.size)}); download it.`));
      return;
    }
    try {
      const blob = await (await request("GET", "/v1/files/raw", {params: {path: entry.path}})).blob();
      const shown = await rendered(entry.name, blob);
      if (ticket === showing) preview.append(shown);
    } catch (error) { if (ticket === showing) preview.append(errorBox(error)); }
  }

  async function uploadFiles(files) {
    for (const [name, file] of files) {
      const bar = progressRow(status, name);
      const path = folder === "." ? name : `${folder}/${name}`;
      try { await upload("PUT", "/v1/files/raw", {path}, file, bar); }
      catch (error) { status.append(errorBox(error)); }
    }
    await guarded(list);
  }

  async function uploadFolder(files) {
    if (!files.length) return;
    const bar = progressRow(status, `${files.length} files (as one ZIP)`);
    const entries = {};
    for (const [path, file] of files) entries[path] = [new Uint8Array(await file.arrayBuffer()), {level: 0}];
    const archive = new Blob([zipSync(entries)], {type: "application/zip"});
    try { await upload("POST", "/v1/files/extract", {path: folder}, archive, bar); }
    catch (error) { status.append(errorBox(error)); }
    await guarded(list);
  }

  for (const type of ["dragenter", "dragover"]) drop.addEventListener(type, (e) => {
    e.preventDefault(); drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    const items = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry());
    if (items.some((entry) => entry && entry.isDirectory)) uploadFolder(await walk(items));
    else uploadFiles([...e.dataTransfer.files].map((f) => [f.name, f]));
  });

  await guarded(list);
}

function zipName(path) { return `${path === "." ? "workspace" : path.split("/").pop()}.zip`; }

function crumbTrail(folder, go) {
  const parts = folder === "." ? [] : folder.split("/");
  return [h("button", {type: "button", onclick: () => go(".")}, "workspace"),
    ...parts.map((part, i) => [" / ", h("button", {type: "button",
      onclick: () => go(parts.slice(0, i + 1).join("/"))}, part)])];
}

function progressRow(status, name) {
  const bar = h("progress", {max: 1, value: 0, "aria-label": `Uploading ${name}`});
  status.append(h("div", {class: "upload-row"}, h("span", {}, name), bar));
  return (fraction) => { bar.value = fraction; };
}

// Files (with their paths) of dropped folders and files.
async function walk(entries, prefix = "") {
  const files = [];
  for (const entry of entries.filter(Boolean)) {
    if (entry.isFile) files.push([prefix + entry.name, await new Promise((ok, bad) => entry.file(ok, bad))]);
    else if (entry.isDirectory) {
      const reader = entry.createReader();
      let batch;
      do {
        batch = await new Promise((ok, bad) => reader.readEntries(ok, bad));
        files.push(...await walk(batch, `${prefix}${entry.name}/`));
      } while (batch.length);
    }
  }
  return files;
}

// A file as the preview shows it; nothing in it ever runs (HTML and SVG included).
async function rendered(name, blob) {
  const ext = (name.split(".").pop() || "").toLowerCase();
  if (IMAGES[ext]) {
    const url = URL.createObjectURL(new Blob([blob], {type: IMAGES[ext]}));
    return h("img", {src: url, alt: name, id: "file-image", onload: () => URL.revokeObjectURL(url)});
  }
  const text = await blob.text();
  if (text.includes("\u0000")) return h("p", {class: "muted"}, "A binary file: download it to open it.");
  if (ext === "md" || ext === "markdown") return h("div", {class: "markdown"}, markdown(text, {breaks: false}));
  if (ext === "csv") return csvTable(csvRows(text));
  return h("pre", {id: "file-text"}, h("code", {}, text));
}

function csvTable(rows) {
  const [head, ...body] = rows;
  return h("div", {class: "table-wrap"}, h("table", {class: "table", id: "file-csv"},
    h("thead", {}, h("tr", {}, (head || []).map((c) => h("th", {}, c)))),
    h("tbody", {}, body.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}
