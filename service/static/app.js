// Loupe's web page: plain DOM code over the same /v2 API the clients use. A person signs in with user and
// password (an HttpOnly session cookie; writes send its CSRF token) and works in one of their apps through
// the user-scoped paths /v2/users/me/apps/{app}/...; or with one app's key, kept in sessionStorage (gone
// when the tab closes). Images are fetched with the same credential and shown as blob URLs.
"use strict";
const $ = (s) => document.querySelector(s);
const state = { key: sessionStorage.getItem("loupe-key") || "", mode: "", csrf: "", me: null, appId: "", role: "",
  app: null, page: 1, thumbs: new Map(), names: new Map(), training: new Set(), gridLoads: 0 };
// Loupe's account routes take no app prefix; every other /v2 path is the selected app's.
const ACCOUNT_PATHS = /^\/v2\/loupe\/(session|me|apps|tokens|users)(\/|\?|$)/;
// A closed model's answer is flagged when even the nearest labeled example is this dissimilar (cosine of
// EfficientNet-Lite vectors, measured on the demo photos with a hat/shoes model: held-out hats and shoes 0.42-0.78,
// other garments 0.33-0.54, Caltech-101 objects 0.28-0.41).
const OUT_OF_SCOPE = 0.4;
const COLOURS = ["#0b57d0", "#b3261e", "#1a7f37", "#8e24aa", "#e37400", "#00838f", "#5d4037", "#c2185b", "#455a64", "#827717"];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "style") node.style.cssText = v;  // CSSOM: the page's CSP refuses style attributes
    else if (v !== false && v != null) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c != null) node.append(c instanceof Node ? c : String(c));
  return node;
}

function svgEl(tag, attrs = {}, ...children) {
  const n = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  for (const c of children) n.append(c instanceof Node ? c : String(c));
  return n;
}

function scoped(path) {
  if (state.mode === "session" && path.startsWith("/v2/") && !ACCOUNT_PATHS.test(path)) {
    return `/v2/users/me/apps/${encodeURIComponent(state.appId)}/${path.slice(4)}`;
  }
  return path;
}
function authInit(method) {
  const headers = {};
  if (state.mode === "key") headers.Authorization = `Key ${state.key}`;
  else if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = state.csrf;
  return { method, headers, credentials: "same-origin" };
}
async function api(method, path, body) {
  const init = authInit(method);
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const r = await fetch(scoped(path), init);
  const data = await r.json().catch(() => ({ status: { description: `HTTP ${r.status}` } }));
  if (!r.ok) {
    const s = data.status || {};
    throw new Error([s.description, s.details].filter(Boolean).join(": ") || `HTTP ${r.status}`);
  }
  return data;
}

// Advice and suggestions are computed as jobs: a 202 says "computing", and the answer comes on a retry.
async function computedGet(path) {
  for (;;) {
    const data = await api("GET", path);
    if (!data.pending) return data;
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

// An error shows beside the control that caused it (the one given, else the last one used); only errors
// of no control (a reload's sign-in) use the banner at the top.
function showError(err, anchor = null) {
  for (const old of document.querySelectorAll(".error.inline")) old.remove();
  const e = $("#error");
  e.hidden = true;
  if (!err) return;
  const text = String(err.message || err);
  if (anchor && anchor.isConnected) {
    anchor.insertAdjacentElement("afterend", el("span", { class: "error inline", role: "alert" }, text));
  } else { e.textContent = text; e.hidden = false; }
}
async function guarded(fn, anchor = null) {
  const at = anchor || state.lastControl;
  showError(null);
  try { await fn(); } catch (err) { showError(err, at); }
}
// A friendly "what to do next" where a view has nothing to show, with the button that does it.
function emptyState(text, view, label = null) {
  const labels = { models: "Go to Models", inputs: "Add photos", predict: "Predict" };
  return el("div", { class: "empty" }, el("p", {}, text),
    view ? el("button", { type: "button", class: "primary", onclick: () => showView(view) }, label || labels[view] || "Go") : "");
}

async function thumb(inputId) {
  if (!state.thumbs.has(inputId)) {
    state.thumbs.set(inputId, fetch(scoped(`/v2/inputs/${encodeURIComponent(inputId)}/thumbnail`), authInit("GET"))
      .then((r) => r.ok ? r.blob() : null)
      .then((b) => b ? URL.createObjectURL(b) : ""));
  }
  return state.thumbs.get(inputId);
}
function thumbImg(inputId, alt) {
  const img = el("img", { alt: alt || `input ${inputId}` });
  thumb(inputId).then((src) => { img.src = src; });
  return img;
}
const fileBase64 = (file) => new Promise((ok, fail) => {
  const reader = new FileReader();
  reader.onload = () => ok(String(reader.result).split(",", 2)[1]);
  reader.onerror = () => fail(reader.error);
  reader.readAsDataURL(file);
});
const split = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
const GENERAL_MODEL = "aaa03c23b3724a16a56b629203edc62c";
// What a person reads for an input: its file name, else the last part of its source, else its id.
function inputName(input) {
  const md = (input.data && input.data.metadata) || {};
  if (md.filename) return String(md.filename);
  const url = input.data && input.data.image && input.data.image.url;
  if (url && !url.includes("/v2/inputs/")) return url.split("/").pop() || url;
  return input.id;
}
async function nameOf(inputId) {
  if (!state.names.has(inputId)) {
    state.names.set(inputId, api("GET", `/v2/inputs/${encodeURIComponent(inputId)}`).then((r) => inputName(r.input))
      .catch(() => inputId));
  }
  return state.names.get(inputId);
}
function nameSpan(inputId, suffix = "") {
  const span = el("span", { class: "name", title: inputId }, inputId.length > 20 ? "…" : inputId);
  nameOf(inputId).then((n) => { span.textContent = n + suffix; });
  return span;
}
function notice(text) {
  const n = el("p", { class: "notice", role: "status" }, text, " ",
    el("button", { type: "button", class: "dismiss", "aria-label": "dismiss", onclick: () => n.remove() }, "×"));
  $("#notices").append(n);
  setTimeout(() => n.remove(), 15000);
}
const pct = (v) => `${(100 * v).toFixed(1)}%`;

// ---------------------------------------------------------------- sign in and overview
async function refresh(force = true) {
  const { app } = await api("GET", "/v2/loupe/app");
  const signature = JSON.stringify(app);
  if (!force && signature === state.signature) return;  // polling: nothing changed, keep the page as it is
  state.signature = signature;
  const before = state.app ? Object.fromEntries(state.app.models.map((m) => [m.id, m.latest_version.id])) : {};
  for (const m of app.models) {  // a version that appeared without a train click here: the background retrain
    const v = m.latest_version;
    if (before[m.id] && before[m.id] !== v.id && v.status === "trained" && !state.training.has(m.id)) {
      notice(`Model ${m.id} was retrained in the background after label edits: version ${v.id.slice(0, 8)} is live.`);
    }
  }
  state.app = app;
  state.role = app.role;
  $("#app-summary").textContent = `App ${app.id} — backbone ${app.backbone} — ${app.input_count} inputs — ` +
    (state.mode === "session" ? `${state.me.user.name}, ${app.role}` : `key scope ${app.scope}`);
  const ct = $("#concepts-table tbody"); ct.replaceChildren();
  for (const c of app.concepts) ct.append(el("tr", {}, el("td", {}, c.name), el("td", {}, c.positives), el("td", {}, c.negatives)));
  const mt = $("#models-overview tbody"); mt.replaceChildren();
  for (const m of app.models) {
    const v = m.latest_version;
    mt.append(el("tr", { "data-model": m.id }, el("td", {}, m.id), el("td", {}, m.concept_ids.join(", ")),
      el("td", {}, v.id), el("td", { class: "status" }, v.status, v.detail ? ` (${v.detail})` : ""),
      el("td", {}, v.status === "trained" ? `${v.train_seconds} s` : "")));
  }
  const filter = $("#filter"), chosen = filter.value;
  filter.replaceChildren(el("option", { value: "" }, "All inputs"), ...app.concepts.map((c) => el("option", { value: c.id }, c.name)));
  filter.value = chosen;
  const ticked = new Set([...document.querySelectorAll("#model-concepts input:checked")].map((b) => b.value));
  $("#model-concepts").replaceChildren(el("legend", {}, "Concepts"), ...app.concepts.map((c) =>
    el("label", {}, el("input", { type: "checkbox", value: c.id, name: "concept", checked: ticked.has(c.id) }), ` ${c.name}`)));
  for (const sel of ["#predict-model", "#eval-model", "#advice-model", "#next-model", "#review-model"]) {
    const s = $(sel), was = s.value;
    s.replaceChildren(...app.models.map((m) => el("option", { value: m.id }, m.id)));
    if (sel === "#predict-model") s.append(el("option", { value: GENERAL_MODEL }, app.supports_text ?
      "General (zero-shot over this app's concepts)" : "General (1,000 ImageNet concepts, built in)"));
    if (was) s.value = was;
  }
  renderModels();
  $("#search-text").disabled = $("#search-text-go").disabled = !app.supports_text;
  renderChecklist(app);
  emptyStates();
  renderPalette();
}

// The overview's first-run checklist: each step done or the button to do it.
function renderChecklist(app) {
  const trained = app.models.some((m) => m.latest_version && m.latest_version.status === "trained");
  const steps = [
    ["Add photos", app.input_count > 0, "inputs", "Add photos"],
    ["Label a few per concept", app.concepts.some((c) => c.positives > 0), "inputs", "Label photos"],
    ["Create a model over your concepts", app.models.length > 0, "models", "Create a model"],
    ["Train it", trained, "models", "Train"],
    ["Predict a new photo", state.predicted || !!localStorage.getItem(`loupe-predicted-${app.id}`), "predict", "Predict"],
  ];
  const list = $("#checklist");
  const done = steps.filter((s) => s[1]).length;
  list.hidden = done === steps.length;
  list.replaceChildren(el("h2", {}, `Getting started (${done} of ${steps.length})`), el("ol", {}, steps.map(([text, ok, view, label]) =>
    el("li", { class: ok ? "done" : "todo" }, el("span", { class: "mark", "aria-hidden": "true" }, ok ? "✓" : "○"), ` ${text} `,
      ok ? el("span", { class: "sr-only" }, "(done)") : el("button", { type: "button", onclick: () => showView(view) }, label)))));
}

// Views that need a (trained) model say so, with the way there, instead of failing.
function emptyStates() {
  const app = state.app, trained = app.models.filter((m) => m.latest_version && m.latest_version.status === "trained");
  const say = (view, text, to, label) => {
    const box = $(`#view-${view} .empty-state`);
    box.replaceChildren(...(text ? [emptyState(text, to, label)] : []));
    for (const c of $(`#view-${view}`).querySelectorAll(".needs-model")) c.hidden = !!text;
  };
  const none = !app.models.length ? "No model yet: create one over your concepts first." : "";
  const untrained = !none && !trained.length ? "No model is trained yet: train one first." : "";
  for (const view of ["evaluate", "advice", "next"]) say(view, none || untrained, "models", none ? "Create a model" : "Train a model");
  const noConcepts = !app.concepts.length ? "No concepts yet: label some photos first (a model is made over concepts)." : "";
  const box = $("#models-empty");
  box.replaceChildren(...(noConcepts ? [emptyState(noConcepts, "inputs", "Label photos")]
    : !app.models.length ? [el("p", { class: "empty" }, "No model yet: tick its concepts below and create it.")] : []));
  if (!app.input_count) $("#search-results").replaceChildren(emptyState("No photos to search yet: add some first.", "inputs"));
}

async function signIn(key) {
  state.key = key.trim(); state.mode = "key";
  await refresh();
  sessionStorage.setItem("loupe-key", state.key);
  state.appId = state.app.id;
  await showApp();
}

async function logIn(username, password) {
  const r = await fetch("/v2/loupe/session", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username, password }) });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((data.status && data.status.description) || `HTTP ${r.status}`);
  state.mode = "session"; state.csrf = data.csrf_token;
  $("#password").value = "";
  await showConsole();
}

