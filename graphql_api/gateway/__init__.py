"""Adapters of the `EngineGateway` port (`graphql_api.ports`)."""
