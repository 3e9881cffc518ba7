// The review card: answers keys in the browser at once, keeps a window of upcoming examples, and sends
// decisions in batches through the component's `sync` state (protocol: app_pages/_review_card.py).
import {
  boxKey, cleanOp, decisionOp, forgetAnswered, liveCounts, persistBox, pushLocal, recoverBoxes, takeAcks,
  undoOp, undoStack,
} from "./outbox.js";

const REFILL_AT = 15;        // ask for more when this few examples are left ahead
const KEEP_BEHIND = 200;     // decided examples kept for K (previous)
const RESEND_AFTER_MS = 4000;  // an answered request that did not answer an operation: send it again
const GATE_MS = 250;           // a slow answer does not hold new decisions back longer than this
const TYPING_MS = 150;         // keys closer than this are a burst: their decisions go as one batch...
const HOLD_MS = 400;           // ...sent at the latest this long after the first of them
const instances = new WeakMap();
window.__pmxReview = window.__pmxReview || { timings: [], last: null };

function rid(prefix) {
  const a = new Uint32Array(3); crypto.getRandomValues(a);
  return prefix + Array.from(a, (x) => x.toString(36)).join("");
}
function tabId() {
  try {
    let t = sessionStorage.getItem("pmx-review-tab");
    if (!t) { t = rid("t"); sessionStorage.setItem("pmx-review-tab", t); }
    return t;
  } catch (e) { return rid("t"); }
}
const sameKey = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
function el(tag, className, text) {
  const n = document.createElement(tag);
  if (className) n.className = className;
  if (text !== undefined && text !== null) n.textContent = String(text);
  return n;
}
function fmtInt(n) { return Number(n || 0).toLocaleString("en-US"); }
function isEditable(t) {
  if (!t || !t.tagName) return false;
  const tag = t.tagName.toLowerCase();
  return tag === "input" || tag === "textarea" || tag === "select" || t.isContentEditable;
}
function isClickable(t) {
  if (!t || !t.tagName) return false;
  const tag = t.tagName.toLowerCase();
  return tag === "button" || tag === "a" || tag === "summary" || (t.getAttribute && t.getAttribute("role") === "button");
}

function createInstance(parent, api) {
  const q = (sel) => parent.querySelector(sel);
  const S = {
    api, parent, project: null, uid: null, classes: [], tab: tabId(), inst: rid("i"), req: 0, qid: null,
    items: [], cur: 0, done: false, want: undefined, merged: new Set(), outbox: [], inflight: 0,
    sentAt: 0, history: [], local: [], undone: new Set(), failed: new Set(), saved: 0, focusSeq: 0,
    msgs: [], counts: {}, lastAckReq: 0, seen: new Map(), lastKeyAt: 0, timer: null, pickerIdx: 0, pickerOpen: false, helloSent: false,
    nodes: {
      card: q(".pmx-card"), pos: q(".pmx-pos"), reasons: q(".pmx-reasons"), empty: q(".pmx-empty"),
      body: q(".pmx-body"), text: q(".pmx-text"), decision: q(".pmx-decision"), acceptWhat: q(".pmx-accept-what"),
      chips: q(".pmx-chips"), picker: q(".pmx-picker"), pickerInput: q(".pmx-picker-input"),
      pickerList: q(".pmx-picker-list"), undoWhat: q(".pmx-undo-what"), undoBtn: q(".pmx-undo"),
      intended: q(".pmx-intended"), mixed: q(".pmx-mixed"), relabel: q(".pmx-relabel"),
      judge: q(".pmx-judge"), agreeRow: q(".pmx-agree-row"), agree: q(".pmx-agree"),
      rawRow: q(".pmx-raw-row"), raw: q(".pmx-raw"),
      nearestRow: q(".pmx-nearest-row"), nearest: q(".pmx-nearest"), flagRow: q(".pmx-flag-row"), flag: q(".pmx-flag"),
      saved: q(".pmx-saved"), msg: q(".pmx-msg"), accept: q(".pmx-accept"), reject: q(".pmx-reject"),
      counts: [...parent.querySelectorAll(".pmx-count")], progress: q(".pmx-progress-fill"),
    },
  };
  try {
    // "Duplicate tab" copies sessionStorage: a tab whose id another open tab answers to takes a new one
    S.channel = new BroadcastChannel("pmx-review-tabs");
    S.channel.onmessage = (m) => {
      const d = m.data || {};
      if (d.who === S.tab && d.inst !== S.inst) S.channel.postMessage({ mine: S.tab, inst: S.inst });
      else if (d.mine === S.tab && d.inst !== S.inst && S.renewable) renewTab(S);
    };
    S.renewable = true;
    S.channel.postMessage({ who: S.tab, inst: S.inst });
    setTimeout(() => { S.renewable = false; }, 1500);
  } catch (e) { S.channel = null; }
  S.onKey = (e) => onKey(S, e);
  window.__pmxReview.owner = S;
  watchEvents(S);
  S.onHide = () => flushNow(S);
  S.onVis = () => { if (document.visibilityState === "hidden") flushNow(S); };
  window.addEventListener("keydown", S.onKey, true);
  window.addEventListener("pagehide", S.onHide);
  document.addEventListener("visibilitychange", S.onVis);
  S.nodes.card.addEventListener("click", (e) => onClick(S, e));
  S.nodes.pickerInput.addEventListener("input", () => { S.pickerIdx = 0; renderPicker(S); });
  S.cleanup = () => {
    window.removeEventListener("keydown", S.onKey, true);
    window.removeEventListener("pagehide", S.onHide);
    document.removeEventListener("visibilitychange", S.onVis);
    if (S.timer) clearTimeout(S.timer);
    if (S.retry) clearTimeout(S.retry);
    if (S.gate) clearTimeout(S.gate);
    if (S.hold) clearTimeout(S.hold);
    if (S.channel) S.channel.close();
    persist(S);   // sent again when this project's Review page next opens in this browser
  };
  return S;
}