async function resumeSession() {  // a reload: the cookie may still be good
  const r = await fetch("/v2/loupe/me", { credentials: "same-origin" });
  if (!r.ok) return false;
  const me = await r.json();
  state.mode = "session"; state.csrf = me.csrf_token || "";
  const appId = sessionStorage.getItem("loupe-app");
  if (appId && me.apps.some((a) => a.id === appId)) { state.me = me; await openApp(appId); } else await showConsole();
  return true;
}

// ---------------------------------------------------------------- the console: my apps
async function showConsole() {
  const me = await api("GET", "/v2/loupe/me");
  state.me = me; state.app = null; state.appId = ""; sessionStorage.removeItem("loupe-app");
  $("#signin").hidden = true; $("#main").hidden = true; $("#console").hidden = false;
  $("#app-summary").textContent = "";
  $("#whoami").textContent = `signed in as ${me.user.name}${me.user.admin ? " (server admin)" : ""}`;
  const tb = $("#apps-table tbody"); tb.replaceChildren();
  for (const a of me.apps) {
    tb.append(el("tr", { "data-app": a.id }, el("td", {}, a.id), el("td", {}, a.role), el("td", {}, a.backbone),
      el("td", {}, a.input_count), el("td", {}, a.concept_count), el("td", {}, a.model_count),
      el("td", {}, el("button", { type: "button", onclick: () => guarded(() => openApp(a.id)) }, `Open ${a.id}`))));
  }
  $("#no-apps").hidden = me.apps.length > 0;
  const bb = $("#new-app-backbone");
  bb.replaceChildren(...me.backbones.map((b) => el("option", { value: b, selected: b === me.default_backbone }, b)));
}

async function createApp(ev) {
  ev.preventDefault();
  const id = $("#new-app-id").value.trim();
  await api("POST", "/v2/loupe/apps", { id, backbone: $("#new-app-backbone").value });
  $("#new-app-id").value = "";
  notice(`App ${id} created: you are its owner.`);
  await openApp(id);
}

async function openApp(appId) {
  state.appId = appId; state.thumbs.clear(); state.names.clear(); state.page = 1; state.signature = "";
  sessionStorage.setItem("loupe-app", appId);
  await refresh();
  await showApp();
}

async function showApp() {
  $("#signin").hidden = true; $("#console").hidden = true; $("#main").hidden = false;
  $("#to-console").hidden = state.mode !== "session";
  const manage = state.role === "owner" || state.role === "admin";
  for (const tab of document.querySelectorAll("nav [data-needs]")) {
    tab.hidden = tab.dataset.needs === "manage" ? !manage : state.mode !== "session";
  }
  $("#member-form").hidden = state.role !== "owner";
  showView("overview");
  await loadGrid();
}

async function signOut() {
  if (state.mode === "session") await api("DELETE", "/v2/loupe/session").catch(() => {});
  sessionStorage.removeItem("loupe-key"); sessionStorage.removeItem("loupe-app");
  location.reload();
}

// ---------------------------------------------------------------- keys, members, audit of the app
const appPath = (rest) => `/v2/loupe/apps/${encodeURIComponent(state.appId)}/${rest}`;
const when = (t) => t ? new Date(t).toLocaleString() : "never";

