// The labeling workbench of the Inputs view: select photos in the grid by mouse (click, shift-click for a
// range, ctrl/cmd-click to add) or keyboard (arrows move, space selects, shift+arrows extend, a = all,
// Escape = none), then label them from the palette: keys 1-9 name its concepts, n switches between
// "is" and "is not", u (or ctrl+z) undoes the last labeling action. "Review the model's guesses" groups
// unlabeled photos by what a model predicts, to accept a whole group at once and leave out the wrong ones.
// Uses app.js's helpers (el, api, state, refresh, guarded, thumbImg, inputName).
"use strict";
const bench = { selected: new Set(), anchor: -1, focus: 0, not: false, undo: [], inputs: new Map() };
const UNDO_DEPTH = 20;

function benchFigures() { return [...document.querySelectorAll("#grid figure[data-input]")]; }

// Called by loadGrid after it drew a page: make the figures selectable and focusable.
function benchGridLoaded(inputs) {
  bench.inputs = new Map(inputs.map((i) => [i.id, i]));
  bench.selected = new Set([...bench.selected].filter((id) => bench.inputs.has(id)));
  const figures = benchFigures();
  figures.forEach((f, i) => {
    f.setAttribute("role", "option");
    f.tabIndex = i === Math.min(bench.focus, figures.length - 1) ? 0 : -1;
    markSelected(f, bench.selected.has(f.dataset.input));
  });
  $("#grid").setAttribute("role", "listbox");
  $("#grid").setAttribute("aria-multiselectable", "true");
  $("#grid").setAttribute("aria-label", "photos: arrows move, space selects, 1-9 label, n toggles not, u undoes");
  renderPalette();
}

function markSelected(figure, on) {
  figure.classList.toggle("selected", on);
  figure.setAttribute("aria-selected", on);
  const box = figure.querySelector("input[type=checkbox]");
  if (box) box.checked = on;
}

function select(index, { extend = false, toggle = false } = {}) {
  const figures = benchFigures();
  if (!figures.length) return;
  index = Math.max(0, Math.min(index, figures.length - 1));
  if (extend && bench.anchor >= 0) {
    const [a, b] = [Math.min(bench.anchor, index), Math.max(bench.anchor, index)];
    bench.selected = new Set(figures.slice(a, b + 1).map((f) => f.dataset.input));
  } else if (toggle) {
    const id = figures[index].dataset.input;
    if (bench.selected.has(id)) bench.selected.delete(id); else bench.selected.add(id);
    bench.anchor = index;
  } else {
    bench.selected = new Set([figures[index].dataset.input]);
    bench.anchor = index;
  }
  figures.forEach((f) => markSelected(f, bench.selected.has(f.dataset.input)));
  focusFigure(index);
  renderPalette();
}

function focusFigure(index) {
  const figures = benchFigures();
  if (!figures.length) return;
  bench.focus = Math.max(0, Math.min(index, figures.length - 1));
  figures.forEach((f, i) => { f.tabIndex = i === bench.focus ? 0 : -1; });
  figures[bench.focus].focus();
}

function columns() {
  const figures = benchFigures();
  if (figures.length < 2) return 1;
  const top = figures[0].offsetTop;
  const n = figures.findIndex((f) => f.offsetTop !== top);
  return n < 0 ? figures.length : n;
}

function onGridClick(ev) {
  const figure = ev.target.closest("figure[data-input]");
  if (!figure) return;
  const index = benchFigures().indexOf(figure);
  if (ev.target.matches("input[type=checkbox]")) {  // the box toggles just this one
    select(index, { toggle: true });
    return;
  }
  ev.preventDefault();
  select(index, { extend: ev.shiftKey, toggle: ev.ctrlKey || ev.metaKey });
}

function onGridKey(ev) {
  if (ev.target.matches("input:not([type=checkbox]), select, textarea")) return;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns(), ArrowUp: -columns() }[ev.key];
  if (step) {
    ev.preventDefault();
    const to = bench.focus + step;
    if (ev.shiftKey) {
      if (bench.anchor < 0) bench.anchor = bench.focus;
      select(to, { extend: true });
    } else focusFigure(to);
    return;
  }
  if (ev.key === "Home" || ev.key === "End") { ev.preventDefault(); focusFigure(ev.key === "Home" ? 0 : benchFigures().length - 1); return; }
  if (ev.key === " " || ev.key === "Enter") { ev.preventDefault(); select(bench.focus, { toggle: true }); return; }
  if (ev.key === "Escape") { ev.preventDefault(); clearSelection(); return; }
  if (benchShortcut(ev)) ev.preventDefault();
}

