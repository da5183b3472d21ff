// The page of the transcription gateway: one job at a time over /ws/transcribe.
// Hebrew (right to left) by default, English on demand. No inline code anywhere:
// the gateway's Content-Security-Policy forbids it.
"use strict";

const TEXT = {
  he: {
    title: "תמלול אודיו", toggle: "English", toggleLabel: "Switch to English", skip: "דילוג לתוצאות",
    tokenTitle: "נדרש אסימון גישה", tokenHelp: "השרת הזה מוגן. הזינו את אסימון ה־API שקיבלתם ממנהל המערכת.",
    token: "אסימון API", save: "שמירה", badToken: "האסימון שגוי. נסו שוב.",
    source: "מקור", sourceUrl: "קישור", sourceFile: "קובץ", url: "קישור (YouTube או קובץ אודיו)",
    file: "קובץ אודיו או וידאו מהמחשב", maxSize: "עד {size}",
    engine: "מנוע", model: "מודל", language: "שפה", auto: "זיהוי אוטומטי", task: "משימה",
    transcribe: "תמלול", translate: "תרגום לאנגלית", options: "אפשרויות", diarize: "זיהוי דוברים",
    numSpeakers: "מספר דוברים (לא חובה)", autoCount: "אוטומטי", words: "חותמות זמן למילים",
    start: "תמלל", cancel: "ביטול", english: "אנגלית",
    noModel: "אין בשרת מודל זמין למנוע הזה.", noModelOption: "אין מודל זמין",
    gpu: "מאיץ: {name} · {type}", cpu: "מעבד (CPU) · {type}", gpuUnknown: "מצב המאיץ אינו ידוע",
    caches: "מטמונים", refresh: "רענון", clear: "ניקוי", cacheAsr: "תמלולים", cacheDownload: "הורדות",
    cacheDiarization: "זיהוי דוברים", cacheStats: "{n} קבצים · {size}", cacheStatsOne: "קובץ אחד · {size}",
    chooseFile: "בחירת קובץ", noFile: "לא נבחר קובץ",
    confirmClear: "לנקות את המטמון „{name}”? לא ניתן לבטל פעולה זו.", cleared: "נמחקו {n} קבצים ({size}).",
    needSource: "הזינו קישור או בחרו קובץ.", tooLarge: "הקובץ גדול מהמגבלה ({size}).",
    uploading: "מעלה את הקובץ…", connecting: "מתחבר לשרת…", downloading: "מוריד אודיו…",
    cached: "משתמש בקובץ שמור", transcribing: "מתמלל…", speakers: "מזהה דוברים…",
    queued: "ממתין בתור: מקום {n}", queuedWait: "ממתין בתור: מקום {n} (כ־{time})",
    done: "התמלול הושלם", cancelling: "מבטל…", cancelled: "התמלול בוטל", failed: "התמלול נכשל",
    elapsed: "זמן שחלף {time}", remaining: "נותרו כ־{time}",
    connectionLost: "החיבור לשרת נותק לפני סוף התמלול.", diarizationFailed: "זיהוי הדוברים נכשל; התמלול מוצג ללא דוברים.",
    warning: "אזהרה", by: "מאת {name}", duration: "משך {time}", transcript: "תמלול", download: "הורדה:",
    speaker: "דובר", playFrom: "ניגון מ־{time}",
  },
  en: {
    title: "Audio Transcription", toggle: "עברית", toggleLabel: "החלפה לעברית", skip: "Skip to results",
    tokenTitle: "Access token needed", tokenHelp: "This server is protected. Enter the API token your administrator gave you.",
    token: "API token", save: "Save", badToken: "The token was refused. Try again.",
    source: "Source", sourceUrl: "Link", sourceFile: "File", url: "Link (YouTube or audio file)",
    file: "Audio or video file from this device", maxSize: "up to {size}",
    engine: "Engine", model: "Model", language: "Language", auto: "Auto-detect", task: "Task",
    transcribe: "Transcribe", translate: "Translate to English", options: "Options", diarize: "Identify speakers",
    numSpeakers: "Number of speakers (optional)", autoCount: "auto", words: "Word timestamps",
    start: "Transcribe", cancel: "Cancel", english: "English",
    noModel: "The server has no model available for this engine.", noModelOption: "No model available",
    gpu: "GPU: {name} · {type}", cpu: "CPU · {type}", gpuUnknown: "Accelerator status unknown",
    caches: "Caches", refresh: "Refresh", clear: "Clear", cacheAsr: "Transcripts", cacheDownload: "Downloads",
    cacheDiarization: "Speaker identification", cacheStats: "{n} files · {size}", cacheStatsOne: "1 file · {size}",
    chooseFile: "Choose a file", noFile: "No file chosen",
    confirmClear: "Clear the “{name}” cache? This cannot be undone.", cleared: "Deleted {n} files ({size}).",
    needSource: "Enter a link or choose a file.", tooLarge: "The file is larger than the limit ({size}).",
    uploading: "Uploading the file…", connecting: "Connecting…", downloading: "Downloading audio…",
    cached: "Using cached audio file", transcribing: "Transcribing…", speakers: "Identifying speakers…",
    queued: "Waiting in queue: place {n}", queuedWait: "Waiting in queue: place {n} (about {time})",
    done: "Transcription complete", cancelling: "Cancelling…", cancelled: "Transcription cancelled", failed: "Transcription failed",
    elapsed: "Elapsed {time}", remaining: "about {time} left",
    connectionLost: "The connection to the server closed before the transcript was finished.",
    diarizationFailed: "Speaker identification failed; the transcript is shown without speakers.",
    warning: "Warning", by: "by {name}", duration: "duration {time}", transcript: "Transcript", download: "Download:",
    speaker: "Speaker", playFrom: "Play from {time}",
  },
};
const LANGUAGES = ["", "he", "en", "ar", "ru", "fr", "es", "de", "it", "pt", "yi", "zh", "ja"];
const CACHES = { asr: "/api/cache", download: "/api/download-cache", diarization: "/api/diarization-cache" };
const CACHE_NAMES = { asr: "cacheAsr", download: "cacheDownload", diarization: "cacheDiarization" };

