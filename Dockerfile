# The explorer as a container: gunicorn serving interp-app over a mounted checkpoint folder.
# Stage 1 builds the virtual environment from the lock file; stage 2 is the slim runtime
# (no pip, uv or compilers), run as an unprivileged user.
FROM python:3.12-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never PIP_NO_CACHE_DIR=1
# The same uv as the Makefile (UV_VERSION); --no-dev leaves out the dev dependency group.
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
# Dependencies first, in their own layer: rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project --no-editable
COPY README.md ./
COPY training ./training
COPY interp_app ./interp_app
RUN uv sync --locked --no-dev --no-editable

FROM python:3.12-slim
RUN useradd --create-home --uid 1000 explorer \
    && mkdir /checkpoints \
    && chown explorer:explorer /checkpoints
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    INTERP_HOST=0.0.0.0 \
    INTERP_PORT=8050 \
    INTERP_ROOT=/checkpoints \
    INTERP_TRAIN=0
USER 1000:1000
WORKDIR /home/explorer
EXPOSE 8050
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['INTERP_PORT'] + '/healthz', timeout=4)"]
CMD ["interp-app"]
