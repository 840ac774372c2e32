// The API as the page calls it: the session cookie authenticates (HttpOnly: this code never
// sees it), and every change carries the session's CSRF token. Errors keep the API's shape.

let csrf = "";

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || "http_" + status;
    this.hint = error.hint || "";
  }
}

export function setCsrf(token) { csrf = token || ""; }

function headersFor(method, extra = {}) {
  const headers = {...extra};
  if (!["GET", "HEAD"].includes(method)) headers["X-CSRF-Token"] = csrf;
  return headers;
}

async function failure(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not ours: keep the status */ }
  return new ApiError(response.status, body);
}

export async function request(method, path, {json, body, params, headers, signal} = {}) {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  const extra = json !== undefined ? {"Content-Type": "application/json"} : {};
  const response = await fetch(url, {
    method,
    credentials: "same-origin",
    headers: headersFor(method, {...extra, ...headers}),
    body: json !== undefined ? JSON.stringify(json) : body,
    signal,
  });
  if (!response.ok) throw await failure(response);
  return response;
}

export async function call(method, path, options) {
  const response = await request(method, path, options);
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

export const get = (path, params) => call("GET", path, {params});
export const post = (path, json, params) => call("POST", path, {json, params});
export const put = (path, json, params) => call("PUT", path, {json, params});
export const del = (path, params) => call("DELETE", path, {params});

// Server-sent events of a POST (EventSource can only GET): onEvent(name, data) for each.
export async function stream(path, json, onEvent, signal) {
  const response = await request("POST", path, {
    json, signal, headers: {Accept: "text/event-stream"},
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).replace(/^ /, "");
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

// An upload with progress (fetch reports none): onProgress(fraction).
export function upload(method, path, params, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, `${path}?${new URLSearchParams(params)}`);
    xhr.setRequestHeader("X-CSRF-Token", csrf);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded / e.total);
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch { /* empty */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    xhr.onerror = () => reject(new ApiError(0, {error: {message: "the upload was cut off",
      hint: "check that the server runs, then try again"}}));
    xhr.send(blob);
  });
}

// Save what a GET answers as a file, without putting anything secret in a URL.
export async function download(path, params, name) {
  const response = await request("GET", path, {params});
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), {href: url, download: name});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
