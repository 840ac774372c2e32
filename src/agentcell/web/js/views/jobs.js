// Jobs (DESIGN §9): start one (now, at a time, or by cron), the list and the schedules kept
// live, and at #/jobs/<id> a job's detail: state and log followed live, cancel, retry, delete,
// artifacts.
import {del, download, get, post, request} from "/static/js/api.js";
import {bytes, clear, errorBox, h, when} from "/static/js/dom.js";
import {badge, busy, every, field, row, syncTable} from "/static/js/views/common.js";

const POLL_MS = 1500;
const ENDED = ["succeeded", "failed", "cancelled", "timed_out", "interrupted"];
const LOG_MAX = 2_000_000; // characters of log the page keeps; the oldest go first

export async function mount(root) {
  const id = location.hash.replace(/^#\/?/, "").split("/")[1];
  return id ? detail(root, decodeURIComponent(id)) : overview(root);
}

const button = (id, text, onclick, extra = {}) => h("button", {type: "button", id, onclick, ...extra}, text);
const select = (options) => h("select", {}, options.map(([value, text]) => h("option", {value}, text)));
const section = (id, title, ...children) => h("section", {class: "card", "aria-labelledby": `${id}-h`},
  h("h2", {id: `${id}-h`}, title), ...children);

// --- the list, the form, the schedules -----------------------------------------------------

async function overview(root) {
  const jobs = h("div", {id: "job-list-box"});
  const schedules = h("div", {id: "schedule-list-box"});
  const listStatus = h("div", {id: "job-list-status", "aria-live": "polite"});
  const scheduleStatus = h("div", {id: "schedule-status", "aria-live": "polite"});
  const load = async () => {
    try {
      const [j, s] = await Promise.all([get("/v1/jobs", {limit: 100}), get("/v1/schedules")]);
      clear(listStatus);
      syncTable(jobs, "job-list", ["Name", "Kind", "State", "Created", "Ended", "Exit code"],
        j.jobs, (job) => job.id, jobRow, "No jobs yet: start one above.");
      syncTable(schedules, "schedule-list",
        ["Name", "When", "Next run", "Fires", "Last job", "State", "Actions"], s.schedules,
        (one) => one.id, (one) => scheduleRow(one, scheduleStatus, load),
        "No schedules: give a job a time or a cron expression to make one.");
    } catch (error) {
      clear(listStatus, errorBox(error));
    }
  };
  root.append(h("h1", {}, "Jobs"), jobForm(load),
    section("jobs", "Your jobs", listStatus, jobs),
    section("schedules", "Schedules", scheduleStatus, schedules));
  const stop = every(POLL_MS, load, jobs);
  await stop.first; // the view is ready once it shows the jobs
  return stop;
}

function jobRow(job) {
  const kind = job.kind === "exec" ? `exec · ${job.file ? "file" : job.language}` : "agent";
  return row({id: `job-row-${job.id}`, dataset: {jobId: job.id}},
    h("a", {href: `#/jobs/${job.id}`, class: "job-link"}, job.name || job.id),
    kind, badge(job.state), when(job.created_at), when(job.ended_at), job.exit_code ?? "");
}

function scheduleRow(one, status, reload) {
  const act = (verb, text, progress, confirmText) => button(`schedule-${verb}-${one.id}`, text,
    async (e) => {
      if (confirmText && !confirm(confirmText)) return;
      const call = verb === "delete" ? () => del(`/v1/schedules/${one.id}`)
        : () => post(`/v1/schedules/${one.id}/${verb}`);
      if (await busy(e.target, progress, status, call)) reload();
    }, {"aria-label": `${text} the schedule ${one.name}`, class: verb === "delete" ? "danger" : "secondary"});
  return row({id: `schedule-row-${one.id}`},
    one.name,
    one.kind === "cron" ? h("code", {}, `${one.cron} (${one.tz})`) : `at ${when(one.at)}`,
    one.next_run_at ? when(one.next_run_at) : h("span", {class: "muted"}, "never again"),
    `${one.fires}` + (one.skips ? ` (${one.skips} skipped${one.last_skip_reason ? ": " + one.last_skip_reason : ""})` : ""),
    one.last_job_id ? h("a", {href: `#/jobs/${one.last_job_id}`}, one.last_job_id) : "",
    badge(one.paused ? "paused" : "active"),
    h("div", {class: "toolbar"},
      one.paused ? act("resume", "Resume", "Resuming…") : act("pause", "Pause", "Pausing…"),
      act("delete", "Delete", "Deleting…", `Delete the schedule “${one.name}”? The jobs it started stay.`)));
}

function jobForm(reload) {
  const kind = select([["exec", "Run code (exec)"], ["agent", "Ask the agent (agent)"]]);
  const language = select([["python", "Python"], ["shell", "Shell (bash)"]]);
  const code = h("textarea", {rows: 6, spellcheck: "false", class: "code", placeholder: "print('hello')"});
  const prompt = h("textarea", {rows: 4, placeholder: "What the agent is to do"});
  const name = h("input", {type: "text", maxlength: "100", placeholder: "from the code or prompt"});
  const timeout = h("input", {type: "number", min: "1", step: "any", placeholder: "the server's default"});
  const schedule = select([["now", "Now"], ["at", "Once, at a time"], ["cron", "Repeatedly (cron)"]]);
  const at = h("input", {type: "datetime-local"});
  const cron = h("input", {type: "text", spellcheck: "false", placeholder: "0 6 * * 1-5"});
  const tz = h("input", {type: "text", value: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"});
  const submit = h("button", {type: "submit", id: "job-submit"}, "Start the job");
  const status = h("div", {id: "job-form-status", "aria-live": "polite"});
  const execPart = h("div", {id: "job-exec-fields"}, field("job-language", "Language", language),
    field("job-code", "Code", code, "Ctrl+Enter starts it."));
  const agentPart = h("div", {id: "job-agent-fields"}, field("job-prompt", "Prompt", prompt));
  const atPart = h("div", {id: "job-at-fields"}, field("job-at", "At (your local time)", at));
  const cronPart = h("div", {id: "job-cron-fields"},
    field("job-cron", "Cron: minute hour day month weekday", cron),
    field("job-tz", "Time zone", tz, "An IANA name, e.g. Europe/Paris."));
  const toggle = () => { // hidden fields must not be required, or the form never submits
    const exec = kind.value === "exec";
    execPart.hidden = !exec; agentPart.hidden = exec;
    code.required = exec; prompt.required = !exec;
    atPart.hidden = schedule.value !== "at"; at.required = !atPart.hidden;
    cronPart.hidden = schedule.value !== "cron"; cron.required = !cronPart.hidden;
  };
  kind.addEventListener("change", toggle);
  schedule.addEventListener("change", toggle);
  toggle();
  const form = h("form", {id: "job-form", class: "card", "aria-labelledby": "job-form-h", onsubmit: async (e) => {
    e.preventDefault();
    const body = {kind: kind.value, name: name.value.trim()};
    if (body.kind === "exec") Object.assign(body, {language: language.value, code: code.value});
    else body.prompt = prompt.value;
    if (timeout.value) body.timeout_s = Number(timeout.value);
    if (schedule.value === "at") body.schedule = {at: new Date(at.value).toISOString()};
    if (schedule.value === "cron") body.schedule = {cron: cron.value.trim(), tz: tz.value.trim() || "UTC"};
    let made = null;
    if (!await busy(submit, "Starting…", status, async () => { made = await post("/v1/jobs", body); })) return;
    if (made.object === "job") { location.hash = `#/jobs/${made.id}`; return; }
    clear(status, h("p", {id: "job-scheduled"}, `Scheduled “${made.name}”: next run ${when(made.next_run_at)}.`));
    reload();
  }},
  h("h2", {id: "job-form-h"}, "Start a job"),
  field("job-kind", "Kind", kind), execPart, agentPart,
  field("job-name", "Name (optional)", name),
  field("job-timeout", "Timeout in seconds (optional)", timeout),
  field("job-when", "When", schedule), atPart, cronPart,
  h("div", {class: "toolbar"}, submit), status);
  for (const area of [code, prompt]) {
    area.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); form.requestSubmit(); }
    });
  }
  return form;
}

