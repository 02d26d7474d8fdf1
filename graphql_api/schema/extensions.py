"""Schema extensions: GraphQL's abuse limits, error masking, and integers kept strict."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

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
    ParserCache,
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
# graphql-core's validation was most of a GraphQL request's CPU. A longer document is
# validated every time rather than kept.
CACHED_DOCUMENTS = 256
MAX_CACHED_DOCUMENT = 8_192  # characters


class Validations:
    """The validation errors of recent documents (an LRU of `CACHED_DOCUMENTS`), by their
    text and the rules in force. A validation also left about a thousand objects in
    reference cycles for the cyclic collector (graphql-core's visitors): a collection every
    few requests."""

    def __init__(self) -> None:
        self.found: OrderedDict[tuple[str, tuple[type[ASTValidationRule], ...]], list[GraphQLError]]
        self.found = OrderedDict()

    def errors(
        self,
        schema: GraphQLSchema,
        text: str,
        document: DocumentNode,
        rules: tuple[type[ASTValidationRule], ...],
    ) -> list[GraphQLError]:
        key = (text, rules)
        errors = self.found.get(key)
        if errors is not None:
            self.found.move_to_end(key)
            return list(errors)
        errors = _located(validate_document(schema, document, rules))
        if len(text) <= MAX_CACHED_DOCUMENT:
            self.found[key] = errors
            if len(self.found) > CACHED_DOCUMENTS:
                self.found.popitem(last=False)
        return list(errors)


class StrictIntVariables(SchemaExtension):
    """Refuse a JSON float (`1.0`, `1e3`) sent for an `Int` variable, or for an `Int` field
    of an input object variable, as REST refuses it with a 422.

    graphql-core coerces an integral float to `Int`, as graphql-js does (JavaScript has one
    number type); the GraphQL spec asks `Int` input coercion to accept integers only. This
    runs Strawberry's validation itself (so it does not run again), then checks
    the raw variables: a float where an `Int` goes is a request error naming the variable
    and the path inside it, and nothing executes."""

    def __init__(self, validations: Validations) -> None:
        super().__init__()
        self.validations = validations

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            schema = context.schema._schema
            rules = (*context.validation_rules, IntLiterals)
            if context.query:
                errors = self.validations.errors(schema, context.query, document, rules)
            else:
                errors = _located(validate_document(schema, document, rules))
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
    validations = Validations()
    found: list[Callable[[], SchemaExtension] | type[SchemaExtension]] = [
        lambda: AddValidationRules(list(limits)),
        lambda: MaxTokensLimiter(max_token_count=2000),
        lambda: ParserCache(maxsize=CACHED_DOCUMENTS),
        lambda: MaskErrors(should_mask_error=_mask),
        lambda: StrictIntVariables(validations),
    ]
    if production:
        found.append(DisableIntrospection)
    return found
