# The image docker-compose.yml runs for the migration one-shot, the worker and the HTTP API.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY preflight ./preflight
COPY migrations ./migrations
RUN pip install --no-cache-dir '.[postgres,server]'
USER nobody
ENTRYPOINT ["preflight"]
CMD ["--help"]
