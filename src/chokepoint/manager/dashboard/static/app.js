// The manager's dashboard: reads the same API as the CLI, with the token typed into the page.
// No framework and no build step; every value from the API is inserted as text, never as HTML.
"use strict";

const API = document.body.dataset.api;
const COLORS = { drop: "#c0392b", reset: "#e67e22", "dns-forge": "#8e44ad", blockpage: "#d35400", throttle: "#2980b9",
  delay: "#16a085", allow: "#27ae60", "icmp-unreachable": "#7f8c8d", "tls-intercept": "#2c3e50" };
const state = { token: localStorage.getItem("chokepoint-token") || "", deployment: null, status: null,
  versions: [], stream: null, selected: null, events: [] };

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = el("tr");
  for (const cell of cells) {
    const td = el("td");
    if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "" : String(cell);
    tr.appendChild(td);
  }
  return tr;
}

async function api(path, options = {}) {
  const headers = Object.assign({ "Authorization": "Bearer " + state.token }, options.headers || {});
  if (options.body) headers["Content-Type"] = "application/json";
  const response = await fetch(API + path, Object.assign({}, options, { headers }));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.detail || response.statusText);
    error.status = response.status; error.body = body;
    throw error;
  }
  return body;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  return seconds < 1 ? "now" : seconds.toFixed(1) + " s ago";
}

function time(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19); }

async function start() {
  document.getElementById("token").value = state.token;
  document.getElementById("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    state.token = document.getElementById("token").value.trim();
    localStorage.setItem("chokepoint-token", state.token);
    loadDeployments();
  });
  document.getElementById("push").addEventListener("click", () => push(false));
  document.getElementById("canary").addEventListener("click", () => push(true));
  document.getElementById("promote").addEventListener("click", promote);
  if (state.token) await loadDeployments();
  setInterval(refresh, 1000);
  setInterval(refreshSlow, 3000);
}

async function loadDeployments() {
  const nav = document.getElementById("deployments");
  nav.replaceChildren();
  try {
    const me = await api("/whoami");
    document.getElementById("whoami").textContent = `${me.name} (${me.role}${me.deployment ? " of " + me.deployment : ""})`;
    const deployments = await api("/deployments");
    for (const dep of deployments) {
      const button = el("button", dep.name);
      button.dataset.deployment = dep.name;
      button.addEventListener("click", () => select(dep.name));
      nav.appendChild(button);
    }
    if (deployments.length && !deployments.some((d) => d.name === state.deployment)) await select(deployments[0].name);
  } catch (err) {
    document.getElementById("whoami").textContent = "token refused: " + err.message;
  }
}

async function select(name) {
  state.deployment = name;
  state.selected = null;
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.deployment === name);
  state.events = [];
  document.querySelector("#events tbody").replaceChildren();
  await refresh();
  await refreshSlow();
  await loadPolicyText();
  openStream();
}

async function refresh() {
  if (!state.deployment) return;
  try {
    state.status = await api(`/deployments/${state.deployment}`);
    renderNodes(state.status);
    renderRates(await api(`/deployments/${state.deployment}/rates?window=120`));
  } catch (err) { /* shown by the next successful refresh */ }
}

async function refreshSlow() {
  if (!state.deployment) return;
  try {
    const dep = state.deployment;
    for (const by of ["rule", "app_proto", "server_name"]) {
      const extra = by === "server_name" ? "&event_type=chokepoint" : "";
      renderTop(by, await api(`/deployments/${dep}/top?by=${by}&window=600${extra}`));
    }
    state.versions = await api(`/deployments/${dep}/policy/versions`);
    renderHistory();
    renderLists(await api(`/deployments/${dep}/lists`));
  } catch (err) { /* next time */ }
}

