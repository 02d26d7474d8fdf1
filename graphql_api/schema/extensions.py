"""Schema extensions: GraphQL's abuse limits, error masking, and integers kept strict."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInt,
    GraphQLList,
    GraphQLSchema,
    ListValueNode,
    ObjectValueNode,
    ValidationRule,
    ValueNode,
    get_nullable_type,
    parse,
    print_ast,
)
from graphql.utilities import get_operation_ast, type_from_ast
from graphql.validation import ASTValidationRule
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.schema import validate_document  # Strawberry's rules included

from ..ports import Unavailable
from ..security import Unauthenticated


def _mask(error: GraphQLError) -> bool:
    """Hide internal errors of the resolvers; keep what a client can act on (bad arguments,
    auth, retry). An error without a path comes from parsing or validation, about the
    client's own document (a 5000-digit Int literal, say): never masked."""
    original = error.original_error
    return (
        original is not None
        and error.path is not None
        and not isinstance(original, GraphQLError | Unavailable | Unauthenticated)
    )


class IntLiterals(ValidationRule):
    """A list or an object literal written where an Int goes, reported at the literal.

    graphql-core refuses them too, but without a location, so the client cannot tell which
    argument was wrong; its unlocated error is then dropped (`_located`)."""

    def enter_list_value(self, node: ListValueNode, *_: object) -> None:
        self._check(node, self.context.get_parent_input_type())

    def enter_object_value(self, node: ObjectValueNode, *_: object) -> None:
        self._check(node, self.context.get_input_type())

    def _check(self, node: ValueNode, expected: GraphQLInputType | None) -> None:
        if expected is not None and get_nullable_type(expected) is GraphQLInt:
            message = f"Int cannot represent non-integer value: {print_ast(node)}"
            self.report_error(GraphQLError(message, node))


def _located(errors: list[GraphQLError]) -> list[GraphQLError]:
    """Drop graphql-core's unlocated twin of an error `IntLiterals` reported with one."""
    located = {e.message for e in errors if e.locations}
    return [e for e in errors if e.locations or e.message not in located]


# Documents told apart by their text: parsed and validated once each while they stay among
# the most recent ones. Clients send the same few documents with new variables, and
# graphql-core's parse and validation were most of a GraphQL request's CPU. A parsed
# document keeps its whole token chain (about 600 bytes a token), so only short documents
# are kept: at most 64 of 2,048 characters, about 35 MB (tracemalloc) if every one were as
# dense as the 2,000-token limit allows; a longer one is parsed and validated every time.
CACHED_DOCUMENTS = 64
MAX_CACHED_DOCUMENT = 2_048  # characters

Rules = tuple[type[ASTValidationRule], ...]


class _Known:
    __slots__ = ("document", "valid")

    def __init__(self, document: DocumentNode) -> None:
        self.document = document
        self.valid: set[Rules] = set()  # the rules it passed


class Documents:
    """Recent short documents by their text (and the parse options): each parsed once, and
    found valid once for the rules in force. A validation also left about a thousand objects
    in reference cycles for the cyclic collector (graphql-core's visitors, the lexer's
    tokens linked both ways): a collection every few requests."""

    def __init__(self) -> None:
        self.known: OrderedDict[tuple[str, tuple[tuple[str, object], ...]], _Known]
        self.known = OrderedDict()
        self.by_document: dict[int, _Known] = {}  # id of a known document (alive while known)

    def parsed(self, text: str, options: Mapping[str, object]) -> DocumentNode | None:
        """The document of `text`, parsed now or before; None when it does not parse (or
        passes the token limit): Strawberry then parses it again and answers the error as
        it answers any (over a WebSocket, a 4400 close or an error message)."""
        key = (text, tuple(sorted(options.items())))
        known = self.known.get(key)
        if known is not None:
            self.known.move_to_end(key)
            return known.document
        try:
            document = parse(text, **options)  # type: ignore[arg-type]
        except GraphQLError:
            return None
        if len(text) <= MAX_CACHED_DOCUMENT:
            self.known[key] = self.by_document[id(document)] = _Known(document)
            if len(self.known) > CACHED_DOCUMENTS:
                _, dropped = self.known.popitem(last=False)
                del self.by_document[id(dropped.document)]
        return document

    def errors(
        self, schema: GraphQLSchema, document: DocumentNode, rules: Rules
    ) -> list[GraphQLError]:
        """`document`'s validation errors under `rules`. That a known document passed is
        kept; a refused one is validated again each time (its errors, one per bad field,
        would be kept too, and a client fixes its document)."""
        known = self.by_document.get(id(document))
        if known is not None and known.document is not document:
            known = None  # (cannot be: a known document is alive, its id not reused)
        if known is not None and rules in known.valid:
            return []
        errors = _located(validate_document(schema, document, rules))
        if not errors and known is not None:
            known.valid.add(rules)
        return errors


