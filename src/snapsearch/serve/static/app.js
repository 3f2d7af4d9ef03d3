// snapsearch page: pick or drop a photo, POST it to /search, render the cascade's answer.
// Plain DOM code, no framework; every value from the service goes in through textContent.
"use strict";

const $ = (selector) => document.querySelector(selector);

const els = {
  fileInput: $("#file-input"),
  dropZone: $("#drop-zone"),
  preview: $("#preview"),
  previewMeta: $("#preview-meta"),
  strategy: $("#strategy"),
  k: $("#k"),
  catalogInfo: $("#catalog-info"),
  error: $("#error"),
  results: $("#results"),
  placeholder: $("#placeholder"),
  searching: $("#searching"),
  noMatch: $("#no-match"),
  noMatchDetail: $("#no-match-detail"),
  summary: $("#summary"),
  categories: $("#categories"),
  route: $("#route"),
  timings: $("#timings"),
  productsHeading: $("#products-heading"),
  cards: $("#cards"),
};

let currentFile = null;
let previewUrl = null;
// Aborting the previous request keeps a slow, stale answer from overwriting a newer one.
let inFlight = null;

function setState(state) {
  document.body.dataset.state = state;
  els.results.setAttribute("aria-busy", String(state === "searching"));
  els.searching.hidden = state !== "searching";
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// ---------- talking to the service ----------

// FastAPI answers {"detail": "..."} for our own errors but a list of {msg} for request validation (422).
function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
  return JSON.stringify(detail);
}

async function fetchJson(url, options) {
  let response;
  try {
    response = await fetch(url, options);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error("Could not reach the search service. Check your connection and try again.");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.detail !== undefined ? describeDetail(body.detail) : "";
    throw new Error(message || `The service answered ${response.status} ${response.statusText}`.trim());
  }
  if (body === null) throw new Error("The service sent a response that is not JSON.");
  return body;
}

async function loadInfo() {
  try {
    const info = await fetchJson("/info");
    fillStrategies(info.strategies, info.default_strategy, info.query_types);
    if (info.k_max) els.k.max = String(info.k_max);
    els.catalogInfo.textContent =
      `${info.name} · ${info.n_products.toLocaleString()} products · ${info.runtime}`;
  } catch (err) {
    showError(`Could not load the catalog info: ${err.message}`);
  }
}

// With a query-type head, "auto" (no strategy sent) lets each query's detected type choose its route.
function fillStrategies(strategies, defaultStrategy, queryTypes) {
  const options = strategies.map((name) => {
    const option = el("option", "", name);
    option.value = name;
    option.selected = !queryTypes && name === defaultStrategy;
    return option;
  });
  if (queryTypes) {
    const auto = el("option", "", `auto (by query type; photos: ${defaultStrategy})`);
    auto.value = "";
    auto.selected = true;
    options.unshift(auto);
  }
  els.strategy.replaceChildren(...options);
}

// ---------- searching ----------

function chooseFile(file) {
  if (!file) return;
  currentFile = file;
  showPreview(file);
  search();
}

function showPreview(file) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  els.preview.src = previewUrl;
  els.preview.hidden = false;
  els.dropZone.classList.add("has-preview");
  els.previewMeta.textContent = file.name;
  els.previewMeta.hidden = false;
}

async function search() {
  if (!currentFile) return;
  if (inFlight) inFlight.abort();
  if (!els.k.checkValidity()) {
    showError(`Results (k) must be a whole number from ${els.k.min} to ${els.k.max || "the service's limit"}.`);
    return;
  }
  const controller = new AbortController();
  inFlight = controller;

  clearResults();
  hideError();
  setState("searching");

  const params = new URLSearchParams({ k: els.k.value });
  if (els.strategy.value) params.set("strategy", els.strategy.value);
  const form = new FormData();
  form.append("image", currentFile, currentFile.name);
  try {
    const answer = await fetchJson(`/search?${params}`, {
      method: "POST",
      body: form,
      signal: controller.signal,
    });
    renderResults(answer);
    setState("done");
  } catch (err) {
    if (err.name === "AbortError") return;
    showError(err.message);
  } finally {
    if (inFlight === controller) inFlight = null;
  }
}

// ---------- rendering ----------

function showError(message) {
  clearResults();
  els.error.textContent = message;
  els.error.hidden = false;
  setState("error");
}

function hideError() {
  els.error.hidden = true;
  els.error.textContent = "";
}

function clearResults() {
  els.placeholder.hidden = true;
  els.noMatch.hidden = true;
  els.summary.hidden = true;
  els.productsHeading.hidden = true;
  els.categories.replaceChildren();
  els.route.replaceChildren();
  els.timings.replaceChildren();
  els.cards.replaceChildren();
}