function renderNodes(status) {
  const body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  const canary = document.getElementById("canary-nodes");
  const checked = new Set([...canary.querySelectorAll("input:checked")].map((i) => i.value));
  canary.replaceChildren(el("span", "canary nodes: "));
  for (const node of status.nodes) {
    const health = el("span", node.health, "health " + node.health);
    const lists = Object.entries(node.lists_in_force || {}).map(([n, v]) => `${n}@${v}`).join(" ");
    const workers = (node.workers || []).map((w) => (w.running ? "up" : "DOWN")).join(" ");
    const events = node.events || {};
    const tr = row([node.name, health, node.policy_in_force === null ? "none" : "v" + node.policy_in_force,
      node.desired_policy === null ? "none" : "v" + node.desired_policy, lists, ago(node.heartbeat_age_s), workers,
      `${events.sent || 0} / ${events.dropped || 0}`, node.last_error || "", node.canary ? "yes" : ""]);
    tr.dataset.node = node.name;
    tr.dataset.health = node.health;
    tr.dataset.policy = node.policy_in_force === null ? "" : String(node.policy_in_force);
    body.appendChild(tr);
    const label = el("label");
    const box = el("input");
    box.type = "checkbox"; box.value = node.name; box.checked = checked.has(node.name);
    label.append(box, " " + node.name + " ");
    canary.appendChild(label);
  }
  const badge = document.getElementById("converged");
  badge.textContent = status.converged ? "all nodes in sync" : "not converged";
  badge.className = "badge " + (status.converged ? "ok" : "bad");
}

function renderRates(data) {
  const canvas = document.getElementById("rates");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const series = data.series;
  const actions = [...new Set(series.flatMap((p) => Object.keys(p.by_action)))].sort();
  const end = Math.floor(data.now), start = end - 120;
  let max = 1;
  for (const p of series) for (const v of Object.values(p.by_action)) max = Math.max(max, v);
  const x = (t) => 40 + (canvas.width - 50) * (t - start) / 120;
  const y = (v) => canvas.height - 20 - (canvas.height - 30) * v / max;
  ctx.strokeStyle = "#ccd"; ctx.fillStyle = "#667"; ctx.font = "11px sans-serif";
  ctx.beginPath(); ctx.moveTo(40, y(0)); ctx.lineTo(canvas.width - 10, y(0)); ctx.moveTo(40, y(max)); ctx.lineTo(40, y(0)); ctx.stroke();
  ctx.fillText(max.toFixed(1) + "/s", 2, y(max) + 4); ctx.fillText("0", 28, y(0) + 4);
  ctx.fillText("-120 s", 40, canvas.height - 4); ctx.fillText("now", canvas.width - 30, canvas.height - 4);
  const legend = document.getElementById("rates-legend");
  legend.replaceChildren();
  for (const action of actions) {
    ctx.strokeStyle = COLORS[action] || "#333"; ctx.lineWidth = 2; ctx.beginPath();
    let first = true;
    for (const p of series) {
      if (p.t < start) continue;
      const v = p.by_action[action] || 0;
      if (first) { ctx.moveTo(x(p.t), y(v)); first = false; } else ctx.lineTo(x(p.t), y(v));
    }
    ctx.stroke(); ctx.lineWidth = 1;
    const item = el("span"); const swatch = el("i"); swatch.style.background = COLORS[action] || "#333";
    item.append(swatch, action); legend.appendChild(item);
  }
}

function renderTop(by, items) {
  const body = document.querySelector(`#top-${by} tbody`);
  body.replaceChildren(...items.map((i) => row([i.value, i.count])));
  if (!items.length) body.appendChild(row(["none in the last 10 min", ""]));
}

function renderHistory() {
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  const desired = state.status ? (state.status.desired.policy || {}).number : null;
  for (const v of state.versions) {
    const diff = el("button", "diff"); diff.addEventListener("click", () => showDiff(v.number));
    const back = el("button", "roll back"); back.className = "rollback"; back.dataset.version = v.number;
    back.addEventListener("click", () => rollback(v.number));
    const cell = el("span"); cell.append(diff, " ", back);
    const label = "v" + v.number + (v.number === desired ? " (desired)" : "") + (v.rollback_of ? ` = v${v.rollback_of}` : "");
    const tr = row([label, v.author, time(v.created_at), v.message, v.hash.slice(0, 12), cell]);
    tr.dataset.version = v.number;
    if (state.selected === v.number) tr.classList.add("selected");
    body.appendChild(tr);
  }
}

async function showDiff(number) {
  state.selected = number;
  renderHistory();
  const data = await api(`/deployments/${state.deployment}/policy/diff?to=${number}`);
  const pre = document.getElementById("diff");
  pre.replaceChildren();
  for (const line of (data.diff || "(no change)").split("\n")) {
    const cls = line.startsWith("+") && !line.startsWith("+++") ? "add" : line.startsWith("-") && !line.startsWith("---") ? "del" : "";
    pre.appendChild(el("span", line + "\n", cls));
  }
}

