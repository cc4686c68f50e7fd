# One image for the web server and the workers (docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# PyPI's Linux torch wheel bundles CUDA, which the GPU worker needs. For a
# CPU-only image: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu
# torchvision's compiled operators need the torch they were built for: the two as a pair.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX=
RUN pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

COPY pyproject.toml README.md ./
COPY tracker/__init__.py tracker/__init__.py
COPY trainer/__init__.py trainer/__init__.py
COPY trainwatch/__init__.py trainwatch/__init__.py
RUN pip install -e '.[server]'

COPY . .
# Static files are collected at build time and served by WhiteNoise.
ENV STATIC_ROOT=/app/staticfiles
RUN DATABASE_URL=postgresql://build@localhost/build REDIS_URL=redis://localhost:6379/0 SECRET_KEY=build-only \
    ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput -v 0

RUN useradd --create-home trainwatch && chown -R trainwatch /app
USER trainwatch
EXPOSE 8000
CMD ["gunicorn", "tracker.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
