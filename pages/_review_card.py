"""The review card: a bidirectional ``st.components.v2`` component (inline HTML/CSS/JS, no build step,
nothing loaded from the network).

It holds a window of upcoming examples in the browser and answers keys there, so the next example
shows at once: **A** / Space / Enter accept, **X** reject, **1-9** override with that class, **O** a
class picker with type-ahead, **U** undo (this tab's history, repeatedly), **J**/**K** next/previous.

Protocol (one state value, ``sync``, sent by the browser; ``data`` sent back by the page):

- ``sync = {project, inst, tab, req, qid, want, ops}``: ``ops`` are every operation the server has not
  answered yet (decisions ``{cid, id, action, label, base, tab}`` and undos ``{cid, undo, tab}``), so a
  rerun that Streamlit coalesces or interrupts never loses one; ``want`` asks for the next page of the
  queue after a sort key (``"start"`` for the first); ``tab`` identifies the browser tab (it survives a
  refresh: ``sessionStorage``); ``base`` is the example's version when this tab loaded it.
- ``data = {project, classes, qid, page, acks, ack_req, history, counts, focus, ...}``: ``acks`` answers
  every operation in the last ``sync`` by its ``cid`` (applying is idempotent, so answering again is
  harmless); ``page`` is ``{qid, from, items, done}``.

Unanswered operations are also kept in ``localStorage`` (per project and tab) and sent again when the
project is next opened in this browser, so a refresh or a closed tab loses nothing; on ``pagehide`` and
when the tab is hidden the card sends what is waiting at once. The browser measures the time from each
key to the next card painted (``data-key-to-card-ms`` on the card, ``window.__pmxReview.timings``).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

HTML = """
<div class="pmx-card" tabindex="0" data-ready="0" role="region" aria-label="Review card">
  <div class="pmx-counts" aria-label="Counts">
    <span class="pmx-count" data-k="total"><b></b> generated</span>
    <span class="pmx-count" data-k="pending"><b></b> pending</span>
    <span class="pmx-count pmx-ok" data-k="accepted"><b></b> accepted</span>
    <span class="pmx-count" data-k="overridden"><b></b> overridden</span>
    <span class="pmx-count pmx-bad" data-k="rejected"><b></b> rejected</span>
    <span class="pmx-count pmx-sub" data-k="agree"></span>
    <span class="pmx-progress" aria-hidden="true"><span class="pmx-progress-fill"></span></span>
  </div>
  <div class="pmx-head">
    <div class="pmx-pos"></div>
    <div class="pmx-reasons"></div>
  </div>
  <div class="pmx-empty" hidden></div>
  <div class="pmx-body">
    <blockquote class="pmx-text" lang="en"></blockquote>
    <dl class="pmx-facts">
      <div><dt>Written for</dt><dd class="pmx-intended"></dd></div>
      <div><dt>Mixed with</dt><dd class="pmx-mixed"></dd></div>
      <div><dt>LLM relabel</dt><dd class="pmx-relabel"></dd></div>
      <div class="pmx-nearest-row"><dt>Nearest by embedding</dt><dd class="pmx-nearest"></dd></div>
      <div class="pmx-flag-row"><dt>Flagged</dt><dd class="pmx-flag"></dd></div>
      <div class="pmx-raw-row pmx-wide"><dt>Relabel's raw answer</dt><dd class="pmx-raw"></dd></div>
    </dl>
    <div class="pmx-decision"></div>
    <div class="pmx-keys">
      <div class="pmx-main-keys">
        <button type="button" class="pmx-btn pmx-accept" data-act="accept">
          <span class="pmx-btn-head"><kbd>A</kbd><span class="pmx-btn-label">Accept</span>
            <span class="pmx-alt">or Space / Enter</span></span>
          <span class="pmx-accept-what"></span>
        </button>
        <button type="button" class="pmx-btn pmx-reject" data-act="reject">
          <span class="pmx-btn-head"><kbd>X</kbd><span class="pmx-btn-label">Reject</span></span>
          <span class="pmx-sub">→ left out of the data set and of training</span>
        </button>
      </div>
      <div class="pmx-override">
        <div class="pmx-override-title"><kbd>1</kbd>–<kbd>9</kbd> Override → saved as the class you pick</div>
        <div class="pmx-chips"></div>
        <button type="button" class="pmx-btn pmx-small" data-act="picker"><kbd>O</kbd>Any class: type to search</button>
        <div class="pmx-picker" hidden>
          <input class="pmx-picker-input" type="text" autocomplete="off" spellcheck="false"
                 placeholder="Type part of a class name · Enter saves · Esc closes" aria-label="Find a class">
          <ul class="pmx-picker-list" role="listbox"></ul>
        </div>
      </div>
      <div class="pmx-nav">
        <button type="button" class="pmx-btn pmx-small pmx-undo" data-act="undo"><kbd>U</kbd><span class="pmx-undo-what">Undo</span></button>
        <button type="button" class="pmx-btn pmx-small" data-act="prev"><kbd>K</kbd>Previous</button>
        <button type="button" class="pmx-btn pmx-small" data-act="next"><kbd>J</kbd>Next</button>
      </div>
    </div>
  </div>
  <div class="pmx-status" role="status" aria-live="polite">
    <span class="pmx-saved"></span><span class="pmx-msg"></span>
  </div>
