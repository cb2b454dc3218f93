# Sourced by scripts/test.sh and scripts/bench.sh: the real services and the settings a run
# of the portal outside production needs (plain HTTP on loopback, fresh random secrets).
eval "$(scripts/services.sh env)"
export DEBUG=false
export HTTPS_ONLY=false
export SECRET_KEY="$(.venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(64))')"
export FIELD_ENCRYPTION_KEY="$(.venv/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
export EMAIL_BACKEND=django.core.mail.backends.locmem.EmailBackend
export DJANGO_ALLOW_ASYNC_UNSAFE=true  # Playwright's sync API runs an event loop in the test thread
export OPSPORTAL_VAR_DIR="$PWD/var"
export CELERY_QUEUE="opsportal-test-$$"
