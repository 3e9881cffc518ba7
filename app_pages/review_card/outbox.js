// The review card's outbox: the decisions a tab made that the server has not answered yet.
//
// Pure functions (no DOM, no globals): the card inlines this file (app_pages/_review_card.py strips the
// `export` keywords), and `node --test tests/js/outbox.test.js` runs its unit tests against it.
//
// - Every operation carries the version of the example this tab saw (`base`) and the tab's id (`tab`),
//   so the server can refuse an operation made on a stale view, or one of another tab, as a conflict.
// - Operations wait in localStorage, in a box per project IDENTITY (the store's project uid, not its
//   name), tab and page load, until the server answers them by their client id (`cid`); a refresh or a
//   closed tab sends them again. A box of another project with the same name (deleted and re-created
//   since) is never sent to this one: it is dropped and counted, so the card can say so.
// - The server answers every operation it got, again if it gets it again (applying is idempotent): an
//   answer for an operation no longer waiting is ignored, so nothing is counted or applied twice.

export const BOX_PREFIX = "pmx-review-outbox::";
export const LOCAL_UNDO_MAX = 500;

/** The localStorage key of one page load's box. */
export function boxKey(uid, tab, inst) {
  return `${BOX_PREFIX}${uid}::${tab}::${inst}`;
}

/** What goes to the server and to storage: no client-side bookkeeping (keys starting with `_`). */
export function cleanOp(op) {
  const o = {};
  for (const [k, v] of Object.entries(op)) if (!k.startsWith("_")) o[k] = v;
  return o;
}

/** The version of an example this tab saw (what a decision on it is based on); null when unknown. */
export function baseOf(item) {
  if (item.base !== undefined && item.base !== null) return item.base;
  return item.version ?? null;
}

/** A decision on `item` (accepted, rejected, or overridden to `label`). */
export function decisionOp({ cid, item, action, label, tab, now }) {
  const from = item.local ? item.local.status : item.review_status;
  return {
    cid, id: item.id, action, label: label || null, base: baseOf(item), tab,
    _from: from, _to: action, _made: now,
  };
}

/** An undo of one unit of this tab's history (one decision, or one bulk action). */
export function undoOp({ cid, unit, tab, now }) {
  return { cid, undo: unit, tab, _made: now };
}

/** Write a box (or remove it once empty). `who` = {uid, project}: whose decisions these are. */
export function persistBox(storage, key, who, ops, now) {
  if (ops.length) {
    storage.setItem(key, JSON.stringify({ uid: who.uid, project: who.project, ts: now, ops: ops.map(cleanOp) }));
  } else {
    storage.removeItem(key);
  }
}

function readBox(storage, key) {
  try {
    const box = JSON.parse(storage.getItem(key) || "null");
    return box && Array.isArray(box.ops) ? box : null;
  } catch {
    return null;
  }
}

/**
 * The operations this browser made for the project `uid` that the server never answered: this
 * tab's before a refresh and other tabs' (closed, or still open: sending one twice is harmless, and
 * each keeps the id of the tab that made it).
 *
 * Boxes of a project with the same name but another identity (deleted and re-created since), and
 * boxes without an identity (written before the card knew it), are dropped: `stale` counts their
 * operations. Boxes of other projects are left alone.
 *
 * Returns {ops, foreign: keys of other page loads' boxes, stale}.
 */
export function recoverBoxes(storage, { uid, project, ownKey, have = [] }) {
  const seen = new Set(have);
  const ops = [];
  const foreign = [];
  let stale = 0;
  const mine = `${BOX_PREFIX}${uid}::`;
  const legacy = `${BOX_PREFIX}${project}::`;
  const keys = [];
  for (let i = 0; i < storage.length; i++) keys.push(storage.key(i));
  for (const k of keys) {
    if (!k || !k.startsWith(BOX_PREFIX)) continue;
    const box = readBox(storage, k);
    if (k.startsWith(mine) && uid) {
      if (!box) { storage.removeItem(k); continue; }
      if (k !== ownKey) foreign.push(k);
      for (const op of box.ops) {
        if (op && op.cid && !seen.has(op.cid)) { ops.push(cleanOp(op)); seen.add(op.cid); }
      }
    } else if (box ? (box.project === project || (!box.uid && k.startsWith(legacy))) : k.startsWith(legacy)) {
      stale += box ? box.ops.length : 0;
      storage.removeItem(k);
    }
  }
  return { ops, foreign, stale };
}

/** Remove the answered operations from other page loads' boxes; returns the keys still holding some. */
export function forgetAnswered(storage, keys, answered) {
  const left = [];
  for (const k of keys) {
    const box = readBox(storage, k);
    if (!box) continue;
    const rest = box.ops.filter((o) => !answered.has(o.cid));
    if (!rest.length) { storage.removeItem(k); continue; }
    if (rest.length !== box.ops.length) storage.setItem(k, JSON.stringify({ ...box, ops: rest }));
    left.push(k);
  }
  return left;
}

/**
 * Split the outbox by the server's answers (`acks`: cid -> result). Returns {keep, answered:
 * [{op, res}], open: ids of examples with a decision still waiting}. An answer for an operation that
 * is not waiting any more (answered before) is not in `answered`: it is never applied twice.
 */
export function takeAcks(outbox, acks) {
  const keep = [];
  const answered = [];
  for (const op of outbox) {
    const res = acks ? acks[op.cid] : undefined;
    if (res) answered.push({ op, res });
    else keep.push(op);
  }
  const open = new Set(keep.filter((op) => op.id !== undefined).map((op) => op.id));
  return { keep, answered, open };
}

/** The server's counts plus the decisions still on their way (so the counts move with each key). */
export function liveCounts(counts, outbox) {
  const c = { ...(counts || {}) };
  for (const op of outbox) {
    if (!op._from || !op._to || op._from === op._to) continue;
    c[op._from] = (c[op._from] || 0) - 1;
    c[op._to] = (c[op._to] || 0) + 1;
  }
  c.pending = Math.max(0, (c.total || 0) - (c.accepted || 0) - (c.overridden || 0) - (c.rejected || 0));
  return c;
}

/**
 * What U undoes, oldest first (the last is next): the server's history of this tab (newest first, as
 * it sends it) and this tab's decisions the server has not answered yet, less what was undone or
 * refused.
 */
export function undoStack(history, local, undone, failed) {
  const server = history.slice().reverse();
  const known = new Set(server.map((u) => u.unit));
  const mine = local.filter((u) => !known.has(u.unit));
  return [...server, ...mine].filter((u) => !undone.has(u.unit) && !failed.has(u.unit));
}

/** Add a decision to this tab's local undo history (bounded). */
export function pushLocal(local, entry, max = LOCAL_UNDO_MAX) {
  local.push(entry);
  if (local.length > max) local.splice(0, local.length - max);
  return local;
}