const $ = (id) => document.getElementById(id);
let lang = localStorage.getItem("ui-lang") === "en" ? "en" : "he";

// "{n} files" with params filled in; a missing key shows itself, which is easy to spot.
function t(key, params = {}) {
  const text = TEXT[lang][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(params[name] ?? ""));
}

// -- formatting -------------------------------------------------------------------

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

function size(bytes) {
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes || 0, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  // isolated left to right, so Hebrew text around it does not turn "1.5 KB" into "KB 1.5"
  return `\u2066${value.toFixed(unit && value < 10 ? 1 : 0)} ${units[unit]}\u2069`;
}

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

// -- server access: the token (when the gateway has one) goes on every call ----------------

const auth = { required: false, token: localStorage.getItem("api-token") || "" };
let config = { max_upload_bytes: 0, export_formats: [] };

function authHeaders() {
  return auth.required && auth.token ? { Authorization: `Bearer ${auth.token}` } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...authHeaders(), ...options.headers } });
  if (response.status === 401) { askForToken(true); throw new Error(t("badToken")); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function askForToken(refused) {
  $("auth-form").hidden = false;
  $("auth-error").hidden = !refused;
  $("auth-error").textContent = refused ? t("badToken") : "";
  $("token").focus();
}

function saveToken(event) {
  event.preventDefault();
  auth.token = $("token").value.trim();
  if (!auth.token) return;
  localStorage.setItem("api-token", auth.token);
  $("auth-form").hidden = true;
  loadServerState();
}

// -- static and dynamic text ---------------------------------------------------------

function applyLanguage() {
  const root = document.documentElement;
  root.lang = lang;
  root.dir = lang === "he" ? "rtl" : "ltr";
  document.title = lang === "he" ? "תמלול אודיו - Audio Transcription" : "Audio Transcription - תמלול אודיו";
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  $("lang-toggle").textContent = t("toggle");
  $("lang-toggle").lang = lang === "he" ? "en" : "he";
  $("lang-toggle").setAttribute("aria-label", t("toggleLabel"));
  $("num-speakers").placeholder = t("autoCount");
  fillLanguages();
  fillModels();
  [renderStatus, renderTiming, renderCard, renderCaches, renderGpu, renderFileHint].forEach((render) => render());
  document.querySelectorAll("#transcript li").forEach(renderSegmentLabels);
}

function toggleLanguage() {
  lang = lang === "he" ? "en" : "he";
  localStorage.setItem("ui-lang", lang);
  applyLanguage();
}

// Language names come from the browser (Intl), in the page's own language.
function fillLanguages() {
  const select = $("language");
  const chosen = select.value;
  const names = new Intl.DisplayNames([lang], { type: "language" });
  select.replaceChildren(...LANGUAGES.map((code) => el("option", { value: code, textContent: code ? names.of(code) : t("auto") })));
  select.value = chosen;
}

// -- models and engines (from /api/models) ---------------------------------------------------

let catalog = null;

function fillModels() {
  const select = $("model");
  if (!catalog) return;
  const chosen = select.value;
  const usable = catalog.models.filter((m) => m.available && m.backend === $("backend").value);
  const options = usable.map((m) => el("option", { value: m.name, textContent: m.multilingual ? m.name : `${m.name} (${t("english")})` }));
  if (!usable.length) options.push(el("option", { value: "", textContent: t("noModelOption"), disabled: true, selected: true }));
  select.replaceChildren(...options);
  const names = usable.map((m) => m.name);
  if (names.includes(chosen)) select.value = chosen;
  else if (names.includes(catalog.default_model)) select.value = catalog.default_model;
  $("model-hint").hidden = usable.length > 0;
  $("model-hint").textContent = t("noModel");
  updateButtons();
}

// -- status, progress and timing ----------------------------------------------------------------

const view = { status: null, percent: null, card: null, gpu: null, caches: {} };
const job = { running: false, socket: null, xhr: null, began: 0, asrBegan: 0, asrPercent: 0, transcribed: false, downloaded: "", ticker: 0 };

function setStatus(key, params = {}, overall = null, percent = null) {
  view.status = { key, params };
  view.percent = percent;
  renderStatus();
  if (overall !== null) $("progress").value = overall;
}

function renderStatus() {
  const s = view.status;
  $("status").textContent = !s ? "" : s.key ? t(s.key, s.params) : s.params.raw;
  $("percent").textContent = view.percent === null ? "" : `${Math.round(view.percent)}%`;
}

// Remaining time is extrapolated from how fast the transcription has moved so far.
function renderTiming() {
  if (!job.began) { $("timing").textContent = ""; return; }
  const now = Date.now();
  const parts = [t("elapsed", { time: clock((now - job.began) / 1000) })];
  if (job.running && job.downloaded && !job.asrBegan) parts.unshift(job.downloaded);
  const p = job.asrPercent;
  if (job.running && job.asrBegan && p > 0 && p < 100) {
    const seconds = ((now - job.asrBegan) / 1000) * (100 - p) / p;
    parts.push(t("remaining", { time: clock(seconds) }));
  }
  $("timing").textContent = parts.join(" · ");
}

function renderGpu() {
  const g = view.gpu;
  $("gpu").textContent = !g ? "" : g.error ? t("gpuUnknown")
    : g.gpu_available ? t("gpu", { name: g.gpu_name || g.device, type: g.compute_type }) : t("cpu", { type: g.compute_type });
}

function renderFileHint() {
  const file = $("file").files[0];
  $("file-name").textContent = file ? `${file.name} (${size(file.size)})` : t("noFile");
  $("file-hint").textContent = config.max_upload_bytes ? t("maxSize", { size: size(config.max_upload_bytes) }) : "";
}

// -- the video card: from /api/video-info while typing, and from the job's metadata ----------------

function showCard(card, url = null) {
  view.card = card;
  view.cardUrl = url;
  renderCard();
}

function renderCard() {
  const card = view.card;
  $("video-card").hidden = !card;
  if (!card) return;
  $("video-title").replaceChildren(card.webpage_url && /^https?:/.test(card.webpage_url)
    ? el("a", { href: card.webpage_url, textContent: card.title, target: "_blank", rel: "noopener noreferrer" })
    : card.title || "");
  $("video-title").dir = "auto";
  const meta = [];
  if (card.uploader) meta.push(t("by", { name: card.uploader }));
  if (card.duration > 0) meta.push(t("duration", { time: clock(card.duration) }));
  $("video-meta").textContent = meta.join(" · ");
  // Only https thumbnails: the page's CSP allows images from https sites and nowhere else.
  const thumb = $("video-thumb");
  thumb.hidden = !(card.thumbnail && card.thumbnail.startsWith("https:"));
  if (!thumb.hidden) thumb.src = card.thumbnail;
  else thumb.removeAttribute("src");
}

// The job's metadata adds to what is known (an upload's metadata has no duration, its upload reply had).
function mergeCard(metadata) {
  const known = Object.fromEntries(Object.entries(metadata).filter(([key, value]) => key !== "type" && value));
  showCard({ ...view.card, ...known });
}

let infoTimer = 0;
let infoRequest = null;

// Ask about a link once the typing stops; a newer link cancels the older question.
function lookUpLink() {
  clearTimeout(infoTimer);
  if (infoRequest) infoRequest.abort();
  const url = $("url").value.trim();
  if (view.cardUrl && view.cardUrl !== url && !job.running) showCard(null); // that card was for another link
  if (!/^https?:\/\/\S+$/i.test(url) || job.running) return;
  infoTimer = setTimeout(async () => {
    infoRequest = new AbortController();
    try {
      const info = await api("/api/video-info", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ url }), signal: infoRequest.signal,
      });
      if (!job.running && $("url").value.trim() === url) showCard(info, url);
    } catch { /* a link that is not media yet (still typing) is not worth an error */ }
  }, 700);
}

