// imgsearch console: databases, image browsing with thumbnails, add, search by image,
// delete. Talks only to this server's signed API at `/` (see sign.js).
import { formEncode, signV3 } from "/console/sign.js";

const $ = (id) => document.getElementById(id);
// Images per page; `?page_size=N` (1-100) overrides it (the browser test pages with 1).
const PAGE = Math.min(100, Math.max(1, Number(new URLSearchParams(location.search).get("page_size")) || 24));
const ADD_MAX = 2 * 1024 * 1024;
const SEARCH_MAX = 3 * 1024 * 1024;
const KEY_ID = "imgsearch.accessKeyId";
const KEY_SECRET = "imgsearch.accessKeySecret";

// Paging is by continuation Token (keyset: no 2,000-record limit, nothing skipped or repeated
// when images are added or deleted meanwhile): tokens[i] opens page i ("" = the first).
const state = {
  db: null, page: 0, tokens: [""], total: 0, filter: "", thumbs: new Map(),
  // Duplicates view: first group shown, and a counter that cancels an older polling loop.
  dupsStart: 0, dupsRun: 0,
};
const DUP_GROUPS = 10;

function firstPage() {
  state.page = 0;
  state.tokens = [""];
}

class ApiError extends Error {
  constructor(code, message, status) {
    super(`${code}: ${message}`);
    this.code = code;
    this.status = status;
  }
}

function credentials() {
  const accessKeyId = sessionStorage.getItem(KEY_ID);
  const secret = sessionStorage.getItem(KEY_SECRET);
  return accessKeyId && secret ? { accessKeyId, secret } : null;
}

async function call(action, params = [], creds = credentials()) {
  if (!creds) throw new ApiError("NotSignedIn", "sign in first", 0);
  const body = formEncode(params);
  const headers = await signV3({ ...creds, action, body });
  let resp;
  try {
    resp = await fetch("/", { method: "POST", headers, body, cache: "no-store" });
  } catch (e) {
    throw new ApiError("NetworkError", `the server could not be reached (${e.message})`, 0);
  }
  let json;
  try {
    json = await resp.json();
  } catch {
    throw new ApiError("BadResponse", `HTTP ${resp.status} without an API body`, resp.status);
  }
  if (!resp.ok) throw new ApiError(json.Code || "Error", json.Message || "", resp.status);
  return json.Data || {};
}

// ---- small UI helpers ----
let toastTimer;
function toast(text, kind = "info") {
  const t = $("toast");
  t.textContent = text;
  t.className = `toast ${kind}`;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), kind === "error" ? 8000 : 3000);
}
const fail = (e) => toast(e.message, "error");

function el(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") n.className = v;
    else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) n.setAttribute(k, v);
  }
  for (const c of children) n.append(c);
  return n;
}

function busy(button, on) {
  button.disabled = on;
  button.classList.toggle("busy", on);
}

function fileToBase64(file) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ""));
    r.onerror = () => reject(new ApiError("ReadError", `cannot read ${file.name}`, 0));
    r.readAsDataURL(file);
  });
}

// ---- views ----
function show(signedIn) {
  $("signin-view").hidden = signedIn;
  $("app-view").hidden = !signedIn;
  $("who").hidden = !signedIn;
  if (signedIn) $("who-key").textContent = credentials().accessKeyId;
}

async function signIn(ev) {
  ev.preventDefault();
  const creds = { accessKeyId: $("akid").value.trim(), secret: $("secret").value };
  const btn = $("signin-submit");
  busy(btn, true);
  $("signin-error").hidden = true;
  try {
    await call("ListImageDbs", [], creds);
    sessionStorage.setItem(KEY_ID, creds.accessKeyId);
    sessionStorage.setItem(KEY_SECRET, creds.secret);
    $("secret").value = "";
    show(true);
    await loadDbs();
  } catch (e) {
    $("signin-error").textContent = e.message;
    $("signin-error").hidden = false;
  } finally {
    busy(btn, false);
  }
}

function signOut() {
  sessionStorage.removeItem(KEY_ID);
  sessionStorage.removeItem(KEY_SECRET);
  state.db = null;
  state.thumbs.clear();
  show(false);
}

