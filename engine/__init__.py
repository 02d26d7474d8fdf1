"""The matching engine: a pure core (`book`, `matching`, `snapshot`) and a service loop."""
