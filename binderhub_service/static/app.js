// The page: build form, live log, history and saved images.
import { call, streamEvents } from "./api.js";
import { LogView } from "./log.js";

const $ = (id) => document.getElementById(id);
const me = { name: document.body.dataset.user, admin: document.body.dataset.admin === "1" };
const log = new LogView($("log"));
const HISTORY_PAGE = 20;
let providers = [];
let current = null; // { id, controller, record, last, lines }

function setText(id, text) { $(id).textContent = text ?? ""; }

function hashParams() {
  return new URLSearchParams(location.hash.slice(1));
}

// --- build form ---------------------------------------------------------

function showProvider() {
  const p = providers.find((x) => x.id === $("provider").value);
  if (!p) return;
  setText("repo-label", p.repo.label || "Repository");
  $("repo").placeholder = p.repo.placeholder || "";
  $("ref").disabled = !p.ref.enabled;
  $("ref").placeholder = p.ref.enabled ? (p.ref.default || "HEAD") : "";
}

async function loadProviders() {
  providers = await call("GET", "api/repoproviders");
  const select = $("provider");
  select.replaceChildren();
  for (const p of providers) {
    const option = document.createElement("option");
    option.value = p.id;
    option.textContent = p.displayName;
    select.appendChild(option);
  }
  showProvider();
}

function specFor(p, repo, ref) {
  const repoPart = p.repo.urlEncode ? encodeURIComponent(repo) : repo;
  if (!p.ref.enabled) return repoPart;
  return `${repoPart}/${encodeURIComponent(ref || p.ref.default || "HEAD")}`;
}

async function submitBuild(event) {
  event.preventDefault();
  setText("form-error", "");
  const p = providers.find((x) => x.id === $("provider").value);
  const repo = $("repo").value.trim();
  if (!p || !repo) return;
  const spec = specFor(p, repo, $("ref").value.trim());
  if (p.spec && p.spec.validateRegex && !new RegExp(p.spec.validateRegex).test(spec)) {
    setText("form-error", `That is not a valid ${p.displayName} repository.`);
    return;
  }
  $("build-button").disabled = true;
  try {
    const record = await call("POST", "api/v1/builds", { provider: p.id, spec });
    location.hash = `build=${record.id}`;
  } catch (error) {
    setText("form-error", error.message);
  } finally {
    $("build-button").disabled = false;
  }
}

// --- one build: status and log -----------------------------------------

const storageKey = (id) => `bhs-log:${id}`;

function saveProgress() {
  if (!current) return;
  try {
    sessionStorage.setItem(
      storageKey(current.id),
      JSON.stringify({ last: current.last, lines: current.lines }),
    );
  } catch {
    sessionStorage.removeItem(storageKey(current.id));
  }
}

function restoreProgress(id) {
  try {
    const saved = JSON.parse(sessionStorage.getItem(storageKey(id)) || "null");
    if (saved && Number.isInteger(saved.last) && Array.isArray(saved.lines)) return saved;
  } catch { /* a damaged entry: start over */ }
  return { last: 0, lines: [] };
}

function showRecord(record) {
  current.record = record;
  setText("build-id", record.id.slice(0, 12));
  setText("build-repo", `${record.repo_url || record.spec} @ ${record.ref || ""}`);
  setText("build-state", record.state);
  if (record.image_name) setText("build-image", record.image_name);
  setText("build-failure", record.failure_reason ? `Failed: ${failureText(record)}` : "");
  const unfinished = record.state === "queued" || record.state === "running";
  const mayCancel = me.admin || (record.requester !== null && record.requester === me.name);
  $("cancel-button").hidden = !(unfinished && mayCancel);
  $("save-form").hidden = record.state !== "succeeded";
}

function onEvent(id, event) {
  current.last = id;
  current.lines.push(event.message || "");
  log.append(event.message || "");
  if (event.phase) setText("build-phase", event.phase);
  if (event.queue_position !== undefined) setText("build-queue", String(event.queue_position));
  else if (event.phase && event.phase !== "waiting") setText("build-queue", "–");
  if (event.imageName) setText("build-image", event.imageName);
  if (!current.savedAt || Date.now() - current.savedAt > 1000) {
    current.savedAt = Date.now();
    saveProgress();
  }
}

