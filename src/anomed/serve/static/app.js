// anomed review page: worklist, viewer, threshold, verdicts. Plain JS, no build step.
// Every API call goes through api(); pictures are fetched with the token and shown as blob URLs.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("anomed-token") || "",
  models: [],
  model: null, // the selected model's description
  studies: [],
  studiesText: "", // the last worklist answer, to redraw only when it changed
  threshold: null, // the threshold the worklist is decided at (the slider)
  selected: null, // the open study
  slice: 0,
  blobs: new Map(), // url -> object URL of the open study's pictures
};

// ------------------------------------------------------------------ API

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.token) headers.set("Authorization", `Bearer ${state.token}`);
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("token-box").hidden = false;
    throw new Error("this server needs a token");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      message = body.message || message;
    } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

async function blobURL(url) {
  if (!state.blobs.has(url)) {
    const blob = await (await api(url)).blob();
    state.blobs.set(url, URL.createObjectURL(blob));
  }
  return state.blobs.get(url);
}

function dropBlobs() {
  for (const objectURL of state.blobs.values()) URL.revokeObjectURL(objectURL);
  state.blobs.clear();
}

// ------------------------------------------------------------------ decisions

const fmt = (x) => (x === null || x === undefined ? "–" : Number(x).toPrecision(4));

// One number format for every label of a colour scale, as anomed.viz.scale.scale_format:
// fixed-point with the decimals that give the span three significant digits, or scientific
// with two decimals for very large or very small magnitudes.
function scaleFormat(lo, hi) {
  const big = Math.max(Math.abs(lo), Math.abs(hi));
  const span = Math.abs(hi - lo) || big || 1;
  const scientific = big >= 1e5 || (big > 0 && big < 1e-3) || span < 1e-6;
  const decimals = Math.max(0, Math.min(6, 2 - Math.floor(Math.log10(span))));
  return (x) => {
    if (x === null || x === undefined) return "–";
    if (!Number.isFinite(x)) return String(x);
    if (scientific) return x.toExponential(2).replace(/e([+-])(\d)$/, "e$10$2");
    const text = x.toFixed(decimals);
    return Number(text) === 0 ? text.replace(/^-/, "") : text;
  };
}

function decide(study) {
  if (study.status !== "ok" || study.score === null) return "error";
  if (state.threshold === null) return "none";
  return study.score > state.threshold ? "abnormal" : "normal";
}

// ------------------------------------------------------------------ models and threshold

async function loadModels() {
  state.models = await getJSON("/api/models");
  const select = $("model");
  select.replaceChildren(...state.models.map((m) => new Option(m.name, m.name)));
  $("model-picker").hidden = state.models.length < 2;
  const saved = sessionStorage.getItem("anomed-model");
  selectModel(state.models.find((m) => m.name === saved) || state.models[0]);
}

function selectModel(model) {
  state.model = model;
  if (!model) return;
  sessionStorage.setItem("anomed-model", model.name);
  $("model").value = model.name;
  const init = model.backbone.random_init ? ", random-init backbone: scores are not clinical" : "";
  $("model-info").textContent = `${model.method} · ${model.backbone.model}${init}`;
  $("bar").style.background = `linear-gradient(to top, ${model.colour_scale.join(", ")})`;
  state.threshold = model.threshold;
  $("threshold-reset").disabled = model.threshold === null;
}

function sliderRange() {
  const values = state.studies.map((s) => s.score).filter((x) => x !== null);
  if (state.model && state.model.threshold !== null) values.push(state.model.threshold);
  if (!values.length) return [0, 1];
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const pad = (hi - lo) * 0.02;
  return [lo - pad, hi + pad];
}

function syncSlider() {
  const [lo, hi] = sliderRange();
  const slider = $("threshold");
  slider.min = lo;
  slider.max = hi;
  slider.step = (hi - lo) / 500;
  if (state.threshold === null) {
    const scores = state.studies.map((s) => s.score).filter((x) => x !== null).sort((a, b) => a - b);
    state.threshold = scores.length ? scores[Math.floor(scores.length / 2)] : (lo + hi) / 2;
  }
  slider.value = state.threshold;
  showThreshold();
}

