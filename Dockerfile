# One image for every aispend process: exporters, gateway, actuator, demo services.
# docker-compose.yml runs it with a different command per service.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY aispend ./aispend
RUN pip install . && rm -rf /src

# Unprivileged user; state (throttle table, actuator SQLite) lives in a volume here.
RUN useradd --system --uid 10001 --home-dir /var/lib/aispend --create-home aispend
USER aispend
WORKDIR /var/lib/aispend

EXPOSE 9110 9111 9112 9113 9120 9180 9190 9195
ENTRYPOINT ["aispend"]
CMD ["--help"]
