// pdfchat web page: upload PDFs, watch their status, ask questions with streamed, cited answers.
// Plain browser JavaScript, no build step. Talks to the gateway's REST API and its WebSocket (/v1/ws).
"use strict";

const TOKEN_KEY = "pdfchat.token";
const FINAL = new Set(["READY", "FAILED"]);

const state = {
  token: localStorage.getItem(TOKEN_KEY),
  documents: new Map(),        // id -> document
  selected: new Set(),         // ids of selected READY documents
  sessions: new Map(),         // sorted document ids -> session id
  ws: null,
  wsReady: false,
  reconnectDelay: 500,
  answers: new Map(),          // ref -> {turn, session_id, message_id, last_seq, text, done}
  nextRef: 1,
  pollTimer: null,
};

const $ = (id) => document.getElementById(id);

// ---- tokens and REST ------------------------------------------------------------------------------

async function ensureToken() {
  if (state.token) return state.token;
  const response = await fetch("/v1/auth/dev-token", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({tenant: "demo", user: "demo"}),
  });
  if (response.status === 404) {
    $("auth").hidden = false;   // not a dev gateway: the user must paste a token
    throw new Error("a token is required");
  }
  if (!response.ok) throw new Error(`dev token: HTTP ${response.status}`);
  state.token = (await response.json()).token;
  localStorage.setItem(TOKEN_KEY, state.token);
  return state.token;
}

