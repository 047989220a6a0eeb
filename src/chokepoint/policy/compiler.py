"""Rules + lists -> a ``CompiledPolicy``: shared indexes, a prefilter, and evaluation in rule order.

Compilation
  Every atom becomes ``(field, source)``: its values (or its list's entries) go into the index of the
  field's group (all domain fields share one ``DomainIndex``; every other field has its own index,
  so each text field has one hyperscan database). Identical atoms share a source.

Prefilter
  Each rule gets an *anchor*: a set of atoms at least one of which must hold for the rule to match
  (an atom; the most selective child of an ``all``; the union of an ``any``'s children's anchors).
  ``evaluate`` looks up each anchored field once, collects the rules whose anchor fired, adds the rules
  without an anchor (a top-level ``not``, an empty ``all``), and fully evaluates only those, in file order.
  A field's lookup is memoised for the call, so each atom is decided once per ``MatchInput``; an index lookup
  is also remembered across calls (``LOOKUPS_KEPT``: names, addresses and ports recur from flow to flow).

Result
  In rule order: every matching ``log`` rule before the first matching terminal rule, then that terminal
  verdict last (evaluation stops there, as a firewall stops at its first terminal rule). A *deferred* rule
  (``Rule.defer``: a terminal action that waits for the flow's age and volume, ``after_s``/``min_bytes``) is
  listed where it matches but does not stop evaluation: it only flags the flow for now (the engine enforces
  it later), so a later normal rule can still block the flow at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from chokepoint.policy import values
from chokepoint.policy.conditions import AllOf, Atom, Condition, Not, atoms
from chokepoint.policy.errors import PolicyError, SourcePos
from chokepoint.policy.fields import ANCHOR_RANK, FIELDS, LIST_KINDS, FieldSpec, Kind, format_value, read_values
from chokepoint.policy.input import MatchInput
from chokepoint.policy.lists import ListDef
from chokepoint.policy.matchers import (
    CASELESS,
    DOTALL,
    LITERAL,
    REGEX,
    BytesIndex,
    DomainIndex,
    IntIndex,
    IpIndex,
    PatternSet,
    PortIndex,
    TextIndex,
    ValueIndex,
)
from chokepoint.policy.verdict import Action, Evidence, Verdict


@dataclass(frozen=True, slots=True)
class Deferral:
    """When a deferred rule's action is enforced: at the first packet of the flagged flow at which the flow is
    at least ``after_s`` seconds old (packet clock, since its first packet) and has carried at least
    ``min_bytes`` (IP bytes, both directions). InterSecLab, The Internet Coup (2025) ch. 5: unidentified,
    "abnormally large" traffic flagged and blocked after a set time."""

    after_s: float = 0.0
    min_bytes: int = 0


#: The params that make a rule deferred (read into ``Rule.defer``, not passed to the enforcer).
DEFERRAL_PARAMS = ("after_s", "min_bytes")


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    action: Action
    when: Condition
    params: tuple[tuple[str, Any], ...] = ()
    reason: str = ""
    cite: str = ""
    observed: str = ""
    pos: SourcePos | None = field(default=None, compare=False)
    #: what is not verified about this rule: (knob, why); knob "" is the rule as a whole, else a param name
    #: or "when" (the trigger)
    uncertain: tuple[tuple[str, str], ...] = ()
    #: what the real censor does that an action cannot express yet (e.g. ``tls-intercept``): documented, not
    #: enforced; ``profiles show`` lists it
    mechanism: str = ""
    #: a deferred rule: matching flags the flow; the action follows once the flow is old and large enough
    defer: Deferral | None = None
    #: when the rule was in force (``chokepoint.policy.dates.Active``); None: throughout the profile's dates
    active: Any = None


# Compiled condition nodes: plain tuples, walked by ``_eval``.
_ATOM, _ALL, _ANY, _NOT = 0, 1, 2, 3
Node = tuple[Any, ...]  # (_ATOM, field, source, rank) | (_ALL, nodes) | (_ANY, nodes) | (_NOT, node, reader)
Index = DomainIndex | TextIndex | ValueIndex | IntIndex | PortIndex | IpIndex | BytesIndex
#: per field: (members of a virtual field, reader, multi-valued, index or None, key of its lookups in the
#: policy's memo or None: the field group, so that domain fields share one memo; None for bytes, which rarely
#: repeat)
#: a hit before it is shown: (field, the value that matched, the pattern or list entry it matched)
Found = tuple[str, Any, str]
PlanEntry = tuple[tuple[str, ...], Callable[[MatchInput], Any], bool, Index | None, str | None]
#: Index lookups remembered per policy (values recur across flows: names, addresses, ports, enums); the memo
#: is cleared whole when it holds this many.
LOOKUPS_KEPT = 65536

_INDEX_FOR: dict[Kind, Callable[[], Index]] = {
    Kind.DOMAIN: DomainIndex,
    Kind.TEXT: TextIndex,
    Kind.ENUM: ValueIndex,
    Kind.STRING: ValueIndex,
    Kind.BOOL: ValueIndex,
    Kind.INT: IntIndex,
    Kind.PORT: PortIndex,
    Kind.IP: IpIndex,
    Kind.BYTES: BytesIndex,
}


class CompiledPolicy:
    """Immutable once built; ``evaluate`` keeps its memo on the stack, so one policy serves every flow.
    Not for concurrent calls from several threads (each hyperscan database has one scratch space, and index
    lookups are remembered in one memo, ``_lookups``: a lookup is a pure function of the value, so the memo
    changes no result); forked worker processes each use their own copy."""

    __slots__ = (
        "rules",
        "lists",
        "fields_used",
        "_indexes",
        "_nodes",
        "_anchors",
        "_always",
        "_plan",
        "_stops",
        "_lookups",
    )

    rules: tuple[Rule, ...]
    lists: Mapping[str, ListDef]
    #: every field some rule tests (a virtual field counts as its members too): the engine asks, e.g. whether
    #: it must re-evaluate on each data packet
    fields_used: frozenset[str]
    _indexes: dict[str, Index]
    _nodes: tuple[Node, ...]
    _anchors: tuple[tuple[str, dict[int, tuple[int, ...]]], ...]
    _always: tuple[int, ...]
    _plan: dict[str, PlanEntry]
    _stops: tuple[bool, ...]
    _lookups: dict[tuple[str, Any], list[tuple[int, str]]]

    def __init__(
        self,
        rules: tuple[Rule, ...],
        lists: Mapping[str, ListDef],
        indexes: dict[str, Index],
        nodes: tuple[Node, ...],
        anchors: tuple[tuple[str, dict[int, tuple[int, ...]]], ...],
        always: tuple[int, ...],
    ) -> None:
        init = object.__setattr__
        init(self, "rules", rules)
        init(self, "lists", lists)
        used = {a.field for rule in rules for a in atoms(rule.when)}
        init(self, "fields_used", frozenset(used | {m for name in used for m in FIELDS[name].alias_of}))
        init(self, "_indexes", indexes)
        init(self, "_nodes", nodes)
        init(self, "_anchors", anchors)
        init(self, "_always", always)
        # whether a match of each rule ends evaluation: terminal and not deferred
        init(self, "_stops", tuple(r.action.terminal and r.defer is None for r in rules))
        # per field: (members of a virtual field, reader, multi-valued, index or None, memo key or None)
        init(
            self,
            "_plan",
            {
                name: (
                    spec.alias_of,
                    spec.read,
                    spec.multi,
                    indexes.get(spec.group),
                    None if spec.kind is Kind.BYTES else spec.group,
                )
                for name, spec in FIELDS.items()
            },
        )
        init(self, "_lookups", {})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"CompiledPolicy is immutable (cannot set {name!r})")

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def evaluate(self, inp: MatchInput) -> tuple[Verdict, ...]:
        """Verdicts for ``inp``: matching ``log`` and deferred rules, then the first matching terminal rule
        that is not deferred (if any)."""
        hits = self._hits(inp)
        out: list[Verdict] = []
        stops = self._stops
        for index in self._candidates(hits):
            evidence = _eval(self._nodes[index], hits, inp)
            if evidence is None:
                continue
            rule = self.rules[index]
            out.append(
                Verdict(
                    rule.action,
                    rule.id,
                    rule.reason,
                    tuple(dict.fromkeys(_evidence(e) for e in evidence)),
                    rule.params,
                    rule.cite,
                    direction=inp.direction,
                )
            )
            if stops[index]:
                break
        return tuple(out)

    def candidates(self, inp: MatchInput) -> tuple[int, ...]:
        """Indexes (into ``rules``) of the rules the prefilter passes for ``inp``: those whose anchor
        fired plus those without one. Only these are fully evaluated."""
        return tuple(self._candidates(self._hits(inp)))

    def index_stats(self) -> dict[str, dict[str, int]]:
        """Entries in each index, by field group (all domain fields share the group "domain")."""
        return {group: index.sizes() for group, index in self._indexes.items()}

    def _candidates(self, hits: _Hits) -> list[int]:
        candidates = set(self._always)
        for name, by_source in self._anchors:
            found = hits(name)
            if found:
                for source in found:
                    rules = by_source.get(source)
                    if rules:
                        candidates.update(rules)
        return sorted(candidates)

    def _hits(self, inp: MatchInput) -> _Hits:
        """``hits(field)``: {source: evidence} of every source matching the field's value(s) in ``inp``,
        looked up once per field (and once per distinct name across the domain fields)."""
        lookups = self._lookups
        if len(lookups) >= LOOKUPS_KEPT:
            lookups.clear()
        return _Hits(self._plan, inp, lookups)


class _Hits:
    """The memoised lookups of one evaluation (see ``CompiledPolicy._hits``). An object rather than a closure:
    a closure that calls itself is a reference cycle, which only the garbage collector frees."""

    __slots__ = ("plan", "inp", "memo", "lookups")

    def __init__(
        self, plan: dict[str, PlanEntry], inp: MatchInput, lookups: dict[tuple[str, Any], list[tuple[int, str]]]
    ) -> None:
        self.plan = plan
        self.inp = inp
        self.memo: dict[str, dict[int, Found]] = {}
        self.lookups = lookups  # the policy's (see CompiledPolicy): read-only results, never mutated here

    def __call__(self, name: str) -> dict[int, Found]:
        found = self.memo.get(name)
        if found is not None:
            return found
        found = {}
        members, read, multi, index, group = self.plan[name]
        if members:
            for member in members:
                for source, evidence in self(member).items():
                    found.setdefault(source, evidence)
        elif index is not None:
            value = read(self.inp)
            if value is not None:
                lookups = self.lookups
                for item in value if multi else (value,):
                    if group is not None:
                        key = (group, item)
                        matched = lookups.get(key)
                        if matched is None:
                            matched = lookups[key] = index.lookup(item)
                    else:
                        matched = index.lookup(item)
                    if matched:
                        for source, pattern in matched:
                            if source not in found:
                                found[source] = (name, item, pattern)
        self.memo[name] = found
        return found


def _evidence(found: Found | Evidence) -> Evidence:
    """The ``Evidence`` of a hit (made only for the rules that match: most hits never need one)."""
    if isinstance(found, Evidence):
        return found
    name, item, pattern = found
    return Evidence(name, format_value(item), pattern)


def _eval(node: Node, hits: _Hits, inp: MatchInput) -> list[Found | Evidence] | None:
    tag = node[0]
    if tag == _ATOM:
        found = hits.memo.get(node[1])
        if found is None:
            found = hits(node[1])
        evidence = found.get(node[2])
        return None if evidence is None else [evidence]
    if tag == _ALL:
        out: list[Found | Evidence] = []
        for child in node[1]:
            got = _eval(child, hits, inp)
            if got is None:
                return None
            out.extend(got)
        return out
    if tag == _ANY:
        matched: list[Found | Evidence] | None = None
        for child in node[1]:
            got = _eval(child, hits, inp)
            if got is not None:
                matched = got if matched is None else matched + got
        return matched
    if _eval(node[1], hits, inp) is not None:
        return None
    return [node[2](inp)]


def not_evidence(child: Condition) -> Callable[[MatchInput], Evidence]:
    """Evidence for a true ``not``: the field and the value seen (if the child is an atom), and the
    condition that did not hold."""
    shown = f"not {child}"
    if not isinstance(child, Atom):
        return lambda inp: Evidence("not", "", shown)
    spec = FIELDS[child.field]
    members = [FIELDS[m] for m in spec.alias_of] or [spec]

    def evidence(inp: MatchInput) -> Evidence:
        seen = [format_value(v) for m in members for v in read_values(m, inp)]
        return Evidence(child.field, ",".join(seen), shown)

    return evidence


class _Builder:
    def __init__(self, lists: Mapping[str, ListDef]) -> None:
        self.lists = lists
        self.indexes: dict[str, Index] = {}
        self.sources: dict[tuple[Any, ...], int] = {}
        self.first_pos: dict[str, SourcePos] = {}

    def index(self, spec: FieldSpec) -> Index:
        group = spec.group
        index = self.indexes.get(group)
        if index is None:
            index = self.indexes[group] = _INDEX_FOR[spec.kind]()
        return index

    def node(self, cond: Condition) -> Node:
        if isinstance(cond, Atom):
            return (_ATOM, cond.field, self.source(cond), _atom_rank(cond))
        if isinstance(cond, Not):
            return (_NOT, self.node(cond.child), not_evidence(cond.child))
        children = tuple(self.node(c) for c in cond.children)
        return (_ALL if isinstance(cond, AllOf) else _ANY, children)

    def source(self, atom: Atom) -> int:
        spec = FIELDS[atom.field]
        if atom.op == "in_list":
            listdef = self._list(atom, spec)
            key: tuple[Any, ...] = (spec.group, "list", listdef.name)
        else:
            key = (spec.group, atom.op, atom.value)
        source = self.sources.get(key)
        if source is None:
            source = self.sources[key] = len(self.sources)
            index = self.index(spec)
            self.first_pos.setdefault(spec.group, atom.pos or SourcePos("<policy>", 1, 1))
            if atom.op == "in_list":
                _add_list(index, spec.kind, source, self.lists[atom.value])
            else:
                _add_atom(index, spec.kind, source, atom)
        return source

    def _list(self, atom: Atom, spec: FieldSpec) -> ListDef:
        pos = atom.value_pos[0] if atom.value_pos else atom.pos or SourcePos("<policy>", 1, 1)
        listdef = self.lists.get(atom.value)
        if listdef is None:
            close = difflib.get_close_matches(atom.value, list(self.lists), n=1)
            hint = (
                f"; did you mean {close[0]!r}?"
                if close
                else (f"; declared: {', '.join(self.lists)}" if self.lists else "; no lists are declared")
            )
            raise PolicyError.at(pos, f"unknown list {atom.value!r}{hint}")
        allowed = LIST_KINDS.get(spec.kind, ())
        if listdef.kind not in allowed:
            raise PolicyError.at(
                pos,
                f"list {listdef.name!r} is a {listdef.kind} list; {atom.field} takes "
                f"{' or '.join(allowed) or 'no'} lists",
            )
        return listdef


def _add_atom(index: Index, kind: Kind, source: int, atom: Atom) -> None:
    op, label = atom.op, f"{atom.op} "
    positions = atom.value_pos
    if op in ("lt", "le", "gt", "ge"):
        assert isinstance(index, IntIndex)
        index.add_compare(source, op, atom.value)
        return
    if op == "is":
        assert isinstance(index, ValueIndex)
        index.add(source, atom.value, label)
        return
    for i, item in enumerate(atom.value):
        pos = positions[i] if i < len(positions) else atom.pos
        if kind is Kind.DOMAIN:
            assert isinstance(index, DomainIndex)
            if op == "exact":
                index.add_exact(source, item, label)
            elif op == "suffix":
                index.add_suffix(source, item, label)
            elif op == "keyword":
                index.patterns.add(
                    source, values.escape_literal(values.literal_bytes(item)), LITERAL, label + item, pos
                )
            else:
                index.patterns.add(source, values.literal_bytes(item), REGEX, label + item, pos)
        elif kind is Kind.TEXT:
            assert isinstance(index, TextIndex)
            if op == "exact":
                index.add_exact(source, item, label)
            elif op == "keyword":
                index.patterns.add(
                    source, values.escape_literal(values.literal_bytes(item)), LITERAL, label + item, pos
                )
            else:
                index.patterns.add(source, values.literal_bytes(item), REGEX, label + item, pos)
        elif kind is Kind.BYTES:
            assert isinstance(index, BytesIndex)
            if op == "prefix":
                index.add_prefix(source, bytes.fromhex(item), label)
            elif op == "at":
                offset, hexed = item
                index.add_at(source, offset, bytes.fromhex(hexed), label)
            else:
                index.patterns.add(source, values.literal_bytes(item), REGEX | DOTALL, label + item, pos)
        elif kind is Kind.IP:
            assert isinstance(index, IpIndex)
            index.add(source, item, label)
        elif kind is Kind.PORT:
            assert isinstance(index, PortIndex)
            index.add(source, item[0], item[1], label)
        else:  # ENUM, STRING, INT (in)
            assert isinstance(index, ValueIndex)
            index.add(source, item, label)


def _add_list(index: Index, kind: Kind, source: int, listdef: ListDef) -> None:
    label = f"{listdef.name}: "
    entries = listdef.entries
    if listdef.kind == "cidr":
        assert isinstance(index, IpIndex)
        for entry in entries:
            index.add(source, entry, label)
        return
    if listdef.kind == "string":
        if isinstance(index, DomainIndex):
            for entry in entries:
                index.add_exact(source, entry.lower(), label)  # names are compared lowercase
        elif isinstance(index, TextIndex):
            for entry in entries:
                index.add_exact(source, entry, label)
        else:
            assert isinstance(index, ValueIndex)
            for entry in entries:
                index.add(source, entry, label)
        return
    assert isinstance(index, (DomainIndex, TextIndex))
    patterns: PatternSet = index.patterns
    if listdef.kind == "keyword":
        # Names are lowercase, so on a domain field a keyword is lowercased instead of compiled caseless
        # (same result, and hyperscan compiles caseless literals ~1.6x slower).
        on_names = isinstance(index, DomainIndex)
        caseless = CASELESS if listdef.nocase else 0
        for i, entry in enumerate(entries):
            if entry.startswith("~"):
                patterns.add(
                    source, values.literal_bytes(entry[1:]), REGEX | caseless, label + entry, listdef.regex_pos.get(i)
                )
            else:
                literal = entry.lower() if on_names else entry
                patterns.add(
                    source,
                    values.escape_literal(values.literal_bytes(literal)),
                    LITERAL | caseless,
                    label + entry,
                    None,
                )
        return
    assert isinstance(index, DomainIndex) and listdef.kind == "domain"
    exact, suffix, sub = index.exact, index.suffix, index.sub
    bit = 1 << source
    index.exact_label[source] = label + "="
    index.suffix_label[source] = label
    index.sub_label[source] = label + "*."
    for i, entry in enumerate(entries):
        first = entry[0]
        if first == "=":
            table, key = exact, entry[1:]
        elif first == "~":
            patterns.add(source, values.literal_bytes(entry[1:]), REGEX, label + entry, listdef.regex_pos.get(i))
            continue
        elif first == "*":
            if entry.endswith("*"):  # "*substr*" (a "*.name" entry never ends with "*")
                patterns.add(
                    source, values.escape_literal(values.literal_bytes(entry[1:-1])), LITERAL, label + entry, None
                )
                continue
            table, key = sub, entry[2:]
        else:
            table, key = suffix, entry
        old = table.get(key)
        table[key] = bit if old is None else old | bit


def _atom_rank(atom: Atom) -> tuple[int, int]:
    """How selective an atom is as an anchor (lower is better): its field kind's ``ANCHOR_RANK``, then, among
    enums and booleans, how rarely the tested value holds: a fact flag that is true (``tls.esni``,
    ``tls_in_tls``, ``fully_encrypted``: set only when the feature was seen, absent on a packet without data)
    first, then an enum with a large vocabulary (``app_proto``), then small vocabularies that every packet
    has a value of (``transport``, ``direction``) and false flags."""
    spec = FIELDS[atom.field]
    rank = ANCHOR_RANK[spec.kind]
    if spec.kind is Kind.BOOL:
        return rank, 0 if atom.value is True else 3
    if spec.kind is Kind.ENUM:
        return rank, 1 if len(spec.values) > 8 else 2
    return rank, 0


def _anchor(node: Node) -> tuple[tuple[int, int], frozenset[tuple[str, int]]] | None:
    """A set of atoms at least one of which holds whenever ``node`` does, with its selectivity rank."""
    tag = node[0]
    if tag == _ATOM:
        return node[3], frozenset({(node[1], node[2])})
    if tag == _NOT:
        return None
    found = [_anchor(child) for child in node[1]]
    if tag == _ALL:
        usable = [a for a in found if a is not None]
        return min(usable, key=lambda a: (a[0], len(a[1]))) if usable else None
    complete = [a for a in found if a is not None]
    if not found or len(complete) < len(found):
        return None
    return max(a[0] for a in complete), frozenset().union(*(a[1] for a in complete))


def compile_policy(rules: Sequence[Rule], lists: Mapping[str, ListDef]) -> CompiledPolicy:
    """Build the indexes and the prefilter; raise ``PolicyError`` (at the rule, atom or list entry) for
    unknown lists, list kinds a field cannot take, and patterns hyperscan rejects."""
    seen: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in seen:
            first = seen[rule.id].pos
            where = f" (first at line {first.line})" if first else ""
            raise PolicyError.at(rule.pos or SourcePos("<policy>", 1, 1), f"duplicate rule id {rule.id!r}{where}")
        seen[rule.id] = rule
    builder = _Builder(lists)
    nodes = tuple(builder.node(rule.when) for rule in rules)
    anchors: dict[str, dict[int, list[int]]] = {}
    always: list[int] = []
    for i, node in enumerate(nodes):
        anchor = _anchor(node)
        if anchor is None:
            always.append(i)
            continue
        for name, source in anchor[1]:
            anchors.setdefault(name, {}).setdefault(source, []).append(i)
    for group, index in builder.indexes.items():
        patterns = getattr(index, "patterns", None)
        if patterns is not None:
            patterns.compile(builder.first_pos[group])
    frozen_anchors = tuple((name, {s: tuple(r) for s, r in by_source.items()}) for name, by_source in anchors.items())
    return CompiledPolicy(
        tuple(rules), MappingProxyType(dict(lists)), builder.indexes, nodes, frozen_anchors, tuple(always)
    )
