#!/usr/bin/python3
"""Checks the fault tests' history checker (checker.py) without a cluster: hand-made register
histories that are and are not linearizable, set histories with lost and unexpected elements,
watch streams with a gap, a duplicate and a reordering. Then a seeded random cross-check of the
register search, on histories recorded from a simulated register and on mutations of them:
against a naive search (every real-time-respecting order) on at most 7 operations, verdicts and
reported prefixes, also with a budget so small that the search gives up; against the plain
memoized search, without checker.py's reductions, on 10 to 30 operations. Last, the time the
search takes on 2,000-operation, 10-process histories, linearizable or with one bad late read
(printed, not asserted). Standard library only.

Environment: KVD_SEED (default: random, printed) replays the random cross-check,
KVD_HISTORIES (default 3000) sets how many small histories it draws (half as many larger).
Prints "N checks passed, M failed"; exits 1 when a check failed.
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checker  # noqa: E402


class Results:
    """Counts checks and prints the closing line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what, detail=None):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}" + (f"\n  {detail}" if detail else ""), flush=True)
        return ok

    def finish(self):
        print(f"{self.passed} checks passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


R = Results()


# ---------------------------------------------------------------------------------------------
# Building histories by hand: each step is (process, type, f, value[, key]); time = position.

def hist(*steps, key="x"):
    out = []
    for t, step in enumerate(steps):
        p, kind, f, value = step[:4]
        event = {"process": p, "type": kind, "f": f, "key": step[4] if len(step) > 4 else key,
                 "value": value, "time": float(t)}
        out.append(event)
    return out


def inv(p, f, value=None, key="x"):
    return (p, "invoke", f, value, key)


def ok(p, f, value=None, key="x"):
    return (p, "ok", f, value, key)


def fail(p, f, value=None, key="x"):
    return (p, "fail", f, value, key)


def info(p, f, value=None, key="x"):
    return (p, "info", f, value, key)


def seq(p, f, value, kind="ok", key="x"):
    """An invoke immediately followed by its completion (kind) by process p."""
    invoke_value = None if f == "read" else value
    return [inv(p, f, invoke_value, key), (p, kind, f, value, key)]


def steps(*parts):
    out = []
    for part in parts:
        out.extend(part if isinstance(part, list) else [part])
    return out


def expect_register(name, history, valid):
    r = checker.check_register(history)
    R.check(r["valid"] == valid, f"register: {name}: valid={r['valid']}, expected {valid}",
            r.get("explanation"))
    return r


def register_cases():
    expect_register("empty history", [], True)
    expect_register("read of the initial (absent) value", hist(*seq(1, "read", None)), True)
    expect_register("sequential write, read, cas, read", hist(*steps(
        seq(1, "write", "a"), seq(2, "read", "a"), seq(1, "cas", ["a", "b"]),
        seq(2, "read", "b"))), True)
    r = expect_register("stale read after a completed write", hist(*steps(
        seq(1, "write", "a"), seq(1, "write", "b"), seq(2, "read", "a"))), False)
    R.check(r.get("prefix") == 6 and r.get("smallest") and "read -> 'a'" in r.get("op", ""),
            "register: the stale read is reported, with the smallest prefix (6 events)", r)
    R.check("'b'" in r.get("explanation", "") and r.get("states_seen") == ["b"],
            "register: the explanation says the register could only hold 'b'", r)
    expect_register("read of a value never written", hist(*steps(
        seq(1, "write", "a"), seq(2, "read", "z"))), False)
    expect_register("absent after a completed write", hist(*steps(
        seq(1, "write", "a"), seq(2, "read", None))), False)
    # Two concurrent writes, then sequential reads.
    both = [inv(1, "write", "a"), inv(2, "write", "b"), ok(1, "write", "a"), ok(2, "write", "b")]
    expect_register("concurrent writes, reads agree on b", hist(*steps(
        both, seq(3, "read", "b"), seq(4, "read", "b"))), True)
    expect_register("concurrent writes, reads agree on a", hist(*steps(
        both, seq(3, "read", "a"), seq(4, "read", "a"))), True)
    expect_register("concurrent writes, reads see a, b, a", hist(*steps(
        both, seq(3, "read", "a"), seq(4, "read", "b"), seq(3, "read", "a"))), False)
    expect_register("reads concurrent with both writes see either order", hist(
        inv(1, "write", "a"), inv(2, "write", "b"), inv(3, "read"), inv(4, "read"),
        ok(3, "read", "a"), ok(4, "read", "b"), ok(1, "write", "a"), ok(2, "write", "b")), True)
    expect_register("new-old inversion: a read sees the write, a later one does not", hist(
        inv(1, "write", "a"), inv(2, "read"), ok(2, "read", "a"), inv(3, "read"),
        ok(3, "read", None), ok(1, "write", "a")), False)
    expect_register("a read concurrent with the write sees old, a later one new", hist(
        inv(1, "write", "a"), inv(2, "read"), ok(2, "read", None), inv(3, "read"),
        ok(3, "read", "a"), ok(1, "write", "a")), True)
    expect_register("cas success on a value never present", hist(*steps(
        seq(1, "write", "a"), seq(2, "cas", ["b", "c"]))), False)
    expect_register("cas success on a value already overwritten", hist(*steps(
        seq(1, "write", "a"), seq(1, "write", "b"), seq(2, "cas", ["a", "c"]))), False)
    expect_register("cas concurrent with the overwrite may swap first", hist(*steps(
        seq(1, "write", "a"), inv(1, "write", "b"), inv(2, "cas", ["a", "c"]),
        ok(2, "cas", ["a", "c"]), ok(1, "write", "b"), seq(3, "read", "b"))), True)
    expect_register("two cas from the same value both succeed", hist(*steps(
        seq(1, "write", "a"), inv(1, "cas", ["a", "b"]), inv(2, "cas", ["a", "c"]),
        ok(1, "cas", ["a", "b"]), ok(2, "cas", ["a", "c"]))), False)
    expect_register("failed cas is dropped", hist(*steps(
        seq(1, "write", "a"), seq(2, "cas", ["a", "b"], "fail"), seq(3, "read", "a"))), True)
    expect_register("failed write observed", hist(*steps(
        seq(1, "write", "a", "fail"), seq(2, "read", "a"))), False)
    expect_register("info write later observed", hist(*steps(
        seq(1, "write", "a", "info"), seq(2, "read", "a"))), True)
    expect_register("info write never observed", hist(*steps(
        seq(1, "write", "a", "info"), seq(2, "read", None))), True)
    expect_register("info write observed, then unobserved", hist(*steps(
        seq(1, "write", "a"), seq(1, "write", "b", "info"), seq(2, "read", "b"),
        seq(2, "read", "a"))), False)
    expect_register("info write taking effect after a later write", hist(*steps(
        seq(1, "write", "a", "info"), seq(2, "write", "b"), seq(3, "read", "b"),
        seq(3, "read", "a"))), True)
    expect_register("info write observed before its invoke", hist(*steps(
        seq(2, "read", "a"), seq(1, "write", "a", "info"))), False)
    expect_register("unfinished write at the end counts as info", hist(
        inv(1, "write", "a"), *seq(2, "read", "a")), True)
    expect_register("info read is ignored", hist(*steps(
        seq(1, "write", "a"), seq(2, "read", "zzz", "info"))), True)
    expect_register("info cas later observed", hist(*steps(
        seq(1, "write", "a"), seq(2, "cas", ["a", "b"], "info"), seq(3, "read", "b"))), True)
    expect_register("info cas observed though its compare could never hold", hist(*steps(
        seq(1, "write", "a"), seq(2, "cas", ["z", "b"], "info"), seq(3, "read", "b"))), False)
    expect_register("chain of info cas observed", hist(*steps(
        seq(1, "write", "a"), seq(2, "cas", ["a", "b"], "info"),
        seq(3, "cas", ["b", "c"], "info"), seq(4, "read", "c"))), True)
    expect_register("one info write observed on both sides of another write", hist(*steps(
        seq(1, "write", "a"), seq(2, "write", "b", "info"), seq(3, "read", "b"),
        seq(1, "write", "c"), seq(3, "read", "b"))), False)
    expect_register("two identical info writes observed on both sides of another", hist(*steps(
        seq(1, "write", "a"), seq(2, "write", "b", "info"), seq(4, "write", "b", "info"),
        seq(3, "read", "b"), seq(1, "write", "c"), seq(3, "read", "b"))), True)
    expect_register("watch records are skipped", hist(*steps(
        seq(1, "write", "a"), (9, "ok", "watch_event", {"index": 5}), seq(2, "read", "a"))),
        True)

    hard = hist(*steps([inv(p, "write", str(p)) for p in range(8)],
                       [ok(p, "write", str(p)) for p in range(8)], seq(9, "read", "q")))
    r = checker.check_register(hard, max_states=5)
    R.check(r["valid"] == "unknown" and "gave up" in r.get("explanation", ""),
            "register: max_states cutoff answers unknown", r)

    for name, bad in [
            ("completion without invoke", hist(ok(1, "write", "a"))),
            ("second invoke while one is outstanding", hist(inv(1, "write", "a"),
                                                            inv(1, "read"))),
            ("completion of another f", hist(inv(1, "write", "a"), ok(1, "read", "a"))),
            ("unknown type", hist((1, "done", "write", "a"))),
            ("cas_index", hist(*seq(1, "cas_index", [3, "a"]))),
            ("two keys", hist(*steps(seq(1, "write", "a"), seq(1, "write", "a", key="y"))))]:
        try:
            checker.check_register(bad)
            raised = False
        except ValueError:
            raised = True
        R.check(raised, f"register: malformed history ({name}) raises ValueError")

    multi = hist(*steps(seq(1, "write", "a", key="x"), seq(2, "write", "b", key="y"),
                        seq(3, "read", "a", key="x"), seq(3, "read", "a", key="y")))
    r = checker.check_registers(multi)
    R.check(r["valid"] is False and r["invalid"] == ["y"] and r["keys"]["x"]["valid"] is True,
            "registers: per-key verdicts (x valid, y not)", r)
    R.check(r["keys"]["y"].get("prefix") == 8,
            "registers: the prefix counts events of the whole history", r["keys"]["y"])
    R.check(checker.check_registers([])["valid"] is True, "registers: empty history is valid")


# ---------------------------------------------------------------------------------------------
# Sets

def set_cases():
    adds = steps(seq(1, "add", "e1", key="s"), seq(2, "add", "e2", key="s"),
                 seq(3, "add", "e3", "info", key="s"), seq(4, "add", "e4", "fail", key="s"),
                 seq(5, "add", "e5", "info", key="s"))
    r = checker.check_set(hist(*steps(adds, seq(9, "read", ["e1", "e2", "e3"], key="s"))))
    R.check(r["valid"] is True and r["ok"] == 2 and r["recovered"] == ["e3"] and not r["lost"],
            "set: all acknowledged present, an info add recovered", r)
    r = checker.check_set(hist(*steps(adds, seq(9, "read", ["e2", "e3", "zz"], key="s"))))
    R.check(r["valid"] is False and r["lost"] == ["e1"] and r["unexpected"] == ["zz"],
            "set: lost e1 and unexpected zz", r)
    R.check("lost" in r.get("explanation", "") and "'zz'" in r["explanation"],
            "set: the explanation names lost and unexpected", r)
    r = checker.check_set(hist(*steps(adds, seq(9, "read", ["e1", "e2", "e4"], key="s"))))
    R.check(r["valid"] is False and r["failed_present"] == ["e4"],
            "set: a failed add present is reported", r)
    r = checker.check_set(hist(*steps(adds, seq(9, "read", ["e1", "e2", "e1"], key="s"))))
    R.check(r["valid"] is False and r["duplicated"] == ["e1"], "set: duplicated element", r)
    r = checker.check_set(hist(*steps(seq(1, "read", ["e1"], key="s"),
                                      seq(2, "add", "e1", key="s"))))
    R.check(r["valid"] is False and r["unexpected"] == ["e1"],
            "set: an element read before its add was invoked is unexpected", r)
    late = hist(inv(1, "add", "e1", "s"), inv(9, "read", None, "s"), ok(1, "add", "e1", "s"),
                ok(9, "read", [], "s"))
    r = checker.check_set(late)
    R.check(r["valid"] is True and r["late"] == ["e1"] and not r["lost"],
            "set: an add acknowledged during the final read is late, not lost", r)
    r = checker.check_set(hist(*steps(seq(1, "read", [], key="s"), seq(2, "add", "e1", key="s"),
                                      seq(1, "read", ["e1"], key="s"))))
    R.check(r["valid"] is True and r["read_event"] == 5, "set: the last read is the final one", r)
    r = checker.check_set(hist(*adds))
    R.check(r["valid"] == "unknown", "set: no read is unknown", r)


# ---------------------------------------------------------------------------------------------
# Watches

def ack(index, value, key="/w/k", f="write"):
    return {"process": 1, "type": "ok", "f": f, "key": key, "value": value, "index": index}


def ev(index, value, key="/w/k", action="set"):
    return {"index": index, "action": action, "key": key, "value": value}


def watch_cases():
    acked = [ack(10, "a"), ack(11, "b"), ack(13, "c"), ack(14, ["c", "d"], f="cas"),
             ack(15, "x", key="/other")]
    good = [ev(10, "a"), ev(11, "b"), ev(12, None, action="delete"), ev(13, "c"),
            ev(14, "d", action="compareAndSwap")]
    watched = {"w1": "/w", "w2": "/w", "w3": "/w", "w4": "/w"}
    r = checker.check_watch(acked, {"w1": good}, starts={"w1": 10}, watched=watched)
    R.check(r["valid"] is True, "watch: complete stream (an unacknowledged index between)", r)
    gap = [e for e in good if e["index"] != 11]
    dup = good[:2] + [good[1]] + good[2:]
    reorder = [good[0], good[2], good[1], good[3], good[4]]
    streams = {"w1": good, "w2": gap, "w3": dup, "w4": reorder}
    r = checker.check_watch(acked, streams, starts={"w1": 10, "w2": 10, "w3": 10, "w4": 10},
                            watched=watched)
    w = r["watchers"]
    R.check(r["valid"] is False and w["w1"]["valid"], "watch: only the broken streams fail", r)
    R.check(w["w2"]["missing"] == [11] and not w["w2"]["duplicates"], "watch: gap at 11", w["w2"])
    R.check(w["w3"]["duplicates"] == [11] and not w["w3"]["missing"], "watch: duplicate 11",
            w["w3"])
    R.check(w["w4"]["out_of_order"] == [11] and not w["w4"]["missing"], "watch: reordered 11",
            w["w4"])
    R.check("watcher w2: missing 11" in r.get("explanation", ""), "watch: explanation", r)
    r = checker.check_watch(acked, {"w1": good[2:]}, starts={"w1": 10}, watched=watched)
    R.check(r["watchers"]["w1"]["missing"] == [10, 11], "watch: writes after the start missing",
            r)
    r = checker.check_watch(acked, {"w1": good[2:]}, watched=watched)
    R.check(r["valid"] is True and r["watchers"]["w1"]["start"] == 12,
            "watch: without a start, the stream starts at its first event", r)
    r = checker.check_watch(acked, {"w1": good}, starts={"w1": 11}, watched=watched)
    R.check(r["watchers"]["w1"]["before_start"] == [10], "watch: event before the start", r)
    r = checker.check_watch(acked, {"w1": good + [ev(16, "z")]}, starts={"w1": 10})
    R.check(r["watchers"]["w1"]["missing"] == [15],
            "watch: a watcher of everything misses the write on /other", r)
    r = checker.check_watch(acked, {"w1": [ev(10, "a"), ev(11, "zz")]}, watched=watched)
    R.check(r["watchers"]["w1"]["mismatched"] == [11], "watch: event 11 is not the write", r)
    r = checker.check_watch(acked + [ack(13, "q")], {"w1": good}, watched=watched)
    R.check(r["valid"] is False and r["conflicting_acks"] == [13],
            "watch: two writes acknowledged at one index", r)
    history = hist(*steps(seq(1, "write", "a", key="/w/k"), seq(1, "write", "b", key="/w/k")))
    history[1]["index"], history[3]["index"] = 10, 11
    history.append({"process": 7, "type": "ok", "f": "watch_event", "key": "/w",
                    "value": ev(11, "b"), "time": 9.0})
    inputs = checker.watch_inputs(history)
    R.check(inputs["watched"] == {7: "/w"} and len(inputs["acked_writes"]) == 2,
            "watch: watch_inputs splits a history", inputs)
    R.check(checker.check_watch(**inputs, starts={7: 10})["watchers"][7]["missing"] == [10],
            "watch: from a history, the write at 10 is missing")


# ---------------------------------------------------------------------------------------------
# Random histories from a simulated register, and the naive checker

def simulate(rng, n_ops, n_procs, values, p_info, p_fail=0.05):
    """A history recorded from a register that applies each operation at one instant between
    its invoke and its completion (so the history is linearizable); an info operation takes
    effect at any instant after its invoke (even after its recorded completion) or never.
    Values are drawn from `values`, or with values=None each write and cas writes a new one
    (a cas expecting one of the last five)."""
    clock = [rng.random() for _ in range(n_procs)]
    planned = []
    written = []
    for n in range(n_ops):
        p = rng.randrange(n_procs)
        start = clock[p] + rng.random() * 0.3
        end = start + 0.05 + rng.random() * 2.0
        clock[p] = end
        f = rng.choice(["read", "read", "write", "cas"])
        pool = values or written[-5:] or [None]
        value = None if f == "read" else (rng.choice(values) if values else f"v{n}")
        if f == "cas":
            value = [rng.choice(pool), value]
        if value is not None:
            written.append(value if f == "write" else value[1])
        kind = "info" if rng.random() < p_info else ("fail" if rng.random() < p_fail else "ok")
        at = start + rng.random() * (end - start)
        if kind == "info":
            at = start + rng.random() * 6.0 if rng.random() < 0.7 else None
        elif kind == "fail" and f != "cas":
            at = None
        planned.append({"p": p, "f": f, "value": value, "kind": kind, "start": start,
                        "end": end, "at": at, "result": None})
    state = None
    for op in sorted((op for op in planned if op["at"] is not None), key=lambda op: op["at"]):
        if op["f"] == "read":
            op["result"] = state
        elif op["f"] == "write":
            state = op["value"]
        elif state == op["value"][0] and op["kind"] != "fail":
            state = op["value"][1]
        elif op["kind"] == "ok" or op["kind"] == "fail":
            op["kind"] = "fail"  # compare failed: certainly no effect
    events = []
    last_of = {}
    for op in planned:
        last_of[op["p"]] = op
    for op in planned:
        events.append((op["start"], 0, {"process": op["p"], "type": "invoke", "f": op["f"],
                                        "key": "x", "value": op["value"]}))
        if op["kind"] == "info" and last_of[op["p"]] is op and rng.random() < 0.5:
            continue  # never completed
        value = op["result"] if op["f"] == "read" else op["value"]
        events.append((op["end"], 1, {"process": op["p"], "type": op["kind"], "f": op["f"],
                                      "key": "x", "value": value}))
    events.sort(key=lambda e: (e[0], e[1]))
    history = []
    for t, _, event in events:
        event["time"] = round(t, 4)
        history.append(event)
    return history


def mutate(rng, history, values):
    """A copy with one completion changed: another value read, a cas's outcome flipped, a
    failed write claimed ok, an info operation claimed ok."""
    h = [dict(e) for e in history]
    completions = [i for i, e in enumerate(h) if e["type"] != "invoke"]
    if not completions:
        return h
    at = rng.choice(completions)
    e = h[at]
    if e["f"] == "read" and e["type"] == "ok":
        e["value"] = rng.choice([v for v in values + [None] if v != e["value"]])
    elif e["f"] == "cas" and e["type"] in ("ok", "fail"):
        e["type"] = "fail" if e["type"] == "ok" else "ok"
    elif e["type"] in ("fail", "info"):
        e["type"] = "ok"
    elif e["f"] == "write":  # an ok write of another value: its invoke says so too
        e["value"] = rng.choice([v for v in values if v != e["value"]])
        invoke = max(i for i in range(at) if h[i]["process"] == e["process"])
        h[invoke]["value"] = e["value"]
    return h


def naive_linearizable(history, memoize=False):
    """Tries every order of the ok operations and any subset of the info writes and cas that
    respects real time (an operation that completed before another was invoked comes first),
    applying each to a register. Fails and reads without an ok are dropped. With memoize, a
    (set placed, value) that failed once is not tried again: the plain memoized search, with
    none of checker.py's reductions, for histories longer than 7 operations."""
    ops, open_ = [], {}
    for pos, e in enumerate(history):
        if e["type"] == "invoke":
            open_[e["process"]] = {"f": e["f"], "value": e["value"], "call": pos, "ret": None,
                                   "type": "info", "result": None}
        else:
            op = open_.pop(e["process"])
            op.update(type=e["type"], result=e["value"])
            if e["type"] == "ok":
                op["ret"] = pos
            ops.append(op)
    ops.extend(open_.values())
    ops = [op for op in ops if op["type"] == "ok" or (op["type"] == "info" and op["f"] != "read")]
    must = sum(op["type"] == "ok" for op in ops)

    def step(state, op):
        if op["f"] == "read":
            return (True, state) if op["result"] == state else (False, None)
        if op["f"] == "write":
            return True, op["value"]
        return (True, op["value"][1]) if state == op["value"][0] else (False, None)

    failed = set()

    def extend(placed, state, done):
        if done == must:
            return True
        if (placed, state) in failed:
            return False
        for i, op in enumerate(ops):
            if i in placed:
                continue
            if any(j not in placed and other["ret"] is not None and other["ret"] < op["call"]
                   for j, other in enumerate(ops)):
                continue
            good, new = step(state, op)
            if good and extend(placed | {i}, new, done + (op["type"] == "ok")):
                return True
        if memoize:
            failed.add((placed, state))
        return False

    return extend(frozenset(), None, 0)


def without_failed(history, length):
    """history[:length] without the events of the operations that failed in `history`: the
    prefix check_register's "prefix" and "linearizable_prefix" speak of."""
    failed, open_ = set(), {}
    for pos, e in enumerate(history):
        if e["type"] == "invoke":
            open_[e["process"]] = pos
        else:
            call = open_.pop(e["process"])
            if e["type"] == "fail":
                failed.update((call, pos))
    return [e for pos, e in enumerate(history[:length]) if pos not in failed]


def prefix_claims_hold(history, r):
    """The reported prefix is not linearizable, the reported linearizable one is, and when the
    prefix is said to be the smallest, it is one event longer."""
    p, q = r["prefix"], r["linearizable_prefix"]
    return (not naive_linearizable(without_failed(history, p)) and
            naive_linearizable(without_failed(history, q)) and (not r["smallest"] or q == p - 1))


def cross_check_small(rng, seed, count):
    """Each history is checked twice: with the default budget (the exact search decides) and
    with a budget of a few states (the exact search gives up, so the relaxed one and the
    second exact search run): the second may answer unknown, never wrongly."""
    values = ["a", "b", "c"]
    wrong, mutated, refuted, bad_prefix, relaxed = 0, 0, 0, 0, 0
    for n in range(count):
        history = simulate(rng, rng.randint(1, 7), rng.randint(2, 4), values, p_info=0.25)
        if n % 2:
            history = mutate(rng, history, values)
            mutated += 1
        expected = naive_linearizable(history)
        if not n % 2 and not expected:
            R.check(False, f"cross-check #{n}: a simulated history fails the naive checker",
                    "\n  ".join(map(str, history)))
        refuted += not expected
        for budget in (checker.DEFAULT_MAX_STATES, rng.choice([1, 2, 3, 5, 10])):
            r = checker.check_register(history, max_states=budget)
            if r["valid"] != expected and (r["valid"] != "unknown" or
                                           budget == checker.DEFAULT_MAX_STATES):
                wrong += 1
                if wrong <= 3:
                    R.check(False, f"cross-check #{n}, max_states {budget}: search says"
                            f" {r['valid']}, naive says {expected}",
                            "\n  ".join(map(str, history)))
            if r["valid"] is False:
                relaxed += not r["smallest"]
                if not prefix_claims_hold(history, r):
                    bad_prefix += 1
                    if bad_prefix <= 3:
                        R.check(False, f"cross-check #{n}: prefix {r['prefix']}, linearizable"
                                f" {r['linearizable_prefix']}, smallest {r['smallest']}: wrong",
                                "\n  ".join(map(str, history)))
    R.check(wrong == 0, f"cross-check: {wrong} wrong verdicts (seed {seed})")
    R.check(bad_prefix == 0, f"cross-check: {bad_prefix} wrong prefixes (seed {seed})")
    if count >= 1000:  # too few histories may draw none of these
        R.check(refuted > mutated // 10, f"cross-check: {refuted} of {mutated} mutated"
                " histories not linearizable (the mutations do break histories)")
        R.check(relaxed > 0, f"cross-check: {relaxed} refutations by the relaxed search")
    print(f"random cross-check: {count - mutated} simulated histories linearizable,"
          f" {refuted} of {mutated} mutated ones not; {wrong} wrong verdicts, {bad_prefix}"
          f" wrong prefixes; {relaxed} refutations by the relaxed search")


def cross_check_medium(rng, seed, count):
    """Small value domains, unique values, many info operations: where the reductions of
    checker.py's search (forced reads, observers after optional operations, twins, subsets)
    would go wrong if one were unsound."""
    wrong_medium, refuted_medium = 0, 0
    for n in range(count):
        values = rng.choice([["a", "b"], ["a", "b", "c", "d"], None])
        history = simulate(rng, rng.randint(10, 30), rng.randint(2, 6), values,
                           p_info=rng.choice([0.1, 0.3]), p_fail=0.1)
        for _ in range(n % 3):
            history = mutate(rng, history, values or ["v1", "v2", "v3"])
        expected = naive_linearizable(history, memoize=True)
        refuted_medium += not expected
        got = checker.check_register(history)["valid"]
        if got != expected:
            wrong_medium += 1
            if wrong_medium <= 3:
                R.check(False, f"cross-check (10-30 ops) #{n}: search says {got}, the plain"
                        f" memoized search says {expected}", "\n  ".join(map(str, history)))
    R.check(wrong_medium == 0, f"cross-check: {wrong_medium} wrong verdicts on 10-30 ops"
            f" (seed {seed})")
    print(f"random cross-check: {count} histories of 10-30 ops, {refuted_medium} not"
          f" linearizable; {wrong_medium} wrong verdicts")


def cross_check():
    seed = int(os.environ.get("KVD_SEED", random.randrange(1 << 31)))
    count = int(os.environ.get("KVD_HISTORIES", "3000"))
    print(f"random cross-check: seed {seed}, {count} + {count // 2} histories"
          f" (replay: KVD_SEED={seed})")
    rng = random.Random(seed)
    cross_check_small(rng, seed, count)
    cross_check_medium(rng, seed, count // 2)


def timed_check(what, history):
    ops = checker.operations(history)
    n_info = sum(op.type == "info" for op in ops)
    started = time.monotonic()
    r = checker.check_register(history)
    took = time.monotonic() - started
    print(f"performance: {what}: {len(ops)} ops, 10 processes, {n_info} info:"
          f" valid={r['valid']}, {r['states']} states, {took:.2f} s")
    return r


def performance():
    """Times only: refuting exhausts the search up to the bad read, so it takes longer."""
    rng = random.Random(20240601)
    history = simulate(rng, 2000, 10, [str(v) for v in range(5)], p_info=0.015)
    r = timed_check("5 values", history)
    R.check(r["valid"] is True, "performance: the simulated history is linearizable",
            r.get("explanation"))
    reads = [e for e in history if e["f"] == "read" and e["type"] == "ok"]
    reads[len(reads) * 9 // 10]["value"] = "never-written"
    r = timed_check("5 values, a late read of a value never written", history)
    R.check(r["valid"] is False and "never-written" in r.get("op", ""),
            "performance: the read of a value never written is refuted", r.get("explanation"))

    history = simulate(rng, 2000, 10, None, p_info=0.015)
    r = timed_check("unique values", history)
    R.check(r["valid"] is True, "performance: the unique-value history is linearizable",
            r.get("explanation"))
    # A late read returns what an earlier read, 100 events before, returned: stale.
    reads = [(pos, e) for pos, e in enumerate(history) if e["f"] == "read" and e["type"] == "ok"]
    pos, late = reads[len(reads) * 9 // 10]
    late["value"] = next(e["value"] for p, e in reversed(reads)
                         if p < pos - 100 and e["value"] is not None)
    r = timed_check("unique values, a late stale read", history)
    R.check(r["valid"] is False and r["smallest"] and r["prefix"] == pos + 1,
            "performance: the stale read is refuted, the prefix ends with it",
            r.get("explanation"))


register_cases()
set_cases()
watch_cases()
cross_check()
performance()
R.finish()
