"""`python -m graphql_api`: serve the API with uvicorn on API_HOST:API_PORT."""

import uvicorn

from shared.config import Settings
from shared.logs import configure

settings = Settings.from_env()
configure("api", settings.log_level)
uvicorn.run(
    "graphql_api.bootstrap:create_app",
    factory=True,
    host=settings.api_host,
    port=settings.api_port,
    # uvicorn's loggers propagate to the JSON handler `configure` installed instead of getting
    # plain-text handlers of their own; below warning they log every connection.
    log_config=None,
    log_level="warning",
    access_log=False,
)