function renewTab(S) {
  S.renewable = false;
  S.tab = rid("t");
  try { sessionStorage.setItem("pmx-review-tab", S.tab); } catch (e) { /* no storage */ }
  for (const op of S.outbox) if (!op._sent) op.tab = S.tab;
  persist(S);
}

// ------------------------------------------------------------------ outbox and sending
function persist(S) {
  // one box per page load: a duplicated tab (same sessionStorage) never overwrites another's box
  if (!S.uid) return;
  try {
    persistBox(localStorage, boxKey(S.uid, S.tab, S.inst), { uid: S.uid, project: S.project }, S.outbox, Date.now());
  } catch { /* storage full or disabled: the server copy is what counts */ }
}
function recover(S) {
  // decisions this browser made for this project (its identity, not its name) that the server never
  // answered; a box leaves storage once the server answered all of it
  try {
    const got = recoverBoxes(localStorage, {
      uid: S.uid, project: S.project, ownKey: boxKey(S.uid, S.tab, S.inst), have: S.outbox.map((o) => o.cid),
    });
    S.outbox.push(...got.ops);
    S.foreign = got.foreign;
    if (got.stale) {
      say(S, `${fmtInt(got.stale)} decision${got.stale === 1 ? "" : "s"} kept in this browser for an earlier project ` +
        `called “${S.project}” (deleted since) ${got.stale === 1 ? "was" : "were"} not applied to this one.`, "warn");
    }
  } catch { S.foreign = []; /* no storage */ }
}
function forgetForeign(S, answered) {
  // operations of other page loads' boxes that the server has answered leave those boxes
  if (!S.foreign || !S.foreign.length) return;
  try { S.foreign = forgetAnswered(localStorage, S.foreign, answered); } catch { /* no storage */ }
}
function needMore(S) {
  if (S.done || S.want !== undefined || S.qid === null) return false;
  return S.items.length - S.cur <= REFILL_AT;
}
function schedule(S) {
  if (S.timer) return;
  S.timer = setTimeout(() => { S.timer = null; pump(S); }, 0);
}
function pump(S) {
  if (needMore(S)) S.want = S.items.length ? S.items[S.items.length - 1].key : "start";
  const now = performance.now();
  if (S.inflight && now - S.sentAt < GATE_MS) {
    // one request at a time, answered within GATE_MS normally; keys meanwhile go in the next batch
    if (!S.gate) S.gate = setTimeout(() => { S.gate = null; pump(S); }, GATE_MS - (now - S.sentAt) + 5);
    renderStatus(S);
    return;
  }
  const unsent = S.outbox.filter((o) => !o._sent);
  const fresh = unsent.length > 0;
  if (fresh) {
    // while the reviewer types, collect the burst (fewer answers to process, so the browser stays free
    // for the keys); never longer than HOLD_MS, and not when the window is about to run dry
    const oldest = Math.min(...unsent.map((o) => o._made || now));
    const dry = S.items.length - S.cur <= 5 && !S.done;
    const until = Math.min(S.lastKeyAt + TYPING_MS, oldest + HOLD_MS);
    if (!dry && until > now) {
      if (S.hold) clearTimeout(S.hold);
      S.hold = setTimeout(() => { S.hold = null; pump(S); }, until - now + 5);
      renderStatus(S);
      return;
    }
  }
  const stale = S.outbox.some((o) => o._sent && now - o._sent > RESEND_AFTER_MS);
  // a page asked for and not come yet is asked for again only after a pause (never a loop of reruns)
  const wantKey = JSON.stringify(S.want ?? null);
  const ask = S.want !== undefined && !S.inflight && (wantKey !== S.wantSent || now - S.wantSentAt > RESEND_AFTER_MS);
  if (fresh || stale || ask || !S.helloSent) {
    if (S.want !== undefined) { S.wantSent = wantKey; S.wantSentAt = now; }
    send(S, false);
  }
  if (S.outbox.length && !S.retry) {
    // something not answered yet: look again later (a lost message, a server restart)
    S.retry = setTimeout(() => { S.retry = null; pump(S); }, RESEND_AFTER_MS + 50);
  }
  renderStatus(S);
}
function send(S, final) {
  S.req += 1;
  S.inflight = S.req;
  S.sentAt = performance.now();
  S.helloSent = true;
  const ops = S.outbox.slice(0, 400);
  for (const o of ops) o._sent = S.sentAt;
  S.api.setStateValue("sync", {
    project: S.project, uid: S.uid, inst: S.inst, tab: S.tab, req: S.req, qid: S.qid,
    want: S.want === undefined ? null : S.want, ops: ops.map(cleanOp), final: !!final, focus_seen: S.focusSeq,
  });
}
function flushNow(S) {
  persist(S);
  if (S.outbox.length) send(S, true);   // the tab is going away: no waiting for a batch
}