// -- the transcript ---------------------------------------------------------------------------

function speakerNumber(label) {
  const n = parseInt(String(label || "").replace(/\D+/g, ""), 10);
  return Number.isNaN(n) ? null : n;
}

// "SPEAKER_01" -> "Speaker 2" / "דובר 2", one colour per speaker number.
function renderSegmentLabels(li) {
  const label = li.dataset.speaker || "";
  const n = speakerNumber(label);
  const speaker = li.querySelector(".speaker");
  speaker.textContent = !label ? "" : n === null ? label : `${t("speaker")} ${n + 1}`;
  speaker.dir = document.documentElement.dir;
  li.classList.remove(...[...li.classList].filter((name) => name.startsWith("spk-")));
  if (n !== null) li.classList.add(`spk-${n % 8}`);
  li.querySelector(".time").setAttribute("aria-label", t("playFrom", { time: clock(li.dataset.start) }));
}

// dir="auto" on the row: a segment reads in its own language's direction. The time
// and speaker carry a dir of their own, which dir="auto" skips, so the direction
// comes from the text alone (which therefore must not have a dir attribute).
function segmentItem(segment) {
  const li = el("li", { dir: "auto" }, [
    el("button", { type: "button", className: "time", dir: "ltr", textContent: clock(segment.start) }),
    el("span", { className: "speaker" }),
    el("span", { className: "text", textContent: segment.text }),
  ]);
  Object.assign(li.dataset, { id: segment.id, start: segment.start, end: segment.end, speaker: segment.speaker || "" });
  renderSegmentLabels(li);
  return li;
}