function renderLists(lists) {
  const body = document.querySelector("#lists tbody");
  body.replaceChildren(...lists.map((l) => row([l.name, `${l.number}${l.desired === l.number ? "" : " (desired " + l.desired + ")"}`,
    l.count, l.source, l.source_date, l.licence, l.author])));
}

async function loadPolicyText() {
  const area = document.getElementById("policy-text");
  const desired = state.status && state.status.desired.policy;
  area.value = "";
  if (!desired) return;
  const version = await api(`/deployments/${state.deployment}/policy/versions/${desired.number}`);
  area.value = version.files["policy.yaml"];
  state.files = version.files;
  state.params = version.params;
}

function result(text, ok) {
  const out = document.getElementById("push-result");
  out.textContent = text;
  out.className = ok ? "ok" : "error";
}

async function push(canary) {
  const files = Object.assign({}, state.files || {}, { "policy.yaml": document.getElementById("policy-text").value });
  const nodes = [...document.querySelectorAll("#canary-nodes input:checked")].map((i) => i.value);
  if (canary && !nodes.length) { result("select the canary nodes first", false); return; }
  const head = state.versions.length ? state.versions[0].number : 0;
  try {
    const v = await api(`/deployments/${state.deployment}/policy`, { method: "POST", body: JSON.stringify({
      files, params: state.params || {}, message: document.getElementById("push-message").value || "from the dashboard",
      expected_version: head, canary: canary ? nodes : [] }) });
    result(`pushed v${v.number}${canary ? " to " + nodes.join(", ") : ""}` + (v.warnings.length ? "; " + v.warnings.join("; ") : ""), true);
    await refresh(); await refreshSlow();
  } catch (err) { result(`refused (${err.status}): ${err.message}`, false); }
}

async function promote() {
  const head = state.versions.length ? state.versions[0].number : 0;
  try {
    await api(`/deployments/${state.deployment}/policy/promote`, { method: "POST",
      body: JSON.stringify({ number: head, expected_version: head }) });
    result(`v${head} promoted to every node`, true);
    await refresh(); await refreshSlow();
  } catch (err) { result(`refused (${err.status}): ${err.message}`, false); }
}

async function rollback(number) {
  const head = state.versions.length ? state.versions[0].number : 0;
  try {
    const v = await api(`/deployments/${state.deployment}/policy/rollback`, { method: "POST",
      body: JSON.stringify({ to: number, expected_version: head, message: `rollback to v${number} from the dashboard` }) });
    result(`rolled back: v${v.number} = v${number}`, true);
    await refresh(); await refreshSlow(); await loadPolicyText();
  } catch (err) { result(`refused (${err.status}): ${err.message}`, false); }
}

function openStream() {
  if (state.stream) state.stream.close();
  const badge = document.getElementById("stream-state");
  const url = `${API}/events/stream?deployment=${encodeURIComponent(state.deployment)}&token=${encodeURIComponent(state.token)}`;
  const stream = new EventSource(url);
  state.stream = stream;
  stream.onopen = () => { badge.textContent = "live"; badge.className = "badge ok"; };
  stream.onerror = () => { badge.textContent = "reconnecting"; badge.className = "badge bad"; };
  stream.addEventListener("dropped", (e) => { badge.textContent = "live, " + JSON.parse(e.data).dropped + " missed"; });
  stream.addEventListener("eve", (e) => {
    const item = JSON.parse(e.data), r = item.record, cp = r.chokepoint || {};
    const body = document.querySelector("#events tbody");
    const name = (r.tls && r.tls.sni) || (r.http && r.http.hostname) || (r.dns && r.dns.rrname) ||
      ((cp.evidence || []).find((x) => ["tls.sni", "quic.sni", "http.host", "dns.qname"].includes(x.field)) || {}).value || "";
    const tr = row([(r.timestamp || "").slice(11, 23), item.node, r.event_type, cp.action || cp.verdict || "", cp.rule || "",
      r.app_proto || "", name, `${r.src_ip}:${r.src_port} → ${r.dest_ip}:${r.dest_port}`]);
    tr.dataset.rule = cp.rule || "";
    body.prepend(tr);
    while (body.children.length > 50) body.removeChild(body.lastChild);
  });
}

start();