// ------------------------------------------------------------------ data from the server
function onData(S, data) {
  if (!data) return;
  if (S.project === null) {
    S.project = data.project;
    S.uid = data.project_uid || null;
    recover(S);
    // decisions from before a refresh go first; the queue then starts after them
    if (S.outbox.length) S.wantStart = true;
  } else if (data.project_uid && S.uid && data.project_uid !== S.uid) {
    // the project was deleted and created again under this name while this tab was open: what waits
    // belongs to the old one (the server refuses it); start over on the new one
    const n = S.outbox.length;
    S.outbox = [];
    persist(S);
    S.uid = data.project_uid;
    S.local = []; S.undone = new Set(); S.failed = new Set();
    if (n) {
      say(S, `${fmtInt(n)} decision${n === 1 ? "" : "s"} for the earlier project called “${S.project}” ` +
        "(deleted since) were not applied to this one.", "warn");
    }
  }
  S.classes = data.classes || [];
  S.counts = data.counts || {};
  S.history = data.history || [];
  S.historyTab = data.history_tab;   // whose history: the page knows this tab's id once the card spoke
  S.order = data.order;
  S.orderLabel = data.order_label || "";
  if (S.chipsFor !== JSON.stringify(S.classes)) buildChips(S);
  // answers to our operations
  const acks = data.acks || {};
  if (Object.keys(acks).length) {
    const { keep, answered, open } = takeAcks(S.outbox, acks);
    for (const { op, res } of answered) onAck(S, op, res, open);
    if (answered.length) { S.outbox = keep; persist(S); }
    forgetForeign(S, new Set(Object.keys(acks)));
  }
  if ((data.ack_req || 0) >= S.inflight && data.ack_inst === S.inst) S.inflight = 0;
  // the queue
  const page = data.page;
  if (page) {
    const first = page.from === null || page.from === "start";
    if (page.qid !== S.qid) {
      if (first) resetWindow(S, page);
      if (S.wantStart) { S.wantStart = false; S.want = "start"; }
    } else if (S.want !== undefined && sameKey(page.from, S.want)) {
      if (page.from === "start") resetWindow(S, page);
      else {
        const fk = JSON.stringify(page.from);
        if (!S.merged.has(fk)) {
          S.merged.add(fk);
          const have = new Set(S.items.map((it) => it.id));
          for (const it of page.items) if (!have.has(it.id)) S.items.push(prep(it));
          S.done = !!page.done;
        }
        S.want = undefined;
      }
    }
  }
  // an example opened from the table
  if (data.focus && data.focus.seq > S.focusSeq) {
    S.focusSeq = data.focus.seq;
    if (data.focus.row) showRow(S, data.focus.row, "opened from the table");
  }
  if (data.notice && data.notice.seq > (S.noticeSeq || 0)) {
    S.noticeSeq = data.notice.seq;
    say(S, data.notice.text, data.notice.kind || "ok");
  }
  S.nodes.card.dataset.ready = "1";
  S.nodes.card.dataset.serverMs = String(data.server_ms ?? "");
  if (data.server_ms !== undefined && data.rev !== S.lastRev) {
    S.lastRev = data.rev;
    const w = window.__pmxReview;
    (w.server = w.server || []).push(data.server_ms);
    (w.parts = w.parts || []).push(data.server_parts || {});
    if (w.server.length > 2000) w.server.shift();
  }
  render(S);
  schedule(S);
}
function prep(it) {
  return { ...it, local: null, base: it.version };
}
function remember(S, items) {
  // cards seen in this visit, so U can show an example again at once even when the queue moved on
  for (const it of items) { S.seen.delete(it.id); S.seen.set(it.id, it); }
  while (S.seen.size > 1000) S.seen.delete(S.seen.keys().next().value);
}
function resetWindow(S, page) {
  remember(S, S.items);
  S.qid = page.qid;
  S.items = page.items.map(prep);
  S.cur = 0;
  S.done = !!page.done;
  S.want = undefined;
  S.merged = new Set([JSON.stringify(page.from)]);
  // a selectbox keeps the focus after a filter change: hand the keys back to the card
  const a = document.activeElement;
  if (a && a.getAttribute && a.getAttribute("role") === "combobox") a.blur();
}
function onAck(S, op, res, open) {
  const item = S.items.find((it) => it.id === (op.id ?? res.id));
  if (op.undo) {
    if (!res.ok) {
      S.undone.delete(op.undo);
      say(S, res.nothing ? "Nothing left to undo there: it was already undone." :
        (res.error || "Could not undo."), "warn");
      return;
    }
    if (res.n_skipped) say(S, `Undid ${fmtInt(res.n)}; ${fmtInt(res.n_skipped)} changed by someone else since were left as they are.`, "warn");
    for (const r of res.restored || []) {
      const it = S.items.find((x) => x.id === r.id);
      if (it) { it.version = r.version; it.review_status = r.status; it.review_label = r.label; it.local = null; }
    }
    if (res.bulk) {
      say(S, `Undid a bulk action: ${fmtInt(res.n)} examples are back as they were.`, "ok");
      S.want = "start";
    } else if (res.rows && res.rows.length && !S.items.some((x) => x.id === res.rows[0].id)) {
      showRow(S, res.rows[0], "brought back by undo");
    }
    return;
  }
  if (res.ok) {
    S.saved += 1;   // "dup": applied by a run whose answer was superseded
    if (item) {
      item.version = Math.max(item.version || 0, res.version || 0);
      item.review_status = res.status; item.review_label = res.label;
      if (!open.has(item.id)) item.local = null;   // no later decision on it still on its way
    }
    return;
  }
  S.failed.add(op.cid);
  if (res.conflict) {
    const cur = res.current || {};
    say(S, res.message || `Example #${op.id} was changed in another tab or by another person since this tab ` +
      `loaded it, so your decision was not saved.`, "bad");
    if (item) {
      item.review_status = cur.status; item.review_label = cur.label; item.version = cur.version;
      item.base = cur.version; item.local = null;
    }
  } else if (res.stale_project) {
    say(S, `Not saved: decision on #${op.id ?? op.undo} ${res.error}.`, "bad");
  } else if (res.missing) {
    say(S, `Example #${op.id} no longer exists (its job was deleted).`, "bad");
  } else {
    say(S, `Not saved: ${res.error || "refused"}.`, "bad");
  }
}
function showRow(S, row, why) {
  const i = S.items.findIndex((it) => it.id === row.id);
  if (i >= 0) { S.items[i] = { ...prep(row), local: S.items[i].local, base: S.items[i].base }; S.cur = i; }
  else { const it = prep(row); it.outside = why; S.items.splice(S.cur, 0, it); }
}