</div>
"""

CSS = """
:host { display: block; }
.pmx-card {
  font-family: var(--st-font, system-ui, sans-serif); color: var(--st-text-color, #31333f);
  background: var(--st-background-color, #fff);
  border: 1px solid var(--st-border-color, rgba(49,51,63,.2)); border-radius: 12px;
  padding: 14px 20px 12px; outline: none; container-type: inline-size; box-sizing: border-box;
}
.pmx-card:focus-visible { box-shadow: 0 0 0 2px var(--st-primary-color, #ff4b4b); }
.pmx-counts { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; font-size: .9rem;
  padding-bottom: 8px; margin-bottom: 10px; border-bottom: 1px solid var(--st-border-color, rgba(49,51,63,.15)); }
.pmx-count b { font-size: 1.15rem; }
.pmx-progress { flex: 1 1 120px; min-width: 120px; height: 6px; border-radius: 3px; align-self: center;
  background: var(--st-secondary-background-color, #f0f2f6); overflow: hidden; }
.pmx-progress-fill { display: block; height: 100%; width: 0; background: var(--st-primary-color, #ff4b4b); }
.pmx-head { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: center; justify-content: space-between;
  font-size: .85rem; margin-bottom: 6px; }
.pmx-pos { opacity: .8; }
.pmx-reasons { display: flex; flex-wrap: wrap; gap: 6px; }
.pmx-reason { background: var(--st-orange-background-color, rgba(255,164,33,.15)); color: var(--st-orange-text-color, #9a6700);
  border-radius: 999px; padding: 2px 10px; font-size: .8rem; }
.pmx-reason.pmx-why-none { background: var(--st-gray-background-color, rgba(49,51,63,.08)); color: inherit; }
.pmx-text { font-size: 1.5rem; line-height: 1.42; margin: 2px 0 12px; padding: 0; white-space: pre-wrap;
  overflow-wrap: break-word; max-height: 14em; overflow-y: auto; font-weight: 500; }
.pmx-facts { margin: 0 0 10px; display: grid; grid-template-columns: repeat(auto-fit, minmax(190px, 1fr));
  gap: 8px 20px; font-size: .95rem; }
.pmx-facts dt { font-size: .8rem; opacity: .7; margin-bottom: 1px; }
.pmx-facts dd { margin: 0; overflow-wrap: break-word; }
.pmx-wide { grid-column: 1 / -1; }
.pmx-raw { font-family: var(--st-code-font, ui-monospace, monospace); font-size: .85rem; white-space: pre-wrap;
  max-height: 6em; overflow-y: auto; background: var(--st-secondary-background-color, #f0f2f6); border-radius: 6px;
  padding: 3px 8px; overflow-wrap: anywhere; }
.pmx-alpha { display: inline-flex; align-items: center; gap: 6px; font-size: .85rem; opacity: .9; }
.pmx-bar { display: inline-block; width: 70px; height: 7px; border-radius: 4px;
  background: var(--st-orange-background-color, rgba(255,164,33,.35)); overflow: hidden; }
.pmx-bar-fill { display: block; height: 100%; background: var(--st-primary-color, #ff4b4b); }
.pmx-decision { font-size: .95rem; margin: 2px 0 10px; min-height: 1.4em; }
.pmx-state { font-weight: 700; }
.pmx-keys { display: flex; flex-direction: column; gap: 8px; }
.pmx-main-keys { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 2fr); gap: 8px; }
@container (max-width: 640px) { .pmx-main-keys { grid-template-columns: minmax(0, 1fr); } }
.pmx-btn { display: flex; flex-direction: column; align-items: flex-start; gap: 2px; text-align: left; width: 100%;
  font: inherit; font-size: 1rem; color: inherit; background: var(--st-secondary-background-color, #f0f2f6);
  border: 1px solid var(--st-border-color, rgba(49,51,63,.2)); border-radius: 8px; padding: 8px 12px;
  cursor: pointer; white-space: normal; box-sizing: border-box; }
.pmx-btn-head { display: flex; width: 100%; align-items: baseline; gap: 6px; }
.pmx-btn:hover { border-color: var(--st-primary-color, #ff4b4b); }
.pmx-btn:disabled { opacity: .55; cursor: default; }
.pmx-accept { background: var(--st-green-background-color, rgba(33,195,84,.12)); }
.pmx-reject { background: var(--st-red-background-color, rgba(255,43,43,.09)); }
.pmx-btn-label { font-weight: 700; }
.pmx-accept-what { overflow-wrap: break-word; max-width: 100%; }
b { font-weight: 700; }
.pmx-alt, .pmx-sub { opacity: .75; font-size: .85rem; }
.pmx-alt { margin-left: auto; }
.pmx-small { flex-direction: row; align-items: baseline; gap: 6px; font-size: .9rem; padding: 6px 10px; width: auto; }
kbd { font-family: var(--st-font, system-ui, sans-serif); font-size: .78rem; font-weight: 700; line-height: 1.3;
  border: 1px solid var(--st-border-color, rgba(49,51,63,.3)); border-bottom-width: 2px; border-radius: 4px;
  padding: 0 5px; background: var(--st-background-color, #fff); margin-right: 2px; }
.pmx-override { border: 1px dashed var(--st-border-color, rgba(49,51,63,.25)); border-radius: 8px; padding: 8px 10px;
  display: flex; flex-direction: column; gap: 6px; align-items: flex-start; }
.pmx-override-title { font-size: .9rem; font-weight: 600; }
.pmx-chips { display: flex; flex-wrap: wrap; gap: 6px; }
.pmx-chip { font: inherit; font-size: .9rem; color: inherit; background: var(--st-secondary-background-color, #f0f2f6);
  border: 1px solid var(--st-border-color, rgba(49,51,63,.2)); border-radius: 999px; padding: 3px 10px; cursor: pointer;
  white-space: normal; overflow-wrap: break-word; text-align: left; max-width: 100%; }
.pmx-chip:hover { border-color: var(--st-primary-color, #ff4b4b); }
.pmx-chip.pmx-current { border-color: var(--st-blue-color, #1c83e1); border-width: 2px; }
.pmx-picker { align-self: stretch; border: 1px solid var(--st-border-color, rgba(49,51,63,.3)); border-radius: 8px; padding: 6px; }
.pmx-picker-input { width: 100%; box-sizing: border-box; font: inherit; font-size: 1rem; padding: 6px 8px;
  border: 1px solid var(--st-border-color, rgba(49,51,63,.3)); border-radius: 6px; color: inherit;
  background: var(--st-background-color, #fff); }
.pmx-picker-list { list-style: none; margin: 6px 0 0; padding: 0; max-height: 220px; overflow-y: auto; }
.pmx-picker-list li { padding: 5px 8px; border-radius: 6px; cursor: pointer; overflow-wrap: break-word; }
.pmx-picker-list li[aria-selected="true"] { background: var(--st-primary-color, #ff4b4b); color: #fff; }
.pmx-picker-list li.pmx-none { opacity: .7; cursor: default; }
.pmx-nav { display: flex; flex-wrap: wrap; gap: 8px; }
.pmx-undo { flex: 1 1 260px; }
.pmx-undo-what { overflow-wrap: break-word; min-width: 0; }
.pmx-ok { color: var(--st-green-text-color, #177233); }
.pmx-warn { color: var(--st-orange-text-color, #9a6700); }
.pmx-bad { color: var(--st-red-text-color, #bd4043); }
.pmx-status { margin-top: 12px; padding-top: 8px; border-top: 1px solid var(--st-border-color, rgba(49,51,63,.15));
  font-size: .88rem; display: flex; flex-direction: column; gap: 4px; min-height: 1.3em; }
.pmx-msg { overflow-wrap: break-word; }
.pmx-empty { font-size: 1.1rem; padding: 24px 4px; }
[hidden] { display: none !important; }
"""

JS = r"""
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
// one box per page load: a duplicated tab (same sessionStorage) never overwrites another's box
const boxKey = (project, tab, inst) => `pmx-review-outbox::${project}::${tab}::${inst}`;
const sameKey = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);
function el(tag, cls, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
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
    api, parent, project: null, classes: [], tab: tabId(), inst: rid("i"), req: 0, qid: null,
    items: [], cur: 0, done: false, want: undefined, merged: new Set(), outbox: [], inflight: 0,
    sentAt: 0, history: [], local: [], undone: new Set(), failed: new Set(), saved: 0, focusSeq: 0,
    msgs: [], counts: {}, lastAckReq: 0, seen: new Map(), lastKeyAt: 0, timer: null, pickerIdx: 0, pickerOpen: false, helloSent: false,
    nodes: {
      card: q(".pmx-card"), pos: q(".pmx-pos"), reasons: q(".pmx-reasons"), empty: q(".pmx-empty"),
      body: q(".pmx-body"), text: q(".pmx-text"), decision: q(".pmx-decision"), acceptWhat: q(".pmx-accept-what"),
      chips: q(".pmx-chips"), picker: q(".pmx-picker"), pickerInput: q(".pmx-picker-input"),
      pickerList: q(".pmx-picker-list"), undoWhat: q(".pmx-undo-what"), undoBtn: q(".pmx-undo"),
      intended: q(".pmx-intended"), mixed: q(".pmx-mixed"), relabel: q(".pmx-relabel"),
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
  if (!S.project) return;
  try {
    const k = boxKey(S.project, S.tab, S.inst);
    if (S.outbox.length) localStorage.setItem(k, JSON.stringify({ ts: Date.now(), ops: S.outbox.map(clean) }));
    // (counts of recovered operations settle when the server answers)
    else localStorage.removeItem(k);
  } catch (e) { /* storage full or disabled: the server copy is what counts */ }
}
function recover(S) {
  // decisions this browser made for this project that the server never answered: this tab's before a
  // refresh, other tabs' (closed, or still open: sending an operation twice is harmless, and each keeps
  // the id of the tab that made it); a box leaves storage once the server answered all of it
  const prefix = `pmx-review-outbox::${S.project}::`;
  const seen = new Set(S.outbox.map((o) => o.cid));
  S.foreign = S.foreign || new Set();
  try {
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const k = localStorage.key(i);
      if (!k || !k.startsWith(prefix)) continue;
      let box = null;
      try { box = JSON.parse(localStorage.getItem(k) || "null"); } catch (e) { box = null; }
      if (!box || !Array.isArray(box.ops)) { localStorage.removeItem(k); continue; }
      if (k !== boxKey(S.project, S.tab, S.inst)) S.foreign.add(k);
      for (const op of box.ops) {
        if (op && op.cid && !seen.has(op.cid)) { S.outbox.push(clean(op)); seen.add(op.cid); }
      }
    }
  } catch (e) { /* no storage */ }
}
function forgetForeign(S, answered) {
  // operations of other tabs' boxes that the server has answered leave those boxes
  if (!S.foreign || !S.foreign.size) return;
  try {
    for (const k of [...S.foreign]) {
      let box = null;
      try { box = JSON.parse(localStorage.getItem(k) || "null"); } catch (e) { box = null; }
      if (!box || !Array.isArray(box.ops)) { S.foreign.delete(k); continue; }
      const left = box.ops.filter((o) => !answered.has(o.cid));
      if (!left.length) { localStorage.removeItem(k); S.foreign.delete(k); }
      else if (left.length !== box.ops.length) localStorage.setItem(k, JSON.stringify({ ts: box.ts, ops: left }));
    }
  } catch (e) { /* no storage */ }
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
    project: S.project, inst: S.inst, tab: S.tab, req: S.req, qid: S.qid,
    want: S.want === undefined ? null : S.want, ops: ops.map(clean), final: !!final, focus_seen: S.focusSeq,
  });
}
function clean(op) {
  // what goes to the server and to localStorage: no client-side bookkeeping
  const o = {};
  for (const [k, v] of Object.entries(op)) if (!k.startsWith("_")) o[k] = v;
  return o;
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
    recover(S);
    // decisions from before a refresh go first; the queue then starts after them
    if (S.outbox.length) S.wantStart = true;
  }
  S.classes = data.classes || [];
  S.counts = data.counts || {};
  S.history = data.history || [];
  S.order = data.order;
  S.orderLabel = data.order_label || "";
  if (S.chipsFor !== JSON.stringify(S.classes)) buildChips(S);
  // answers to our operations
  const acks = data.acks || {};
  if (Object.keys(acks).length) {
    const keep = S.outbox.filter((op) => !acks[op.cid]);
    const open = new Set(keep.map((op) => op.id));
    for (const op of S.outbox) if (acks[op.cid]) onAck(S, op, acks[op.cid], open);
    if (keep.length !== S.outbox.length) { S.outbox = keep; persist(S); }
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
  const from = it.local ? it.local.status : it.review_status;
  const op = { cid, id: it.id, action, label: label || null, base: it.base, tab: S.tab, _from: from, _to: action,
               _made: performance.now() };
  S.outbox.push(op);
  persist(S);                       // before anything else: a closed tab loses nothing
  S.local.push({ unit: cid, id: it.id, action, label: label || null, text: it.text,
                 prev: { status: it.local ? it.local.status : it.review_status,
                         label: it.local ? it.local.label : it.review_label } });
  if (S.local.length > 500) S.local.splice(0, S.local.length - 500);
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
function undoStack(S) {
  const server = S.history.slice().reverse();
  const known = new Set(server.map((u) => u.unit));
  const local = S.local.filter((u) => !known.has(u.unit));
  return [...server, ...local].filter((u) => !S.undone.has(u.unit) && !S.failed.has(u.unit));
}
function undo(S, t0) {
  const stack = undoStack(S);
  const u = stack[stack.length - 1];
  if (!u) { say(S, "Nothing to undo in this tab.", "warn"); paint(S, t0); return; }
  const cid = rid("u");
  S.undone.add(u.unit);
  const op = { cid, undo: u.unit, tab: S.tab, _made: performance.now() };
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
  // The time to the next paint is the browser's own Event Timing measurement when it reports one
  // (it does for 16 ms and more); below that, the start of the frame that shows the new card.
  const handled = performance.now();
  render(S);
  const id = current(S) ? current(S).id : null;
  const rec = { id, wait: r1(handled - t0), render: r1(performance.now() - handled), frame: null, ms: null,
                source: "frame" };
  const w = window.__pmxReview;
  w.pendingKeys = w.pendingKeys || new Map();
  w.pendingKeys.set(Math.round(t0 * 10), rec);
  requestAnimationFrame(() => {
    rec.frame = r1(performance.now() - t0);
    // the browser reports keys slower than 16 ms to the next paint within a frame or two
    setTimeout(() => finishKey(S, Math.round(t0 * 10)), 120);
  });
}
function r1(x) { return Math.round(x * 10) / 10; }
function finishKey(S, k, eventMs) {
  const w = window.__pmxReview;
  const rec = w.pendingKeys && w.pendingKeys.get(k);
  if (!rec) return;
  if (eventMs !== undefined) { rec.ms = eventMs; rec.source = "event timing"; }
  else if (rec.frame === null) return;    // not painted yet: the observer or the next timer decides
  else rec.ms = rec.frame;
  w.pendingKeys.delete(k);
  w.timings.push(rec.ms);
  w.detail = w.detail || [];
  w.detail.push(rec);
  if (w.timings.length > 2000) { w.timings.shift(); w.detail.shift(); }
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
function liveCounts(S) {
  // the server's counts, plus the decisions still on their way (so the counts move with each key)
  const c = { ...(S.counts || {}) };
  for (const op of S.outbox) {
    if (!op._from || !op._to || op._from === op._to) continue;
    c[op._from] = (c[op._from] || 0) - 1;
    c[op._to] = (c[op._to] || 0) + 1;
  }
  c.pending = Math.max(0, (c.total || 0) - (c.accepted || 0) - (c.overridden || 0) - (c.rejected || 0));
  return c;
}
function renderCounts(S) {
  const c = liveCounts(S);
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
  if (S.order === "informative" && !(it.reasons || []).length)
    n.reasons.appendChild(el("span", "pmx-reason pmx-why-none", "no reason to look first"));
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
      (it.llm_confidence === null || it.llm_confidence === undefined ? "" :
        ` · confidence ${Number(it.llm_confidence).toFixed(2)}`)));
  }
  n.rawRow.hidden = !it.llm_raw;
  if (it.llm_raw) n.raw.textContent = it.llm_raw + (it.llm_raw_len > it.llm_raw.length ? ` … (${fmtInt(it.llm_raw_len)} characters)` : "");
  n.nearestRow.hidden = !it.nearest_label;
  if (it.nearest_label) { n.nearest.textContent = ""; n.nearest.appendChild(cls(it.nearest_label, "span")); }
  n.flagRow.hidden = !it.flag;
  if (it.flag) { n.flag.textContent = it.flag; n.flag.className = "pmx-flag pmx-warn"; }
  renderUndo(S);
  renderStatus(S);
}
function renderUndo(S) {
  const stack = undoStack(S);
  const u = stack[stack.length - 1];
  const n = S.nodes;
  n.undoBtn.disabled = !u;
  if (!u) { n.undoWhat.textContent = "Undo: nothing yet in this tab"; return; }
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
"""

CARD = st.components.v2.component("promptmix_review_card", html=HTML, css=CSS, js=JS)


def review_card(data: dict[str, Any], *, key: str):
    """Mount the card; returns its result (``.sync`` is the browser's last state)."""
    return CARD(key=key, data=data, on_sync_change=lambda: None, height="content")


__all__ = ["CSS", "HTML", "JS", "review_card"]
