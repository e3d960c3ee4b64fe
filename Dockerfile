# liveserver against an external Redis (REDIS_URL); see docker-compose.yml.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY liveserver ./liveserver
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

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
