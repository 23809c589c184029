// uringseed's web page: polls the native API (/api/v1/) every 2 s with the token cookie,
// draws the total upload rate of the last 5 minutes, lists torrents and one torrent's peers,
// adds (multipart upload) and removes torrents. No inline script (the CSP forbids it), nothing
// from another origin.
"use strict";

const PERIOD_MS = 2000;
const KEEP_SAMPLES = 150; // 5 minutes at one sample per 2 s
const CONFIRM_MS = 5000;

const state = {
  samples: [], // {t: ms, rate: bytes/s}
  selected: null, // info-hash whose peers are shown
  armed: new Map(), // info-hash -> time its Remove button asks "Confirm?" until
  loggedOut: false,
  timer: null,
  dataRootSet: false,
};

const $ = (id) => document.getElementById(id);

function fmtBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let v = Number(n) || 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
}

const fmtRate = (n) => fmtBytes(n) + "/s";

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// One API call; JSON in and out. Errors become ApiError with the API's code and message.
async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let resp;
  try {
    resp = await fetch("/api/v1/" + path, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", "the server does not answer (" + e.message + ")");
  }
  let data = null;
  try {
    data = await resp.json();
  } catch (_) {
    data = null;
  }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || "http_" + resp.status,
      err.message || resp.status + " " + resp.statusText);
  }
  return data;
}

function showMessage(text, isError) {
  const m = $("message");
  m.textContent = text;
  m.className = "message " + (isError ? "error" : "info");
  m.dataset.kind = isError ? "error" : "info";
  m.hidden = false;
}

function clearMessage() {
  const m = $("message");
  m.hidden = true;
  m.textContent = "";
  m.dataset.kind = "";
}

function showError(e) {
  const code = e.code ? " [" + e.code + "]" : "";
  showMessage((e.message || String(e)) + code, true);
}

function setLoggedOut(out) {
  state.loggedOut = out;
  $("login").hidden = !out;
  $("app").hidden = out;
  if (out) {
    $("summary").textContent = "";
    $("login-token").focus();
  }
}

// Poll

async function refresh() {
  try {
    const [status, list] = await Promise.all([api("GET", "status"), api("GET", "torrents")]);
    if (state.loggedOut) {
      setLoggedOut(false);
    }
    $("app").hidden = false;
    addSample(status.upload_rate);
    renderSummary(status);
    renderTorrents(list.torrents);
    if (!state.dataRootSet) {
      state.dataRootSet = true;
      fillDataRoot();
    }
    if (state.selected) {
      await refreshPeers();
    }
  } catch (e) {
    if (e.status === 401) {
      setLoggedOut(true);
    } else {
      showError(e);
    }
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = setTimeout(async () => {
    await refresh();
    schedule();
  }, PERIOD_MS);
}

async function fillDataRoot() {
  try {
    const s = await api("GET", "settings");
    const input = $("add-data");
    if (!input.value && s.data_roots && s.data_roots.length) {
      input.value = s.data_roots[0];
    }
  } catch (_) {
    // Only a convenience.
  }
}

// Summary and graph

function renderSummary(s) {
  const n = (k, word) => k + " " + word + (k === 1 ? "" : "s");
  $("summary").textContent = "v" + s.version + " · " + n(s.torrents, "torrent") + " · " +
    n(s.peers, "peer") + " · " + fmtRate(s.upload_rate) + " · " + fmtBytes(s.uploaded_session) +
    " this session";
  $("summary").dataset.uploadRate = s.upload_rate;
  $("graph-now").textContent = fmtRate(s.upload_rate);
}

function addSample(rate) {
  state.samples.push({ t: Date.now(), rate: Number(rate) || 0 });
  while (state.samples.length > KEEP_SAMPLES) {
    state.samples.shift();
  }
  drawGraph();
}

function drawGraph() {
  const c = $("graph");
  const ctx = c.getContext("2d");
  const w = c.width;
  const h = c.height;
  const pad = { l: 80, r: 10, t: 10, b: 20 };
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px sans-serif";
  ctx.fillStyle = "#666";
  const max = Math.max(1024, ...state.samples.map((s) => s.rate)) * 1.1;
  const span = KEEP_SAMPLES * PERIOD_MS;
  const now = Date.now();
  const x = (t) => pad.l + (w - pad.l - pad.r) * (1 - (now - t) / span);
  const y = (r) => h - pad.b - (h - pad.t - pad.b) * (r / max);
  ctx.strokeStyle = "#ddd";
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const r = (max * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad.l, y(r));
    ctx.lineTo(w - pad.r, y(r));
    ctx.stroke();
    ctx.fillText(fmtRate(Math.round(r)), 4, y(r) + 4);
  }
  ctx.fillText("-5 min", pad.l, h - 4);
  ctx.fillText("now", w - pad.r - 24, h - 4);
  if (state.samples.length > 0) {
    ctx.strokeStyle = "#1f6f50";
    ctx.fillStyle = "rgba(31, 111, 80, 0.15)";
    ctx.lineWidth = 2;
    ctx.beginPath();
    state.samples.forEach((s, i) => {
      if (i === 0) {
        ctx.moveTo(x(s.t), y(s.rate));
      } else {
        ctx.lineTo(x(s.t), y(s.rate));
      }
    });
    ctx.stroke();
    const last = state.samples[state.samples.length - 1];
    ctx.lineTo(x(last.t), y(0));
    ctx.lineTo(x(state.samples[0].t), y(0));
    ctx.closePath();
    ctx.fill();
  }
  c.dataset.samples = String(state.samples.length);
}