// --- one job ---------------------------------------------------------------------------------

async function detail(root, id) {
  const path = `/v1/jobs/${encodeURIComponent(id)}`;
  const title = h("h1", {id: "job-name"}, id);
  const state = h("span", {id: "job-state", "aria-live": "polite"}, "…");
  const info = h("dl", {id: "job-info", class: "facts"});
  const source = h("pre", {id: "job-source", class: "code"});
  const events = h("ol", {id: "job-events"});
  const log = h("pre", {id: "job-log", class: "log", tabindex: "0", "aria-label": "The job's log"});
  const logStatus = h("p", {id: "job-log-status", class: "muted", "aria-live": "polite"});
  const status = h("div", {id: "job-action-status", "aria-live": "polite"});
  const artifacts = h("div", {id: "job-artifacts"});
  let job = null, shown = "", ended = false;
  const show = (next) => {
    job = next;
    const sig = JSON.stringify(job);
    if (sig === shown) return;
    shown = sig;
    title.textContent = job.name || job.id;
    clear(state, badge(job.state), job.reason ? h("span", {class: "muted", id: "job-reason"}, ` ${job.reason}`) : null);
    clear(info, facts(job));
    source.textContent = job.kind === "agent" ? job.prompt : job.code || `(the file ${job.file})`;
    clear(events, job.events.map((ev) => h("li", {}, when(ev.at), " ", badge(ev.state), ev.reason ? ` ${ev.reason}` : "")));
    cancel.disabled = ENDED.includes(job.state);
    retry.disabled = !ENDED.includes(job.state);
    // Its files once it has ended (its folder may not be there yet while it starts); Refresh
    // lists them before.
    if (ENDED.includes(job.state) && !ended) listFiles();
    ended = ENDED.includes(job.state);
  };
  const name = () => (job ? job.name : id);
  const act = (label, ask, fn) => async (e) => { // progress on the button, then the state again
    if (ask && !confirm(ask())) return;
    await busy(e.target, label, status, fn);
    if (job) { shown = ""; show(job); }
  };
  const cancel = button("job-cancel", "Cancel", act("Cancelling…",
    () => `Cancel the job “${name()}”? Its processes are killed.`,
    async () => show(await post(`${path}/cancel`))), {disabled: true, class: "danger"});
  const retry = button("job-retry", "Retry", act("Retrying…", null, async () => {
    location.hash = `#/jobs/${(await post(`${path}/retry`)).id}`;
  }), {disabled: true, class: "secondary"});
  const remove = button("job-delete", "Delete", act("Deleting…",
    () => `Delete the job “${name()}”, its log and its default output folder?`, async () => {
      await del(path);
      location.hash = "#/jobs";
    }), {class: "danger"});
  root.append(h("p", {}, h("a", {href: "#/jobs", id: "job-back"}, "← All jobs")),
    h("section", {id: "job-detail", class: "card", "aria-labelledby": "job-name"}, title,
      h("div", {class: "toolbar"}, state, cancel, retry, remove), status, info,
      h("details", {}, h("summary", {}, "What it runs"), source)),
    section("job-log-section", "Log", logStatus, log),
    section("job-artifacts-section", "Artifacts", artifacts),
    section("job-events-section", "State changes", events));
  const listFiles = () => listArtifacts(artifacts, job || {id, output_dir: null}, listFiles);
  listFiles();
  const stopLog = followLog(path, log, logStatus);
  const stopPoll = every(POLL_MS, async () => {
    try { show(await get(path)); } catch (error) { clear(status, errorBox(error)); }
  }, log);
  await stopPoll.first;
  return () => { stopPoll(); stopLog(); };
}