async function loadKeys() {
  const { keys } = await api("GET", appPath("keys"));
  const tb = $("#keys-table tbody"); tb.replaceChildren();
  for (const k of keys) {
    tb.append(el("tr", { "data-key": k.id }, el("td", {}, k.id), el("td", {}, `${k.hint}…`), el("td", {}, k.name || "—"),
      el("td", {}, k.scope), el("td", {}, when(k.created_at)), el("td", {}, k.created_by || "—"), el("td", {}, when(k.last_used_at)),
      el("td", {}, el("button", { type: "button", class: "danger", onclick: () => guarded(async () => {
        await api("DELETE", appPath(`keys/${k.id}`)); notice(`Key ${k.id} revoked.`); await loadKeys();
      }) }, "Revoke"))));
  }
}

async function createKey(ev) {
  ev.preventDefault();
  const { key, info } = await api("POST", appPath("keys"), { name: $("#key-name").value.trim(), scope: $("#key-scope").value });
  const box = $("#new-key");
  box.replaceChildren(`New ${info.scope} key (copy it now, it is not shown again): `, el("code", { id: "new-key-value" }, key));
  box.hidden = false; $("#key-name").value = "";
  await loadKeys();
}

async function loadMembers() {
  const { members } = await api("GET", appPath("members"));
  const tb = $("#members-table tbody"); tb.replaceChildren();
  for (const m of members) {
    tb.append(el("tr", { "data-user": m.user }, el("td", {}, m.user), el("td", {}, m.role), el("td", {}, when(m.added_at)),
      el("td", {}, m.added_by || "—"), el("td", {}, state.role !== "owner" ? "" : el("button", { type: "button", class: "danger",
        onclick: () => guarded(async () => { await api("DELETE", appPath(`members/${encodeURIComponent(m.user)}`)); await loadMembers(); }) },
      "Remove"))));
  }
}

async function addMember(ev) {
  ev.preventDefault();
  const user = $("#member-user").value.trim();
  await api("POST", appPath("members"), { user, role: $("#member-role").value });
  $("#member-user").value = "";
  notice(`${user} is now ${$("#member-role").value} of ${state.appId}.`);
  await loadMembers();
}

function auditQuery() {
  const q = new URLSearchParams();
  if ($("#audit-actor").value.trim()) q.set("actor", $("#audit-actor").value.trim());
  if ($("#audit-resource").value) q.set("resource", $("#audit-resource").value);
  return q;
}

function changeText(c) {
  const labels = (l) => l ? [...l.concepts, ...l.not_concepts.map((n) => `not ${n}`)].join(", ") || "none" : "";
  const moved = c.before && c.after ? `: ${labels(c.before)} → ${labels(c.after)}` : c.after ? `: ${labels(c.after)}` : "";
  return `${c.op} ${c.resource} ${c.id}${c.detail ? ` (${c.detail})` : ""}${moved}`;
}

async function loadAudit() {
  const q = auditQuery(); q.set("per_page", "200");
  const { entries } = await api("GET", appPath(`audit?${q}`));
  const tb = $("#audit-table tbody"); tb.replaceChildren();
  for (const e of entries) {
    const who = e.actor.id ? `${e.actor.kind} ${e.actor.id}` : e.actor.kind;
    const what = Object.entries(e.counts).map(([k, n]) => `${k} ×${n}`).join(", ");
    tb.append(el("tr", {}, el("td", {}, new Date(e.at * 1000).toLocaleString()), el("td", {}, who), el("td", {}, what),
      el("td", { class: "name" }, e.changes.slice(0, 5).map(changeText).join("; ") + (e.changes.length > 5 ? "; …" : ""))));
  }
  if (!entries.length) tb.append(el("tr", {}, el("td", { colspan: 4 }, "No entries match.")));
}

async function exportAudit() {
  const r = await fetch(appPath(`audit/export?${auditQuery()}`), authInit("GET"));
  if (!r.ok) throw new Error(`export failed: HTTP ${r.status}`);
  const a = el("a", { href: URL.createObjectURL(await r.blob()), download: `${state.appId}-audit.jsonl` });
  document.body.append(a); a.click(); a.remove();
}

function showView(name) {
  for (const tab of document.querySelectorAll("nav [role=tab]")) tab.setAttribute("aria-selected", tab.dataset.view === name);
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
  // Models: drawn afresh, so the drift chart shows the predictions made since.
  const load = { keys: loadKeys, members: loadMembers, audit: loadAudit, models: async () => state.app && renderModels() }[name];
  if (load) guarded(load);
}

// ---------------------------------------------------------------- inputs
async function uploadFiles(files) {
  const concepts = split($("#up-concepts").value).map((id) => ({ id, value: 1 }))
    .concat(split($("#up-not").value).map((id) => ({ id, value: 0 })));
  const list = $("#upload-list");
  const rows = [...files].map((f) => {
    const status = el("span", { class: "state" }, "waiting");
    const li = el("li", { "data-file": f.name }, `${f.name} — `, status, " ", el("progress", { max: 1 }));
    list.append(li);
    return { file: f, li, status };
  });
  const work = async ({ file, li, status }) => {
    status.textContent = "uploading";
    if (!file.type.startsWith("image/") && !/\.(jpe?g|png|webp|gif|bmp|tiff?)$/i.test(file.name)) {
      status.textContent = "failed: not an image file"; status.className = "state failed";
      li.querySelector("progress").value = 1;
      return;
    }
    try {
      const data = await fileBase64(file);
      const res = await api("POST", "/v2/inputs", { inputs: [{ data: { image: { base64: data }, concepts,
        metadata: { filename: file.name } } }] });
      const duplicate = res.inputs[0].status.details;  // the same image is already in the app
      if (!duplicate) state.names.set(res.inputs[0].id, Promise.resolve(file.name));
      li.dataset.input = res.inputs[0].id;
      status.textContent = duplicate ? `already in the app (${duplicate.replace(/input '[^']*'/, "an earlier upload")})` : "stored";
      status.className = duplicate ? "state duplicate" : "state ok";
    } catch (err) {  // the file's name is on the line already: not the server's "input 0 (id): " prefix
      status.textContent = `failed: ${err.message.replace(/^input \d+ \([^)]*\): /, "")}`; status.className = "state failed";
    }
    li.querySelector("progress").value = 1;
  };
  const queue = rows.slice();
  await Promise.all([0, 1].map(async () => { while (queue.length) await work(queue.shift()); }));
  await refresh(); await loadGrid();
}

async function addUrls() {
  const urls = $("#urls").value.split("\n").map((s) => s.trim()).filter(Boolean);
  const concepts = split($("#up-concepts").value).map((id) => ({ id, value: 1 }));
  for (const url of urls) {
    const li = el("li", {}, `${url} — `);
    $("#upload-list").append(li);
    try {
      const res = await api("POST", "/v2/inputs", { inputs: [{ data: { image: { url }, concepts } }] });
      li.append(el("span", { class: "ok" }, `stored as ${res.inputs[0].id}`));
    } catch (err) { li.append(el("span", { class: "failed" }, `failed: ${err.message}`)); }
  }
  await refresh(); await loadGrid();
}

async function loadGrid() {
  // Only the newest load renders: a label's reload answering after a filter change would show stale inputs.
  const ticket = ++state.gridLoads;
  const concept = $("#filter").value;
  const q = `/v2/inputs?page=${state.page}&per_page=24` + (concept ? `&concept=${encodeURIComponent(concept)}` : "");
  const { inputs } = await api("GET", q);
  if (ticket !== state.gridLoads) return;
  const total = totalFor(concept), pages = Math.max(1, Math.ceil(total / 24));
  $("#page-label").textContent = `Page ${state.page} of ${pages} (${total} input${total === 1 ? "" : "s"})`;
  $("#prev").disabled = state.page <= 1;
  $("#next").disabled = state.page >= pages;
  const grid = $("#grid"); grid.replaceChildren();
  if (!inputs.length) {
    grid.append(concept ? el("p", { class: "empty" }, "No photo is labeled with this concept yet.")
      : emptyState("No photos yet: drop images above, or choose files; then label them here.", null));
    if (!concept) grid.lastChild.append(el("button", { type: "button", class: "primary", onclick: () => $("#files").click() }, "Choose files"));
  }
  for (const input of inputs) {
    const labels = input.data.concepts.map((c) => (c.value ? c.name : `not ${c.name}`)).join(", ") || "unlabeled";
    const name = inputName(input);
    state.names.set(input.id, Promise.resolve(name));
    const box = el("input", { type: "checkbox", value: input.id, "aria-label": `select ${name}` });
    grid.append(el("figure", { "data-input": input.id }, thumbImg(input.id, name),
      el("figcaption", {}, box, " ", el("span", { class: "name", title: input.id }, name), el("br"),
        el("span", { class: "labels" }, labels))));
  }
  benchGridLoaded(inputs);
}

