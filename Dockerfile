# mailroom for production: `collector | sender` supervised by `mailroom run`.
#   docker build -t mailroom .
#   docker run --rm --env-file mailroom.env -v mailroom-output:/app/output --stop-timeout 70 mailroom
# (a stop takes up to 3 x `mailroom run --grace`, 20 s by default: give it more than 60 s)
# See docs/how-to/deploy.md ("Docker") for the environment it needs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The package with its pipeline extra (the collector, the sender and the operator commands;
# no test or demo extras); the build directory is removed afterwards.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY mailroom ./mailroom
COPY collector ./collector
COPY sender ./sender
COPY migrations ./migrations
COPY sql ./sql
COPY templates ./templates
RUN pip install '.[pipeline]' && rm -rf /build

COPY docker/entrypoint /usr/local/bin/mailroom-entrypoint

# An unprivileged user owns only the working directory, where the sender keeps its
# journal, deliveries and rejects (MAILROOM_SES_OUTPUT_PATH): mount a volume there.
RUN useradd --system --uid 10001 --user-group --home-dir /app --create-home --shell /usr/sbin/nologin mailroom \
    && mkdir -p /app/output && chown mailroom:mailroom /app/output
USER 10001:10001
WORKDIR /app
ENV MAILROOM_SES_OUTPUT_PATH=/app/output
VOLUME ["/app/output"]

# `mailroom run` exits non-zero when the collector or the sender dies (the orchestrator
# restarts the container) and stops both in order on SIGTERM (`docker stop`).
STOPSIGNAL SIGTERM
ENTRYPOINT ["mailroom-entrypoint"]
CMD ["run"]