// Torrents

function cell(row, cls) {
  let td = row.querySelector("td." + cls);
  if (!td) {
    td = document.createElement("td");
    td.className = cls;
    row.appendChild(td);
  }
  return td;
}

function renderTorrents(torrents) {
  const body = $("torrents").tBodies[0];
  const seen = new Set();
  torrents.forEach((t, i) => {
    seen.add(t.info_hash);
    let row = body.querySelector('tr[data-ih="' + t.info_hash + '"]');
    if (!row) {
      row = newTorrentRow(t);
    }
    if (body.rows[i] !== row) {
      body.insertBefore(row, body.rows[i] || null);
    }
    updateTorrentRow(row, t);
  });
  Array.from(body.rows).forEach((row) => {
    if (!seen.has(row.dataset.ih)) {
      row.remove();
    }
  });
  $("no-torrents").hidden = torrents.length > 0;
  if (state.selected && !seen.has(state.selected)) {
    closePeers();
  }
}

function newTorrentRow(t) {
  const row = document.createElement("tr");
  row.dataset.ih = t.info_hash;
  row.className = "torrent";
  ["name", "state", "size num", "peers num", "rate num", "uploaded num", "actions"].forEach(
    (cls) => {
      const td = document.createElement("td");
      td.className = cls;
      row.appendChild(td);
    });
  const btn = document.createElement("button");
  btn.type = "button";
  btn.className = "remove";
  btn.textContent = "Remove";
  btn.addEventListener("click", (ev) => {
    ev.stopPropagation();
    onRemove(t.info_hash, btn);
  });
  cell(row, "actions").appendChild(btn);
  row.addEventListener("click", () => selectTorrent(t.info_hash));
  return row;
}

function updateTorrentRow(row, t) {
  row.dataset.state = t.state;
  row.dataset.source = t.source;
  row.classList.toggle("selected", state.selected === t.info_hash);
  cell(row, "name").textContent = t.name;
  cell(row, "name").title = t.info_hash + (t.error ? "\n" + t.error : "");
  const st = t.state === "checking" ? "checking " + Math.floor(t.progress * 100) + "%" : t.state;
  cell(row, "state").textContent = st;
  cell(row, "size").textContent = fmtBytes(t.size);
  cell(row, "peers").textContent = String(t.peers);
  cell(row, "rate").textContent = fmtRate(t.upload_rate);
  const up = cell(row, "uploaded");
  up.textContent = fmtBytes(t.uploaded_session) + " / " + fmtBytes(t.uploaded_total);
  up.dataset.session = String(t.uploaded_session);
  up.dataset.total = String(t.uploaded_total);
  const btn = row.querySelector("button.remove");
  const armed = (state.armed.get(t.info_hash) || 0) > Date.now();
  if (!armed) {
    state.armed.delete(t.info_hash);
  }
  btn.textContent = armed ? "Confirm?" : "Remove";
  btn.classList.toggle("armed", armed);
}