async function openBuild(id) {
  if (current && current.id === id) return;
  closeBuild();
  const saved = restoreProgress(id);
  current = { id, controller: new AbortController(), record: null, ...saved };
  $("build-view").hidden = false;
  $("log").dataset.done = "0";
  log.clear();
  for (const line of saved.lines) log.append(line);
  setText("build-phase", "");
  setText("build-queue", "–");
  setText("build-image", "–");
  const build = current;
  try {
    showRecord(await call("GET", `api/v1/builds/${encodeURIComponent(id)}`));
    await streamEvents(id, saved.last, onEvent, build.controller.signal);
    if (current !== build) return;
    saveProgress();
    showRecord(await call("GET", `api/v1/builds/${encodeURIComponent(id)}`));
    await log.shown();
    if (current !== build) return;
    $("log").dataset.done = "1";
    loadHistory(true);
  } catch (error) {
    if (current === build) setText("build-failure", error.message);
  }
}

function closeBuild() {
  if (!current) return;
  saveProgress();
  current.controller.abort();
  current = null;
  $("build-view").hidden = true;
}

async function cancelBuild() {
  if (!current) return;
  $("cancel-button").disabled = true;
  try {
    showRecord(await call("POST", `api/v1/builds/${encodeURIComponent(current.id)}/cancel`));
  } catch (error) {
    setText("build-failure", error.message);
  } finally {
    $("cancel-button").disabled = false;
  }
}

function route() {
  const id = hashParams().get("build");
  if (id) openBuild(id);
  else closeBuild();
}

// --- history ------------------------------------------------------------

let historyCursor = null;

// A failure's reason, with its class (see the docs' "Why did my build fail?").
function failureText(record) {
  const why = record.failure_class ? ` (${record.failure_class.replaceAll("_", " ")})` : "";
  return `${record.failure_reason}${why}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

async function loadHistory(reset) {
  const params = new URLSearchParams({ limit: String(HISTORY_PAGE) });
  if (!reset && historyCursor) params.set("cursor", historyCursor);
  const body = $("history").tBodies[0];
  let page;
  try {
    page = await call("GET", `api/v1/builds?${params}`);
  } catch (error) {
    setText("images-error", error.message);
    return;
  }
  if (reset) body.replaceChildren();
  for (const build of page.builds) {
    const row = document.createElement("tr");
    row.dataset.build = build.id;
    cell(row, build.requester, "user-col");
    cell(row, build.state, `state state-${build.state}`);
    const repoCell = cell(row, "");
    const link = document.createElement("a");
    link.href = `#build=${build.id}`;
    link.textContent = build.repo_url || build.spec;
    repoCell.appendChild(link);
    cell(row, build.ref);
    cell(row, build.created ? new Date(build.created).toLocaleString() : "");
    cell(row, duration(build.duration_seconds));
    cell(row, build.failure_reason ? failureText(build) : "", "reason");
    body.appendChild(row);
  }
  historyCursor = page.next;
  $("history-more").hidden = !page.next;
}

// --- saved images -------------------------------------------------------

function badgeMarkdown(image) {
  const page = new URL(".", location.href);
  const badge = new URL("static/launch-badge.svg", page);
  const owner = encodeURIComponent(image.owner);
  const target = new URL(`v2/saved/${owner}/${encodeURIComponent(image.name)}`, page);
  return `[![${image.name}](${badge.href})](${target.href})`;
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed: select the text";
  }
}

function imagePath(image) {
  const query = image.access === "own" ? "" : `?owner=${encodeURIComponent(image.owner)}`;
  return `api/v1/images/${encodeURIComponent(image.name)}${query}`;
}

const ACCESS_TEXT = {
  own: () => "yours",
  group: (image) => `shared with you by ${image.owner}`,
  public: (image) => `public, by ${image.owner}`,
  admin: (image) => `${image.owner}'s (you are an admin)`,
};