function addSegment(segment) {
  const list = $("transcript");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 40;
  $("transcript-area").hidden = false;
  list.append(segmentItem(segment));
  if (atBottom) list.scrollTop = list.scrollHeight; // follow the live transcript unless the reader scrolled up
}

const itemById = (id) => document.querySelector(`#transcript li[data-id="${CSS.escape(String(id))}"]`);

// Speakers found after segments were shown: named by segment id. A segment whose
// speaker changes mid-way arrives split: its first part keeps the id (with new
// text and times), later parts carry split_from and go right after it.
function updateSpeakers(update) {
  for (const entry of update.segments) {
    if (entry.split_from !== undefined) {
      let after = itemById(entry.split_from);
      while (after?.nextElementSibling?.dataset.id.startsWith(`${entry.split_from}.`)) after = after.nextElementSibling;
      if (after) after.after(segmentItem(entry));
      continue;
    }
    const li = itemById(entry.id);
    if (!li) continue;
    if (entry.text !== undefined) li.replaceWith(segmentItem(entry));
    else { li.dataset.speaker = entry.speaker || ""; renderSegmentLabels(li); }
  }
}

// -- the player, in step with the transcript ------------------------------------------------------

function seekTo(event) {
  const li = event.target.closest("#transcript li");
  if (!li || event.target.closest("a")) return;
  const player = $("player");
  player.currentTime = Number(li.dataset.start);
  highlightPlaying();
  player.play().catch(() => { /* not playable yet: the position is kept for when it is */ });
}

function highlightPlaying() {
  const now = $("player").currentTime;
  let current = null;
  for (const li of document.querySelectorAll("#transcript li")) {
    const on = now >= Number(li.dataset.start) && now < Number(li.dataset.end);
    li.classList.toggle("playing", on);
    if (on) { li.setAttribute("aria-current", "true"); current = current || li; } else li.removeAttribute("aria-current");
  }
  if (current && !$("player").paused) keepVisible(current);
}

