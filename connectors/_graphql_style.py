"""Reads a GraphQL query's AST and decides, once, how it paginates.

The decision is made when the connector is configured, from the document alone: a
response is never inspected to guess the style, so a query that cannot be paginated
fails before any request is sent, with an error that says what was looked for and on
which field. Paths are response keys (aliases win over field names), because they are
also how the result is read back.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence

from attrs import frozen

from statesync._extras import Extra
from statesync.errors import ConfigurationError

GRAPHQL = Extra("the GraphQL connector", "graphql", "gql")
"""graphql-core and gql, both of the ``graphql`` extra; required by the connector."""

with GRAPHQL.importing():
    from graphql import (
        DocumentNode,
        FieldNode,
        FragmentDefinitionNode,
        FragmentSpreadNode,
        GraphQLSyntaxError,
        InlineFragmentNode,
        NamedTypeNode,
        NonNullTypeNode,
        OperationDefinitionNode,
        OperationType,
        SelectionSetNode,
        VariableDefinitionNode,
        VariableNode,
        parse,
    )


class PaginationStyle(enum.StrEnum):
    RELAY = "relay"
    OFFSET = "offset"


OFFSET_ARGUMENTS: tuple[tuple[str, str], ...] = (
    ("limit", "offset"),
    ("first", "skip"),
    ("take", "skip"),
    ("limit", "skip"),
)
"""(page size, position) argument pairs that mean offset pagination, in lookup order."""

UNIX_TYPES = frozenset({"Int", "Float", "Long", "BigInt"})
"""Declared types of a window variable that take Unix seconds (others take ISO 8601)."""

_OFFSET_SHOWN = "limit/offset, first/skip, take/skip or limit/skip"
_RELAY_SHOWN = "`pageInfo { hasNextPage endCursor }` with first/after"


@frozen
class RelayKeys:
    """Response keys of a connection's ``pageInfo`` and its two fields."""

    page_info: str
    has_next_page: str
    end_cursor: str


@frozen
class Pagination:
    """What a paginated field takes and answers.

    ``items`` is the key from the field's value to the record list (``None`` when the
    value is the list itself); ``node_key`` is set when each item wraps its record
    (Relay ``edges { node }``).
    """

    style: PaginationStyle
    size_variable: str
    position_variable: str
    items: str | None = None
    node_key: str | None = None
    relay: RelayKeys | None = None
    total_key: str | None = None


@frozen
class WindowVariables:
    """The variables that restrict the list to a creation-time window.

    ``lower`` is the inclusive bound (``created >= lower``), ``upper`` the exclusive one
    (``created < upper``); an open side is sent as null. ``unix`` holds the ones declared
    as numbers (:data:`UNIX_TYPES`), which are sent as Unix seconds; the others are sent
    as ISO 8601 date-times in UTC.
    """

    lower: str
    upper: str
    unix: frozenset[str] = frozenset()


@frozen
class QueryPlan:
    """How to page through one query: the document, what to send, where to read."""

    document: DocumentNode
    operation_name: str | None
    path: tuple[str, ...]
    pagination: Pagination
    since_variable: str | None
    required: frozenset[str]
    """Variables the query needs a value for (non-null without a default)."""
    declared: frozenset[str]
    window: WindowVariables | None = None
    """Set when the entity can be walked as creation-time windows."""

    @property
    def style(self) -> PaginationStyle:
        return self.pagination.style

    @property
    def where(self) -> str:
        return ".".join(self.path)


