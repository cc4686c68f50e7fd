# Two images from one file (docker-compose.yml builds both):
#   web     gunicorn + Django, and the migrations: requirements/web.txt, no torch
#   worker  a Celery worker (and the one beat): torch and torchvision as the locked pair, then
#           requirements/worker.txt
# Each installs its lock file, then this project with --no-deps, so an image holds exactly
# what its lock says.
FROM python:3.11-slim AS base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --create-home trainwatch

FROM base AS web
COPY requirements/web.txt requirements/web.txt
RUN pip install -r requirements/web.txt
COPY . .
RUN pip install --no-deps -e .
# Static files are collected at build time and served by WhiteNoise.
ENV STATIC_ROOT=/app/staticfiles
RUN DATABASE_URL=postgresql://build@localhost/build REDIS_URL=redis://localhost:6379/0 SECRET_KEY=build-only \
    ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput -v 0 \
    && chown -R trainwatch /app
USER trainwatch
EXPOSE 8000
CMD ["gunicorn", "tracker.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]

FROM base AS worker
# PyPI's Linux torch wheel bundles CUDA, which the GPU worker needs. For a CPU-only image:
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu worker
ARG TORCH_INDEX=
COPY requirements/torch.txt requirements/worker.txt requirements/
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} -r requirements/torch.txt \
    && pip install -r requirements/worker.txt
COPY . .
RUN pip install --no-deps -e . && chown -R trainwatch /app
USER trainwatch
CMD ["celery", "-A", "tracker", "worker", "-Q", "cpu", "--concurrency", "1", "--loglevel", "INFO"]
