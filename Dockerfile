# liveserver against an external Redis (REDIS_URL); see docker-compose.yml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY liveserver ./liveserver
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# The test image: `docker build --target test -t liveserver-test . && docker run --rm liveserver-test`
# runs the whole suite, browser tests included (Debian's Chromium, with the CJK and emoji fonts
# the pages' screenshots need).
FROM python:3.11-slim AS test
RUN apt-get update -q && apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk \
        fonts-noto-color-emoji && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir -e '.[test]'
CMD ["python", "-m", "pytest"]

# The server (the last stage: what `docker build .` and docker-compose.yml build).
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 liveserver
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER liveserver
WORKDIR /home/liveserver
EXPOSE 8080
# REDIS_URL and LIVESERVER_SECRET come from the environment; SIGTERM drains (close 1012) then exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz').status != 200)"
ENTRYPOINT ["liveserver", "serve", "--host", "0.0.0.0", "--port", "8080"]
