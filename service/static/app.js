// Loupe's web page: plain DOM code over the same /v2 API the clients use. The key lives in
// sessionStorage (gone when the tab closes); images are fetched with it and shown as blob URLs.
"use strict";
const $ = (s) => document.querySelector(s);
const state = { key: sessionStorage.getItem("loupe-key") || "", app: null, page: 1, thumbs: new Map() };

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

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Key ${state.key}` } };
  if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const r = await fetch(path, init);
  const data = await r.json().catch(() => ({ status: { description: `HTTP ${r.status}` } }));
  if (!r.ok) {
    const s = data.status || {};
    throw new Error([s.description, s.details].filter(Boolean).join(": ") || `HTTP ${r.status}`);
  }
  return data;
}

function showError(err) { const e = $("#error"); e.textContent = err ? String(err.message || err) : ""; e.hidden = !err; }
async function guarded(fn) { showError(null); try { await fn(); } catch (err) { showError(err); } }

async function thumb(inputId) {
  if (!state.thumbs.has(inputId)) {
    state.thumbs.set(inputId, fetch(`/v2/inputs/${encodeURIComponent(inputId)}/thumbnail`,
      { headers: { Authorization: `Key ${state.key}` } }).then((r) => r.ok ? r.blob() : null)
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
const pct = (v) => `${(100 * v).toFixed(1)}%`;

// ---------------------------------------------------------------- sign in and overview
async function refresh() {
  const { app } = await api("GET", "/v2/loupe/app");
  state.app = app;
  $("#app-summary").textContent =
    `App ${app.id} — backbone ${app.backbone} — ${app.input_count} inputs — key scope ${app.scope}`;
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
  $("#model-concepts").replaceChildren(el("legend", {}, "Concepts"), ...app.concepts.map((c) =>
    el("label", {}, el("input", { type: "checkbox", value: c.id, name: "concept" }), ` ${c.name}`)));
  for (const sel of ["#predict-model", "#eval-model", "#advice-model"]) {
    const s = $(sel), was = s.value;
    s.replaceChildren(...app.models.map((m) => el("option", { value: m.id }, m.id)));
    if (was) s.value = was;
  }
  renderModels();
  $("#search-text").disabled = $("#search-text-go").disabled = !app.supports_text;
}

async function signIn(key) {
  state.key = key.trim();
  await refresh();
  sessionStorage.setItem("loupe-key", state.key);
  $("#signin").hidden = true; $("#main").hidden = false;
  await loadGrid();
}

function showView(name) {
  for (const tab of document.querySelectorAll("nav [role=tab]")) tab.setAttribute("aria-selected", tab.dataset.view === name);
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== `view-${name}`;
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
    try {
      const data = await fileBase64(file);
      const res = await api("POST", "/v2/inputs", { inputs: [{ data: { image: { base64: data }, concepts } }] });
      status.textContent = `stored as ${res.inputs[0].id}`; status.className = "state ok";
    } catch (err) {
      status.textContent = `failed: ${err.message}`; status.className = "state failed";
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
  const concept = $("#filter").value;
  const q = `/v2/inputs?page=${state.page}&per_page=24` + (concept ? `&concept=${encodeURIComponent(concept)}` : "");
  const { inputs } = await api("GET", q);
  $("#page-label").textContent = `Page ${state.page}`;
  const grid = $("#grid"); grid.replaceChildren();
  for (const input of inputs) {
    const labels = input.data.concepts.map((c) => (c.value ? c.name : `not ${c.name}`)).join(", ") || "unlabeled";
    const box = el("input", { type: "checkbox", value: input.id, "aria-label": `select ${input.id}` });
    grid.append(el("figure", { "data-input": input.id }, thumbImg(input.id),
      el("figcaption", {}, box, " ", input.id, el("br"), el("span", { class: "labels" }, labels))));
  }
}

async function applyLabel() {
  const ids = [...document.querySelectorAll("#grid input:checked")].map((b) => b.value);
  const concept = $("#label-concept").value.trim();
  if (!ids.length || !concept) throw new Error("select images and type a concept first");
  const value = Number($("#label-kind").value);
  await api("PATCH", "/v2/inputs", { action: "merge", inputs: ids.map((id) => ({ id, data: { concepts: [{ id: concept, value }] } })) });
  $("#label-status").textContent = `${ids.length} input(s) labeled ${value ? "" : "not "}${concept}`;
  await refresh(); await loadGrid();
}

// ---------------------------------------------------------------- models
function renderModels() {
  const tb = $("#models-table tbody"); tb.replaceChildren();
  for (const m of state.app.models) {
    const v = m.latest_version;
    tb.append(el("tr", { "data-model": m.id }, el("td", {}, m.id),
      el("td", { class: "version" }, `${v.id} ${v.status}${v.status === "trained" ? ` in ${v.train_seconds} s` : ""}`),
      el("td", {}, el("button", { type: "button", onclick: () => guarded(() => train(m.id)) }, `Train ${m.id}`))));
  }
}

async function createModel(ev) {
  ev.preventDefault();
  const concepts = [...document.querySelectorAll("#model-concepts input:checked")].map((b) => ({ id: b.value, value: 1 }));
  await api("POST", "/v2/models", { model: { id: $("#model-id").value.trim(), output_info: { data: { concepts },
    output_config: { concepts_mutually_exclusive: $("#model-me").checked, closed_environment: $("#model-closed").checked } } } });
  await refresh();
}

async function train(modelId) {
  $("#train-status").textContent = `training ${modelId}…`;
  let { model } = await api("POST", `/v2/models/${encodeURIComponent(modelId)}/versions`);
  let v = model.model_version;
  while ([21103, 21101].includes(v.status.code)) {
    await new Promise((r) => setTimeout(r, 1000));
    v = (await api("GET", `/v2/models/${encodeURIComponent(modelId)}/versions/${v.id}`)).model_version;
  }
  const secs = v.train_stats ? ` in ${v.train_stats.seconds} s` : "";
  $("#train-status").textContent = v.status.code === 21100 ? `${modelId}: version ${v.id} trained${secs}`
    : `${modelId}: training failed — ${v.status.details || v.status.description}`;
  await refresh();
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
  const out = await predictWith(modelId, { data: { image: { base64: await fileBase64(file) } } });
  const top = out.data.concepts[0];
  $("#predict-result").replaceChildren(
    el("p", {}, "Top concept: ", el("strong", { id: "top-concept" }, top ? top.name : "none"),
      ` — model ${out.model.id}, version ${out.model.model_version.id}`),
    bars(out.data.concepts),
    el("h3", {}, "Nearest labeled examples that voted"),
    el("div", { class: "thumbs" }, out.data.neighbours.map((n) =>
      el("figure", {}, thumbImg(n.input_id), el("figcaption", {}, `${n.input_id} (similarity ${n.similarity.toFixed(2)})`)))));
}

async function search(query) {
  const { hits } = await api("POST", "/v2/searches", { query: { ands: [{ output: { input: query } }] } });
  $("#search-results").replaceChildren(...hits.map((h) => el("figure", { "data-input": h.input.id }, thumbImg(h.input.id),
    el("figcaption", {}, `${h.input.id} — score ${h.score.toFixed(3)}`))));
}

// ---------------------------------------------------------------- evaluation
function rocPlot(metrics) {
  const ns = "http://www.w3.org/2000/svg", size = 220;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", size); svg.setAttribute("height", size); svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "ROC curves per concept");
  const colours = ["#0b57d0", "#b3261e", "#1a7f37", "#8e24aa", "#e37400", "#00838f", "#5d4037", "#c2185b", "#455a64", "#827717"];
  metrics.forEach((m, i) => {
    if (!m.roc_curve) return;
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", m.roc_curve.fpr.map((x, j) => `${x * size},${(1 - m.roc_curve.tpr[j]) * size}`).join(" "));
    line.setAttribute("fill", "none"); line.setAttribute("stroke", colours[i % colours.length]); line.setAttribute("stroke-width", 2);
    svg.append(line);
  });
  return svg;
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
  el("table", { id: "eval-table" }, el("thead", {}, el("tr", {}, ["Concept", "Positives", "Negatives", "ROC AUC", "Precision", "Recall", "F1"].map((h) => el("th", {}, h)))),
    el("tbody", {}, metrics.binary_metrics.map((m) => el("tr", {}, el("td", {}, m.concept.id), el("td", {}, m.num_pos), el("td", {}, m.num_neg),
      el("td", {}, m.roc_auc == null ? "—" : m.roc_auc.toFixed(3)), el("td", {}, m.precision.toFixed(3)), el("td", {}, m.recall.toFixed(3)), el("td", {}, m.f1.toFixed(3)))))),
  el("h3", {}, "ROC curves"), rocPlot(metrics.binary_metrics)];
  if (metrics.confusion_matrix) {
    const ids = metrics.confusion_matrix.concept_ids, cell = {};
    for (const c of metrics.confusion_matrix.matrix) cell[`${c.actual}|${c.predicted}`] = c.value;
    parts.push(el("h3", {}, "Confusion matrix (rows: actual, columns: predicted)"), el("table", { id: "confusion" },
      el("thead", {}, el("tr", {}, el("th", {}, ""), ids.map((p) => el("th", {}, p)))),
      el("tbody", {}, ids.map((a) => el("tr", {}, el("th", {}, a), ids.map((p) => el("td", {}, cell[`${a}|${p}`] || 0)))))));
  }
  parts.push(el("h3", {}, `Misclassified (${metrics.test_set.length})`), el("div", { class: "thumbs" },
    metrics.test_set.slice(0, 40).map((t) => el("figure", {}, thumbImg(t.id),
      el("figcaption", {}, `${t.id}: is ${t.ground_truth_concepts.map((c) => c.id).join(", ") || "—"}`)))));
  $("#eval-result").replaceChildren(...parts);
}

// ---------------------------------------------------------------- advice
async function advice() {
  const modelId = $("#advice-model").value;
  const { findings } = await api("GET", `/v2/models/${encodeURIComponent(modelId)}/advice`);
  const box = $("#advice-result");
  box.replaceChildren(el("p", {}, findings.length ? `${findings.length} finding(s)` : "No problems found."));
  for (const f of findings) {
    const item = el("div", { class: `finding ${f.kind}`, "data-kind": f.kind, "data-inputs": f.input_ids.join(" ") },
      el("p", {}, f.message), el("div", { class: "thumbs" }, f.input_ids.map((id) => thumbImg(id))));
    if (f.kind === "suspected_mislabel" && f.suggested_concept) {
      const inputId = f.input_ids[0];
      item.append(el("button", { type: "button", class: "fix", onclick: () => guarded(() => relabel(modelId, inputId, f.concept_ids[0], f.suggested_concept, item)) },
        `Relabel ${inputId} as ${f.suggested_concept}`));
    }
    box.append(item);
  }
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
  $("#signin-form").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(() => signIn($("#key").value)); });
  $("#signout").addEventListener("click", () => { sessionStorage.removeItem("loupe-key"); location.reload(); });
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
  if (state.key) guarded(() => signIn(state.key));
});