def analyze(
    query: str,
    path: Sequence[str],
    *,
    operation_name: str | None = None,
    since_variable: str | None = None,
    record_fields: Sequence[str] = (),
    window_variables: tuple[str, str] | None = None,
) -> QueryPlan:
    """Decide the pagination style of ``query`` for the list at ``path``.

    ``record_fields`` (the id and timestamp fields) must be selected on each record.
    ``window_variables`` (inclusive lower, exclusive upper creation-time bound) must be
    declared, nullable and bound to arguments of the paginated field, which must be a
    Relay connection. Raises :class:`ConfigurationError` naming what was looked for and
    where.
    """
    if not path:
        raise ConfigurationError("the path to the list inside the result is empty")
    path = tuple(path)
    document = _parse(query)
    operation = _operation(document, operation_name)
    walker = _Walker(document)
    field = walker.follow(operation.selection_set, path)
    declared = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    where = ".".join(path)
    pagination = _detect(walker, field, where)
    for variable in (pagination.size_variable, pagination.position_variable):
        _require_declared(declared, variable, where)
    if pagination.style is PaginationStyle.RELAY:
        _check_nullable(declared, pagination.position_variable, "the first page sends it as null")
    _check_records(walker, field, path, pagination, record_fields)
    since = _since(declared, since_variable)
    window = None
    if window_variables is not None:
        window = _window(declared, field, where, pagination, since, window_variables)
    return QueryPlan(
        document=document,
        operation_name=operation.name.value if operation.name else None,
        path=path,
        pagination=pagination,
        since_variable=since,
        required=frozenset(name for name, node in declared.items() if _required(node)),
        declared=frozenset(declared),
        window=window,
    )


def _parse(query: str) -> DocumentNode:
    try:
        return parse(query)
    except GraphQLSyntaxError as exc:
        raise ConfigurationError(f"the query is not valid GraphQL: {exc.message}") from exc


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is not None:
        operations = [op for op in operations if op.name is not None and op.name.value == name]
        if not operations:
            raise ConfigurationError(f"the document has no operation named {name!r}")
    if len(operations) != 1:
        raise ConfigurationError(
            f"the document holds {len(operations)} operations: name the one to run (operation_name)"
        )
    operation = operations[0]
    if operation.operation is not OperationType.QUERY:
        raise ConfigurationError(
            f"the operation is a {operation.operation.value}, not a query: a sync only reads"
        )
    return operation