async function loadDbs() {
  const data = await call("ListImageDbs");
  const names = (data.DbList || []).map((d) => d.Name).sort();
  const list = $("db-list");
  list.replaceChildren(
    ...names.map((name) =>
      el("li", {},
        el("button", {
          type: "button",
          class: name === state.db ? "db active" : "db",
          "data-db": name,
          onclick: () => selectDb(name),
        }, name)),
    ),
  );
  if (!names.length) list.append(el("li", { class: "muted" }, "No databases yet."));
  if (state.db && !names.includes(state.db)) state.db = null;
  renderDbPanel();
}

function renderDbPanel() {
  $("no-db").hidden = !!state.db;
  $("db-panel").hidden = !state.db;
  for (const b of document.querySelectorAll(".db")) b.classList.toggle("active", b.dataset.db === state.db);
  if (state.db) $("db-title").textContent = state.db;
}

async function selectDb(name) {
  state.db = name;
  firstPage();
  state.filter = "";
  $("filter").value = "";
  $("match-grid").replaceChildren();
  $("match-count").textContent = "";
  $("dups-list").replaceChildren();
  $("dups-page").textContent = "";
  state.dupsStart = 0;
  $("query-preview").hidden = true;
  renderDbPanel();
  showTab("images");
  await loadImages().catch(fail);
}

async function createDb(ev) {
  ev.preventDefault();
  const name = $("new-db").value.trim();
  const btn = $("create-db");
  busy(btn, true);
  try {
    await call("CreateImageDb", [["Name", name]]);
    $("new-db").value = "";
    toast(`Created database ${name}`);
    await loadDbs();
    await selectDb(name);
  } catch (e) {
    fail(e);
  } finally {
    busy(btn, false);
  }
}

async function deleteDb() {
  const name = state.db;
  if (!name || !confirm(`Delete database "${name}" and every image in it? This cannot be undone.`)) return;
  try {
    await call("DeleteImageDb", [["Name", name]]);
    toast(`Deleted database ${name}`);
    state.db = null;
    await loadDbs();
  } catch (e) {
    fail(e);
  }
}

const TABS = { images: "images-pane", search: "search-pane", dups: "dups-pane" };
function showTab(which) {
  for (const [tab, pane] of Object.entries(TABS)) {
    $(pane).hidden = tab !== which;
    $(`tab-${tab}`).classList.toggle("active", tab === which);
  }
  if (which !== "dups") state.dupsRun++;
}

// ---- thumbnails: fetched through the signed GetThumbnail action, cached per tab ----
const thumbQueue = [];
let thumbsRunning = 0;
function thumbnail(db, dataId, img) {
  const key = `${db}/${dataId}`;
  const cached = state.thumbs.get(key);
  if (cached) {
    img.src = cached;
    return;
  }
  thumbQueue.push({ db, dataId, img, key });
  pumpThumbs();
}
function pumpThumbs() {
  while (thumbsRunning < 4 && thumbQueue.length) {
    const job = thumbQueue.shift();
    thumbsRunning++;
    call("GetThumbnail", [["DbName", job.db], ["DataId", job.dataId]])
      .then((d) => {
        const url = `data:${d.ContentType || "image/jpeg"};base64,${d.ImageContent}`;
        state.thumbs.set(job.key, url);
        job.img.src = url;
      })
      .catch(() => job.img.classList.add("broken"))
      .finally(() => {
        thumbsRunning--;
        pumpThumbs();
      });
  }
}