function showThreshold() {
  const calibrated = state.model && state.model.threshold;
  const mark = calibrated !== null && calibrated !== undefined &&
    Math.abs(state.threshold - calibrated) < 1e-12 ? " (calibrated)" : "";
  const none = calibrated === null ? " (no calibrated threshold)" : "";
  $("threshold-value").textContent = fmt(state.threshold) + (mark || none);
}

// ------------------------------------------------------------------ worklist

async function loadStudies(onlyIfChanged = false) {
  if (!state.model) return;
  const response = await api(`/api/studies?model=${encodeURIComponent(state.model.name)}`);
  const text = await response.text();
  if (onlyIfChanged && text === state.studiesText) return;
  state.studiesText = text;
  state.studies = JSON.parse(text);
  syncSlider();
  renderWorklist();
}

function visible(study) {
  const decision = $("filter-decision").value;
  const reviewed = $("filter-reviewed").value;
  const domain = $("filter-domain").value;
  if (decision !== "all" && decide(study) !== decision) return false;
  if (domain === "out" && study.in_domain !== false) return false;
  if (domain === "in" && study.in_domain !== true) return false;
  if (reviewed === "yes" && !study.verdict) return false;
  if (reviewed === "no" && study.verdict) return false;
  return true;
}

function domainBadge() {
  const badge = document.createElement("span");
  badge.className = "badge-domain";
  badge.textContent = "outside training domain";
  badge.title = "outside this detector's training domain: the decision may not mean anything";
  return badge;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderWorklist() {
  const rows = [];
  let abnormal = 0;
  for (const study of state.studies) {
    const decision = decide(study);
    if (decision === "abnormal") abnormal += 1;
    if (!visible(study)) continue;
    const tr = document.createElement("tr");
    tr.dataset.id = study.id;
    tr.dataset.decision = decision;
    if (state.selected && state.selected.id === study.id) tr.classList.add("selected");
    const name = cell(study.kind === "volume" ? `${study.name} (${study.n_slices} slices)` : study.name, "name");
    name.title = study.name;
    if (study.in_domain === false) name.append(" ", domainBadge());
    const verdict = document.createElement("td");
    if (study.verdict) {
      const badge = document.createElement("span");
      badge.className = `verdict verdict-${study.verdict.verdict}`;
      badge.textContent = study.verdict.verdict;
      verdict.append(badge);
    }
    tr.append(name, cell(fmt(study.score), "score"), cell(decision, `decision decision-${decision}`), verdict);
    tr.addEventListener("click", () => openStudy(study.id));
    rows.push(tr);
  }
  $("worklist").tBodies[0].replaceChildren(...rows);
  $("empty-list").hidden = state.studies.length > 0;
  $("counts").textContent = `${rows.length} shown · ${abnormal} of ${state.studies.length} abnormal`;
  if (state.selected) showMeta(state.studies.find((s) => s.id === state.selected.id) || state.selected);
}

// ------------------------------------------------------------------ viewer

async function openStudy(id) {
  const study = await getJSON(`/api/studies/${id}`);
  if (!state.selected || state.selected.id !== id) dropBlobs();
  state.selected = study;
  history.replaceState(null, "", `#study=${study.id}`);
  $("viewer-empty").hidden = true;
  $("viewer").hidden = false;
  $("study-name").textContent = study.name;
  const barFormat = scaleFormat(study.map_range[0], study.map_range[1]);
  $("bar-max").textContent = barFormat(study.map_range[1]);
  $("bar-min").textContent = barFormat(study.map_range[0]);
  showVerdict(study);
  showDownloads(study);
  const volume = study.kind === "volume";
  $("slice-controls").hidden = !volume;
  if (volume) {
    $("slice").max = study.n_slices - 1;
    await showSlice(study.max_slice ?? 0);
  } else {
    await showPicture(study.urls.image, study.urls.heatmap);
  }
  renderWorklist();
}

function showMeta(study) {
  const decision = decide(study);
  const parts = [`score ${fmt(study.score)}`, `decision at ${fmt(state.threshold)}: ${decision}`];
  if (study.decision) parts.push(`at the calibrated threshold: ${study.decision}`);
  if (study.error) parts.push(`error: ${study.error}`);
  if (study.in_domain === false) parts.push("outside this detector's training domain");
  parts.push(study.file_kind);
  $("study-meta").textContent = parts.join(" · ");
  if (study.kind === "volume") drawStrip();
}

async function showPicture(imageURL, heatURL) {
  const [base, heat] = await Promise.all([
    blobURL(imageURL),
    heatURL ? blobURL(heatURL) : Promise.resolve(null),
  ]);
  $("base").src = base;
  $("heat").hidden = !heat;
  if (heat) $("heat").src = heat;
  applyOpacity();
}

function applyOpacity() {
  $("heat").style.opacity = $("opacity").value / 100;
}

async function showSlice(index) {
  const study = state.selected;
  if (!study || study.kind !== "volume") return;
  index = Math.max(0, Math.min(study.n_slices - 1, index));
  state.slice = index;
  $("slice").value = index;
  const score = study.slice_scores[index];
  $("slice-label").textContent = `${index + 1} / ${study.n_slices} · score ${score === null ? "not scored (empty)" : fmt(score)}`;
  const fill = (template) => template.replace("{index}", String(index));
  drawStrip();
  await showPicture(fill(study.urls.slice_image), score === null ? null : fill(study.urls.slice_heatmap));
}

function drawStrip() {
  const study = state.selected;
  const canvas = $("slice-strip");
  if (!study || study.kind !== "volume") return;
  canvas.width = canvas.clientWidth || 400;
  const ctx = canvas.getContext("2d");
  const scores = study.slice_scores;
  const known = scores.filter((x) => x !== null);
  const lo = Math.min(...known, state.threshold ?? Infinity);
  const hi = Math.max(...known, state.threshold ?? -Infinity);
  const w = canvas.width / scores.length;
  const h = canvas.height;
  ctx.clearRect(0, 0, canvas.width, h);
  scores.forEach((score, i) => {
    if (score === null) {
      ctx.fillStyle = "#e3e6ea";
      ctx.fillRect(i * w, h - 3, Math.max(1, w - 1), 3);
      return;
    }
    const height = 4 + ((score - lo) / Math.max(hi - lo, 1e-12)) * (h - 8);
    ctx.fillStyle = state.threshold !== null && score > state.threshold ? "#b3261e" : "#6b8fc7";
    ctx.fillRect(i * w, h - height, Math.max(1, w - 1), height);
  });
  if (state.threshold !== null) {
    const y = h - 4 - ((state.threshold - lo) / Math.max(hi - lo, 1e-12)) * (h - 8);
    ctx.strokeStyle = "#222";
    ctx.setLineDash([4, 3]);
    ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(canvas.width, y); ctx.stroke();
    ctx.setLineDash([]);
  }
  ctx.strokeStyle = "#000";
  ctx.lineWidth = 2;
  ctx.strokeRect(state.slice * w, 1, Math.max(2, w - 1), h - 2);
  ctx.lineWidth = 1;
}

// ------------------------------------------------------------------ verdicts and downloads

function showVerdict(study) {
  const current = study.verdict ? study.verdict.verdict : null;
  for (const input of document.querySelectorAll('input[name="verdict"]')) {
    input.checked = input.value === current;
  }
  $("note").value = study.verdict ? study.verdict.note : "";
  $("verdict-status").textContent = study.verdict
    ? `saved ${new Date(study.verdict.reviewed_at * 1000).toLocaleString()}`
    : "not reviewed";
}

async function saveVerdict() {
  const chosen = document.querySelector('input[name="verdict"]:checked');
  if (!state.selected || !chosen) {
    $("verdict-status").textContent = "choose agree, disagree or unsure first";
    return;
  }
  const body = JSON.stringify({ verdict: chosen.value, note: $("note").value });
  const study = await (await api(`/api/studies/${state.selected.id}/verdict`, {
    method: "PUT", headers: { "Content-Type": "application/json" }, body,
  })).json();
  state.selected = study;
  const i = state.studies.findIndex((s) => s.id === study.id);
  if (i >= 0) state.studies[i] = study;
  showVerdict(study);
  renderWorklist();
}

function showDownloads(study) {
  const links = [["overlay", "overlay PNG"], ["anomaly_nifti", "anomaly NIfTI"], ["slices_csv", "slice CSV"]];
  const items = links.filter(([key]) => study.urls[key]).map(([key, label]) => {
    const a = document.createElement("a");
    a.href = "#";
    a.textContent = label;
    a.addEventListener("click", (event) => {
      event.preventDefault();
      download(study.urls[key], `${study.id}_${study.urls[key].split("/").pop()}`).catch(report);
    });
    return a;
  });
  $("downloads").replaceChildren(...items);
}

async function download(url, filename) {
  const blob = await (await api(url)).blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

async function exportCSV() {
  const params = new URLSearchParams();
  if (state.model) params.set("model", state.model.name);
  if (state.threshold !== null) params.set("threshold", String(state.threshold));
  await download(`/api/export.csv?${params}`, "anomed-review.csv");
}

// ------------------------------------------------------------------ uploads

async function upload(event) {
  event.preventDefault();
  const files = $("upload").files;
  if (!files.length || !state.model) return;
  const form = new FormData();
  for (const file of files) form.append("files", file, file.name);
  $("job-status").textContent = `uploading ${files.length} file(s)…`;
  const job = await (await api(`/api/studies?model=${encodeURIComponent(state.model.name)}`, {
    method: "POST", body: form,
  })).json();
  $("upload").value = "";
  await followJob(job.status_url);
}

async function followJob(url) {
  for (;;) {
    const job = await getJSON(url);
    const failed = job.errors.map((e) => `${e.name}: ${e.message}`).join("; ");
    $("job-status").textContent = `${job.done} / ${job.total} done` +
      (job.failed ? `, ${job.failed} failed (${failed})` : "") + (job.status === "done" ? "" : "…");
    if (job.status !== "queued" && job.status !== "running") break;
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  await loadStudies();
}

// ------------------------------------------------------------------ wiring

function report(error) {
  showMessage(error.message || String(error));
}

function onKey(event) {
  const typing = ["TEXTAREA", "SELECT", "INPUT", "BUTTON"].includes(event.target.tagName);
  if (typing || !state.selected || state.selected.kind !== "volume") return;
  const step = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10 }[event.key];
  if (step) {
    event.preventDefault();
    showSlice(state.slice + step).catch(report);
  }
}

function init() {
  $("threshold").addEventListener("input", () => {
    state.threshold = Number($("threshold").value);
    showThreshold();
    renderWorklist();
  });
  $("threshold-reset").addEventListener("click", () => {
    if (state.model) state.threshold = state.model.threshold;
    syncSlider();
    renderWorklist();
  });
  $("filter-decision").addEventListener("change", renderWorklist);
  $("filter-reviewed").addEventListener("change", renderWorklist);
  $("filter-domain").addEventListener("change", renderWorklist);
  $("model").addEventListener("change", () => {
    selectModel(state.models.find((m) => m.name === $("model").value));
    state.selected = null;
    $("viewer").hidden = true;
    $("viewer-empty").hidden = false;
    loadStudies().catch(report);
  });
  $("opacity").addEventListener("input", applyOpacity);
  $("slice").addEventListener("input", () => showSlice(Number($("slice").value)).catch(report));
  $("picture").addEventListener("wheel", (event) => {
    if (!state.selected || state.selected.kind !== "volume") return;
    event.preventDefault();
    showSlice(state.slice + (event.deltaY > 0 ? 1 : -1)).catch(report);
  }, { passive: false });
  $("slice-strip").addEventListener("click", (event) => {
    const study = state.selected;
    const rect = event.target.getBoundingClientRect();
    showSlice(Math.floor(((event.clientX - rect.left) / rect.width) * study.n_slices)).catch(report);
  });
  document.addEventListener("keydown", onKey);
  $("save-verdict").addEventListener("click", () => saveVerdict().catch(report));
  $("upload-form").addEventListener("submit", (event) => upload(event).catch(report));
  $("export").addEventListener("click", () => exportCSV().catch(report));
  $("token-save").addEventListener("click", () => {
    state.token = $("token").value.trim();
    sessionStorage.setItem("anomed-token", state.token);
    $("token-box").hidden = true;
    showMessage("");
    start();
  });
  window.addEventListener("resize", drawStrip);
  // studies posted by other clients (curl, scripts) appear without a reload
  setInterval(() => {
    if (!document.hidden && state.model) loadStudies(true).catch(report);
  }, 15000);
  start();
}

async function start() {
  try {
    await loadModels();
    await loadStudies();
    const open = new URLSearchParams(location.hash.slice(1)).get("study");
    if (open) await openStudy(open);
    document.body.dataset.ready = "1";
  } catch (error) {
    report(error);
  }
}

document.addEventListener("DOMContentLoaded", init);