// Shortcuts shared by the grid and the palette: 1-9, n, u / ctrl+z, a / ctrl+a.
function benchShortcut(ev) {
  if ((ev.key === "z" && (ev.ctrlKey || ev.metaKey)) || (ev.key === "u" && !ev.ctrlKey && !ev.metaKey)) {
    guarded(undoLast, $("#bench-undo")); return true;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return ev.key === "a" && selectAll();
  if (ev.key === "a") return selectAll();
  if (ev.key === "n") { bench.not = !bench.not; renderPalette(); return true; }
  if (/^[1-9]$/.test(ev.key)) {
    const concept = paletteConcepts()[Number(ev.key) - 1];
    if (concept) guarded(() => labelSelected(concept.id, !bench.not), $("#palette"));
    return true;
  }
  return false;
}

function selectAll() {
  bench.selected = new Set(benchFigures().map((f) => f.dataset.input));
  benchFigures().forEach((f) => markSelected(f, true));
  renderPalette();
  return true;
}

function clearSelection() {
  bench.selected.clear();
  benchFigures().forEach((f) => markSelected(f, false));
  renderPalette();
}

function paletteConcepts() { return state.app ? state.app.concepts : []; }

function renderPalette() {
  const palette = $("#palette");
  if (!palette || !state.app) return;
  const n = bench.selected.size;
  const concepts = paletteConcepts();
  const newConcept = el("input", { id: "bench-new", placeholder: "new concept", "aria-label": "new concept",
    onkeydown: (ev) => { if (ev.key === "Enter") { ev.preventDefault(); addNew(); } } });
  const addNew = () => guarded(async () => {
    const id = newConcept.value.trim();
    if (!id) throw new Error("type the new concept's name first");
    await labelSelected(id, !bench.not);
    newConcept.value = "";
  }, newConcept);
  palette.replaceChildren(
    el("span", { class: "selection", id: "bench-selection" }, n ? `${n} selected` : "Select photos (click, shift-click, or arrows + space)"),
    el("button", { type: "button", id: "bench-not", class: "toggle", "aria-pressed": String(bench.not),
      title: "n: label as NOT the concept", onclick: () => { bench.not = !bench.not; renderPalette(); } },
    bench.not ? "is not ✕" : "is ✓"),
    ...concepts.slice(0, 30).map((c, i) => el("button", { type: "button", class: "concept-key", "data-concept": c.id,
      disabled: !n, title: i < 9 ? `key ${i + 1}` : "", onclick: () => guarded(() => labelSelected(c.id, !bench.not)) },
    i < 9 ? el("kbd", {}, String(i + 1)) : "", ` ${c.name}`)),
    newConcept, el("button", { type: "button", id: "bench-add", disabled: !n, onclick: addNew }, "Label with it"),
    el("button", { type: "button", id: "bench-undo", disabled: !bench.undo.length,
      title: "u or ctrl+z", onclick: () => guarded(undoLast, $("#bench-undo")) },
    bench.undo.length ? `Undo: ${bench.undo[bench.undo.length - 1].what}` : "Undo"));
  if (!concepts.length) palette.append(el("span", { class: "hint" }, " No concepts yet: select photos and type the first one."));
}

function wireConcepts(input) {  // an input's labels as the API takes them back (overwrite restores them)
  return (input.data.concepts || []).map((c) => ({ id: c.id, value: c.value ? 1 : 0 }));
}

// Label the selected photos; what they had before is kept for undo.
async function labelSelected(conceptId, positive) {
  const ids = [...bench.selected];
  if (!ids.length) throw new Error("select photos first (click one, or arrows and space)");
  await labelInputs(ids, conceptId, positive);
  clearSelection();
  await refresh(); await loadGrid();
  focusFigure(bench.focus);  // the grid was drawn again: keyboard work goes on where it was
}

async function labelInputs(ids, conceptId, positive, before = null) {
  const previous = ids.map((id) => ({ id, concepts: before ? before.get(id) : wireConcepts(bench.inputs.get(id) || { data: {} }) }));
  await api("PATCH", "/v2/inputs", { action: "merge", inputs: ids.map((id) => ({ id, data: { concepts: [{ id: conceptId, value: positive ? 1 : 0 }] } })) });
  const what = `${ids.length} as ${positive ? "" : "not "}${conceptId}`;
  bench.undo.push({ what, previous });
  if (bench.undo.length > UNDO_DEPTH) bench.undo.shift();
  $("#label-status").textContent = `Labeled ${what}.`;
}

async function undoLast() {
  const last = bench.undo.pop();
  if (!last) throw new Error("nothing to undo");
  await api("PATCH", "/v2/inputs", { action: "overwrite", inputs: last.previous.map((p) => ({ id: p.id, data: { concepts: p.concepts } })) });
  $("#label-status").textContent = `Undone: ${last.what}.`;
  await refresh(); await loadGrid();
  focusFigure(bench.focus);
}

// ---------------------------------------------------------------- review the model's guesses
const REVIEW_MAX = 96;  // the newest unlabeled photos predicted (one request; a predict takes up to 128)

async function reviewGuesses() {
  const box = $("#review-result");
  const modelId = $("#review-model").value;
  const model = state.app.models.find((m) => m.id === modelId);
  if (!model) { box.replaceChildren(emptyState("No model yet: create one and train it, then its guesses show here.", "models")); return; }
  box.replaceChildren(el("p", { class: "hint" }, "Predicting the unlabeled photos…"));
  const { inputs: unlabeled } = await api("GET", `/v2/inputs?unlabeled=true&per_page=${REVIEW_MAX}`);
  if (!unlabeled.length) { box.replaceChildren(el("p", { class: "empty" }, "Every photo here has a label: nothing to review.")); return; }
  const { outputs } = await api("POST", `/v2/models/${encodeURIComponent(modelId)}/outputs`, { inputs: unlabeled.map((i) => ({ id: i.id })) });
  const groups = new Map();
  outputs.forEach((out, i) => {
    const top = out.data.concepts[0];
    if (!top) return;
    if (!groups.has(top.id)) groups.set(top.id, { name: top.name, items: [] });
    groups.get(top.id).items.push({ input: unlabeled[i], value: top.value });
  });
  const sections = [...groups.entries()].sort((a, b) => b[1].items.length - a[1].items.length).map(([conceptId, g]) => {
    g.items.sort((a, b) => b.value - a.value);
    const rejected = new Set();
    const accept = el("button", { type: "button", class: "accept primary" }, "");
    const sayCount = () => { accept.textContent = `Accept ${g.items.length - rejected.size} as ${g.name}`; accept.disabled = rejected.size === g.items.length; };
    const figures = g.items.map(({ input, value }) => {
      const f = el("figure", { "data-input": input.id, tabindex: 0, role: "checkbox", "aria-checked": "true",
        title: "click or space: leave this one out" }, thumbImg(input.id, inputName(input)),
      el("figcaption", {}, inputName(input), el("br"), `${g.name} ${value.toFixed(2)}`));
      const flip = () => {
        if (rejected.has(input.id)) rejected.delete(input.id); else rejected.add(input.id);
        f.classList.toggle("rejected", rejected.has(input.id)); f.setAttribute("aria-checked", !rejected.has(input.id)); sayCount();
      };
      f.addEventListener("click", flip);
      f.addEventListener("keydown", (ev) => { if (ev.key === " " || ev.key === "Enter") { ev.preventDefault(); flip(); } });
      return f;
    });
    const section = el("section", { class: "review-group", "data-concept": conceptId },
      el("h3", {}, `Predicted ${g.name} (${g.items.length})`), el("div", { class: "grid" }, figures), accept);
    accept.addEventListener("click", () => guarded(async () => {
      const ids = g.items.map((x) => x.input.id).filter((id) => !rejected.has(id));
      await labelInputs(ids, conceptId, true, new Map(ids.map((id) => [id, []])));
      section.replaceChildren(el("p", { class: "ok" }, `Labeled ${ids.length} as ${g.name}` +
        (rejected.size ? ` (${rejected.size} left out, still unlabeled).` : ".")));
      renderPalette();
      await refresh(); await loadGrid();
    }, accept));
    sayCount();
    return section;
  });
  box.replaceChildren(el("p", { class: "hint" }, `${unlabeled.length} unlabeled photo(s), grouped by ${modelId}'s guess, most ` +
    "confident first. Click a photo to leave it out, then accept the group."), ...sections);
}

document.addEventListener("DOMContentLoaded", () => {
  const grid = $("#grid");
  grid.addEventListener("click", onGridClick);
  grid.addEventListener("keydown", onGridKey);
  $("#palette").addEventListener("keydown", (ev) => {
    if (!ev.target.matches("input") && benchShortcut(ev)) ev.preventDefault();
  });
  $("#review-go").addEventListener("click", (ev) => guarded(reviewGuesses, ev.currentTarget));
});