class KnownDocuments(SchemaExtension):
    """Strawberry's parse, of a document seen recently (`Documents`) taken from there."""

    def __init__(self, documents: Documents) -> None:
        super().__init__()
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            context.graphql_document = self.documents.parsed(context.query, context.parse_options)
        yield


class StrictIntVariables(SchemaExtension):
    """Refuse a JSON float (`1.0`, `1e3`) sent for an `Int` variable, or for an `Int` field
    of an input object variable, as REST refuses it with a 422.

    graphql-core coerces an integral float to `Int`, as graphql-js does (JavaScript has one
    number type); the GraphQL spec asks `Int` input coercion to accept integers only. This
    runs Strawberry's validation itself (so it does not run again), then checks
    the raw variables: a float where an `Int` goes is a request error naming the variable
    and the path inside it, and nothing executes."""

    def __init__(self, documents: Documents) -> None:
        super().__init__()
        self.documents = documents

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            schema = context.schema._schema
            rules = (*context.validation_rules, IntLiterals)
            errors = self.documents.errors(schema, document, rules)
            if not errors:
                errors = _float_ints(schema, document, context.operation_name, context.variables)
            context.pre_execution_errors = errors
        yield


def _float_ints(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: dict[str, object] | None,
) -> list[GraphQLError]:
    operation = get_operation_ast(document, operation_name)
    if operation is None or not variables:
        return []
    errors = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        kind = type_from_ast(schema, definition.type)
        if name not in variables or kind is None:
            continue
        for path, value in _floats_for_ints(variables[name], kind, name):  # type: ignore[arg-type]
            errors.append(
                GraphQLError(
                    f"Variable '${name}' got invalid value {value!r} at '{path}'; "
                    f"Int cannot represent a non-integer value: {value!r}",
                    definition,
                )
            )
    return errors


def _floats_for_ints(
    value: object, kind: GraphQLInputType, path: str
) -> Iterator[tuple[str, object]]:
    """(path, value) of each float in `value` where `kind` expects an Int."""
    kind = get_nullable_type(kind)  # type: ignore[assignment]
    if isinstance(kind, GraphQLList):
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            yield from _floats_for_ints(item, kind.of_type, f"{path}[{i}]")
    elif isinstance(kind, GraphQLInputObjectType) and isinstance(value, dict):
        for field_name, field in kind.fields.items():
            if field_name in value:
                yield from _floats_for_ints(value[field_name], field.type, f"{path}.{field_name}")
    elif kind is GraphQLInt and isinstance(value, float):
        yield path, value


def extensions(production: bool) -> list[Callable[[], SchemaExtension] | type[SchemaExtension]]:
    """Factories, not instances: an extension holds its request's execution context, so
    concurrent requests must never share one.

    The depth and alias limits are validation rules that Strawberry's limiter extensions
    build as a new class per extension: taken from one instance of each here, every request
    adds the same two classes (and the validations they are part of can be kept), instead of
    building two classes a request, which the cyclic collector then had to free."""
    limits = (
        *QueryDepthLimiter(max_depth=8).validation_rules,
        *MaxAliasesLimiter(max_alias_count=15).validation_rules,
    )
    documents = Documents()
    found: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: AddValidationRules(list(limits)),
        lambda: MaxTokensLimiter(max_token_count=2000),
        lambda: KnownDocuments(documents),
        lambda: MaskErrors(should_mask_error=_mask),
        lambda: StrictIntVariables(documents),
    ]
    if production:
        found.append(DisableIntrospection)
    return found
