"""Checks the histories of the fault tests: what clients asked of a kvd cluster while partitions,
pauses and crashes were injected, and what they were told. Three checkers, one per workload:

    check_register / check_registers   linearizability of single-key registers (read, write,
                                       compare-and-swap), by the Wing & Gong / Lowe search
    check_set                          acknowledged adds present in the final read, nothing
                                       read that no client added
    check_watch (inputs: watch_inputs) each watcher's events strictly increasing, with every
                                       acknowledged write it should have seen

Standard library only (Debian's /usr/bin/python3). The workloads that record histories and
test_checker.py, which checks these checkers, import this module.

History format (the contract with the workloads). A history is a list of dicts in the order the
events happened (real time; the list order is the only order used, "time" is only reported):

    {"process": int, "type": "invoke"|"ok"|"fail"|"info", "f": str, "key": str,
     "value": ..., "time": float}

- An operation is an "invoke" followed later by at most one completion ("ok", "fail", "info")
  of the same process, "f" and "key"; a process has at most one operation outstanding. An
  invoke with no completion by the end of the history counts as "info".
- "fail": the operation certainly did not take effect; it is dropped. "info": indeterminate
  (timeout, dropped connection): it took effect at one point after its invoke, or never.
- Registers, one per key, initially None (key absent):
    f="read"   invoke value None; ok value = the value read (None: the key was absent).
    f="write"  value = the written string.
    f="cas"    value = [expected, new]; ok: it swapped; fail: it certainly did not.
  (f="cas_index", a prevIndex compare, is not modelled: check_register rejects it.)
- Sets, one per key: f="add" value = the element, unique per add; f="read" ok value = the list
  of elements present. The last completed read is the final read.
- Watches: f="watch_event" records, one per event a watching client saw, with "process" the
  watcher, "key" the key or directory it watches and value = {"index": int, "action": str,
  "key": str, "value": str or None}. Ok completions of "write", "cas" and "add" carry one more
  field, "index": the modifiedIndex the server answered. Watch records are not operations: the
  register and set checkers skip them.

A malformed history (a completion with no invoke, a second invoke while one is outstanding, a
completion whose "f" or "key" differs from its invoke) raises ValueError naming the event.
"""

INF = float("inf")
DEFAULT_MAX_STATES = 1_000_000  # check_register gives up ("unknown") past this many states
REGISTER_FS = ("read", "write", "cas", "cas_index")
_READ, _WRITE, _CAS = 0, 1, 2  # register steps
_ARRIVE, _SCAN, _TRY, _BACK = 0, 1, 2, 3  # what the search does next
_DOMINATORS = 8  # optional sets per search key compared for subsets (more: slower steps)
_NO = object()  # a step that may not take effect


class Op:
    """One operation: an invoke and its completion. `call` and `ret` are the positions of the
    two events in the history (ret None: never completed); `value` is the invoke's value and
    `result` the completion's (what a read returned)."""

    __slots__ = ("process", "f", "key", "value", "type", "call", "ret", "result", "index",
                 "call_time", "ret_time")

    def __init__(self, pos, event):
        self.process = event.get("process")
        self.f = event.get("f")
        self.key = event.get("key")
        self.value = event.get("value")
        self.type = "info"  # until a completion says otherwise
        self.call = pos
        self.ret = None
        self.result = None
        self.index = None
        self.call_time = event.get("time")
        self.ret_time = None

    def __repr__(self):
        return describe(self)