function totalFor(concept) {
  if (!concept) return state.app.input_count;
  const c = state.app.concepts.find((x) => x.id === concept);
  return c ? c.positives : 0;
}

async function applyLabel() {
  const ids = [...document.querySelectorAll("#grid input:checked")].map((b) => b.value);
  const concept = $("#label-concept").value.trim();
  if (!ids.length || !concept) throw new Error("select images and type a concept first");
  await labelInputs(ids, concept, Number($("#label-kind").value) === 1);  // undoable, as the palette's
  clearSelection();
  await refresh(); await loadGrid();
}

// ---------------------------------------------------------------- models
function renderModels() {
  const tb = $("#models-table tbody"); tb.replaceChildren();
  for (const m of state.app.models) {
    const v = m.latest_version;
    const history = el("details", { class: "history" }, el("summary", {}, "Version history"));
    history.addEventListener("toggle", () => { if (history.open) guarded(() => showVersions(m.id, history)); });
    tb.append(el("tr", { "data-model": m.id }, el("td", {}, m.id, el("br"), el("small", {}, m.concept_ids.join(", "))),
      el("td", { class: "version" }, `${v.id.slice(0, 8)} ${v.status}${v.status === "trained" ? ` in ${v.train_seconds} s` : ""}`,
        v.status === "trained" ? el("br") : "", v.status === "trained" ? unlabeledNote(v.unlabeled) : "", history,
        driftBox(m.id)),
      el("td", {}, el("button", { type: "button", onclick: () => guarded(() => train(m.id)) }, `Train ${m.id}`), " ",
        ...publishControls(m),
        el("button", { type: "button", class: "danger", onclick: () => guarded(() => deleteModel(m.id)) }, "Delete"))));
  }
}

// Models that serve a published version: what serves now, review the newest version's changes, roll back.
function publishControls(m) {
  if (m.serving !== "published") return [];
  const v = m.latest_version;
  const serves = el("small", { class: "serving" }, m.published_version_id
    ? `serves ${m.published_version_id.slice(0, 8)} (published)` : "nothing published yet");
  const out = [el("br"), serves, el("br")];
  if (v.status === "trained" && v.id !== m.published_version_id) {
    out.push(el("button", { type: "button", onclick: () => guarded(() => reviewPublish(m, v.id)) }, "Review & publish"), " ");
  }
  if (m.published_version_id) {
    out.push(el("button", { type: "button", onclick: () => guarded(() => rollback(m.id)) }, "Roll back"), " ");
  }
  return out;
}

// Drift: per day, the share of predictions out of scope (nearest labeled example below the version's
// scope similarity; ~5% while new images look like the labeled ones), as a small bar chart.
function driftBox(modelId) {
  const box = el("div", { class: "drift" });
  api("GET", `/v2/models/${encodeURIComponent(modelId)}/drift?days=14`).then(({ drift }) => {
    const days = drift.days.filter((d) => d.predictions);
    if (!days.length) { box.append(el("small", {}, "no predictions yet")); return; }
    const w = 8, h = 28, gap = 2;
    const svg = svgEl("svg", { width: days.length * (w + gap), height: h, role: "img",
      "aria-label": "share of predictions out of scope per day" });
    days.forEach((d, i) => {
      const share = d.out_of_scope / d.predictions;
      svg.append(svgEl("rect", { x: i * (w + gap), y: h - Math.max(1, share * h), width: w, height: Math.max(1, share * h),
        fill: share > 0.15 ? "#c0392b" : "#2f5d8a" }, svgEl("title", {}, `${d.day}: ${d.out_of_scope} of ${d.predictions} out of scope`)));
    });
    const last = days[days.length - 1];
    box.append(svg, el("small", {}, ` out of scope: ${pct(last.out_of_scope / last.predictions)} of ${last.predictions} today`));
  }).catch(() => {});
  return box;
}

const fmt = (x) => (x == null ? "—" : Number(x).toFixed(2));

async function reviewPublish(m, versionId) {
  const box = $("#publish-review");
  box.hidden = false;
  box.replaceChildren(el("p", { class: "hint" }, "Comparing the two versions over the stored inputs…"));
  let report = null;
  if (m.published_version_id) {
    report = (await api("GET", `/v2/models/${encodeURIComponent(m.id)}/versions/${versionId}/changes`)).report;
  }
  const publishButton = el("button", { type: "button", id: "publish-go", onclick: () => guarded(async () => {
    await api("POST", `/v2/models/${encodeURIComponent(m.id)}/versions/${versionId}/publish`);
    notice(`Model ${m.id} now serves version ${versionId.slice(0, 8)}.`);
    box.hidden = true;
    await refresh();
  }) }, `Publish ${versionId.slice(0, 8)}`);
  const cancel = el("button", { type: "button", onclick: () => { box.hidden = true; } }, "Cancel");
  if (!report) {
    box.replaceChildren(el("h3", {}, `Publish ${versionId.slice(0, 8)} of ${m.id}`),
      el("p", {}, "Nothing is published yet: predictions that name no version fail until one is."), publishButton, " ", cancel);
    return;
  }
  // A threshold without held-out support (too few examples to measure) is shown as "—".
  const cut = (t) => (t && t.precision != null ? fmt(t.threshold) : "—");
  const rows = report.concepts.map((c) => el("tr", {}, el("td", {}, c.concept_id),
    el("td", {}, cut(c.before)), el("td", {}, fmt(c.before && c.before.precision)),
    el("td", {}, cut(c.after)), el("td", {}, fmt(c.after && c.after.precision)),
    el("td", {}, fmt(c.after && c.after.recall))));
  const changes = report.changes.slice(0, 24).map((c) => el("figure", { class: "change" },
    thumbImg(c.input_id, c.input_id),
    el("figcaption", {}, el("span", { class: "before" }, c.before.decision.join(", ") || "unsure"), " → ",
      el("strong", {}, c.after.decision.join(", ") || "unsure"))));
  box.replaceChildren(
    el("h3", {}, `What ${versionId.slice(0, 8)} changes against the published ${report.against.slice(0, 8)}`),
    el("p", { id: "change-summary" }, `${report.changed} of ${report.compared} stored inputs compared would get another answer`
      + (report.compared < report.inputs ? ` (about ${report.changed_estimate} of all ${report.inputs})` : "") + "."),
    el("div", { class: "scroll" }, el("table", { class: "side-by-side" },
      el("thead", {}, el("tr", {}, ["Concept", "Threshold before", "Precision before", "Threshold after",
        "Precision after", "Recall after"].map((h) => el("th", {}, h)))), el("tbody", {}, rows))),
    el("div", { class: "changes" }, changes), publishButton, " ", cancel);
}

async function rollback(modelId) {
  const { model } = await api("POST", `/v2/models/${encodeURIComponent(modelId)}/rollback`);
  notice(`Model ${modelId} rolled back: it serves ${model.loupe.published_version_id.slice(0, 8)} again.`);
  await refresh();
}

const UNLABELED_RULES = { pseudo_labels: "self-trained on", negatives: "negatives:", ignored: "not used:" };