// ------------------------------------------------------------------ decisions
function current(S) { return S.items[S.cur] || null; }
function decide(S, action, label, t0) {
  const it = current(S);
  if (!it) return;
  if (action === "overridden" && !label) return;
  const cid = rid("d");
  const op = decisionOp({ cid, item: it, action, label, tab: S.tab, now: performance.now() });
  S.outbox.push(op);
  persist(S);                       // before anything else: a closed tab loses nothing
  pushLocal(S.local, { unit: cid, id: it.id, action, label: label || null, text: it.text,
                      prev: { status: it.local ? it.local.status : it.review_status,
                              label: it.local ? it.local.label : it.review_label } });
  it.local = { status: action, label: label || null };
  advance(S, 1);
  paint(S, t0);
  schedule(S);
}
function advance(S, step) {
  const n = S.cur + step;
  if (n < 0) return false;
  if (n >= S.items.length) { S.cur = S.items.length; return true; }
  S.cur = n;
  if (S.cur > KEEP_BEHIND + 50) {
    const drop = S.cur - KEEP_BEHIND;
    remember(S, S.items.splice(0, drop));
    S.cur -= drop;
  }
  return true;
}
function stackOf(S) { return undoStack(S.history, S.local, S.undone, S.failed); }
function undo(S, t0) {
  const stack = stackOf(S);
  const u = stack[stack.length - 1];
  if (!u) { say(S, "Nothing to undo in this tab.", "warn"); paint(S, t0); return; }
  const cid = rid("u");
  S.undone.add(u.unit);
  const op = undoOp({ cid, unit: u.unit, tab: S.tab, now: performance.now() });
  S.outbox.push(op);
  persist(S);
  if (!u.bulk) {
    const exId = u.example_id ?? u.id;
    let i = S.items.findIndex((it) => it.id === exId);
    if (i < 0 && S.seen.has(exId)) {
      // it left the queue (a filter, a new order): show it again where the reviewer is
      const it = { ...S.seen.get(exId), outside: "brought back by undo" };
      S.items.splice(Math.min(S.cur, S.items.length), 0, it);
      i = S.items.indexOf(it);
    }
    if (i >= 0) {
      const it = S.items[i];
      const loc = S.local.find((x) => x.unit === u.unit);
      op._from = it.local ? it.local.status : it.review_status;
      it.local = loc ? { status: loc.prev.status, label: loc.prev.label } : { status: "pending", label: null };
      op._to = it.local.status;
      S.cur = i;
    }
    say(S, `Undid your ${verb(u.action)} of #${u.example_id ?? u.id}.`, "ok");
  } else {
    say(S, `Undoing a bulk action on ${fmtInt(u.n)} examples…`, "ok");
  }
  paint(S, t0);
  schedule(S);
}
function verb(a) { return a === "overridden" ? "override" : a === "accepted" ? "accept" : a === "rejected" ? "reject" : a; }
function say(S, text, kind) {
  S.msgs.push({ text, kind, at: Date.now() });
  if (S.msgs.length > 3) S.msgs.shift();
}