function renderResults(answer) {
  if (answer.image) {
    els.previewMeta.textContent = `${currentFile.name} · ${answer.image.width} × ${answer.image.height} px`;
  }
  renderNoMatch(answer.rejected, answer.rejection);
  renderCategories(answer.categories, answer.route);
  renderRoute(answer.route, answer);
  renderTimings(answer.timings_ms);
  renderProducts(answer.products, answer.rejected);
  els.summary.hidden = false;
}

function renderNoMatch(rejected, rejection) {
  els.noMatch.hidden = !rejected;
  els.noMatchDetail.textContent =
    rejected && rejection
      ? `The best score ${rejection.score.toFixed(3)} is below the threshold ${rejection.threshold.toFixed(3)}.`
      : "";
}

// The label and the bar width use the same rounded number so they never disagree.
function percent(probability) {
  return (Math.min(Math.max(probability, 0), 1) * 100).toFixed(1);
}

function renderCategories(categories, route) {
  const searched = new Set((route && route.partitions) || []);
  els.categories.replaceChildren(
    ...categories.map(({ category, probability }) => {
      const pct = percent(probability);
      const row = el("div", searched.has(category) ? "prob-bar routed" : "prob-bar");
      const track = el("div", "prob-track");
      const fill = el("div", "prob-fill");
      fill.style.width = `${pct}%`;
      track.append(fill);
      row.append(el("span", "prob-label", category), track, el("span", "prob-value", `${pct}%`));
      row.title = searched.has(category) ? `${category}: searched` : category;
      return row;
    })
  );
}

// Long routes (conformal sets) list the first few partitions and count the rest.
const MAX_LISTED_PARTITIONS = 5;

// What arrived (the query-type gate's call), the route it took, and what was read from the image.
function describeQuery(answer) {
  const parts = [];
  if (answer.barcode) parts.push(`barcode ${answer.barcode}`);
  if (answer.text && answer.text.read) {
    parts.push(`read "${answer.text.read}"${answer.text.used ? "" : " (too little to use)"}`);
  }
  return parts.length ? ` · ${parts.join(" · ")}` : "";
}

function renderRoute(route, answer) {
  const kind = el("span", "query-type", answer.query_type);
  const strategy = el("span", "route-strategy", route.strategy);
  let where;
  if (route.fallback_to_global) {
    // the whole pool: by design for global search, a fallback for a gated strategy
    where = route.strategy === "global" ? "global search" : "global search (fallback)";
  } else if (!route.partitions || route.partitions.length === 0) {
    where = "global search";
  } else {
    const shown = route.partitions.slice(0, MAX_LISTED_PARTITIONS).join(", ");
    const more = route.partitions.length - MAX_LISTED_PARTITIONS;
    const noun = route.partitions.length === 1 ? "partition" : "partitions";
    where = `searched ${route.partitions.length} ${noun}: ${shown}${more > 0 ? ` and ${more} more` : ""}`;
  }
  els.route.replaceChildren(
    kind,
    document.createTextNode(" → "),
    strategy,
    document.createTextNode(` · ${where}${describeQuery(answer)}`),
  );
}

function renderTimings(timings) {
  const stages = Object.entries(timings).filter(([stage]) => stage !== "total");
  if (timings.total !== undefined) stages.push(["total", timings.total]);
  els.timings.replaceChildren(
    ...stages.map(([stage, ms]) => {
      const item = el("div", stage === "total" ? "timing total" : "timing");
      item.append(el("dt", "", stage), el("dd", "", `${ms.toFixed(1)} ms`));
      return item;
    })
  );
}

function renderProducts(products, rejected) {
  els.productsHeading.textContent = rejected ? "Closest products" : "Products";
  els.productsHeading.hidden = false;
  els.cards.replaceChildren(...products.map(renderCard));
}

function renderCard(product) {
  const card = el("li", "card");
  const image = el("img", "card-image");
  image.src = product.image_url;
  image.alt = `Catalog photo of ${product.name}`;
  image.decoding = "async";

  const body = el("div", "card-body");
  const score = el("p", "card-score-row");
  score.append(el("span", "muted", "score "), el("span", "card-score", product.score.toFixed(3)));
  body.append(
    el("p", "card-name", product.name),
    el("p", "card-category", product.category),
    el("p", "card-id", product.product_id),
    score
  );
  card.append(el("span", "card-rank", `#${product.rank}`), image, body);
  return card;
}

// ---------- wiring ----------

function wireDropZone() {
  const zone = els.dropZone;
  // preventDefault on dragover is what makes the zone a valid drop target at all.
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    chooseFile(event.dataTransfer.files[0]);
  });
}

els.fileInput.addEventListener("change", () => chooseFile(els.fileInput.files[0]));
// Changing the strategy or k re-runs the same photo, so strategies are easy to compare.
els.strategy.addEventListener("change", search);
els.k.addEventListener("change", search);
wireDropZone();
loadInfo();