def operations(history):
    """Pairs each invoke of `history` with its completion; returns the Ops in invoke order.
    Watch records are skipped. Raises ValueError on a malformed history."""
    ops = []
    outstanding = {}
    for pos, event in enumerate(history):
        f = event.get("f")
        if f == "watch_event":
            continue
        kind = event.get("type")
        process = event.get("process")
        if kind == "invoke":
            if process in outstanding:
                prior = outstanding[process]
                raise ValueError(f"event {pos}: process {process} invokes {f} while its {prior.f}"
                                 f" of event {prior.call} is outstanding")
            op = Op(pos, event)
            outstanding[process] = op
            ops.append(op)
        elif kind in ("ok", "fail", "info"):
            op = outstanding.pop(process, None)
            if op is None:
                raise ValueError(f"event {pos}: process {process} completes {f} with nothing"
                                 " outstanding")
            if op.f != f or op.key != event.get("key"):
                raise ValueError(f"event {pos}: process {process} completes {f} on"
                                 f" {event.get('key')!r}, but invoked {op.f} on {op.key!r}"
                                 f" (event {op.call})")
            op.type = kind
            op.ret = pos
            op.result = event.get("value")
            op.index = event.get("index")
            op.ret_time = event.get("time")
        else:
            raise ValueError(f"event {pos}: unknown type {kind!r}")
    return ops


def describe(op):
    """One line for a report: process, what it did, how it ended, its events and times."""
    if op.f == "read":
        what = f"read -> {_show(op.result)}" if op.type == "ok" else "read"
    elif op.f == "cas" and isinstance(op.value, (list, tuple)) and len(op.value) == 2:
        what = f"cas {_show(op.value[0])}->{_show(op.value[1])}"
    else:
        what = f"{op.f} {_show(op.value)}"
    end = op.ret if op.ret is not None else "end"
    times = ""
    if op.call_time is not None:
        ret_time = "" if op.ret_time is None else _show_time(op.ret_time)
        times = f", t {_show_time(op.call_time)}-{ret_time}"
    return f"p{op.process} {what} {op.type} (events {op.call}-{end}{times})"


def _show(value):
    return "absent" if value is None else repr(value)


def _show_time(t):
    return f"{t:.3f}" if isinstance(t, float) else str(t)