function card({ dataId, entityId, extraData, score, actions }) {
  const img = el("img", { alt: entityId, class: "thumb", loading: "lazy" });
  thumbnail(state.db, dataId, img);
  const meta = el("div", { class: "meta" },
    el("div", { class: "entity", title: entityId }, entityId),
    el("div", { class: "muted small", title: `DataId ${dataId}` }, dataId));
  if (extraData) meta.append(el("div", { class: "extra small", title: extraData }, extraData));
  const c = el("article", { class: "tile", "data-entity": entityId, "data-id": dataId });
  if (score !== undefined) c.append(el("span", { class: "score" }, score.toFixed(2)));
  if (actions) {
    c.append(img, meta, el("div", { class: "actions" }, ...actions));
    return c;
  }
  c.append(img, meta,
    el("div", { class: "actions" },
      el("button", {
        type: "button",
        class: "ghost small similar",
        title: `Search this database with image ${dataId} (no upload: its stored descriptors)`,
        onclick: () => similar(dataId, entityId, img),
      }, "Similar"),
      el("button", {
        type: "button",
        class: "danger ghost small delete-entity",
        title: `Delete every image of entity ${entityId}`,
        onclick: () => deleteEntity(entityId),
      }, "Delete entity")));
  return c;
}

async function loadImages() {
  const db = state.db;
  const params = [["DbName", db], ["Limit", PAGE], ["Order", "desc"]];
  if (state.filter) params.push(["EntityIdPrefix", state.filter]);
  const token = state.tokens[state.page];
  if (token) params.push(["Token", token]);
  const data = await call("ListImages", params);
  if (db !== state.db) return;
  const list = data.ImageList || [];
  state.total = data.TotalCount || 0;
  $("image-grid").replaceChildren(
    ...list.map((r) => card({ dataId: r.DataId, entityId: r.EntityId, extraData: r.ExtraData })),
  );
  state.tokens.length = state.page + 1;
  if (data.Token) state.tokens.push(data.Token);
  const from = list.length ? state.page * PAGE + 1 : 0;
  const to = state.page * PAGE + list.length;
  $("image-count").textContent = state.total
    ? `${state.total} image${state.total === 1 ? "" : "s"}${state.filter ? ` with EntityId starting “${state.filter}”` : ""}`
    : state.filter ? "No images match this filter." : "No images yet: add one above, or use `imgsearch import`.";
  $("page-info").textContent = state.total ? `${from}–${to} of ${state.total}` : "";
  $("prev-page").disabled = state.page === 0;
  $("next-page").disabled = state.tokens.length <= state.page + 1;
}

async function page(delta) {
  const next = state.page + delta;
  if (next < 0 || next >= state.tokens.length) return;
  state.page = next;
  await loadImages().catch(fail);
}

async function deleteEntity(entityId) {
  if (!confirm(`Delete every image of entity "${entityId}"?`)) return;
  try {
    await call("DeleteImage", [["DbName", state.db], ["EntityId", entityId]]);
    toast(`Deleted entity ${entityId}`);
    for (const t of document.querySelectorAll(`.tile[data-entity="${CSS.escape(entityId)}"]`)) t.remove();
    await loadImages();
  } catch (e) {
    fail(e);
  }
}

// EntityId from a file name, as `imgsearch import` makes it: lower-case letters, digits, _.
function entityFromName(name) {
  const stem = name.replace(/\.[^.]*$/, "").toLowerCase().replace(/[^a-z0-9]/g, "_").slice(0, 64);
  return stem || "image";
}

// Adds one or many files, one request at a time (the server admits few uploads per key at
// once), with progress; EntityId empty → made from each file name.
async function addImage(ev) {
  ev.preventDefault();
  const files = [...$("add-file").files];
  if (!files.length) return;
  const btn = $("add-submit");
  const progress = $("add-progress");
  const given = $("add-entity").value.trim();
  const extra = $("add-extra").value;
  const failed = [];
  let added = 0;
  let last;
  busy(btn, true);
  try {
    for (const [i, file] of files.entries()) {
      progress.textContent = `Adding ${i + 1} of ${files.length}…${failed.length ? ` (${failed.length} failed)` : ""}`;
      const entity = given || entityFromName(file.name);
      try {
        if (file.size > ADD_MAX) throw new ApiError("InvalidImage.Size", "larger than 2 MB", 0);
        const content = await fileToBase64(file);
        last = await call("AddImage", [
          ["DbName", state.db],
          ["EntityId", entity],
          ["ExtraData", extra],
          ["ImageContent", content],
        ]);
        added++;
      } catch (e) {
        failed.push(`${file.name}: ${e.message}`);
      }
    }
    progress.textContent = `Added ${added} of ${files.length}` + (failed.length ? `; failed: ${failed.join("; ")}` : "");
    if (files.length === 1 && added === 1) toast(`Added ${files[0].name} as ${given || entityFromName(files[0].name)} (DataId ${last.DataId})`);
    else if (failed.length) toast(`${failed.length} of ${files.length} not added: ${failed.join("; ")}`, "error");
    else toast(`Added ${added} images`);
    if (added) {
      $("add-form").reset();
      firstPage();
      await loadImages();
    }
  } catch (e) {
    fail(e);
  } finally {
    busy(btn, false);
  }
}

