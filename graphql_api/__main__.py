"""`python -m graphql_api`: serve the API on API_HOST:API_PORT, behind the edge's limits."""

from shared.config import Settings
from shared.logs import configure

from .edge.server import serve

settings = Settings.from_env()
configure("api", settings.log_level)
serve(settings)
