"""The matching engine: a pure core (`book`, `matching`, `snapshot`) and a service loop."""

from .core_import import import_source, source_reason

if source_reason() is not None:
    import_source()