async function search(file) {
  if (!file) return;
  if (!/^image\/(jpeg|png)$/.test(file.type) && !/\.(jpe?g|png)$/i.test(file.name)) {
    return fail(new ApiError("InvalidImage.Format", `${file.name} is not a JPEG or PNG`, 0));
  }
  if (file.size > SEARCH_MAX) return fail(new ApiError("InvalidImage.Size", `${file.name} is larger than 3 MB`, 0));
  const preview = $("query-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-text").textContent = `${file.name} — searching…`;
  try {
    const content = await fileToBase64(file);
    const d = await call("SearchImage", [["DbName", state.db], ["Limit", 24], ["ImageContent", content]]);
    showMatches(d.MatchList || []);
  } catch (e) {
    fail(e);
  } finally {
    $("drop-text").textContent = `${file.name} — drop or click for another image`;
  }
}

// "Similar" on a tile: SearchImage with its DataId (our extension): nothing is uploaded,
// the stored descriptors are the query.
async function similar(dataId, entityId, img) {
  showTab("search");
  const preview = $("query-preview");
  if (preview.src.startsWith("blob:")) URL.revokeObjectURL(preview.src);
  preview.src = img.src || "";
  preview.hidden = !img.src;
  $("drop-text").textContent = `Images like ${entityId} (DataId ${dataId}) — drop or click to search with a file`;
  try {
    const d = await call("SearchImage", [["DbName", state.db], ["Limit", 24], ["DataId", dataId]]);
    showMatches(d.MatchList || []);
  } catch (e) {
    fail(e);
  }
}

function showMatches(matches) {
  $("match-count").textContent = matches.length
    ? `${matches.length} match${matches.length === 1 ? "" : "es"} (score 0–10, 10 = the same image)`
    : "No matches: the database is empty.";
  $("match-grid").replaceChildren(
    ...matches.map((m) =>
      card({ dataId: m.DataId, entityId: m.EntityId, extraData: m.ExtraData, score: m.Score })),
  );
}

// ---- Duplicates: ListDuplicates searches a few seconds per call on the server; poll until
// Complete, showing progress, then review each group: keep one, or mark "not a duplicate".
async function findDuplicates(ev) {
  ev?.preventDefault();
  const run = ++state.dupsRun;
  const db = state.db;
  const min = $("dups-min").value || "8";
  const btn = $("dups-scan");
  busy(btn, true);
  try {
    for (;;) {
      const d = await call("ListDuplicates", [
        ["DbName", db], ["MinScore", min], ["Start", state.dupsStart], ["Limit", DUP_GROUPS],
      ]);
      if (run !== state.dupsRun || db !== state.db) return;
      showDuplicates(d);
      if (d.Complete) break;
    }
  } catch (e) {
    fail(e);
  } finally {
    busy(btn, false);
  }
}

function showDuplicates(d) {
  const n = (x) => Number(x).toLocaleString("en");
  const groups = d.Groups || [];
  $("dups-progress").textContent = d.Complete
    ? d.TotalGroups
      ? `${n(d.TotalGroups)} group${d.TotalGroups === 1 ? "" : "s"} of copies among ${n(d.TotalImages)} images. The oldest image is first in each.`
      : `No copies among ${n(d.TotalImages)} images.`
    : `Searching… ${n(d.Searched)} of ${n(d.TotalImages)} images (${n(d.TotalGroups)} groups so far)`;
  if (state.dupsStart > 0 && !groups.length && d.TotalGroups) {
    state.dupsStart = Math.max(0, d.TotalGroups - DUP_GROUPS);
  }
  $("dups-list").replaceChildren(...groups.map(duplicateGroup));
  const from = groups.length ? state.dupsStart + 1 : 0;
  $("dups-page").textContent = d.TotalGroups ? `groups ${from}–${state.dupsStart + groups.length} of ${n(d.TotalGroups)}` : "";
  $("dups-prev").disabled = state.dupsStart === 0;
  $("dups-next").disabled = state.dupsStart + groups.length >= d.TotalGroups;
}