// Scroll the transcript box only (not the page), and only while playing.
function keepVisible(li) {
  const list = $("transcript");
  if (li.offsetTop < list.scrollTop || li.offsetTop + li.offsetHeight > list.scrollTop + list.clientHeight) {
    list.scrollTop = li.offsetTop - list.clientHeight / 3;
  }
}

// The audio (and exports) need the token when the gateway has one, and <audio>/<a>
// cannot send headers: then the file is fetched with the header and given as a blob.
async function authorisedUrl(url) {
  if (!auth.required || url.includes("signature=")) return url; // a signed link needs no header: it streams
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return URL.createObjectURL(await response.blob());
}

async function loadAudio(contentId, audioUrl) {
  const player = $("player");
  try {
    player.src = await authorisedUrl(audioUrl || `/api/audio/${encodeURIComponent(contentId)}.wav`);
    player.hidden = false;
  } catch { player.hidden = true; }
}

function showExports(exportsByFormat) {
  const links = Object.entries(exportsByFormat || {}).map(([format, url]) => {
    const link = el("a", { href: url, className: "button secondary small", textContent: format.toUpperCase() });
    link.dataset.format = format;
    link.setAttribute("download", "");
    if (auth.required && !url.includes("signature=")) {
      link.addEventListener("click", (event) => { event.preventDefault(); saveWithToken(url, format); });
    }
    return link;
  });
  $("exports").replaceChildren($("exports").firstElementChild, ...links);
  $("exports").hidden = !links.length;
}

async function saveWithToken(url, format) {
  try {
    const blobUrl = await authorisedUrl(url);
    const link = el("a", { href: blobUrl, download: `transcript.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(blobUrl), 10_000);
  } catch (error) { showError(error.message); }
}

// -- a job: upload (for a file), then the WebSocket stream ------------------------------------------

function source() {
  return $("source-file").checked ? "file" : "url";
}

function chooseSource(which) {
  $(`source-${which}`).checked = true;
  $("url-field").hidden = which !== "url";
  $("file-field").hidden = which !== "file";
}

function jobOptions() {
  const count = parseInt($("num-speakers").value, 10);
  return {
    model: $("model").value,
    language: $("language").value || null,
    backend: $("backend").value,
    task: $("task").value,
    enable_diarization: $("diarize").checked,
    num_speakers: $("diarize").checked && count > 0 ? count : 0,
    word_timestamps: $("word-timestamps").checked,
  };
}

function updateButtons() {
  const noModel = !$("model").value;
  $("start").disabled = job.running || noModel;
  $("cancel").disabled = !job.running;
  $("num-speakers").disabled = !$("diarize").checked;
}

function resetResults() {
  ["error", "warning", "exports"].forEach((id) => { $(id).hidden = true; });
  $("transcript").replaceChildren();
  $("transcript-area").hidden = true;
  const player = $("player");
  if (player.src.startsWith("blob:")) URL.revokeObjectURL(player.src);
  player.removeAttribute("src");
  player.hidden = true;
  $("progress-area").hidden = false;
  $("progress").value = 0;
}

async function startJob(event) {
  event.preventDefault();
  if (job.running) return;
  if (auth.required && !auth.token) { askForToken(false); return; }
  const file = $("file").files[0];
  const url = $("url").value.trim();
  if (source() === "file" ? !file : !url) { showError(t("needSource")); return; }
  if (source() === "file" && config.max_upload_bytes && file.size > config.max_upload_bytes) {
    showError(t("tooLarge", { size: size(config.max_upload_bytes) }));
    return;
  }
  clearTimeout(infoTimer); // the job's own metadata message will fill the card
  resetResults();
  Object.assign(job, { running: true, began: Date.now(), asrBegan: 0, asrPercent: 0, transcribed: false, downloaded: "" });
  job.ticker = setInterval(renderTiming, 1000);
  updateButtons();
  try {
    let target = { url };
    if (source() === "file") {
      showCard({ title: file.name });
      const uploaded = await upload(file);
      target = { content_id: uploaded.content_id, filename: uploaded.filename };
      showCard({ title: uploaded.filename, duration: uploaded.duration });
    } else if (view.cardUrl !== url) showCard(null); // keep what was looked up for this very link
    if (job.running) openSocket({ ...target, ...jobOptions() });
  } catch (error) {
    if (job.running) { showError(error.message); finish("failed"); }
  }
}

// XMLHttpRequest rather than fetch: it reports upload progress, and abort() cancels it.
function upload(file) {
  setStatus("uploading", {}, 0, 0);
  return new Promise((resolve, reject) => {
    const xhr = job.xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/upload?filename=${encodeURIComponent(file.name)}`);
    Object.entries(authHeaders()).forEach(([name, value]) => xhr.setRequestHeader(name, value));
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) setStatus("uploading", {}, 30 * e.loaded / e.total, 100 * e.loaded / e.total); };
    xhr.onload = () => {
      job.xhr = null;
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON: the status says enough */ }
      if (xhr.status === 401) askForToken(true);
      if (xhr.status >= 200 && xhr.status < 300) resolve(body); else reject(new Error(body.error || `HTTP ${xhr.status}`));
    };
    xhr.onerror = () => { job.xhr = null; reject(new Error(t("connectionLost"))); };
    xhr.onabort = () => { job.xhr = null; };
    xhr.send(file);
  });
}

