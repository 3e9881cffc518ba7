// Unit tests of the review card's outbox and acknowledgement logic (app_pages/review_card/outbox.js).
// Run: node --test tests/js/outbox.test.js   (tests/test_review_card_js.py runs it under pytest)
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BOX_PREFIX, boxKey, cleanOp, decisionOp, forgetAnswered, liveCounts, persistBox, pushLocal, recoverBoxes,
  takeAcks, undoOp, undoStack,
} from "../../app_pages/review_card/outbox.js";

/** The Web Storage interface (localStorage) over a Map. */
class MemoryStorage {
  constructor() { this.m = new Map(); }
  get length() { return this.m.size; }
  key(i) { return [...this.m.keys()][i] ?? null; }
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) { this.m.set(k, String(v)); }
  removeItem(k) { this.m.delete(k); }
}

const WHO = { uid: "5f1c0ffee", project: "support" };
const item = (id, extra = {}) => ({ id, version: 3, review_status: "pending", review_label: null, local: null, ...extra });

test("a decision carries the version this tab saw and the tab's id", () => {
  const op = decisionOp({ cid: "d1", item: item(7, { base: 2 }), action: "accepted", tab: "tA", now: 5 });
  assert.deepEqual(cleanOp(op), { cid: "d1", id: 7, action: "accepted", label: null, base: 2, tab: "tA" });
  // no base recorded yet: the version the tab holds
  const op2 = decisionOp({ cid: "d2", item: item(8), action: "overridden", label: "billing", tab: "tA", now: 5 });
  assert.equal(op2.base, 3);
  assert.equal(op2.label, "billing");
  assert.equal(op2._from, "pending");
  // a second decision on an example decided in this tab moves the counts from the first one's status
  const op3 = decisionOp({ cid: "d3", item: item(8, { local: { status: "rejected" } }), action: "accepted", tab: "tA" });
  assert.equal(op3._from, "rejected");
  assert.deepEqual(cleanOp(undoOp({ cid: "u1", unit: "d1", tab: "tA", now: 1 })), { cid: "u1", undo: "d1", tab: "tA" });
});

test("waiting operations survive a refresh, without client bookkeeping, and leave storage when answered", () => {
  const ls = new MemoryStorage();
  const before = boxKey(WHO.uid, "tA", "i1");
  const ops = [decisionOp({ cid: "d1", item: item(1), action: "accepted", tab: "tA", now: 1 }),
    decisionOp({ cid: "d2", item: item(2), action: "rejected", tab: "tA", now: 2 })];
  persistBox(ls, before, WHO, ops, 10);
  // another tab's box of the same project, and a box of another project
  persistBox(ls, boxKey(WHO.uid, "tB", "i9"), WHO, [undoOp({ cid: "u7", unit: "d0", tab: "tB" })], 11);
  persistBox(ls, boxKey("other-uid", "tA", "i1"), { uid: "other-uid", project: "other" },
    [decisionOp({ cid: "x1", item: item(1), action: "accepted", tab: "tA" })], 12);

  // the page reloads: a new page load (inst), the same tab
  const own = boxKey(WHO.uid, "tA", "i2");
  const got = recoverBoxes(ls, { ...WHO, ownKey: own });
  assert.deepEqual(got.ops.map((o) => o.cid).sort(), ["d1", "d2", "u7"]);
  assert.ok(got.ops.every((o) => Object.keys(o).every((k) => !k.startsWith("_"))));
  assert.equal(got.ops.find((o) => o.cid === "u7").tab, "tB", "an adopted operation keeps its own tab");
  assert.ok(got.ops.filter((o) => o.id !== undefined).every((o) => o.base === 3 && o.tab === "tA"));
  assert.deepEqual(got.foreign.sort(), [before, boxKey(WHO.uid, "tB", "i9")].sort());
  assert.equal(got.stale, 0);
  assert.notEqual(ls.getItem(boxKey("other-uid", "tA", "i1")), null, "another project's box is left alone");

  // recovering again with those already in the outbox adds nothing twice
  assert.deepEqual(recoverBoxes(ls, { ...WHO, ownKey: own, have: ["d1", "d2", "u7"] }).ops, []);

  // the server answers d1 and u7: they leave the other loads' boxes; d2 stays
  const left = forgetAnswered(ls, got.foreign, new Set(["d1", "u7"]));
  assert.deepEqual(left, [before]);
  assert.equal(ls.getItem(boxKey(WHO.uid, "tB", "i9")), null);
  assert.deepEqual(JSON.parse(ls.getItem(before)).ops.map((o) => o.cid), ["d2"]);
  assert.equal(JSON.parse(ls.getItem(before)).uid, WHO.uid);
  // an empty outbox removes its box
  persistBox(ls, own, WHO, [], 13);
  assert.equal(ls.getItem(own), null);
});

