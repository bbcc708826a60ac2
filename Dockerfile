# presence in a container: SQLite on the /data volume, listening on 0.0.0.0:8080.
#   docker build -t presence .
#   docker run -d -p 8080:8080 -v presence-data:/data --env-file presence.env presence
# The image sets PRESENCE_DATABASE_URL and PRESENCE_HOST itself; an --env-file's values would win over
# them (docs/deploying.md, "Docker", makes presence.env from the example without those two).

# Build: the wheel of presence and of every dependency, so the runtime needs no compiler and no index.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY presence ./presence
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime: the installed wheels and nothing else, run by an unprivileged user.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin presence \
    && mkdir /data && chown presence:presence /data
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels /wheels/presence-*.whl
ENV PRESENCE_DATABASE_URL=sqlite+aiosqlite:////data/presence.db \
    PRESENCE_HOST=0.0.0.0 \
    PRESENCE_PORT=8080 \
    PYTHONUNBUFFERED=1
# A new named volume takes /data's owner from the image, so the presence user can write it.
VOLUME /data
WORKDIR /data
# Numeric, so that a runtime (Kubernetes' runAsNonRoot) can tell it is not root: 10001 is presence.
USER 10001:10001
EXPOSE 8080
# Ready, not only alive: /readyz is 503 while the database cannot take a commit. urllib raises on a 503.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PRESENCE_PORT', '8080') + '/readyz', timeout=4)"]
ENTRYPOINT ["presence"]
CMD ["serve"]