function unlabeledNote(u) {
  // What the version made of the app's unlabeled inputs, with the validation's reason on hover.
  if (!u || !u.seen) return el("small", { class: "unlabeled", title: (u && u.reason) || "" }, "no unlabeled inputs used");
  const what = u.rule === "pseudo_labels" ? `${u.pseudo_labels} pseudo-labels from ${u.seen} unlabeled`
    : `${UNLABELED_RULES[u.rule] || u.rule} ${u.seen} unlabeled`;
  return el("small", { class: "unlabeled", title: u.reason }, u.rule === "pseudo_labels" ? `self-trained: ${what}` : what);
}

async function showVersions(modelId, box) {
  const { model_versions: versions } = await api("GET", `/v2/models/${encodeURIComponent(modelId)}/versions?per_page=50`);
  box.replaceChildren(box.firstChild, el("table", { class: "versions" },
    el("thead", {}, el("tr", {}, ["Version", "Created", "Status", "Examples", "Train time", "Top-1 (evaluated)"].map((h) => el("th", {}, h)))),
    el("tbody", {}, versions.map((v) => {
      const s = v.metrics && v.metrics.summary;
      return el("tr", {}, el("td", {}, v.id.slice(0, 8)), el("td", {}, v.created_at.replace("T", " ").slice(0, 16)),
        el("td", {}, v.status.description), el("td", {}, v.total_input_count),
        el("td", {}, v.train_stats ? `${v.train_stats.seconds} s` : "—"),
        el("td", {}, s && s.top1_accuracy != null ? pct(s.top1_accuracy) : "—"));
    }))));
}

async function deleteModel(modelId) {
  if (!confirm(`Delete model ${modelId} and all its versions?`)) return;
  await api("DELETE", `/v2/models/${encodeURIComponent(modelId)}`);
  notice(`Model ${modelId} deleted.`);
  await refresh();
}

async function createModel(ev) {
  ev.preventDefault();
  const concepts = [...document.querySelectorAll("#model-concepts input:checked")].map((b) => ({ id: b.value, value: 1 }));
  await api("POST", "/v2/models", { model: { id: $("#model-id").value.trim(), output_info: { data: { concepts },
    output_config: { concepts_mutually_exclusive: $("#model-me").checked, closed_environment: $("#model-closed").checked } },
    loupe: { serving: $("#model-serving").value } } });
  const id = $("#model-id").value.trim();
  $("#train-status").textContent = `Model ${id} created over ${concepts.length} concept(s). Train it to use it.`;
  notice(`Model ${id} created.`);
  await refresh();
}

async function train(modelId) {
  state.training.add(modelId);
  try { await trainNow(modelId); } finally { state.training.delete(modelId); }
}

async function trainNow(modelId) {
  $("#train-status").textContent = `training ${modelId}…`;
  let { model } = await api("POST", `/v2/models/${encodeURIComponent(modelId)}/versions`);
  let v = model.model_version;
  while ([21103, 21101].includes(v.status.code)) {
    await new Promise((r) => setTimeout(r, 1000));
    v = (await api("GET", `/v2/models/${encodeURIComponent(modelId)}/versions/${v.id}`)).model_version;
  }
  const secs = v.train_stats ? ` in ${v.train_stats.seconds} s` : "";
  await refresh();  // the table first: the status line says it is done once the table shows it
  $("#train-status").textContent = v.status.code === 21100 ? `${modelId}: version ${v.id} trained${secs}`
    : `${modelId}: training failed — ${v.status.details || v.status.description}`;
}

// ---------------------------------------------------------------- predict and search
function bars(concepts) {
  return el("div", { class: "bars" }, concepts.map((c) => el("div", { class: "bar-row", "data-concept": c.id },
    el("span", { class: "concept" }, c.name), el("span", { class: "bar", role: "meter", "aria-valuenow": c.value.toFixed(3),
      "aria-valuemin": 0, "aria-valuemax": 1, "aria-label": c.name }, el("span", { style: `width:${pct(c.value)}` })),
    el("span", { class: "value" }, c.value.toFixed(3)))));
}

async function predictWith(modelId, input) {
  const { outputs } = await api("POST", `/v2/models/${encodeURIComponent(modelId)}/outputs`, { inputs: [input] });
  return outputs[0];
}

async function predictFile() {
  const file = $("#predict-file").files[0], modelId = $("#predict-model").value;
  if (!file || !modelId) return;
  $("#predict-result").replaceChildren(el("p", { class: "hint" }, `Predicting ${file.name}…`));  // never the last photo's bars
  let out;
  try {
    out = await predictWith(modelId, { data: { image: { base64: await fileBase64(file) } } });
  } catch (err) { $("#predict-result").replaceChildren(); throw err; }
  state.predicted = true;
  localStorage.setItem(`loupe-predicted-${state.appId}`, "1");
  renderChecklist(state.app);
  const top = out.data.concepts[0];
  const model = state.app.models.find((m) => m.id === modelId);
  const nearest = Math.max(0, ...((out.loupe || {}).neighbours || []).map((n) => n.similarity));
  const parts = [
    el("div", { class: "query" }, el("img", { src: URL.createObjectURL(file), alt: `the image: ${file.name}` }),
      el("p", {}, el("strong", {}, file.name), el("br"), "Top concept: ",
        el("strong", { id: "top-concept" }, top ? top.name : "none"),
        el("br"), el("small", {}, `model ${out.model.name || out.model.id}, version ${out.model.model_version.id.slice(0, 18)}`)))];
  const verdict = (out.loupe || {}).verdict;
  // The version's own scope (measured at train time); older versions: the page's measured 0.4 for closed models.
  const outOfScope = verdict ? verdict === "out_of_scope"
    : (model && model.closed_environment && (out.loupe || {}).neighbours && nearest < OUT_OF_SCOPE);
  if (outOfScope) {
    const near = out.loupe.nearest_example != null ? out.loupe.nearest_example : nearest;
    parts.push(el("p", { class: "warning", id: "out-of-scope" }, `This image looks unlike every example labeled for ${modelId} `,
      `(nearest similarity ${near.toFixed(2)}): the model only knows ${model ? model.concept_ids.join(", ") : "its concepts"}, `,
      "so its answer may not mean much here."));
  } else if (verdict === "unsure") {
    parts.push(el("p", { class: "warning", id: "unsure" }, "Unsure: no concept reaches its threshold (the confidence ",
      "chosen, on held-out examples, for the model's target precision)."));
  } else if (verdict === "confident" && out.loupe.met.length) {
    parts.push(el("p", { class: "hint", id: "confident" }, `Confident: ${out.loupe.met.join(", ")} `,
      "(above the threshold chosen for its target precision)."));
  }
  parts.push(bars(out.data.concepts));
  if ((out.loupe || {}).neighbours && (out.loupe || {}).neighbours.length) {
    parts.push(el("h3", {}, "Nearest labeled examples that voted"), el("div", { class: "thumbs" }, (out.loupe || {}).neighbours.map((n) =>
      el("figure", {}, thumbImg(n.input_id), el("figcaption", {}, nameSpan(n.input_id), ` (similarity ${n.similarity.toFixed(2)})`)))));
  }
  $("#predict-result").replaceChildren(...parts);
}

async function search(query) {
  const { hits } = await api("POST", "/v2/searches", { query: { ands: [{ output: { input: query } }] } });
  $("#search-results").replaceChildren(...hits.map((h) => el("figure", { "data-input": h.input.id },
    thumbImg(h.input.id, inputName(h.input)), el("figcaption", {}, `${inputName(h.input)} — score ${h.score.toFixed(3)}`))));
}