function openSocket(request) {
  setStatus("connecting", {}, $("progress").value);
  const address = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/transcribe`;
  let socket;
  let firstMessage = null;
  try {
    // "transcription" is the subprotocol the gateway echoes, so the token does not come back in a header
    socket = new WebSocket(address, auth.required ? ["transcription", `token.${auth.token}`] : []);
  } catch {
    // A token with characters a subprotocol cannot carry: send it as the first message instead.
    socket = new WebSocket(address);
    firstMessage = { type: "auth", token: auth.token };
  }
  job.socket = socket;
  let opened = false;
  socket.onopen = () => {
    opened = true;
    if (firstMessage) socket.send(JSON.stringify(firstMessage));
    socket.send(JSON.stringify(request));
  };
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  socket.onclose = () => {
    if (!job.running || job.socket !== socket) return;
    // A refused token closes the handshake itself: the socket never opens.
    if (!opened && auth.required) askForToken(true);
    showError(t(!opened && auth.required ? "badToken" : "connectionLost"));
    finish("failed");
  };
}

function handle(msg) {
  switch (msg.type) {
    case "status": onServerStatus(msg); break;
    case "download_progress":
      job.downloaded = msg.total ? `${size(msg.downloaded)} / ${size(msg.total)}` : size(msg.downloaded);
      setStatus("downloading", {}, msg.percent != null ? msg.percent * 0.3 : null, msg.percent);
      renderTiming();
      break;
    case "cached_file": setStatus("cached", {}, 30); break;
    case "metadata": mergeCard(msg); break;
    case "capture_ready": loadAudio(msg.content_id, msg.audio_url); break;
    case "transcription_status": onTranscriptionStatus(msg); break;
    case "queue_position": {
      const wait = msg.estimated_wait_seconds;
      setStatus(wait ? "queuedWait" : "queued", { n: msg.position, time: clock(wait) });
      break;
    }
    case "transcription_progress":
      job.asrPercent = msg.progress;
      setStatus("transcribing", {}, 30 + msg.progress * 0.7, msg.progress);
      renderTiming();
      break;
    case "transcription_chunk": addSegment(msg); break;
    case "diarization_progress": if (job.transcribed) setStatus("speakers", {}, null, msg.progress); break;
    case "speaker_update": updateSpeakers(msg); break;
    case "warning": showWarning(msg); break;
    case "complete": showExports(msg.exports); finish("done"); break;
    case "error": showError(msg.error); finish("failed"); break;
    case "cancelled": finish("cancelled"); break;
    default: break; // newer message types are ignored
  }
}

// The server's own status lines are English; the usual ones have a translated twin
// (set by the other messages), the rare ones (a replica lost, ...) are shown as sent.
const ROUTINE_STATUS = /^(Downloading audio|Transcribing|Authenticated|Speaker identification failed)/;

function onServerStatus(msg) {
  if (msg.progress != null) $("progress").value = msg.progress;
  if (msg.message && !ROUTINE_STATUS.test(msg.message)) setStatus(null, { raw: msg.message });
}

function onTranscriptionStatus(msg) {
  if (msg.status === "processing" || (msg.status === "started" && !job.asrBegan)) {
    job.asrBegan = job.asrBegan || Date.now();
    setStatus("transcribing", {}, 30, 0);
  } else if (msg.status === "completed") {
    job.transcribed = true;
    job.asrPercent = 100;
  }
}

function showWarning(msg) {
  const text = msg.code === "diarization_failed" ? `${t("diarizationFailed")} (${msg.message})` : msg.message;
  $("warning").textContent = `${t("warning")}: ${text}`;
  $("warning").hidden = false;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function cancelJob() {
  if (!job.running) return;
  if (job.xhr) { job.xhr.abort(); finish("cancelled"); return; }
  const socket = job.socket;
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "cancel" }));
    setStatus("cancelling");
    // The server answers "cancelled"; if it does not, stop waiting for it.
    setTimeout(() => { if (job.running && job.socket === socket) finish("cancelled"); }, 5000);
  } else finish("cancelled");
}

function finish(state) {
  const socket = job.socket;
  Object.assign(job, { running: false, socket: null, xhr: null });
  clearInterval(job.ticker);
  if (socket) socket.close();
  if (state === "done") { setStatus("done", {}, 100); job.asrPercent = 100; } else setStatus(state);
  renderTiming();
  updateButtons();
  loadCaches();
}

// -- caches and the accelerator -----------------------------------------------------------------

function renderCaches() {
  for (const name of Object.keys(CACHES)) {
    const stats = view.caches[name];
    const row = document.querySelector(`#cache-panel li[data-cache="${name}"]`);
    const key = stats?.total_files === 1 ? "cacheStatsOne" : "cacheStats";
    row.querySelector(".cache-stats").textContent = stats ? t(key, { n: stats.total_files, size: size(stats.total_size) }) : "–";
    row.querySelector("button").setAttribute("aria-label", `${t("clear")}: ${t(CACHE_NAMES[name])}`);
  }
}