// ------------------------------------------------------------------ keys and clicks
function onKey(S, e) {
  if (!S.nodes.card.isConnected) return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t0 = e.timeStamp || performance.now();
  S.lastKeyAt = performance.now();
  const target = (e.composedPath && e.composedPath()[0]) || e.target;
  if (S.pickerOpen) {
    if (target === S.nodes.pickerInput || S.nodes.picker.contains(target)) return pickerKey(S, e, t0);
  }
  if (isEditable(target)) return;
  const k = e.key;
  const lower = k.length === 1 ? k.toLowerCase() : k;
  if (e.repeat && !(lower === "j" || lower === "k")) {   // a held key decides once; J/K may repeat
    if (/^[ax1-9ou ]$/.test(lower) || k === "Enter") { e.preventDefault(); e.stopPropagation(); }
    return;
  }
  if ((k === " " || k === "Enter") && isClickable(target)) return;   // a focused button does its own thing
  let handled = true;
  if (lower === "a" || k === " " || k === "Enter") decide(S, "accepted", null, t0);
  else if (lower === "x") decide(S, "rejected", null, t0);
  else if (/^[1-9]$/.test(k)) {
    const c = S.classes[Number(k) - 1];
    if (c !== undefined) decide(S, "overridden", c, t0); else handled = false;
  } else if (lower === "o") { openPicker(S); }
  else if (lower === "u") undo(S, t0);
  else if (lower === "j") { advance(S, 1); paint(S, t0); schedule(S); }
  else if (lower === "k") { advance(S, -1); paint(S, t0); }
  else handled = false;
  if (handled) { e.preventDefault(); e.stopPropagation(); }
}
function onClick(S, e) {
  const path = e.composedPath ? e.composedPath() : [e.target];
  const btn = path.find((n) => n && n.dataset && (n.dataset.act || n.dataset.cls !== undefined));
  if (!btn) return;
  const t0 = performance.now();
  if (btn.dataset.cls !== undefined) decide(S, "overridden", S.classes[Number(btn.dataset.cls)], t0);
  else if (btn.dataset.act === "accept") decide(S, "accepted", null, t0);
  else if (btn.dataset.act === "reject") decide(S, "rejected", null, t0);
  else if (btn.dataset.act === "undo") undo(S, t0);
  else if (btn.dataset.act === "next") { advance(S, 1); paint(S, t0); schedule(S); }
  else if (btn.dataset.act === "prev") { advance(S, -1); paint(S, t0); }
  else if (btn.dataset.act === "picker") { openPicker(S); return; }
  else if (btn.dataset.act === "pick") { pick(S, Number(btn.dataset.idx), t0); return; }
  if (btn.blur) btn.blur();   // Space and Enter go back to the card
}
function openPicker(S) {
  if (!current(S)) return;
  S.pickerOpen = true;
  S.pickerIdx = 0;
  S.nodes.picker.hidden = false;
  S.nodes.pickerInput.value = "";
  renderPicker(S);
  S.nodes.pickerInput.focus();
}
function closePicker(S) {
  S.pickerOpen = false;
  S.nodes.picker.hidden = true;
  S.nodes.pickerInput.blur();
  S.nodes.card.focus({ preventScroll: true });
}
const norm = (s) => String(s).toLowerCase().replace(/[_\-\s]+/g, " ").trim();
function pickerMatches(S) {
  const qv = norm(S.nodes.pickerInput.value);
  const all = S.classes.map((c, i) => ({ c, i }));
  if (!qv) return all;
  const starts = all.filter((x) => norm(x.c).startsWith(qv));
  const words = all.filter((x) => !starts.includes(x) && norm(x.c).split(" ").some((w) => w.startsWith(qv)));
  const inner = all.filter((x) => !starts.includes(x) && !words.includes(x) && norm(x.c).includes(qv));
  return [...starts, ...words, ...inner];
}
function renderPicker(S) {
  const list = S.nodes.pickerList;
  list.textContent = "";
  const m = pickerMatches(S);
  if (!m.length) { list.appendChild(el("li", "pmx-none", "No class matches")); return; }
  S.pickerIdx = Math.min(S.pickerIdx, m.length - 1);
  m.forEach((x, j) => {
    const li = el("li", "", x.c);
    li.setAttribute("role", "option");
    li.setAttribute("aria-selected", j === S.pickerIdx ? "true" : "false");
    li.dataset.act = "pick";
    li.dataset.idx = String(x.i);
    list.appendChild(li);
  });
  const sel = list.children[S.pickerIdx];
  if (sel && sel.scrollIntoView) sel.scrollIntoView({ block: "nearest" });
}
function pickerKey(S, e, t0) {
  const m = pickerMatches(S);
  if (e.key === "Escape") { closePicker(S); }
  else if (e.key === "ArrowDown") { S.pickerIdx = Math.min(S.pickerIdx + 1, Math.max(m.length - 1, 0)); renderPicker(S); }
  else if (e.key === "ArrowUp") { S.pickerIdx = Math.max(S.pickerIdx - 1, 0); renderPicker(S); }
  else if (e.key === "Enter") { if (m[S.pickerIdx]) pick(S, m[S.pickerIdx].i, t0); }
  else return;   // typing goes to the input
  e.preventDefault(); e.stopPropagation();
}
function pick(S, idx, t0) {
  const c = S.classes[idx];
  closePicker(S);
  if (c !== undefined) decide(S, "overridden", c, t0);
}