test("a stale outbox of a deleted project with the same name is dropped, never sent to the new one", () => {
  const ls = new MemoryStorage();
  // decisions made for the first "support" project while the server was down
  persistBox(ls, boxKey("old-uid", "tA", "i1"), { uid: "old-uid", project: "support" },
    [decisionOp({ cid: "d1", item: item(1), action: "rejected", tab: "tA" }),
      decisionOp({ cid: "d2", item: item(2), action: "rejected", tab: "tA" })], 1);
  // and a box written before boxes carried an identity (keyed by name)
  ls.setItem(`${BOX_PREFIX}support::tA::i0`, JSON.stringify({ ts: 1, ops: [{ cid: "d0", id: 3, action: "rejected" }] }));
  ls.setItem(`${BOX_PREFIX}support-2::tA::i0`, JSON.stringify({ ts: 1, ops: [{ cid: "e0", id: 3, action: "rejected" }] }));
  // the project was deleted and created again under the same name: another identity
  const got = recoverBoxes(ls, { uid: "new-uid", project: "support", ownKey: boxKey("new-uid", "tA", "i2") });
  assert.deepEqual(got.ops, []);
  assert.equal(got.stale, 3);
  assert.equal(ls.getItem(boxKey("old-uid", "tA", "i1")), null);
  assert.equal(ls.getItem(`${BOX_PREFIX}support::tA::i0`), null);
  assert.notEqual(ls.getItem(`${BOX_PREFIX}support-2::tA::i0`), null, "a project with a longer name is another one");
  // without an identity from the server nothing is recovered
  persistBox(ls, boxKey("new-uid", "tA", "i1"), { uid: "new-uid", project: "support" },
    [decisionOp({ cid: "d5", item: item(5), action: "accepted", tab: "tA" })], 2);
  assert.deepEqual(recoverBoxes(ls, { uid: null, project: "other", ownKey: "x" }).ops, []);
  assert.deepEqual(recoverBoxes(ls, { uid: "new-uid", project: "support", ownKey: "x" }).ops.map((o) => o.cid), ["d5"]);
});

test("answers are matched by cid; an answer that comes again is not applied again", () => {
  const outbox = [decisionOp({ cid: "d1", item: item(1), action: "accepted", tab: "tA" }),
    decisionOp({ cid: "d2", item: item(2), action: "rejected", tab: "tA" }),
    decisionOp({ cid: "d3", item: item(2), action: "accepted", tab: "tA" })];
  const acks = { d1: { ok: true, version: 4 }, d2: { ok: true, dup: true, version: 5 }, zz: { ok: true } };
  const first = takeAcks(outbox, acks);
  assert.deepEqual(first.answered.map((a) => a.op.cid), ["d1", "d2"]);
  assert.deepEqual(first.keep.map((o) => o.cid), ["d3"]);
  assert.deepEqual([...first.open], [2], "a later decision on #2 is still on its way");
  // the same answers again (a rerun answering the same sync): nothing left to apply
  const again = takeAcks(first.keep, acks);
  assert.deepEqual(again.answered, []);
  assert.deepEqual(again.keep.map((o) => o.cid), ["d3"]);
  // no answers: everything waits
  assert.equal(takeAcks(outbox, {}).keep.length, 3);
  assert.equal(takeAcks(outbox, undefined).answered.length, 0);
});

test("the counts move with decisions still on their way", () => {
  const counts = { total: 10, accepted: 2, rejected: 1, overridden: 0 };
  const outbox = [decisionOp({ cid: "d1", item: item(1), action: "accepted", tab: "t" }),
    decisionOp({ cid: "d2", item: item(2, { review_status: "accepted" }), action: "rejected", tab: "t" }),
    undoOp({ cid: "u1", unit: "d0", tab: "t" })];
  const c = liveCounts(counts, outbox);
  assert.deepEqual({ a: c.accepted, r: c.rejected, p: c.pending }, { a: 2, r: 2, p: 6 });
  assert.equal(counts.accepted, 2, "the server's counts are not changed");
  assert.equal(liveCounts({}, []).pending, 0);
});

test("undo: the server's history of this tab, then decisions not answered yet, less undone or refused", () => {
  // newest first, as the server sends it
  const history = [{ unit: "bulk:9", bulk: true, n: 40, action: "accepted" }, { unit: "d2", id: 2 }, { unit: "d1", id: 1 }];
  const local = [];
  pushLocal(local, { unit: "d1", id: 1 });
  pushLocal(local, { unit: "d3", id: 3 });
  const stack = undoStack(history, local, new Set(), new Set());
  assert.deepEqual(stack.map((u) => u.unit), ["d1", "d2", "bulk:9", "d3"], "U undoes the last first");
  assert.deepEqual(undoStack(history, local, new Set(["d3"]), new Set(["bulk:9"])).map((u) => u.unit), ["d1", "d2"]);
  // after a reload the tab keeps its id (sessionStorage) and the server still has its history: a bulk
  // action made before the reload is what U undoes next
  assert.equal(undoStack(history, [], new Set(), new Set()).at(-1).unit, "bulk:9");
  const many = [];
  for (let i = 0; i < 510; i++) pushLocal(many, { unit: `d${i}` });
  assert.equal(many.length, 500);
  assert.equal(many[0].unit, "d10");
});
