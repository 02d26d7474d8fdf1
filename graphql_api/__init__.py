"""The API service: GraphQL (Strawberry), REST and WebSockets on one FastAPI app."""