// Remove asks for a second click ("Confirm?") within 5 s instead of a modal dialog.
async function onRemove(ih, btn) {
  const now = Date.now();
  if ((state.armed.get(ih) || 0) <= now) {
    state.armed.set(ih, now + CONFIRM_MS);
    btn.textContent = "Confirm?";
    btn.classList.add("armed");
    setTimeout(() => {
      if ((state.armed.get(ih) || 0) <= Date.now() && btn.isConnected) {
        btn.textContent = "Remove";
        btn.classList.remove("armed");
      }
    }, CONFIRM_MS + 50);
    return;
  }
  state.armed.delete(ih);
  btn.disabled = true;
  try {
    await api("DELETE", "torrents/" + ih);
    showMessage("Removed " + ih, false);
    if (state.selected === ih) {
      closePeers();
    }
    await refresh();
  } catch (e) {
    showError(e);
    btn.textContent = "Remove";
    btn.classList.remove("armed");
  } finally {
    btn.disabled = false;
  }
}

// Peers

function selectTorrent(ih) {
  state.selected = ih;
  $("peers").hidden = false;
  $("peers").dataset.ih = ih;
  document.querySelectorAll("#torrents tr.torrent").forEach((r) => {
    r.classList.toggle("selected", r.dataset.ih === ih);
  });
  refreshPeers();
}

function closePeers() {
  state.selected = null;
  $("peers").hidden = true;
  $("peers").dataset.ih = "";
  document.querySelectorAll("#torrents tr.selected").forEach((r) => r.classList.remove("selected"));
}

async function refreshPeers() {
  const ih = state.selected;
  let t;
  try {
    t = await api("GET", "torrents/" + ih);
  } catch (e) {
    if (e.status === 404) {
      closePeers();
    } else {
      showError(e);
    }
    return;
  }
  if (state.selected !== ih) {
    return;
  }
  $("peers-name").textContent = t.name;
  const body = $("peer-table").tBodies[0];
  body.replaceChildren(...t.peer_list.map(peerRow));
  $("no-peers").hidden = t.peer_list.length > 0;
}

function peerRow(p) {
  const row = document.createElement("tr");
  row.className = "peer";
  row.dataset.address = p.address;
  const cells = [
    ["address", p.address],
    ["client", p.client || p.peer_id],
    ["rate num", fmtRate(p.upload_rate)],
    ["uploaded num", fmtBytes(p.uploaded)],
    ["encryption", p.encryption],
    ["flags", p.flags],
  ];
  for (const [cls, text] of cells) {
    const td = document.createElement("td");
    td.className = cls;
    td.textContent = text;
    row.appendChild(td);
  }
  row.querySelector(".uploaded").dataset.bytes = String(p.uploaded);
  return row;
}

// Forms

async function onAdd(ev) {
  ev.preventDefault();
  const form = $("add-form");
  const btn = $("add-submit");
  btn.disabled = true;
  try {
    const t = await api("POST", "torrents", new FormData(form));
    showMessage("Added " + t.name + " (" + t.info_hash + ")", false);
    $("add-file").value = "";
    await refresh();
  } catch (e) {
    showError(e);
  } finally {
    btn.disabled = false;
  }
}

async function onLogin(ev) {
  ev.preventDefault();
  try {
    await api("POST", "login", { token: $("login-token").value });
    $("login-token").value = "";
    clearMessage();
    setLoggedOut(false);
    await refresh();
  } catch (e) {
    showError(e);
    $("login-token").select();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("add-form").addEventListener("submit", onAdd);
  $("login").addEventListener("submit", onLogin);
  $("peers-close").addEventListener("click", closePeers);
  $("message").addEventListener("click", clearMessage);
  refresh().then(schedule);
});