// ---------------------------------------------------------------- evaluation
// A line chart in SVG: axes with ticks and titles, an optional diagonal, one line per series. The plot
// area is inset from the axes (a perfect curve along x = 0 or y = 1 stays visible), and points carry
// tooltips with their values.
function lineChart({ label, xTitle, yTitle, series, diagonal }) {
  const ns = "http://www.w3.org/2000/svg", W = 440, H = 360, L = 48, B = 40, T = 10, R = 12;
  const w = W - L - R, h = H - T - B;
  const node = (tag, attrs, text) => {
    const n = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
    if (text != null) n.textContent = text;
    return n;
  };
  const INSET = 0.035;
  const x = (v) => L + (INSET + (1 - 2 * INSET) * v) * w, y = (v) => T + (1 - INSET - (1 - 2 * INSET) * v) * h;
  const svg = node("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": label, class: "chart" });
  svg.append(node("rect", { x: L, y: T, width: w, height: h, fill: "#fff", stroke: "#c4c9d0" }));
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    svg.append(node("line", { x1: x(t), x2: x(t), y1: y(0), y2: y(0) + 4, stroke: "#555" }),
      node("text", { x: x(t), y: y(0) + 16, "text-anchor": "middle", "font-size": 10 }, t),
      node("line", { x1: x(0) - 4, x2: x(0), y1: y(t), y2: y(t), stroke: "#555" }),
      node("line", { x1: x(0), x2: x(1), y1: y(t), y2: y(t), stroke: "#eee" }),
      node("text", { x: x(0) - 7, y: y(t) + 3, "text-anchor": "end", "font-size": 10 }, t));
  }
  svg.append(node("text", { x: L + w / 2, y: H - 4, "text-anchor": "middle", "font-size": 11 }, xTitle),
    node("text", { x: 11, y: T + h / 2, "text-anchor": "middle", "font-size": 11, transform: `rotate(-90 11 ${T + h / 2})` }, yTitle));
  if (diagonal) svg.append(node("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), stroke: "#888", "stroke-dasharray": "4 3" }));
  series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    svg.append(node("polyline", { points: s.x.map((v, j) => `${x(v)},${y(s.y[j])}`).join(" "),
      fill: "none", stroke: colour, "stroke-width": 2.2, "stroke-linejoin": "round" }));
    const every = Math.max(1, Math.ceil(s.x.length / 24));  // hover a point for its values
    s.x.forEach((v, j) => {
      if (j % every && j !== s.x.length - 1) return;
      const dot = node("circle", { cx: x(v), cy: y(s.y[j]), r: 3.2, fill: colour, class: "point" });
      dot.append(node("title", {}, `${s.name}: ${xTitle} ${Number(v).toFixed(3)}, ${yTitle} ${Number(s.y[j]).toFixed(3)}`));
      svg.append(dot);
    });
  });
  const legend = el("ul", { class: "legend" }, series.map((s, i) => el("li", {},
    el("span", { class: "swatch", style: `background:${COLOURS[i % COLOURS.length]}` }), s.name)));
  return el("figure", { class: "chart-box" }, svg, legend);
}

function rocPlot(metrics) {
  return lineChart({ label: "ROC curves per concept", xTitle: "false positive rate", yTitle: "true positive rate",
    diagonal: true, series: metrics.filter((m) => m.roc_curve).map((m) => ({
      name: `${m.concept.id} (AUC ${m.roc_auc == null ? "—" : m.roc_auc.toFixed(2)})`, x: m.roc_curve.fpr, y: m.roc_curve.tpr })) });
}

function prPlot(metrics) {
  return lineChart({ label: "precision-recall curves per concept", xTitle: "recall", yTitle: "precision",
    series: metrics.filter((m) => m.precision_recall_curve).map((m) => ({ name: m.concept.id,
      x: m.precision_recall_curve.recall, y: m.precision_recall_curve.precision })) });
}

async function evaluate() {
  const modelId = $("#eval-model").value;
  const { model } = await api("GET", `/v2/models/${encodeURIComponent(modelId)}`);
  const vid = model.model_version.id;
  await api("POST", `/v2/models/${encodeURIComponent(modelId)}/versions/${vid}/metrics`, {});
  let metrics;
  for (;;) {
    metrics = (await api("GET", `/v2/models/${encodeURIComponent(modelId)}/versions/${vid}/metrics`)).model_version.metrics;
    if (![21303, 21301].includes(metrics.status.code)) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  if (metrics.status.code !== 21300) throw new Error(`evaluation failed: ${metrics.status.details || metrics.status.description}`);
  const s = metrics.summary;
  const parts = [el("p", {}, s.top1_accuracy != null ? `Top-1 accuracy ${pct(s.top1_accuracy)}, ` : "",
    `mean ROC AUC ${s.macro_avg_roc_auc.toFixed(3)}, mean F1 ${s.macro_avg_f1_score.toFixed(3)}`),
  el("div", { class: "scroll" }, el("table", { id: "eval-table" }, el("thead", {}, el("tr", {}, ["Concept", "Positives", "Negatives", "ROC AUC", "Precision", "Recall", "F1"].map((h) => el("th", {}, h)))),
    el("tbody", {}, metrics.binary_metrics.map((m) => el("tr", {}, el("td", {}, m.concept.id), el("td", {}, m.num_pos), el("td", {}, m.num_neg),
      el("td", {}, m.roc_auc == null ? "—" : m.roc_auc.toFixed(3)), el("td", {}, m.precision.toFixed(3)), el("td", {}, m.recall.toFixed(3)), el("td", {}, m.f1.toFixed(3))))))),
  el("h3", {}, "ROC and precision-recall curves (held-out predictions)"),
  el("div", { class: "charts" }, rocPlot(metrics.binary_metrics), prPlot(metrics.binary_metrics))];
  if (metrics.confusion_matrix) {
    const ids = metrics.confusion_matrix.concept_ids, cell = {};
    for (const c of metrics.confusion_matrix.matrix) cell[`${c.actual}|${c.predicted}`] = c.value;
    parts.push(el("h3", {}, "Confusion matrix (rows: actual, columns: predicted)"), el("div", { class: "scroll" }, el("table", { id: "confusion" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), ids.map((p) => el("th", {}, p)))),
      el("tbody", {}, ids.map((a) => {
        const total = ids.reduce((n, p) => n + (cell[`${a}|${p}`] || 0), 0) || 1;
        return el("tr", {}, el("th", {}, a), ids.map((p) => {  // shaded by the share of the row: a heat map
          const v = cell[`${a}|${p}`] || 0, share = v / total;
          const hue = a === p ? "26, 127, 55" : "179, 38, 30";
          return el("td", { class: "heat", title: `${a} predicted as ${p}: ${v} (${pct(share)})`,
            style: `background: rgba(${hue}, ${(0.08 + 0.8 * share).toFixed(2)}); color: ${share > 0.55 ? "#fff" : "inherit"}` }, v);
        }));
      })))));
  }
  const shown = metrics.test_set.slice(0, 40);
  parts.push(el("h3", {}, metrics.test_set.length > shown.length
    ? `Misclassified: ${metrics.test_set.length} (the first ${shown.length} shown)` : `Misclassified: ${shown.length}`),
  el("div", { class: "thumbs misclassified" }, shown.map((t) => {
    const guess = t.predicted_concepts.reduce((a, b) => (b.value > a.value ? b : a), { id: "—", value: 0 });
    return el("figure", {}, thumbImg(t.id), el("figcaption", {}, nameSpan(t.id), el("br"),
      `is ${t.ground_truth_concepts.map((c) => c.id).join(", ") || "none of them"}, predicted as `,
      el("strong", {}, guess.id), ` (${guess.value.toFixed(2)})`));
  })));
  $("#eval-result").replaceChildren(...parts);
}

