// Browser client of /ws/transcribe. Hebrew (right-to-left) by default, English on demand.
"use strict";

const TEXT = {
  he: {
    title: "תמלול אודיו", url: "קישור (YouTube או קובץ אודיו)", model: "מודל", language: "שפה",
    auto: "זיהוי אוטומטי", diarize: "זיהוי דוברים", start: "תמלל", transcript: "תמלול",
    toggle: "English", downloading: "מוריד אודיו…", cached: "משתמש בקובץ שמור", transcribing: "מתמלל…",
    speakers: "מזהה דוברים…", done: "התמלול הושלם", speaker: "דובר",
    queued: "ממתין בתור: מקום", wait: "כ־%s שניות", warning: "אזהרה",
  },
  en: {
    title: "Audio Transcription", url: "Link (YouTube or audio file)", model: "Model", language: "Language",
    auto: "Detect automatically", diarize: "Identify speakers", start: "Transcribe", transcript: "Transcript",
    toggle: "עברית", downloading: "Downloading audio…", cached: "Using cached audio file", transcribing: "Transcribing…",
    speakers: "Identifying speakers…", done: "Transcription complete", speaker: "Speaker",
    queued: "Waiting in queue: place", wait: "about %s s", warning: "Warning",
  },
};

let lang = localStorage.getItem("ui-lang") || "he";
const $ = (id) => document.getElementById(id);
const t = (key) => TEXT[lang][key];

function applyLanguage() {
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "he" ? "rtl" : "ltr";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  $("lang-toggle").textContent = t("toggle");
  document.querySelectorAll("#transcript .speaker").forEach(renderSpeaker);
  renderStatus();
}

function fmt(seconds) {
  const s = Math.floor(seconds);
  const hh = String(Math.floor(s / 3600)).padStart(2, "0");
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return `${hh}:${mm}:${ss}`;
}

// "SPEAKER_01" -> "Speaker 2" / "דובר 2", coloured by number.
function renderSpeaker(el) {
  const label = el.dataset.speaker;
  el.className = "speaker";
  if (!label) { el.textContent = ""; return; }
  const n = parseInt(label.replace(/\D+/g, ""), 10);
  el.textContent = Number.isNaN(n) ? label : `${t("speaker")} ${n + 1}`;
  if (!Number.isNaN(n)) el.classList.add(`speaker-${n % 6}`);
}

// The status line remembers its key, so switching language re-renders it.
let status = { key: null, suffix: "", text: "" };
let transcribed = false;

function renderStatus() {
  $("status").textContent = status.key ? `${t(status.key)} ${status.suffix}`.trim() : status.text;
}

function setStatus(key, suffix, percent) {
  status = { key, suffix: suffix || "", text: "" };
  renderStatus();
  if (percent !== undefined && percent !== null) $("progress").value = percent;
}

function setServerStatus(text, percent) {
  status = { key: null, suffix: "", text: text || "" };
  renderStatus();
  if (percent !== undefined && percent !== null) $("progress").value = percent;
}

function chunkItem(msg) {
  const li = document.createElement("li");
  li.dataset.id = msg.id;
  li.dir = "auto";
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `[${fmt(msg.start)} → ${fmt(msg.end)}]`;
  const speaker = document.createElement("span");
  speaker.dataset.speaker = msg.speaker || "";
  renderSpeaker(speaker);
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = msg.text;
  li.append(time, speaker, text);
  return li;
}

function addChunk(msg) {
  $("transcript").append(chunkItem(msg));
}

const itemById = (id) => document.querySelector(`#transcript li[data-id="${CSS.escape(String(id))}"]`);

// A segment whose speaker changes mid-way arrives split: its first part keeps
// the id (with new text and times), later parts carry split_from.
function setSpeakers(update) {
  for (const entry of update.segments) {
    if (entry.split_from !== undefined) {
      let after = itemById(entry.split_from);
      while (after && after.nextElementSibling && String(after.nextElementSibling.dataset.id).startsWith(`${entry.split_from}.`)) {
        after = after.nextElementSibling;
      }
      if (after) after.after(chunkItem(entry));
      continue;
    }
    const li = itemById(entry.id);
    if (!li) continue;
    if (entry.text !== undefined) li.replaceWith(chunkItem(entry));
    else { const el = li.querySelector(".speaker"); el.dataset.speaker = entry.speaker || ""; renderSpeaker(el); }
  }
}

function handle(msg, socket) {
  switch (msg.type) {
    case "status": setServerStatus(msg.message, msg.progress); break;
    case "download_progress":
      setStatus("downloading", msg.percent != null ? msg.percent.toFixed(0) + "%" : "", msg.percent != null ? msg.percent * 0.3 : undefined);
      break;
    case "cached_file": setStatus("cached", "", 30); break;
    case "metadata": $("media-title").textContent = msg.title || ""; break;
    case "transcription_status": if (msg.status === "completed") transcribed = true; break;
    case "transcription_progress": setStatus("transcribing", `${msg.progress}%`, 30 + msg.progress * 0.7); break;
    case "transcription_chunk": $("transcript-area").hidden = false; addChunk(msg); break;
    case "diarization_progress": if (transcribed) setStatus("speakers", `${Math.round(msg.progress)}%`); break;
    case "speaker_update": setSpeakers(msg); break;
    case "queue_position": {
      const wait = msg.estimated_wait_seconds ? ` (${t("wait").replace("%s", Math.round(msg.estimated_wait_seconds))})` : "";
      setStatus("queued", `${msg.position}${wait}`);
      break;
    }
    case "warning": $("warning").textContent = msg.message; $("warning").hidden = false; break;
    case "complete": setStatus("done", "", 100); finish(socket); break;
    case "error": showError(msg.error); finish(socket); break;
    default: break; // newer message types are ignored
  }
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = false;
}

function finish(socket) {
  $("start").disabled = false;
  socket.close();
}

function start(event) {
  event.preventDefault();
  $("error").hidden = true;
  $("warning").hidden = true;
  $("transcript").replaceChildren();
  $("media-title").textContent = "";
  $("progress-area").hidden = false;
  $("start").disabled = true;
  transcribed = false;
  setStatus("downloading", "", 0);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws/transcribe`);
  socket.onopen = () => socket.send(JSON.stringify({
    url: $("url").value.trim(),
    model: $("model").value,
    language: $("language").value || null,
    use_faster_whisper: true,
    enable_diarization: $("diarize").checked,
  }));
  socket.onmessage = (e) => handle(JSON.parse(e.data), socket);
  socket.onerror = () => { showError("WebSocket error"); $("start").disabled = false; };
}

$("job-form").addEventListener("submit", start);
$("lang-toggle").addEventListener("click", () => {
  lang = lang === "he" ? "en" : "he";
  localStorage.setItem("ui-lang", lang);
  applyLanguage();
});
applyLanguage();

// The model menu lists what the ASR service can load (ListModels), its default selected.
fetch("/api/models").then((r) => (r.ok ? r.json() : null)).then((body) => {
  if (!body) return;
  const usable = body.models.filter((m) => m.available && m.backend === "faster-whisper");
  if (!usable.length) return;
  $("model").replaceChildren(...usable.map((m) => {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = m.multilingual ? m.name : `${m.name} (English)`;
    option.selected = m.name === body.default_model;
    return option;
  }));
}).catch(() => {});