// ------------------------------------------------------------------ rendering
function buildChips(S) {
  S.chipsFor = JSON.stringify(S.classes);
  const box = S.nodes.chips;
  box.textContent = "";
  S.classes.slice(0, 9).forEach((c, i) => {
    const b = el("button", "pmx-chip");
    b.type = "button";
    b.dataset.cls = String(i);
    b.appendChild(el("kbd", "", String(i + 1)));
    b.appendChild(cls(c, "span"));
    box.appendChild(b);
  });
  if (S.classes.length > 9) box.appendChild(el("span", "pmx-sub", `+${S.classes.length - 9} more: press O`));
}
function paint(S, t0) {
  // t0: when the key event was created, so the time includes any wait for the browser's main thread.
  // The time to the next paint is the browser's own Event Timing measurement (it reports keys of 16 ms
  // and more, sometimes late on a busy machine: the record is then corrected); below that, the start of
  // the frame that shows the new card.
  const handled = performance.now();
  render(S);
  const id = current(S) ? current(S).id : null;
  const rec = { id, wait: r1(handled - t0), render: r1(performance.now() - handled), frame: null, ms: null,
                source: "frame", idx: null };
  const w = window.__pmxReview;
  w.pendingKeys = w.pendingKeys || new Map();
  const k = Math.round(t0 * 10);
  w.pendingKeys.set(k, rec);
  requestAnimationFrame(() => {
    rec.frame = r1(performance.now() - t0);
    setTimeout(() => finishKey(S, k), 120);
    setTimeout(() => w.pendingKeys.delete(k), 5000);
  });
}
function r1(x) { return Math.round(x * 10) / 10; }
function finishKey(S, k, eventMs) {
  const w = window.__pmxReview;
  const rec = w.pendingKeys && w.pendingKeys.get(k);
  if (!rec) return;
  if (eventMs !== undefined) { rec.ms = eventMs; rec.source = "event timing"; }
  else if (rec.idx !== null || rec.frame === null) return;   // already recorded, or not painted yet
  else rec.ms = rec.frame;
  w.detail = w.detail || [];
  if (rec.idx === null) {
    if (w.timings.length >= 2000) { w.timings = []; w.detail = []; }
    rec.idx = w.timings.push(rec.ms) - 1;
    w.detail.push(rec);
  } else w.timings[rec.idx] = rec.ms;     // the browser's figure came after the frame's
  w.last = rec;
  S.nodes.card.dataset.keyToCardMs = String(rec.ms);
}
function watchEvents(S) {
  const w = window.__pmxReview;
  if (w.observer || !window.PerformanceObserver) return;
  try {
    if (!(PerformanceObserver.supportedEntryTypes || []).includes("event")) return;
    w.observer = new PerformanceObserver((list) => {
      for (const e of list.getEntries()) {
        if (e.name === "keydown" && w.pendingKeys) finishKey(w.owner || S, Math.round(e.startTime * 10), e.duration);
      }
    });
    w.observer.observe({ type: "event", durationThreshold: 16, buffered: false });
  } catch (e) { w.observer = null; }
}
function cls(name, tag) {
  // a class name that may wrap after _ - . or / (long identifiers), never inside a word
  const n = document.createElement(tag || "span");
  const parts = String(name ?? "").split(/(?<=[_\-./])/);
  parts.forEach((p, i) => {
    n.appendChild(document.createTextNode(p));
    if (i < parts.length - 1) n.appendChild(document.createElement("wbr"));
  });
  return n;
}
function shownStatus(it) {
  return it.local ? { status: it.local.status, label: it.local.label, mine: true }
                  : { status: it.review_status, label: it.review_label, mine: false };
}
function renderCounts(S) {
  const c = liveCounts(S.counts, S.outbox);
  for (const node of S.nodes.counts) {
    const k = node.dataset.k;
    if (k === "agree") {
      node.textContent = c.relabelled ? `relabel agrees ${Math.round((100 * (c.agree || 0)) / c.relabelled)} %` : "";
    } else node.firstElementChild.textContent = fmtInt(c[k]);
  }
  const done = (c.total || 0) - c.pending;
  S.nodes.progress.style.width = c.total ? `${(100 * done) / c.total}%` : "0";
  S.nodes.card.dataset.counts = JSON.stringify({ total: c.total || 0, pending: c.pending, accepted: c.accepted || 0,
                                                 overridden: c.overridden || 0, rejected: c.rejected || 0 });
  return c;
}
function renderPos(S) {
  const c = renderCounts(S);
  const pending = c.pending;
  const it = current(S);
  const n = S.nodes;
  n.pos.textContent = it
    ? `Example #${it.id} · job #${it.job_id} · ${fmtInt(pending)} of ${fmtInt(c.total)} pending · ${S.orderLabel}`
    : `${fmtInt(pending)} of ${fmtInt(c.total)} pending · ${S.orderLabel}`;
  n.card.dataset.pending = String(pending);
}
function render(S) {
  const n = S.nodes;
  const it = current(S);
  renderPos(S);
  n.card.dataset.currentId = it ? String(it.id) : "";
  n.card.dataset.cursor = String(S.cur);
  n.card.dataset.window = String(S.items.length);
  if (!it) {
    n.body.hidden = true;
    n.reasons.textContent = "";
    n.empty.hidden = false;
    const waiting = !S.done || S.want !== undefined;
    n.empty.textContent = S.qid === null ? "Loading the queue…" : waiting ? "Loading more examples…" :
      "You reached the end of this queue. Change the filters above to see other examples; press K to go back, U to undo.";
    renderUndo(S); renderStatus(S);
    return;
  }
  n.body.hidden = false;
  n.empty.hidden = true;
  n.text.textContent = it.text;
  // why it is here
  n.reasons.textContent = "";
  if (it.outside) n.reasons.appendChild(el("span", "pmx-reason pmx-why-none", `${it.outside}: outside the current filter`));
  for (const r of it.reasons || []) n.reasons.appendChild(el("span", "pmx-reason", r.text));
  if (S.order === "informative" && !(it.reasons || []).length) {
    n.reasons.appendChild(el("span", "pmx-reason pmx-why-none", "no reason to look first"));
  }
  // what this example holds now
  const st = shownStatus(it);
  n.decision.textContent = "";
  const label = { pending: "Pending", accepted: "Accepted", overridden: "Overridden", rejected: "Rejected" }[st.status] || st.status;
  n.decision.appendChild(el("span", "pmx-state " + (st.status === "rejected" ? "pmx-bad" : st.status === "pending" ? "" : "pmx-ok"), label));
  if (st.status === "accepted") { n.decision.appendChild(document.createTextNode(" as ")); n.decision.appendChild(cls(it.accept_label, "b")); }
  if (st.status === "overridden") { n.decision.appendChild(document.createTextNode(" to ")); n.decision.appendChild(cls(st.label, "b")); }
  if (st.mine) {
    const waiting = S.outbox.some((o) => o.id === it.id);
    n.decision.appendChild(el("span", "pmx-sub", waiting ? " · saving…" : " · saved"));
  }
  // the keys, in words
  n.acceptWhat.textContent = "→ saved as ";
  n.acceptWhat.appendChild(cls(it.accept_label, "b"));
  n.acceptWhat.appendChild(document.createTextNode(` (${it.accept_source})`));
  [...n.chips.querySelectorAll(".pmx-chip")].forEach((b) => {
    b.classList.toggle("pmx-current", st.status === "overridden" && S.classes[Number(b.dataset.cls)] === st.label);
  });
  // provenance
  n.intended.textContent = "";
  n.intended.appendChild(cls(it.intended_label, "b"));
  n.mixed.textContent = "";
  const a = it.alpha;
  if (it.mixed_with) {
    n.mixed.appendChild(cls(it.mixed_with, "b"));
    if (a !== null && a !== undefined) {
      const box = el("div", "pmx-alpha");
      box.title = `α = ${a.toFixed(2)}: asked for ${Math.round(a * 100)} % the written-for class and ` +
        `${Math.round((1 - a) * 100)} % the mixed-in class`;
      box.appendChild(document.createTextNode(`α ${a.toFixed(2)}`));
      const bar = el("span", "pmx-bar"); const fill = el("span", "pmx-bar-fill");
      fill.style.width = `${Math.round(Math.max(0, Math.min(1, a)) * 100)}%`;
      bar.appendChild(fill); box.appendChild(bar);
      box.appendChild(document.createTextNode(`${Math.round(a * 100)} / ${Math.round((1 - a) * 100)} %`));
      n.mixed.appendChild(box);
    }
  } else n.mixed.appendChild(el("span", "pmx-sub", "nothing (no mixup)"));
  n.relabel.textContent = "";
  if (!it.relabel_status) n.relabel.appendChild(el("span", "pmx-sub", "not relabelled yet"));
  else if (it.relabel_status === "unparseable") n.relabel.appendChild(el("span", "pmx-warn", "failed: the answer named no class"));
  else {
    n.relabel.appendChild(cls(it.llm_label, "b"));
    n.relabel.appendChild(el("div", it.relabel_status === "agree" ? "pmx-ok pmx-sub" : "pmx-warn pmx-sub",
      (it.relabel_status === "agree" ? "agrees with written-for" : "differs from written-for") +
      confidence(it.llm_confidence)));
  }
  renderJudges(S, it);
  n.rawRow.hidden = !it.llm_raw;
  if (it.llm_raw) n.raw.textContent = it.llm_raw + (it.llm_raw_len > it.llm_raw.length ? ` … (${fmtInt(it.llm_raw_len)} characters)` : "");
  n.nearestRow.hidden = !it.nearest_label;
  if (it.nearest_label) { n.nearest.textContent = ""; n.nearest.appendChild(cls(it.nearest_label, "span")); }
  n.flagRow.hidden = !it.flag;
  if (it.flag) { n.flag.textContent = it.flag; n.flag.className = "pmx-flag pmx-warn"; }
  renderUndo(S);
  renderStatus(S);
}
function confidence(x) {
  return x === null || x === undefined ? "" : ` · confidence ${Number(x).toFixed(2)}`;
}
function renderJudges(S, it) {
  // the student judge (a small model that needs no LLM) beside
  // the LLM relabel, and whether the two agree
  const n = S.nodes;
  n.judge.textContent = "";
  if (!it.judge_label) n.judge.appendChild(el("span", "pmx-sub", "not judged yet"));
  else {
    n.judge.appendChild(cls(it.judge_label, "b"));
    n.judge.appendChild(el("div", it.judge_label === it.intended_label ? "pmx-ok pmx-sub" : "pmx-warn pmx-sub",
      (it.judge_label === it.intended_label ? "agrees with written-for" : "differs from written-for") +
      confidence(it.judge_confidence)));
  }
  const agree = it.judges_agree;
  n.agreeRow.hidden = agree === null || agree === undefined;
  n.agree.textContent = "";
  if (agree === true) {
    n.agree.appendChild(el("span", "pmx-ok", "LLM and judge agree"));
    n.agree.appendChild(document.createTextNode(" on "));
    n.agree.appendChild(cls(it.llm_label, "b"));
  } else if (agree === false) {
    n.agree.appendChild(el("span", "pmx-warn", "LLM and judge disagree"));
    n.agree.appendChild(document.createTextNode(": the LLM says "));
    n.agree.appendChild(cls(it.llm_label, "b"));
    n.agree.appendChild(document.createTextNode(", the judge says "));
    n.agree.appendChild(cls(it.judge_label, "b"));
  }
  n.card.dataset.judgesAgree = agree === null || agree === undefined ? "" : String(agree);
}
function renderUndo(S) {
  const stack = stackOf(S);
  const u = stack[stack.length - 1];
  const n = S.nodes;
  n.undoBtn.disabled = !u;
  if (!u) {
    // after a reload the first answer can come before the page has heard this tab's id
    n.undoWhat.textContent = S.historyTab === S.tab ? "Undo: nothing yet in this tab" : "Undo: reading this tab's history…";
    return;
  }
  if (u.bulk) { n.undoWhat.textContent = `Undo the bulk ${verb(u.action)} of ${fmtInt(u.n)} examples`; return; }
  const what = u.action === "overridden" ? `override to ${u.label}` : verb(u.action);
  const text = (u.text || "").length > 48 ? u.text.slice(0, 47) + "…" : (u.text || "");
  n.undoWhat.textContent = `Undo your ${what} of #${u.example_id ?? u.id}` + (text ? ` “${text}”` : "");
}
function renderStatus(S) {
  const n = S.nodes;
  const waiting = S.outbox.length;
  n.card.dataset.outbox = String(waiting);
  n.card.dataset.saved = String(S.saved);
  n.saved.className = "pmx-saved " + (waiting ? "pmx-warn" : "pmx-ok");
  n.saved.textContent = waiting
    ? `Saving ${fmtInt(waiting)} decision${waiting === 1 ? "" : "s"}… (kept in this browser until the server has them)`
    : S.saved ? `All ${fmtInt(S.saved)} decision${S.saved === 1 ? "" : "s"} of this visit saved` : "Keys: A accept · X reject · 1–9 class · O pick · U undo · J/K next/previous";
  n.msg.textContent = "";
  const recent = S.msgs.filter((m) => Date.now() - m.at < 20000);
  for (const m of recent.slice(-2)) n.msg.appendChild(el("div", "pmx-" + m.kind, m.text));
}

export default function (component) {
  const { data, setStateValue, parentElement } = component;
  let S = instances.get(parentElement);
  if (!S) {
    S = createInstance(parentElement, { setStateValue });
    instances.set(parentElement, S);
  }
  S.api.setStateValue = setStateValue;
  onData(S, data);
  return S.cleanup;
}