// ---------------------------------------------------------------- label next
async function suggestNext() {
  const modelId = $("#next-model").value;
  const model = state.app.models.find((m) => m.id === modelId);
  $("#next-result").replaceChildren(el("p", { class: "hint" }, "Choosing…"));
  const { suggestions } = await computedGet(`/v2/models/${encodeURIComponent(modelId)}/suggestions?count=12`);
  const cards = suggestions.map((s) => {
    // No concept is chosen for the person: the guess is shown, and "Label" needs a deliberate pick.
    const pick = el("select", { "aria-label": "concept" }, el("option", { value: "" }, "choose…"),
      model.concept_ids.map((c) => el("option", { value: c }, c === s.concept_id ? `${c} (the guess)` : c)),
      el("option", { value: "__new" }, "new concept…"));
    const fresh = el("input", { "aria-label": "new concept", placeholder: "new concept", hidden: true, class: "new-concept" });
    pick.addEventListener("change", () => { fresh.hidden = pick.value !== "__new"; if (!fresh.hidden) fresh.focus(); });
    const done = (text) => card.replaceChildren(thumbImg(s.input_id), el("figcaption", { class: "ok" }, text));
    const patch = (concepts) => api("PATCH", "/v2/inputs", { action: "merge", inputs: [{ id: s.input_id, data: { concepts } }] });
    const card = el("figure", { "data-input": s.input_id }, thumbImg(s.input_id),
      el("figcaption", {}, nameSpan(s.input_id), el("br"),
        s.concept_id ? `model's guess: ${s.concept_id} (${s.value.toFixed(2)})` : "not trained yet", el("br"),
        pick, fresh, " ", el("button", { type: "button", class: "label-it", onclick: (ev) => guarded(async () => {
          const concept = pick.value === "__new" ? fresh.value.trim() : pick.value;
          if (!concept) throw new Error(pick.value === "__new" ? "type the new concept" : "choose a concept first");
          await patch([{ id: concept, value: 1 }]);
          done(`labeled ${concept}`);
          await refresh();
        }, ev.currentTarget) }, "Label"), el("br"),
        el("button", { type: "button", class: "none-of-these", onclick: (ev) => guarded(async () => {
          await patch(model.concept_ids.map((c) => ({ id: c, value: 0 })));  // a negative of each: it teaches too
          done(`none of ${model.concept_ids.join(", ")}`);
          await refresh();
        }, ev.currentTarget) }, "None of these"), " ",
        el("button", { type: "button", class: "skip", onclick: () => card.remove() }, "Skip")));
    return card;
  });
  $("#next-result").replaceChildren(...(cards.length ? cards : [emptyState("Every photo has a label for this model: add more photos to go on.", "inputs")]),
    ...(await outOfScopeCards(model)));
}

// Images predicted recently that looked unlike every labeled example: adding and labeling them widens
// what the model knows (uploaded ones are kept an hour by the server, stored inputs for good).
async function outOfScopeCards(model) {
  const { drift } = await api("GET", `/v2/models/${encodeURIComponent(model.id)}/drift?days=7`);
  const recent = drift.recent_out_of_scope.slice().reverse().slice(0, 12);
  if (!recent.length) return [];
  const cards = recent.map((r) => {
    const img = el("img", { alt: r.input_id ? `input ${r.input_id}` : "a recently predicted image" });
    const path = r.input_id ? `/v2/inputs/${encodeURIComponent(r.input_id)}/thumbnail` : `/v2/loupe/recent-images/${r.sha256}`;
    let blob = null;
    fetch(scoped(path), authInit("GET")).then((x) => (x.ok ? x.blob() : null)).then((b) => {
      if (b) { blob = b; img.src = URL.createObjectURL(b); }
    });
    const pick = el("select", { "aria-label": "concept" }, el("option", { value: "" }, "choose…"),
      model.concept_ids.map((c) => el("option", { value: c }, c)));
    const card = el("figure", { class: "out-of-scope" }, img, el("figcaption", {},
      `nearest labeled ${r.nearest == null ? "—" : r.nearest.toFixed(2)}`, el("br"), pick, " ",
      el("button", { type: "button", onclick: () => guarded(async () => {
        if (!pick.value) throw new Error("choose a concept first");
        const concepts = [{ id: pick.value, value: 1 }];
        if (r.input_id) {
          await api("PATCH", "/v2/inputs", { action: "merge", inputs: [{ id: r.input_id, data: { concepts } }] });
        } else {
          if (!blob) throw new Error("this image is no longer kept by the server");
          await api("POST", "/v2/inputs", { inputs: [{ data: { image: { base64: await fileBase64(blob) }, concepts } }] });
        }
        card.replaceChildren(img, el("figcaption", { class: "ok" }, `added as ${pick.value}`));
        await refresh();
      }) }, r.input_id ? "Label" : "Add & label")));
    return card;
  });
  return [el("h3", { id: "out-of-scope-heading" }, "Seen in predictions, unlike anything labeled"), ...cards];
}

// ---------------------------------------------------------------- advice
async function advice() {
  const modelId = $("#advice-model").value;
  $("#advice-result").replaceChildren(el("p", { class: "hint" }, "Checking the data (a 5-fold cross-validation)…"));
  const { findings } = await computedGet(`/v2/models/${encodeURIComponent(modelId)}/advice`);
  const dismissed = new Set(JSON.parse(localStorage.getItem(`loupe-dismissed-${modelId}`) || "[]"));
  const keyOf = (f) => `${f.kind}|${f.concept_ids.join(",")}|${f.input_ids.join(",")}`;
  const open = findings.filter((f) => !dismissed.has(keyOf(f)));
  const box = $("#advice-result");
  box.replaceChildren(el("p", {}, open.length ? `${open.length} finding(s)` : "No problems found.",
    dismissed.size ? ` (${findings.length - open.length} dismissed)` : ""));
  const titles = { suspected_mislabel: "Suspected mislabels", near_duplicates: "Near duplicates labeled differently",
    confusable_concepts: "Concepts often confused", imbalance: "Imbalance between concepts",
    few_examples: "Concepts with few examples" };
  for (const kind of ["suspected_mislabel", "near_duplicates", "confusable_concepts", "imbalance", "few_examples"]) {
    const group = open.filter((f) => f.kind === kind);
    if (!group.length) continue;
    const details = el("details", { class: `group ${kind}`, "data-kind": kind },
      el("summary", {}, `${titles[kind]} (${group.length})`));
    details.open = kind === "suspected_mislabel" || kind === "near_duplicates";
    if (kind === "few_examples") {  // one line for all of them, not ten identical ones
      details.append(el("p", { class: "finding few_examples" }, "Add examples of: ",
        group.map((f) => f.concept_ids.join(", ")).join("; "), ". ", group[0].message.split(":").pop()));
    }
    for (const f of kind === "few_examples" ? [] : group) {
      const message = el("p", {}, f.message);
      for (const id of f.input_ids) {  // a person reads file names, not ids
        nameOf(id).then((n) => { message.textContent = message.textContent.replaceAll(`'${id}'`, `'${n}'`); });
      }
      const item = el("div", { class: `finding ${f.kind}`, "data-kind": f.kind, "data-inputs": f.input_ids.join(" ") },
        message, el("div", { class: "thumbs" }, f.input_ids.slice(0, 8).map((id) =>
          el("figure", {}, thumbImg(id), el("figcaption", {}, nameSpan(id))))));
      if (f.kind === "suspected_mislabel" && f.suggested_concept) {
        const inputId = f.input_ids[0];
        item.append(el("button", { type: "button", class: "fix", onclick: (ev) => guarded(() => confirmRelabel(modelId, inputId, f.concept_ids[0], f.suggested_concept, item), ev.currentTarget) },
          `Relabel as ${f.suggested_concept}…`), " ");
      }
      item.append(el("button", { type: "button", class: "dismiss-finding", onclick: () => guarded(async () => {
        if (f.kind === "suspected_mislabel") {  // kept by the server: it stays dismissed for everyone
          await api("POST", `/v2/models/${encodeURIComponent(modelId)}/advice/dismissals`,
            { input_id: f.input_ids[0], concept_id: f.concept_ids[0] });
        } else {  // other findings: dismissed in this browser
          dismissed.add(keyOf(f)); localStorage.setItem(`loupe-dismissed-${modelId}`, JSON.stringify([...dismissed]));
        }
        item.remove();
      }) }, f.kind === "suspected_mislabel" ? "Dismiss (the label is right)" : "Dismiss"));
      details.append(item);
    }
    box.append(details);
  }
}

