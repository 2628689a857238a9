# spendtrail: one image for every process (gateway, ingester, migrations, reports).
#   docker build -t spendtrail:0.1.0 .
#   docker run --rm spendtrail:0.1.0 --help
# See docs/deploy.md.
ARG PYTHON_VERSION=3.12

# -- build: the spendtrail wheel and the wheels of its dependencies ------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# [redis]: budget counters shared by replicas (--budget-counters redis).
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[redis]"

# -- runtime: the wheels installed, no compiler, no sources --------------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/spendtrail \
        --create-home --shell /usr/sbin/nologin spendtrail
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels "spendtrail[redis]"
ENV SPENDTRAIL_HOME=/var/lib/spendtrail \
    SPENDTRAIL_SPOOL_DIR=/var/lib/spendtrail/spool \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN install -d -o spendtrail -g spendtrail -m 0750 /var/lib/spendtrail/spool
# The journal: events wait here until they are in the ledger. It must outlive the container.
VOLUME ["/var/lib/spendtrail/spool"]
USER 10001:10001
WORKDIR /var/lib/spendtrail
EXPOSE 8787
ENTRYPOINT ["spendtrail"]
CMD ["--help"]