async function loadCaches() {
  if (auth.required && !auth.token) return;
  await Promise.all(Object.entries(CACHES).map(async ([name, path]) => {
    try { view.caches[name] = await api(`${path}/stats`); } catch { view.caches[name] = null; }
  }));
  renderCaches();
}

async function clearCache(event) {
  const name = event.target.dataset.clear;
  if (!name || !confirm(t("confirmClear", { name: t(CACHE_NAMES[name]) }))) return;
  try {
    const result = await api(`${CACHES[name]}/clear`, { method: "POST" });
    $("cache-note").textContent = t("cleared", { n: result.files_deleted, size: size(result.space_freed_mb * 1024 * 1024) });
  } catch (error) { $("cache-note").textContent = error.message; }
  loadCaches();
}

async function loadServerState() {
  try {
    catalog = await api("/api/models");
    fillModels();
  } catch {
    if (!$("auth-form").hidden) return; // the token was refused: nothing else will be let through either
    /* otherwise the hard-coded default model stays */
  }
  api("/gpu").then((gpu) => { view.gpu = gpu; }, () => { view.gpu = { error: true }; }).then(renderGpu);
  loadCaches();
}

// -- start ---------------------------------------------------------------------------------------

async function init() {
  $("job-form").addEventListener("submit", startJob);
  $("cancel").addEventListener("click", cancelJob);
  $("lang-toggle").addEventListener("click", toggleLanguage);
  $("auth-form").addEventListener("submit", saveToken);
  $("backend").addEventListener("change", fillModels);
  $("diarize").addEventListener("change", updateButtons);
  $("url").addEventListener("input", () => { chooseSource("url"); lookUpLink(); });
  $("file").addEventListener("change", () => { if ($("file").files.length) chooseSource("file"); renderFileHint(); });
  document.querySelectorAll("input[name=source]").forEach((radio) => radio.addEventListener("change", () => chooseSource(radio.value)));
  $("transcript").addEventListener("click", seekTo);
  ["timeupdate", "seeked"].forEach((name) => $("player").addEventListener(name, highlightPlaying));
  $("cache-refresh").addEventListener("click", loadCaches);
  document.querySelectorAll("[data-clear]").forEach((button) => button.addEventListener("click", clearCache));
  applyLanguage();
  updateButtons();
  try {
    config = await (await fetch("/api/config")).json();
  } catch { /* an older gateway: no token, no limits */ }
  auth.required = Boolean(config.auth_required);
  renderFileHint();
  if (auth.required && !auth.token) askForToken(false);
  else loadServerState();
}

init();