async function api(path, options = {}, retried = false) {
  const token = await ensureToken();
  const headers = {...(options.headers || {}), Authorization: `Bearer ${token}`};
  const response = await fetch(path, {...options, headers});
  if (response.status === 401 && !retried) {
    // Expired or foreign token: drop it and get a fresh one once.
    state.token = null;
    localStorage.removeItem(TOKEN_KEY);
    return api(path, options, true);
  }
  if (!response.ok) {
    let detail = `HTTP ${response.status}`;
    try {
      const problem = await response.json();
      detail = problem.detail || problem.title || detail;
    } catch (_) { /* not JSON */ }
    const error = new Error(detail);
    error.status = response.status;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

// ---- WebSocket ------------------------------------------------------------------------------------

async function connect() {
  let token;
  try { token = await ensureToken(); } catch (_) { return; }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/ws?token=${encodeURIComponent(token)}`);
  state.ws = ws;
  ws.onmessage = (message) => onEvent(JSON.parse(message.data));
  ws.onclose = (close) => {
    state.wsReady = false;
    setConnection(false);
    if (close.code === 4401) { state.token = null; localStorage.removeItem(TOKEN_KEY); }
    setTimeout(connect, state.reconnectDelay);
    state.reconnectDelay = Math.min(state.reconnectDelay * 2, 10000);
    startPolling();
  };
}

function send(message) {
  if (!state.wsReady) return false;
  state.ws.send(JSON.stringify(message));
  return true;
}

function onEvent(event) {
  switch (event.type) {
    case "authenticated":
      state.wsReady = true;
      state.reconnectDelay = 500;
      setConnection(true);
      stopPolling();
      for (const doc of state.documents.values()) if (!FINAL.has(doc.status)) watch(doc.id);
      resumeAnswers();
      return;
    case "document":
      upsertDocument(event.document);
      return;
    case "citations": case "token": case "queued": case "end":
      onAnswerEvent(event);
      return;
    case "error":
      onErrorEvent(event);
      return;
    default:
      return;
  }
}

function setConnection(online) {
  const pill = $("connection");
  pill.textContent = online ? "live" : "offline";
  pill.className = `pill ${online ? "online" : "offline"}`;
}

// ---- documents ------------------------------------------------------------------------------------

async function loadDocuments() {
  try {
    const page = await api("/v1/documents?page_size=100");
    for (const doc of page.documents) upsertDocument(doc);
  } catch (error) {
    $("upload-status").textContent = `Could not list documents: ${error.message}`;
  }
}

function watch(id) {
  send({type: "watch", document_id: id});
}

function upsertDocument(doc) {
  state.documents.set(doc.id, doc);
  if (doc.status !== "READY") state.selected.delete(doc.id);
  renderDocuments();
}

function renderDocuments() {
  const list = $("documents");
  list.replaceChildren();
  const docs = [...state.documents.values()].sort((a, b) => (b.created_at || "").localeCompare(a.created_at || ""));
  for (const doc of docs) {
    const item = document.createElement("li");

    const pick = document.createElement("input");
    pick.type = "checkbox";
    pick.disabled = doc.status !== "READY";
    pick.checked = state.selected.has(doc.id);
    pick.title = doc.status === "READY" ? "Ask about this document" : "Not ready yet";
    pick.addEventListener("change", () => {
      if (pick.checked) state.selected.add(doc.id); else state.selected.delete(doc.id);
      renderSelection();
    });

    const name = document.createElement("span");
    name.className = "name";
    name.textContent = doc.filename;
    name.title = doc.filename;

    const status = document.createElement("span");
    status.className = `pill ${doc.status}`;
    status.textContent = doc.status;

    const meta = document.createElement("span");
    meta.className = "meta";
    const pages = doc.pages ? `${doc.pages} page${doc.pages === 1 ? "" : "s"}` : "pages not known yet";
    meta.textContent = `${pages} · ${formatBytes(doc.size_bytes)} `;
    const remove = document.createElement("button");
    remove.className = "link";
    remove.type = "button";
    remove.textContent = "delete";
    remove.addEventListener("click", () => deleteDocument(doc));
    meta.append(remove);

    item.append(pick, name, status, meta);
    const progress = progressOf(doc);
    if (progress !== null) {
      const bar = document.createElement("progress");
      bar.max = 1;
      bar.value = progress;
      item.append(bar);
    }
    if (doc.status === "FAILED" && doc.error) {
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = `${doc.failed_stage ? doc.failed_stage + ": " : ""}${doc.error}`;
      item.append(error);
    }
    list.append(item);
  }
  $("documents-empty").hidden = docs.length > 0;
  renderSelection();
}

function progressOf(doc) {
  if (FINAL.has(doc.status)) return null;
  const p = doc.progress || {};
  if (doc.status === "EMBEDDING" && p.chunks_total) return p.chunks_done / p.chunks_total;
  if (p.pages_total) return (p.pages_done / p.pages_total) * (doc.status === "PARSING" ? 1 : 0.5);
  return null;
}

function formatBytes(bytes) {
  if (!bytes) return "0 B";
  const units = ["B", "KB", "MB", "GB"];
  const power = Math.min(Math.floor(Math.log(bytes) / Math.log(1024)), units.length - 1);
  return `${(bytes / 1024 ** power).toFixed(power ? 1 : 0)} ${units[power]}`;
}

async function deleteDocument(doc) {
  if (!confirm(`Delete ${doc.filename}?`)) return;
  try {
    await api(`/v1/documents/${encodeURIComponent(doc.id)}`, {method: "DELETE"});
    state.documents.delete(doc.id);
    state.selected.delete(doc.id);
    renderDocuments();
  } catch (error) {
    $("upload-status").textContent = `Delete failed: ${error.message}`;
  }
}

async function upload(event) {
  event.preventDefault();
  const file = $("file-input").files[0];
  if (!file) return;
  const form = new FormData();
  form.append("file", file);
  $("upload-button").disabled = true;
  $("upload-status").textContent = `Uploading ${file.name}…`;
  try {
    const doc = await api("/v1/documents", {method: "POST", body: form});
    $("upload-status").textContent = doc.created === false ? `${file.name} was already uploaded.` : "";
    upsertDocument(doc);
    if (!FINAL.has(doc.status)) watch(doc.id);
    $("upload-form").reset();
  } catch (error) {
    $("upload-status").textContent = `Upload failed: ${error.message}`;
  } finally {
    $("upload-button").disabled = false;
  }
}

// Fallback while the WebSocket is down: poll documents that are still moving.
function startPolling() {
  if (state.pollTimer) return;
  state.pollTimer = setInterval(async () => {
    for (const doc of state.documents.values()) {
      if (FINAL.has(doc.status)) continue;
      try { upsertDocument(await api(`/v1/documents/${encodeURIComponent(doc.id)}`)); } catch (_) { /* next */ }
    }
  }, 2000);
}

function stopPolling() {
  clearInterval(state.pollTimer);
  state.pollTimer = null;
}

// ---- asking ---------------------------------------------------------------------------------------

function renderSelection() {
  const count = state.selected.size;
  $("selection").textContent = count
    ? `Asking about ${count} document${count === 1 ? "" : "s"}.`
    : "Select one or more READY documents.";
  $("ask-button").disabled = count === 0;
}

async function sessionFor(ids) {
  const key = [...ids].sort().join(",");
  if (!state.sessions.has(key)) {
    const session = await api("/v1/chat/sessions", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({document_ids: [...ids]}),
    });
    state.sessions.set(key, session.id);
  }
  return state.sessions.get(key);
}

async function ask(event) {
  event.preventDefault();
  const content = $("question").value.trim();
  if (!content || state.selected.size === 0) return;
  addTurn("user").text.textContent = content;
  $("question").value = "";
  const turn = addTurn("assistant");
  turn.root.classList.add("streaming");
  try {
    const sessionId = await sessionFor(state.selected);
    const ref = state.nextRef++;
    state.answers.set(ref, {turn, session_id: sessionId, message_id: null, last_seq: 0, text: "", done: false});
    if (!send({type: "ask", session_id: sessionId, content, ref})) {
      // No WebSocket: ask over REST and show the whole answer at once.
      state.answers.delete(ref);
      const answer = await api(`/v1/chat/sessions/${encodeURIComponent(sessionId)}/messages`, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({content}),
      });
      finishTurn(turn, answer.answer, answer.citations);
    }
  } catch (error) {
    failTurn(turn, error.message);
  }
}

function answerFor(event) {
  let answer = state.answers.get(event.ref);
  if (!answer && event.message_id) {
    for (const candidate of state.answers.values()) if (candidate.message_id === event.message_id) answer = candidate;
  }
  return answer;
}

function onAnswerEvent(event) {
  const answer = answerFor(event);
  if (!answer || answer.done || event.seq <= answer.last_seq) return;   // replayed twice after a resume
  answer.message_id = event.message_id;
  answer.last_seq = event.seq;
  const turn = answer.turn;
  if (event.type === "queued") {
    turn.status.textContent = `Waiting for model capacity (about ${Math.ceil(event.expected_wait_seconds)} s)…`;
  } else if (event.type === "citations") {
    renderCitations(turn, event.citations);
  } else if (event.type === "token") {
    turn.status.textContent = "";
    answer.text += event.text;
    turn.text.textContent = answer.text;
    scrollConversation();
  } else if (event.type === "end") {
    answer.done = true;
    finishTurn(turn, event.answer || answer.text, event.citations);
  }
}

function onErrorEvent(event) {
  const answer = answerFor(event);
  if (answer && !answer.done) {
    answer.done = true;
    failTurn(answer.turn, event.detail || event.title);
    return;
  }
  if (event.document_id) {
    $("upload-status").textContent = `Watching a document failed: ${event.detail}`;
  } else if (event.status === 401) {
    state.token = null;
    localStorage.removeItem(TOKEN_KEY);
    if (state.ws) state.ws.close();
  }
}

// After a reconnect, pick up every unfinished answer where it stopped.
function resumeAnswers() {
  for (const [ref, answer] of state.answers) {
    if (answer.done || !answer.message_id) continue;
    send({type: "resume", session_id: answer.session_id, message_id: answer.message_id,
          last_seq: answer.last_seq, ref});
  }
}

function addTurn(role) {
  const root = document.createElement("div");
  root.className = `turn ${role}`;
  const text = document.createElement("div");
  text.className = "text";
  const status = document.createElement("div");
  status.className = "status";
  const citations = document.createElement("div");
  citations.className = "citations";
  root.append(status, text, citations);
  $("conversation").append(root);
  scrollConversation();
  return {root, text, status, citations};
}

function finishTurn(turn, text, citations) {
  turn.root.classList.remove("streaming");
  turn.status.textContent = "";
  turn.text.textContent = text;
  if (citations && citations.length) renderCitations(turn, citations);
  scrollConversation();
}

function failTurn(turn, message) {
  turn.root.classList.remove("streaming");
  turn.status.textContent = "";
  const problem = document.createElement("div");
  problem.className = "problem";
  problem.textContent = message;
  turn.root.append(problem);
}

function renderCitations(turn, citations) {
  turn.citations.replaceChildren();
  const quote = document.createElement("div");
  quote.className = "quote";
  quote.hidden = true;
  for (const citation of citations) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = `p. ${citation.page}`;
    chip.title = citation.quote;
    chip.setAttribute("aria-expanded", "false");
    chip.addEventListener("click", () => {
      const open = chip.getAttribute("aria-expanded") === "true";
      for (const other of turn.citations.querySelectorAll(".chip")) other.setAttribute("aria-expanded", "false");
      quote.hidden = open;
      if (open) return;
      chip.setAttribute("aria-expanded", "true");
      const doc = state.documents.get(citation.document_id);
      const source = document.createElement("span");
      source.className = "source";
      source.textContent = `${citation.document_name || (doc && doc.filename) || citation.document_id}, page ${citation.page}`;
      quote.replaceChildren(document.createTextNode(citation.quote), source);
    });
    turn.citations.append(chip);
  }
  turn.citations.append(quote);
}

function scrollConversation() {
  const box = $("conversation");
  box.scrollTop = box.scrollHeight;
}

// ---- start ----------------------------------------------------------------------------------------

$("upload-form").addEventListener("submit", upload);
$("ask-form").addEventListener("submit", ask);
$("question").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); $("ask-form").requestSubmit(); }
});
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token-input").value.trim();
  localStorage.setItem(TOKEN_KEY, state.token);
  $("auth").hidden = true;
  loadDocuments().then(connect);
});

loadDocuments().then(connect);