function sharingLabel(image) {
  const uses = image.use_count === 1 ? "1 use" : `${image.use_count} uses`;
  const sharing = image.visibility === "groups" && image.groups
    ? `shared with ${image.groups.join(", ")}`
    : image.visibility;
  return `${ACCESS_TEXT[image.access](image)} · ${sharing} · ${uses}`;
}

// The visibility form of an image the viewer may change (its owner, or an admin).
let visibilityForms = 0;
function visibilityForm(image) {
  const form = document.createElement("form");
  form.className = "visibility";
  visibilityForms += 1;
  const id = `visibility-${visibilityForms}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = "Visibility";
  const select = document.createElement("select");
  select.id = id;
  for (const [value, text] of [["private", "Private"], ["groups", "Hub groups"], ["public", "Everyone on the hub"]]) {
    select.add(new Option(text, value, false, value === image.visibility));
  }
  const groups = document.createElement("input");
  groups.value = (image.groups || []).join(", ");
  groups.placeholder = "group1, group2";
  groups.setAttribute("aria-label", `Hub groups to share ${image.name} with`);
  const showGroups = () => { groups.hidden = select.value !== "groups"; };
  select.addEventListener("change", showGroups);
  showGroups();
  const apply = document.createElement("button");
  apply.type = "submit";
  apply.textContent = "Change visibility";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const change = { visibility: select.value };
    if (select.value === "groups") {
      change.groups = groups.value.split(",").map((g) => g.trim()).filter(Boolean);
    }
    try {
      await call("PATCH", imagePath(image), change);
      setText("images-error", "");
      loadImages();
    } catch (error) {
      setText("images-error", error.message);
    }
  });
  form.append(label, select, groups, apply);
  return form;
}

async function loadImages() {
  const list = $("images");
  let data;
  try {
    data = await call("GET", "api/v1/images");
  } catch (error) {
    setText("images-error", error.message);
    return;
  }
  list.replaceChildren();
  for (const image of data.images) {
    const item = document.createElement("li");
    item.dataset.image = image.name;
    item.dataset.owner = image.owner;
    item.dataset.access = image.access;
    const title = document.createElement("strong");
    title.textContent = image.name;
    const ref = document.createElement("code");
    ref.textContent = image.image;
    const sharing = document.createElement("span");
    sharing.className = "sharing";
    sharing.textContent = sharingLabel(image);
    const description = document.createElement("p");
    description.textContent = image.description;
    const badge = document.createElement("input");
    badge.readOnly = true;
    badge.value = badgeMarkdown(image);
    badge.setAttribute("aria-label", `Markdown badge for ${image.name}`);
    const copy = document.createElement("button");
    copy.type = "button";
    copy.textContent = "Copy Markdown badge";
    copy.addEventListener("click", () => copyText(badge.value, copy));
    item.append(title, " ", ref, sharing, description, badge, copy);
    // Groups are shown only to those who may change the image.
    if (image.groups !== null) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.textContent = "Delete";
      remove.setAttribute("aria-label", `Delete ${image.name}`);
      remove.addEventListener("click", async () => {
        try {
          await call("DELETE", imagePath(image));
          loadImages();
        } catch (error) {
          setText("images-error", error.message);
        }
      });
      item.append(remove, visibilityForm(image));
    }
    list.appendChild(item);
  }
}

async function saveImage(event) {
  event.preventDefault();
  if (!current) return;
  setText("save-error", "");
  try {
    await call("POST", "api/v1/images", {
      name: $("save-name").value.trim(),
      description: $("save-description").value,
      build_id: current.id,
    });
    $("save-form").reset();
    loadImages();
  } catch (error) {
    setText("save-error", error.message);
  }
}

// --- start --------------------------------------------------------------

if (!me.admin) document.body.classList.add("not-admin");
$("provider").addEventListener("change", showProvider);
$("build-form").addEventListener("submit", submitBuild);
$("cancel-button").addEventListener("click", cancelBuild);
$("save-form").addEventListener("submit", saveImage);
$("history-more").addEventListener("click", () => loadHistory(false));
window.addEventListener("hashchange", route);
window.addEventListener("pagehide", saveProgress);
loadProviders().catch((error) => setText("form-error", error.message));
loadHistory(true);
loadImages();
route();