class _Walker:
    """Reads selection sets with fragments (inline and named) flattened in."""

    def __init__(self, document: DocumentNode) -> None:
        self._fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }

    def fields(self, selection_set: SelectionSetNode | None) -> list[FieldNode]:
        return list(self._flatten(selection_set, frozenset()))

    def _flatten(
        self, selection_set: SelectionSetNode | None, seen: frozenset[str]
    ) -> Iterator[FieldNode]:
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                yield selection
            elif isinstance(selection, InlineFragmentNode):
                yield from self._flatten(selection.selection_set, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self._fragments.get(name)
                if fragment is None:
                    raise ConfigurationError(f"the query spreads unknown fragment {name!r}")
                if name not in seen:  # a cycle is invalid GraphQL; do not loop on it
                    yield from self._flatten(fragment.selection_set, seen | {name})

    def follow(self, selection_set: SelectionSetNode, path: tuple[str, ...]) -> FieldNode:
        """The field at ``path`` (response keys), with an error naming the missing step."""
        field: FieldNode | None = None
        for depth, key in enumerate(path):
            options = self.fields(selection_set if field is None else field.selection_set)
            found = next((f for f in options if response_key(f) == key), None)
            if found is None:
                parent = ".".join(path[:depth]) or "the query root"
                shown = ", ".join(sorted({response_key(f) for f in options})) or "nothing"
                raise ConfigurationError(
                    f"path {'.'.join(path)!r}: {parent} has no field {key!r} (it selects {shown})"
                )
            field = found
        assert field is not None  # the path is not empty
        return field

    def child(self, field: FieldNode, name: str) -> FieldNode | None:
        """A selected sub-field by its schema name (aliases are allowed)."""
        return next((f for f in self.fields(field.selection_set) if f.name.value == name), None)


def response_key(field: FieldNode) -> str:
    return field.alias.value if field.alias else field.name.value


def _bound(field: FieldNode) -> dict[str, str]:
    """Arguments of ``field`` bound to variables: argument name -> variable name."""
    return {
        arg.name.value: arg.value.name.value
        for arg in field.arguments or ()
        if isinstance(arg.value, VariableNode)
    }


def _detect(walker: _Walker, field: FieldNode, where: str) -> Pagination:
    bound = _bound(field)
    if walker.child(field, "pageInfo") is not None:
        # pageInfo is an explicit Relay opt-in: never fall back to offset arguments.
        return _relay(walker, field, where, bound)
    for size, position in OFFSET_ARGUMENTS:
        if size in bound and position in bound:
            return Pagination(PaginationStyle.OFFSET, bound[size], bound[position])
    raise ConfigurationError(_no_style(field, where, bound))


def _no_style(field: FieldNode, where: str, bound: Mapping[str, str]) -> str:
    arguments = [a.name.value for a in field.arguments or ()]
    shown = (
        ", ".join(f"{a}: ${bound[a]}" if a in bound else f"{a} (not a variable)" for a in arguments)
        or "none"
    )
    hint = ""
    if field.name.value in ("nodes", "edges", "pageInfo"):
        hint = "; point the path at the connection field itself, not at its nodes/edges"
    return (
        f"no pagination found on field {where}: looked for Relay cursor pagination "
        f"({_RELAY_SHOWN}) and offset pagination ({_OFFSET_SHOWN} bound to variables); "
        f"its arguments are: {shown}{hint}"
    )


def _relay(walker: _Walker, field: FieldNode, where: str, bound: Mapping[str, str]) -> Pagination:
    for argument in ("after", "first"):
        if argument not in bound:
            backward = " (backward pagination with last/before is not supported)"
            raise ConfigurationError(
                f"field {where} selects pageInfo (Relay cursor pagination) but binds no "
                f"variable to its {argument!r} argument: write `{argument}: ${argument}` "
                f"and declare the variable{backward if argument == 'after' else ''}"
            )
    items, node_key = _relay_records(walker, field, where)
    total = walker.child(field, "totalCount")
    return Pagination(
        PaginationStyle.RELAY,
        size_variable=bound["first"],
        position_variable=bound["after"],
        items=items,
        node_key=node_key,
        relay=_page_info(walker, field, where),
        total_key=response_key(total) if total is not None else None,
    )


def _page_info(walker: _Walker, field: FieldNode, where: str) -> RelayKeys:
    info = walker.child(field, "pageInfo")
    assert info is not None  # only called when pageInfo is selected
    has_next, end = walker.child(info, "hasNextPage"), walker.child(info, "endCursor")
    if has_next is None or end is None:
        missing = " and ".join(
            n for n, f in (("hasNextPage", has_next), ("endCursor", end)) if f is None
        )
        raise ConfigurationError(
            f"field {where} selects pageInfo but not {missing}: Relay pagination needs "
            "`pageInfo { hasNextPage endCursor }`"
        )
    return RelayKeys(response_key(info), response_key(has_next), response_key(end))


def _relay_records(walker: _Walker, field: FieldNode, where: str) -> tuple[str, str | None]:
    nodes = walker.child(field, "nodes")
    if nodes is not None:
        return response_key(nodes), None
    edges = walker.child(field, "edges")
    node = walker.child(edges, "node") if edges is not None else None
    if edges is None or node is None:
        raise ConfigurationError(
            f"field {where} is a Relay connection but selects neither `nodes {{ ... }}` "
            "nor `edges { node { ... } }`: there is nowhere to read records from"
        )
    return response_key(edges), response_key(node)


def _record_selection(walker: _Walker, field: FieldNode, pagination: Pagination) -> list[FieldNode]:
    target = field
    for key in (pagination.items, pagination.node_key):
        if key is not None:
            target = next(f for f in walker.fields(target.selection_set) if response_key(f) == key)
    return walker.fields(target.selection_set)


def _check_records(
    walker: _Walker,
    field: FieldNode,
    path: tuple[str, ...],
    pagination: Pagination,
    record_fields: Sequence[str],
) -> None:
    selected = {response_key(f) for f in _record_selection(walker, field, pagination)}
    missing = [name for name in record_fields if name not in selected]
    if missing:
        keys = (k for k in (pagination.items, pagination.node_key) if k)
        raise ConfigurationError(
            f"records at {'.'.join((*path, *keys))} do not select "
            f"{', '.join(map(repr, missing))} (they select "
            f"{', '.join(sorted(selected)) or 'nothing'})"
        )


def _required(node: VariableDefinitionNode) -> bool:
    return isinstance(node.type, NonNullTypeNode) and node.default_value is None


def _require_declared(
    declared: Mapping[str, VariableDefinitionNode], variable: str, where: str
) -> None:
    if variable not in declared:
        raise ConfigurationError(
            f"field {where} uses variable ${variable}, which the operation does not declare"
        )


def _check_nullable(
    declared: Mapping[str, VariableDefinitionNode], variable: str, why: str
) -> None:
    if _required(declared[variable]):
        raise ConfigurationError(
            f"variable ${variable} is declared non-null, but {why}: declare it nullable"
        )


def _since(declared: Mapping[str, VariableDefinitionNode], configured: str | None) -> str | None:
    """The incremental filter variable: the configured name, else a declared ``$since``."""
    if configured is not None and configured not in declared:
        raise ConfigurationError(
            f"since_variable {configured!r} is not declared by the operation "
            f"(it declares {', '.join(sorted(declared)) or 'no variables'})"
        )
    name = configured or ("since" if "since" in declared else None)
    if name is not None:
        _check_nullable(declared, name, "a full sync sends no value for it")
    return name


def _window(
    declared: Mapping[str, VariableDefinitionNode],
    field: FieldNode,
    where: str,
    pagination: Pagination,
    since: str | None,
    names: tuple[str, str],
) -> WindowVariables:
    """Check the creation-time window variables against the operation and the field."""
    lower, upper = names
    if pagination.style is not PaginationStyle.RELAY:
        raise ConfigurationError(
            f"window_variables need Relay cursor pagination ({_RELAY_SHOWN}), but field "
            f"{where} paginates by {pagination.style.value}: offsets inside a window shift "
            "when records are deleted"
        )
    if lower == upper:
        raise ConfigurationError(f"window_variables name ${lower} twice: give two variables")
    taken = {pagination.size_variable, pagination.position_variable, since} - {None}
    bound = set(_bound(field).values())
    arguments = ", ".join(
        f"{a.name.value}: ${a.value.name.value}"
        if isinstance(a.value, VariableNode)
        else f"{a.name.value} (not a variable)"
        for a in field.arguments or ()
    )
    problems: list[str] = []
    for role, name in (("lower (created >=)", lower), ("upper (created <)", upper)):
        if name in taken:
            problems.append(f"${name} ({role}) is already the pagination or since variable")
        elif name not in declared:
            problems.append(f"${name} ({role}) is not declared by the operation")
        elif name not in bound:
            problems.append(f"${name} ({role}) is not bound to an argument of field {where}")
        elif isinstance(declared[name].type, NonNullTypeNode):
            problems.append(
                f"${name} ({role}) is declared non-null, but an open side of a window is "
                "sent as null: declare it nullable"
            )
    if problems:
        raise ConfigurationError(
            f"window_variables for the creation-time windows of {where}: {'; '.join(problems)} "
            f"(the operation declares {', '.join(f'${v}' for v in sorted(declared)) or 'none'}; "
            f"the field's arguments are {arguments or 'none'})"
        )
    unix = frozenset(n for n in names if _type_name(declared[n]) in UNIX_TYPES)
    return WindowVariables(lower, upper, unix)


def _type_name(node: VariableDefinitionNode) -> str | None:
    return node.type.name.value if isinstance(node.type, NamedTypeNode) else None
