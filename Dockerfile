# One image for every Python service; the command picks the service:
#   python -m engine | python -m archiver | python -m graphql_api
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements.lock ./
# Wheels of exactly the pinned versions in the lock, every download checked against its hashes
# (a dependency without a wheel for this platform compiles here, not in the final image).
RUN pip wheel --no-cache-dir --require-hashes --wheel-dir /wheels -r requirements.lock

# GraphiQL's and the OpenAPI UI's browser files, as `make web-assets` installs them: the npm
# tarballs pinned in web-assets.lock.json, each checked against its sha512.
FROM node:20-slim AS web
WORKDIR /src
COPY web-assets.lock.json ./
COPY tools/web_assets.mjs tools/
RUN node tools/web_assets.mjs --dest /web_vendor

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
COPY --from=build /wheels /wheels
# Those wheels and nothing else: no index, no dependency resolution.
RUN pip install --no-cache-dir --no-index --no-deps /wheels/*.whl && rm -rf /wheels
# The project runs from its source tree (the playground page is read beside the packages).
WORKDIR /app
COPY --chown=app shared shared
# The matching core from its source: .dockerignore leaves out what `make core` compiled.
COPY --chown=app engine engine
COPY --chown=app archiver archiver
COPY --chown=app store store
COPY --chown=app graphql_api graphql_api
COPY --chown=app web_playground web_playground
COPY --from=web --chown=app /web_vendor web_vendor
USER app
ENV DATA_DIR=/data PYTHONUNBUFFERED=1
CMD ["python", "-m", "graphql_api"]