// A relabel changes what the model learns: the photo is shown beside an example of the suggested concept,
// and the person says once which is right.
async function confirmRelabel(modelId, inputId, wrong, right, item) {
  // The photo labeled `right` most like this one (a visual search within that label) is the fairest comparison.
  const { hits } = await api("POST", "/v2/searches", { query: { ands: [{ output: { input: { id: inputId, data: { image: {} } } } },
    { input: { data: { concepts: [{ id: right, value: 1 }] } } }] }, pagination: { page: 1, per_page: 3 } });
  const example = (hits.map((h) => h.input).find((i) => i.id !== inputId));
  const other = el("input", { class: "other", placeholder: "or another concept…", "aria-label": "another concept" });
  const panel = el("div", { class: "confirm", role: "group", "aria-label": "confirm the relabel" },
    el("div", { class: "pair" },
      el("figure", {}, thumbImg(inputId), el("figcaption", {}, nameSpan(inputId), el("br"), `labeled ${wrong}`)),
      example ? el("figure", {}, thumbImg(example.id), el("figcaption", {}, `the most alike photo labeled ${right}`)) : el("p", { class: "hint" }, `no example of ${right} yet`)),
    el("p", {}, `Is this photo ${right} rather than ${wrong}?`),
    el("button", { type: "button", class: "primary confirm-relabel", onclick: (ev) => guarded(() => relabel(modelId, inputId, wrong, right, item), ev.currentTarget) },
      `Yes, relabel as ${right}`), " ",
    el("button", { type: "button", class: "keep-label", onclick: () => panel.remove() }, `No, it is ${wrong}`), " ",
    el("button", { type: "button", class: "none-of-these", onclick: (ev) => guarded(async () => {
      const concepts = (state.app.models.find((m) => m.id === modelId) || { concept_ids: [wrong, right] }).concept_ids;
      await api("PATCH", "/v2/inputs", { action: "overwrite", inputs: [{ id: inputId, data: { concepts: concepts.map((c) => ({ id: c, value: 0 })) } }] });
      item.replaceChildren(el("p", { class: "ok" }, `Labeled as none of ${concepts.join(", ")}.`));
      await refresh();
    }, ev.currentTarget) }, "None of these"), " ",
    other, el("button", { type: "button", class: "other-concept", onclick: (ev) => guarded(async () => {
      const concept = other.value.trim();
      if (!concept) throw new Error("type the concept it is");
      await api("PATCH", "/v2/inputs", { action: "overwrite", inputs: [{ id: inputId, data: { concepts: [{ id: concept, value: 1 }] } }] });
      item.replaceChildren(el("p", { class: "ok" }, `Relabeled as ${concept}.`));
      await refresh();
    }, ev.currentTarget) }, "Relabel as that"));
  for (const old of item.querySelectorAll(".confirm")) old.remove();
  item.append(panel);
}

async function relabel(modelId, inputId, wrong, right, item) {
  const score = (out, c) => (out.data.concepts.find((x) => x.id === c) || { value: 0 }).value;
  const before = await predictWith(modelId, { id: inputId });
  const { model } = await api("GET", `/v2/models/${encodeURIComponent(modelId)}`);
  await api("PATCH", "/v2/inputs", { action: "overwrite", inputs: [{ id: inputId, data: { concepts: [{ id: right, value: 1 }] } }] });
  const after = await predictWith(modelId, { id: inputId });
  const status = el("p", { class: "relabel-status" },
    `Relabeled ${inputId} as ${right}. Its prediction changed at once (neighbours' votes, same version ${after.model.model_version.id}): `,
    `${right} ${before && score(before, right).toFixed(2)} → `, el("strong", { class: "after" }, score(after, right).toFixed(2)),
    `, ${wrong} ${score(before, wrong).toFixed(2)} → ${score(after, wrong).toFixed(2)}.`);
  item.replaceChildren(status);
  const retrain = el("p", { class: "retrain-status" }, "Waiting for the background retrain…");
  item.append(retrain);
  const old = model.model_version.id;
  for (let i = 0; i < 120; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    const { model_versions: versions } = await api("GET", `/v2/models/${encodeURIComponent(modelId)}/versions`);
    const fresh = versions.find((v) => v.status.code === 21100);
    if (fresh && fresh.id !== old) {
      retrain.textContent = `Retrained: version ${fresh.id}${fresh.train_stats ? ` in ${fresh.train_stats.seconds} s` : ""}.`;
      retrain.className = "retrain-status ok";
      await refresh();
      return;
    }
  }
  retrain.textContent = "No retrain yet (is auto-retrain on for this model?).";
}

// ---------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", () => {
  // The control a person used last: where its error will show.
  for (const type of ["click", "change", "keydown"]) {
    document.addEventListener(type, (ev) => {
      const c = ev.target.closest && ev.target.closest("button, select, input, textarea, figure[data-input], #drop");
      if (c) state.lastControl = c;
    }, true);
  }
  $("#signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(() => signIn($("#key").value)); });
  $("#login-form").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(() => logIn($("#username").value.trim(), $("#password").value)); });
  $("#signout").addEventListener("click", () => guarded(signOut));
  $("#console-signout").addEventListener("click", () => guarded(signOut));
  $("#to-console").addEventListener("click", () => guarded(showConsole));
  $("#create-app-form").addEventListener("submit", (ev) => guarded(() => createApp(ev)));
  $("#key-form").addEventListener("submit", (ev) => guarded(() => createKey(ev)));
  $("#member-form").addEventListener("submit", (ev) => guarded(() => addMember(ev)));
  $("#audit-go").addEventListener("click", () => guarded(loadAudit));
  $("#audit-export").addEventListener("click", () => guarded(exportAudit));
  for (const tab of document.querySelectorAll("nav [role=tab]")) tab.addEventListener("click", () => showView(tab.dataset.view));
  const drop = $("#drop");
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); guarded(() => uploadFiles(ev.dataTransfer.files)); });
  drop.addEventListener("keydown", (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); $("#files").click(); } });
  $("#files").addEventListener("change", (ev) => guarded(() => uploadFiles(ev.target.files)));
  $("#add-urls").addEventListener("click", () => guarded(addUrls));
  $("#filter").addEventListener("change", () => { state.page = 1; guarded(loadGrid); });
  $("#prev").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); guarded(loadGrid); });
  $("#next").addEventListener("click", () => { state.page += 1; guarded(loadGrid); });
  $("#apply-label").addEventListener("click", () => guarded(applyLabel));
  $("#model-form").addEventListener("submit", (ev) => guarded(() => createModel(ev)));
  $("#predict-file").addEventListener("change", () => guarded(predictFile));
  $("#predict-model").addEventListener("change", () => guarded(predictFile));
  $("#search-file").addEventListener("change", async (ev) => guarded(async () =>
    search({ data: { image: { base64: await fileBase64(ev.target.files[0]) } } })));
  $("#search-id-go").addEventListener("click", () => guarded(() => search({ id: $("#search-id").value.trim(), data: { image: {} } })));
  $("#search-text-go").addEventListener("click", () => guarded(() => search({ data: { text: { raw: $("#search-text").value } } })));
  $("#eval-go").addEventListener("click", () => guarded(evaluate));
  $("#advice-go").addEventListener("click", () => guarded(advice));
  $("#next-go").addEventListener("click", () => guarded(suggestNext));
  if (state.key) guarded(() => signIn(state.key));
  else guarded(resumeSession);
  // Keep the overview current and say when a background retrain lands.
  setInterval(() => { if (state.app && !document.hidden) refresh(false).catch(() => {}); }, 4000);
});