function facts(job) {
  const pairs = [
    ["Kind", job.kind === "exec" ? `exec (${job.file ? "file" : job.language})` : "agent"],
    ["Created", when(job.created_at)], ["Started", when(job.started_at)], ["Ended", when(job.ended_at)],
    ["Exit code", job.exit_code ?? ""], ["Timeout", `${job.timeout_s} s`],
    ["Attempt", job.retry_of ? h("span", {}, `${job.attempt}, retry of `,
      h("a", {href: `#/jobs/${job.retry_of}`}, job.retry_of)) : String(job.attempt)],
    ["Output folder", h("code", {}, job.output_dir)], ["Log", bytes(job.log_bytes)],
  ];
  if (job.schedule_id) pairs.push(["Schedule", job.schedule_id]);
  return pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {dataset: {fact: k}}, v)]);
}

// Follow the log by SSE: EventSource resumes by itself with Last-Event-ID (the offset); when
// the server refused the stream, ask it why by a plain GET, or try again from our offset.
function followLog(path, pre, status) {
  let source = null, offset = 0, kept = 0, done = false, timer = null;
  const append = (text) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    pre.append(text);
    kept += text.length;
    if (kept > LOG_MAX) {
      pre.textContent = "[… earlier output left out …]\n" + pre.textContent.slice(-LOG_MAX / 2);
      kept = pre.textContent.length;
    }
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  };
  const open = () => {
    source = new EventSource(`${path}/logs?offset=${offset}`);
    status.textContent = "Following the log…";
    source.addEventListener("log", (e) => {
      const chunk = JSON.parse(e.data);
      offset = chunk.offset;
      append(chunk.text);
      status.textContent = "Following the log…";
    });
    source.addEventListener("end", (e) => {
      const end = JSON.parse(e.data);
      done = true;
      source.close();
      status.textContent = `The job has ended (${end.state}); this is its whole log.`;
      if (!pre.textContent) pre.textContent = "(no output)";
    });
    source.addEventListener("error", async (e) => {
      if (e.data) { done = true; source.close(); clear(status, errorBox(JSON.parse(e.data))); return; }
      if (source.readyState !== EventSource.CLOSED) { status.textContent = "Reconnecting…"; return; }
      try {
        await request("GET", `${path}/logs`, {params: {offset}});
        if (!done) timer = setTimeout(open, 2000);
      } catch (error) {
        clear(status, errorBox(error));
      }
    });
  };
  open();
  return () => { done = true; clearTimeout(timer); if (source) source.close(); };
}