function duplicateGroup(g) {
  const images = g.Images || [];
  const first = images[0];
  const tiles = images.map((m, i) => {
    const others = images.filter((o) => o.DataId !== m.DataId).map((o) => o.DataId);
    const actions = [
      el("button", {
        type: "button",
        class: "ghost small keep",
        title: `Keep ${m.EntityId} (DataId ${m.DataId}) and delete the ${others.length} other image(s) of this group`,
        onclick: () => keepOne(m, others),
      }, "Keep only this"),
    ];
    if (i > 0) {
      actions.push(el("button", {
        type: "button",
        class: "ghost small not-dup",
        title: `${m.EntityId} is not a copy of ${first.EntityId}: never group them again`,
        onclick: () => notDuplicate(first, m),
      }, "Not a copy"));
    }
    const t = card({ dataId: m.DataId, entityId: m.EntityId, extraData: m.ExtraData, score: m.ScoreToFirst, actions });
    if (i === 0) t.classList.add("first");
    return t;
  });
  return el("section", { class: "card dup-group", "data-first": first?.DataId },
    el("div", { class: "grid" }, ...tiles));
}

async function keepOne(m, others) {
  if (!confirm(`Keep ${m.EntityId} (DataId ${m.DataId}) and delete ${others.length} other image${others.length === 1 ? "" : "s"}? This cannot be undone.`)) return;
  try {
    const d = await call("DeleteImage", [["DbName", state.db], ["DataId", others.join(",")]]);
    toast(`Kept ${m.EntityId}; deleted ${d.Deleted} image${d.Deleted === 1 ? "" : "s"}`);
    await findDuplicates();
  } catch (e) {
    fail(e);
  }
}

async function notDuplicate(first, m) {
  try {
    await call("MarkNotDuplicate", [["DbName", state.db], ["DataId", m.DataId], ["OtherDataId", first.DataId]]);
    toast(`Marked ${m.EntityId} as not a copy of ${first.EntityId}`);
    await findDuplicates();
  } catch (e) {
    fail(e);
  }
}

function dupsPage(delta) {
  state.dupsStart = Math.max(0, state.dupsStart + delta * DUP_GROUPS);
  findDuplicates();
}

function wire() {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("create-db-form").addEventListener("submit", createDb);
  $("delete-db").addEventListener("click", deleteDb);
  $("tab-images").addEventListener("click", () => showTab("images"));
  $("tab-search").addEventListener("click", () => showTab("search"));
  $("tab-dups").addEventListener("click", () => {
    showTab("dups");
    findDuplicates();
  });
  $("dups-form").addEventListener("submit", (ev) => {
    state.dupsStart = 0;
    findDuplicates(ev);
  });
  $("dups-prev").addEventListener("click", () => dupsPage(-1));
  $("dups-next").addEventListener("click", () => dupsPage(1));
  $("filter-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.filter = $("filter").value.trim();
    firstPage();
    loadImages().catch(fail);
  });
  $("prev-page").addEventListener("click", () => page(-1));
  $("next-page").addEventListener("click", () => page(1));
  $("add-form").addEventListener("submit", addImage);
  $("search-file").addEventListener("change", (ev) => search(ev.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") $("search-file").click();
  });
  for (const t of ["dragenter", "dragover"]) {
    drop.addEventListener(t, (ev) => {
      ev.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const t of ["dragleave", "drop"]) drop.addEventListener(t, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    search(ev.dataTransfer.files[0]);
  });
}

wire();
if (credentials()) {
  show(true);
  loadDbs().catch((e) => {
    fail(e);
    if (e.status === 404 || e.code === "SignatureDoesNotMatch") signOut();
  });
} else {
  show(false);
}
