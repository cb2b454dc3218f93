# syntax=docker/dockerfile:1
#
# One image for every process: web (the default CMD), worker, beat and the migrate one-shot
# only differ by their command (see docker-compose.yml and deploy/kubernetes/).
#
#   docker build -t opsportal .

ARG PYTHON_VERSION=3.11

# --- build: the dependencies and the project in a virtualenv -----------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
COPY pyproject.toml ./
COPY opsportal ./opsportal
COPY apps ./apps
RUN pip install .

# --- runtime -----------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime

# pg_dump/pg_restore must be at least as new as the servers they back up; Debian's own
# client is 15 (no zstd), so the client comes from the PostgreSQL project's repository.
ARG POSTGRES_CLIENT_MAJOR=16

RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    install -d /usr/share/postgresql-common/pgdg; \
    curl -fsSL -o /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc \
        https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
    echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt bookworm-pgdg main" \
        > /etc/apt/sources.list.d/pgdg.list; \
    apt-get update; \
    apt-get install -y --no-install-recommends "postgresql-client-${POSTGRES_CLIENT_MAJOR}"; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 opsportal; \
    useradd --system --uid 10001 --gid opsportal --home-dir /app \
        --shell /usr/sbin/nologin opsportal

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app

COPY --from=build /opt/venv /opt/venv

# The project runs from /app (PYTHONPATH puts it before the installed copy) so that
# settings.BASE_DIR finds templates/, static/ and var/ beside manage.py.
WORKDIR /app
COPY manage.py ./
COPY opsportal ./opsportal
COPY apps ./apps
COPY templates ./templates
COPY static ./static

# Settings refuse to load without a strong SECRET_KEY when DEBUG is off; collectstatic needs
# no real secret, so it gets throwaway values that never leave this layer. DEBUG stays off
# so that the hashed manifest whitenoise serves in production is the one built here.
# var/ (collected static files, beat schedule, local backups) belongs to the app user,
# except the collected static files, which nothing at run time should change.
RUN set -eux; \
    SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    FIELD_ENCRYPTION_KEY="$(python -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())')" \
        python manage.py collectstatic --noinput; \
    mkdir -p /app/var; \
    find /app/var -path /app/var/staticfiles -prune -o -exec chown 10001:10001 {} +

# Numeric, so that Kubernetes can check runAsNonRoot.
USER 10001:10001

EXPOSE 8000

CMD ["gunicorn", "opsportal.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