// The job's output folder, file by file, and the whole of it as its artifacts' ZIP.
async function listArtifacts(box, job, again) {
  const status = h("div", {id: "job-artifacts-status", "aria-live": "polite"});
  const zip = button("job-artifacts-zip", "Download all (ZIP)", (e) => busy(e.target, "Downloading…", status,
    () => download(`/v1/jobs/${encodeURIComponent(job.id)}/artifacts`, undefined, `${job.id}.zip`)));
  const refresh = button("job-artifacts-refresh", "Refresh", again, {class: "secondary"});
  const bar = h("div", {class: "toolbar"}, zip, refresh);
  if (!job.output_dir) { // until the job's own answer
    clear(box, h("p", {class: "muted"}, "Listed when the job has ended."), bar, status);
    return;
  }
  let entries = [];
  try {
    entries = (await get("/v1/files", {path: job.output_dir})).entries;
  } catch (error) {
    if (error.status !== 404) { clear(box, bar, errorBox(error)); return; }
  }
  const items = entries.map((entry, i) => h("li", {},
    h("span", {class: "name"}, entry.name + (entry.type === "dir" ? "/" : "")), " ",
    h("span", {class: "muted"}, entry.type === "dir" ? "folder" : bytes(entry.size)), " ",
    button(`job-artifact-${i}`, "Download", (e) => busy(e.target, "Downloading…", status,
      () => entry.type === "dir" ? download("/v1/files/zip", {path: entry.path}, `${entry.name}.zip`)
        : download("/v1/files/raw", {path: entry.path}, entry.name)),
    {"aria-label": `Download ${entry.name}`, dataset: {path: entry.path}, class: "secondary"})));
  clear(box, items.length ? h("ul", {id: "job-artifact-list"}, items)
    : h("p", {class: "muted", id: "job-artifacts-empty"}, `Nothing in ${job.output_dir} yet.`), bar, status);
}