def _freeze(value):
    """A hashable stand-in for a value (model states are cached in sets)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


# ---------------------------------------------------------------------------------------------
# Registers

def check_register(history, max_states=DEFAULT_MAX_STATES):
    """Whether the history of one register (one key) is linearizable.

    Returns {"valid": True|False|"unknown", "ops": operations, "info": indeterminate ones,
    "fail": failed ones, "states": search states visited}; when False also
      "prefix":      a prefix of `history` that is not linearizable, in events: history[:prefix]
                     with the operations that failed left out; its last event completes "op";
      "smallest":    whether it is the smallest such prefix (it is, unless the exact search gave
                     up and the relaxed one below refuted the history),
      "linearizable_prefix": the length of a prefix known to be linearizable (prefix - 1 when
                     smallest),
      "op":          the operation that could not be linearized, described,
      "states_seen": the register values in which the search tried it (none allowed it),
      "concurrent":  the operations overlapping it, "before": those completed just before it,
      "explanation": all of the above in one paragraph;
    when "unknown", "explanation" says the searches gave up.

    `max_states` bounds the work: the exact search runs with a tenth of it (ample for a
    linearizable history); when it gives up, a relaxed search runs, then the exact one again,
    each with all of it, so about 2.1 * max_states states at most. In the relaxed search each
    indeterminate write or cas may take effect any number of times. Its refutation stands (it
    allows more than linearizability), and it stays small where the exact one explodes: many
    indeterminate writes of a few values. Workloads that write unique values keep both small:
    an indeterminate write is then only ever needed where its own value was read."""
    ops = operations(history)
    keys = {op.key for op in ops}
    if len(keys) > 1:
        raise ValueError(f"check_register: one key expected, got {sorted(map(str, keys))};"
                         " use check_registers")
    return _check_register_ops(ops, max_states)


def check_registers(history, max_states=DEFAULT_MAX_STATES):
    """Checks every key of a register history on its own (linearizability is compositional:
    the whole is linearizable exactly when each key is). Returns {"valid": False if a key is
    not linearizable, else "unknown" if a search gave up, else True, "keys": {key:
    check_register's result}, "invalid": [keys], "unknown": [keys]}. Prefixes and event numbers
    in the per-key results count events of the whole `history`."""
    by_key = {}
    for op in operations(history):
        by_key.setdefault(op.key, []).append(op)
    results = {key: _check_register_ops(ops, max_states) for key, ops in by_key.items()}
    invalid = [k for k, r in results.items() if r["valid"] is False]
    unknown = [k for k, r in results.items() if r["valid"] == "unknown"]
    valid = False if invalid else ("unknown" if unknown else True)
    return {"valid": valid, "keys": results, "invalid": invalid, "unknown": unknown}


def _check_register_ops(ops, max_states):
    """The search input: the ok operations (definite: each must be linearized between its
    invoke and its completion) and the info writes and compare-and-swaps (optional: each may
    be linearized anywhere after its invoke, or left out). Failed operations and reads that
    did not complete are dropped: they neither changed the register nor observed it."""
    for op in ops:
        if op.f not in REGISTER_FS:
            raise ValueError(f"event {op.call}: {op.f!r} is not a register operation")
        if op.f == "cas_index":
            raise ValueError(f"event {op.call}: cas_index (prevIndex) is not modelled")
        if op.f == "cas" and not (isinstance(op.value, (list, tuple)) and len(op.value) == 2):
            raise ValueError(f"event {op.call}: cas value must be [expected, new]")
    result = {"ops": len(ops), "info": sum(op.type == "info" for op in ops),
              "fail": sum(op.type == "fail" for op in ops)}
    definite, optional = [], []
    for op in ops:
        if op.type == "fail" or (op.f == "read" and op.type != "ok"):
            continue
        if op.f == "read":
            step = (_READ, _freeze(op.result), None)
        elif op.f == "write":
            step = (_WRITE, _freeze(op.value), None)
        else:
            step = (_CAS, _freeze(op.value[0]), _freeze(op.value[1]))
        (definite if op.type == "ok" else optional).append((op, step))
    optional = _needed(definite, optional)
    # A tenth of the budget first: linearizable histories need far less, refutations may not.
    verdict, visited, blocked_pos, blocked_states = _wgl(definite, optional,
                                                         max(1, max_states // 10))
    result["states"] = visited
    linearizable_prefix = None  # when the refutation below says less than the smallest prefix
    if verdict == "unknown" and optional:
        # Many indeterminate writes of few values make the exact search explode. Allowing each
        # to take effect any number of times is weaker than linearizability, so a refutation
        # under it stands, and its search forgets which ones were used: it stays small.
        relaxed, more, pos, states = _wgl(definite, optional, max_states, reuse=True)
        result["states"] += more
        if relaxed == "invalid":
            verdict = "invalid"
            if pos > blocked_pos:  # the exact search had linearized history[:blocked_pos]
                linearizable_prefix = max(blocked_pos, 0)
            blocked_pos, blocked_states = pos, states
    if verdict == "unknown":
        verdict, more, blocked_pos, blocked_states = _wgl(definite, optional, max_states)
        result["states"] += more
    if verdict == "unknown":
        result["valid"] = "unknown"
        result["explanation"] = (f"gave up after {result['states']} search states (max_states"
                                 f" {max_states} per search); the history is neither proven"
                                 " linearizable nor refuted")
        return result
    if verdict == "valid":
        result["valid"] = True
        return result
    result["valid"] = False
    result.update(_explain(ops, blocked_pos, blocked_states, linearizable_prefix))
    return result


def _needed(definite, optional):
    """Leaves out the optional operations that no linearization needs: an info write (or
    swap) whose value nothing observed, i.e. no ok read returned it, no ok cas expected it,
    and no kept info cas expected it. Sound: remove them all from any linearization and every
    remaining operation sees the state it saw before, since none of them depended on those
    values. Fewer optional operations keep the search small."""
    needed = set()
    for _, (kind, a, _b) in definite:
        if kind in (_READ, _CAS):
            needed.add(a)
    kept = set()
    grew = True
    while grew:
        grew = False
        for i, (_, (kind, a, b)) in enumerate(optional):
            if i in kept:
                continue
            if kind == _WRITE and a in needed:
                kept.add(i)
                grew = True
            elif kind == _CAS and a != b and b in needed:
                kept.add(i)
                needed.add(a)
                grew = True
    return [item for i, item in enumerate(optional) if i in kept]


def _wgl(definite, optional, max_states, reuse=False):
    """The Wing & Gong search as improved by Lowe ("Testing for linearizability", 2017) and
    porcupine, iterative. Returns (verdict, states visited, blocked position, blocked states).

    Entries (calls and returns of the definite operations, ordered by history position) are a
    doubly linked list; linearizing an operation lifts its call and return out of the list, and
    backtracking puts them back. From a search state, the candidates are the operations whose
    call precedes the first remaining return: that operation must take effect before its
    return, so only operations invoked before it can precede it. Definite candidates are tried
    first, then optional ones (a second list of calls only: an info operation has no return, it
    is "returned at +infinity"), so an indeterminate write is linearized only where the
    definite ones alone get stuck. The search succeeds when every definite operation is
    linearized: optional ones not linearized by then are left out (they never took effect).

    Reductions, each keeping at least one linearization when there is one, so that refuting a
    history (which exhausts the search) stays tractable:
    - A candidate read of the current value is linearized next, with no alternative: moving
      that read to the front of any continuation keeps it valid (a read changes nothing, and
      nothing remaining completed before it was invoked).
    - An optional operation is immediately followed by one that observes its value (a read of
      it, a cas expecting it): moved later up to its first observer, it stays valid (nothing
      constrains it from above: its return is at +infinity), and with no observer it can be
      left out. So after an optional operation, no write is tried.
    - Of identical optional operations (same step), an earlier-invoked unused one is used
      first: once invoked, they are interchangeable.
    - Each (definite set, value, optional set) is visited at most once (Lowe's memoization),
      and not at all after (definite set, value, a subset of the optional set): optional ops
      may always be left out, so fewer of them used leaves every continuation open. Whether
      the state was reached by an optional op is part of the key (its continuations are the
      restricted ones above). The definite set is a bitset by call order, cached as
      (k, bits >> k) where the k lowest bits are ones, which keeps keys small. The optional
      sets seen with a key are kept in a set, and the first _DOMINATORS of them in a list for
      the subset test.

    With reuse=True, the relaxed search: an optional operation stays in its list once used
    (it may take effect again) and the optional set stays empty; of identical ones only the
    first is tried.

    On failure, the blocked position is the furthest first-remaining-return the search reached:
    history[:pos] is linearizable (everything completed before pos was linearized on that path)
    and history[:pos + 1] is not (a linearization of it would let the search pass pos), failed
    operations left out of both. The blocked states are the register values at the states
    stuck there."""
    n_def = len(definite)
    n_opt = len(optional)
    # Arrays of the list entries. 0/1: head/tail of the definite list, 2/3: of the optional.
    nxt, prv, pos, op_of, match, is_ret = [], [], [], [], [], []

    def entry(p, op, ret):
        nxt.append(-1)
        prv.append(-1)
        pos.append(p)
        op_of.append(op)
        match.append(-1)
        is_ret.append(ret)
        return len(pos) - 1

    dhead, dtail = entry(-1, -1, False), entry(INF, -1, True)
    ohead, otail = entry(-1, -1, False), entry(INF, -1, True)
    steps = [step for _, step in definite + optional]
    kinds = [kind for kind, _, _ in steps]
    args_a = [a for _, a, _ in steps]
    args_b = [b for _, _, b in steps]
    # For optional op j: the bit of the previous identical optional op (0: none).
    twin_bit, last_of_step = [], {}
    for j, (_, step) in enumerate(optional):
        twin_bit.append(1 << last_of_step[step] if step in last_of_step else 0)
        last_of_step[step] = j
    events = sorted([(op.call, False, i) for i, (op, _) in enumerate(definite)] +
                    [(op.ret, True, i) for i, (op, _) in enumerate(definite)])
    calls = {}
    last = dhead
    for p, ret, i in events:
        e = entry(p, i, ret)
        if ret:
            match[calls[i]] = e
        else:
            calls[i] = e
        nxt[last], prv[e] = e, last
        last = e
    nxt[last], prv[dtail] = dtail, last
    last = ohead
    for j, (op, _) in enumerate(optional):  # already in call order
        e = entry(op.call, n_def + j, False)
        nxt[last], prv[e] = e, last
        last = e
    nxt[last], prv[otail] = otail, last

    state = None
    dbits = 0  # definite ops linearized, bit i = definite[i]
    obits = 0  # optional ops linearized, bit j = optional[j]
    remaining = n_def
    optional_left = n_opt
    # Per linearized op: (its call entry, and the search state before it: register value,
    # phase, limit, forced, observe).
    stack = []
    seen = {}
    visited = 0
    blocked_pos, blocked_states = -1, set()
    e = dhead
    phase = 0  # 0: trying definite calls; 1: optional calls invoked before `limit`
    limit = 0
    forced = False  # trying the one read that must come next
    observe = False  # the last op linearized was optional: writes may not come next
    mode = _ARRIVE
    while remaining:
        if mode == _ARRIVE:  # a new state: look for a read of the current value
            e = nxt[dhead]
            while not is_ret[e] and not (kinds[op_of[e]] == _READ and args_a[op_of[e]] == state):
                e = nxt[e]
            if is_ret[e]:
                e, phase, forced, mode = nxt[dhead], 0, False, _SCAN
            else:
                forced, mode = True, _TRY
            continue
        if mode == _SCAN:
            if phase == 0 and is_ret[e]:
                p = pos[e]
                if p > blocked_pos:
                    blocked_pos, blocked_states = p, {state}
                elif p == blocked_pos and len(blocked_states) < 64:
                    blocked_states.add(state)
                if optional_left:
                    phase, limit, e = 1, p, nxt[ohead]
                else:
                    mode = _BACK
            elif phase == 1 and pos[e] > limit:
                mode = _BACK
            else:
                mode = _TRY
            continue
        if mode == _TRY:  # linearize the op of call entry e, if it may take effect now
            i = op_of[e]
            kind = kinds[i]
            if kind == _WRITE:
                new = _NO if observe else args_a[i]
            elif state != args_a[i]:
                new = _NO
            else:
                new = state if kind == _READ else args_b[i]
            if new is not _NO:
                if i < n_def:
                    nd, no = dbits | (1 << i), obits
                elif reuse:  # the optional set stays empty; an earlier twin stands for it
                    if twin_bit[i - n_def]:
                        new = _NO
                    nd, no = dbits, 0
                else:
                    twin = twin_bit[i - n_def]
                    if twin and not obits & twin:
                        new = _NO
                    nd, no = dbits, obits | (1 << (i - n_def))
            if new is not _NO:
                k = (~nd & (nd + 1)).bit_length() - 1
                key = (k, nd >> k, new, i >= n_def)
                sets = seen.get(key)
                if sets is None:
                    seen[key] = ({no}, [no])
                elif no in sets[0] or any(o & no == o for o in sets[1]):
                    new = _NO
                else:
                    sets[0].add(no)
                    if len(sets[1]) < _DOMINATORS:
                        sets[1].append(no)
            if new is _NO:
                if forced:
                    mode = _BACK
                else:
                    e, mode = nxt[e], _SCAN
                continue
            visited += 1
            if visited > max_states:
                return "unknown", visited, blocked_pos, blocked_states
            stack.append((e, state, phase, limit, forced, observe))
            state, dbits, obits, observe = new, nd, no, i >= n_def
            if i < n_def:
                remaining -= 1
                r = match[e]
                nxt[prv[r]] = nxt[r]
                prv[nxt[r]] = prv[r]
            elif reuse:
                mode = _ARRIVE
                continue
            else:
                optional_left -= 1
            nxt[prv[e]] = nxt[e]
            prv[nxt[e]] = prv[e]
            mode = _ARRIVE
            continue
        # _BACK: undo the last linearization; a forced one fails its state with it.
        if not stack:
            return "invalid", visited, blocked_pos, blocked_states
        e, state, phase, limit, forced, observe = stack.pop()
        i = op_of[e]
        if i < n_def:
            dbits ^= 1 << i
            remaining += 1
            r = match[e]
            prv[nxt[r]] = r
            nxt[prv[r]] = r
        elif not reuse:
            obits ^= 1 << (i - n_def)
            optional_left += 1
        if i < n_def or not reuse:
            prv[nxt[e]] = e
            nxt[prv[e]] = e
        if not forced:
            e, mode = nxt[e], _SCAN
    return "valid", visited, blocked_pos, blocked_states


def _explain(ops, blocked_pos, blocked_states, linearizable_prefix=None):
    """The report of a non-linearizable register history (see check_register)."""
    culprit = next(op for op in ops if op.ret == blocked_pos)
    concurrent = [op for op in ops if op is not culprit and op.call < culprit.ret and
                  (op.type == "info" or op.ret is None or op.ret > culprit.call)]
    before = sorted((op for op in ops if op.type != "info" and op.ret is not None and
                     op.ret < culprit.call), key=lambda op: op.ret)[-4:]
    states = sorted(blocked_states, key=repr)
    shown = ", ".join(_show(s) for s in states[:8]) + (", ..." if len(states) > 8 else "")
    if linearizable_prefix is None:
        text = (f"not linearizable: the first {blocked_pos + 1} events are the smallest prefix"
                " that is not (failed operations left out).")
    else:
        text = (f"not linearizable: the first {blocked_pos + 1} events are not, even if"
                " indeterminate operations could take effect more than once; the first"
                f" {linearizable_prefix} are.")
    text += (f" {describe(culprit)} cannot take effect: while it was pending the register could"
             f" only hold {shown}.")
    if concurrent:
        text += " Concurrent: " + "; ".join(describe(op) for op in concurrent[:12])
        text += " ..." if len(concurrent) > 12 else ""
        text += "."
    if before:
        text += " Completed just before: " + "; ".join(describe(op) for op in before) + "."
    return {"prefix": blocked_pos + 1, "smallest": linearizable_prefix is None,
            "linearizable_prefix": (blocked_pos if linearizable_prefix is None
                                    else linearizable_prefix),
            "op": describe(culprit), "states_seen": states,
            "concurrent": [describe(op) for op in concurrent],
            "before": [describe(op) for op in before], "explanation": text}


# ---------------------------------------------------------------------------------------------
# Sets

def check_set(history):
    """Checks the history of one set (one key): adds, then reads; the last completed read is
    the final read (the workload makes it after the faults are healed). Returns
      "valid":          False if lost, unexpected, failed_present or duplicated is not empty;
                        "unknown" if no read completed,
      "lost":           acknowledged adds, completed before the final read was invoked, missing,
      "unexpected":     elements read that no add invoked before the read completed attempted,
      "recovered":      indeterminate (info) adds that are present,
      "failed_present": failed adds that are present (a "fail" certainly did not take effect),
      "duplicated":     elements the final read returned more than once,
      "late":           acknowledged adds missing but completed after the final read's invoke
                        (concurrent with it: not lost),
      "attempts", "acknowledged", "info", "failed": counts of adds, "ok": acknowledged adds
      present, "read_event": the position of the final read's completion;
    and "explanation" when not valid. Element lists are in the order of the adds' invokes (of
    the read for unexpected and duplicated)."""
    ops = operations(history)
    keys = {op.key for op in ops}
    if len(keys) > 1:
        raise ValueError(f"check_set: one set expected, got {sorted(map(str, keys))}")
    adds, reads = [], []
    for op in ops:
        if op.f == "add":
            adds.append(op)
        elif op.f == "read":
            if op.type == "ok":
                reads.append(op)
        else:
            raise ValueError(f"event {op.call}: {op.f!r} is not a set operation")
    attempted = {}
    for op in adds:
        element = _freeze(op.value)
        if element in attempted:
            raise ValueError(f"event {op.call}: element {op.value!r} added twice (events"
                             f" {attempted[element].call} and {op.call})")
        attempted[element] = op
    result = {"attempts": len(adds), "acknowledged": sum(op.type == "ok" for op in adds),
              "info": sum(op.type == "info" for op in adds),
              "failed": sum(op.type == "fail" for op in adds)}
    if not reads:
        result.update(valid="unknown", lost=[], unexpected=[], recovered=[], failed_present=[],
                      duplicated=[], late=[], ok=0, read_event=None,
                      explanation="no read of the set completed")
        return result
    final = max(reads, key=lambda op: op.ret)
    read = [_freeze(v) for v in (final.result or [])]
    present = set()
    duplicated = []
    for v in read:
        if v in present and v not in duplicated:
            duplicated.append(v)
        present.add(v)
    lost, late, recovered, failed_present = [], [], [], []
    ok = 0
    for op in adds:
        element = _freeze(op.value)
        if op.type == "ok":
            if element in present:
                ok += 1
            elif op.ret < final.call:
                lost.append(op.value)
            else:
                late.append(op.value)
        elif element in present:
            (recovered if op.type == "info" else failed_present).append(op.value)
    unexpected = [v for v in dict.fromkeys(read)
                  if v not in attempted or attempted[v].call > final.ret]
    result.update(lost=lost, unexpected=unexpected, recovered=recovered,
                  failed_present=failed_present, duplicated=duplicated, late=late, ok=ok,
                  read_event=final.ret)
    problems = [(name, result[name]) for name in ("lost", "unexpected", "failed_present",
                                                  "duplicated") if result[name]]
    result["valid"] = not problems
    if problems:
        result["explanation"] = (f"final read (event {final.ret}, {len(read)} elements): " +
                                 "; ".join(f"{len(v)} {name}: {_sample(v)}"
                                           for name, v in problems))
    return result


def _sample(values, n=10):
    shown = ", ".join(repr(v) for v in values[:n])
    return shown + (f", ... ({len(values) - n} more)" if len(values) > n else "")


# ---------------------------------------------------------------------------------------------
# Watches

def watch_inputs(history):
    """check_watch's inputs taken from a history (see the module docstring): returns
    {"acked_writes": the ok completions of write, cas and add that carry "index",
     "events_by_watcher": {process: [watch_event values, in history order]},
     "watched": {process: the "key" of its watch records}},
    so that check_watch(**watch_inputs(history), starts=...) checks it."""
    acked = [e for e in history if e.get("type") == "ok" and e.get("f") in ("write", "cas", "add")
             and e.get("index") is not None]
    events, watched = {}, {}
    for e in history:
        if e.get("f") == "watch_event":
            events.setdefault(e.get("process"), []).append(e.get("value"))
            watched.setdefault(e.get("process"), e.get("key"))
    return {"acked_writes": acked, "events_by_watcher": events, "watched": watched}


def check_watch(acked_writes, events_by_watcher, starts=None, watched=None):
    """Checks what watchers saw against the writes the cluster acknowledged.

    acked_writes:      dicts with "index" (the modifiedIndex acknowledged), "key", and "f" and
                       "value" as in a history ("write": the value, "cas": [expected, new],
                       "add": the element); history records can be passed as they are.
    events_by_watcher: {watcher: [{"index", "action", "key", "value"}, ...]}, each list in the
                       order that watcher received its events (across reconnections).
    starts:            {watcher: the first index it asked for (its first waitIndex)}; a watcher
                       without one starts at the index of its first event.
    watched:           {watcher: the key or directory it watches, recursively}; a watcher
                       without one (or with "/") is expected to see every acknowledged write.

    Per watcher, the stream must be strictly increasing in index, start at or after its start,
    and contain every acknowledged write on a key it watches whose index lies between its start
    and the last index it saw; an event at an acknowledged index must be that write (its key at
    or under the written key; for write and cas, the written value). Returns
      {"valid": bool, "acked": n, "conflicting_acks": [indexes acknowledged to two writes],
       "watchers": {watcher: {"valid", "events", "start", "last", "missing", "duplicates",
                              "out_of_order", "before_start", "mismatched"}}}
    where missing lists acknowledged indexes not seen, duplicates the indexes seen again,
    out_of_order the indexes that arrived after a larger one, before_start the indexes below
    the start, mismatched the acknowledged indexes whose event is another change; and
    "explanation" when not valid."""
    starts = starts or {}
    watched = watched or {}
    by_index, conflicting = {}, []
    for w in acked_writes:
        i = w["index"]
        if i in by_index and i not in conflicting:
            conflicting.append(i)
        by_index.setdefault(i, w)
    result = {"acked": len(acked_writes), "conflicting_acks": sorted(conflicting),
              "watchers": {}}
    lines = []
    if conflicting:
        lines.append(f"indexes acknowledged to two writes: {_sample(sorted(conflicting))}")
    for watcher, events in events_by_watcher.items():
        r = _check_stream(by_index, events, starts.get(watcher), watched.get(watcher))
        result["watchers"][watcher] = r
        if not r["valid"]:
            lines.append(f"watcher {watcher}: " + "; ".join(
                f"{name} {_sample(r[name])}" for name in
                ("missing", "duplicates", "out_of_order", "before_start", "mismatched") if r[name]))
    result["valid"] = not lines
    if lines:
        result["explanation"] = ". ".join(lines)
    return result


def _check_stream(by_index, events, start, watched_key):
    seen = set()
    duplicates, out_of_order, before_start, mismatched = [], [], [], []
    top = None
    for ev in events:
        i = ev["index"]
        if start is not None and i < start:
            before_start.append(i)
        if i in seen:
            duplicates.append(i)
        elif top is not None and i < top:
            out_of_order.append(i)
        seen.add(i)
        top = i if top is None else max(top, i)
        acked = by_index.get(i)
        if acked is not None and not _event_matches(ev, acked):
            mismatched.append(i)
    first = start if start is not None else (events[0]["index"] if events else None)
    missing = []
    if top is not None:
        missing = sorted(i for i, w in by_index.items() if first <= i <= top and i not in seen
                         and _covers(watched_key, w.get("key")))
    valid = not (missing or duplicates or out_of_order or before_start or mismatched)
    return {"valid": valid, "events": len(events), "start": first, "last": top,
            "missing": missing, "duplicates": duplicates, "out_of_order": out_of_order,
            "before_start": before_start, "mismatched": mismatched}


def _norm(key):
    return "/" + str(key or "").strip("/")


def _covers(watched_key, key):
    """Whether a recursive watch on watched_key sees a change of key."""
    w = _norm(watched_key)
    k = _norm(key)
    return w == "/" or k == w or k.startswith(w + "/")


def _event_matches(ev, acked):
    if not _covers(acked.get("key"), ev.get("key")):
        return False
    f, value = acked.get("f"), acked.get("value")
    if f == "write":
        return ev.get("value") == value
    if f == "cas" and isinstance(value, (list, tuple)) and len(value) == 2:
        return ev.get("value") == value[1]
    return True
