# syntax=docker/dockerfile:1
# movierec images, one file, three targets (`make image` builds them all; docs/architecture.md,
# "Containers"):
#   service       the recommendation service (`movierec serve`), small: Python + sanic,
#                 confluent-kafka and prometheus-client; serving files come from a mounted volume
#   pipeline      everything else (Kafka broker jars + Java 17, Airflow, Spark, the simulator):
#                 the image compose.yaml runs the broker, the catalog API and Airflow from
#   loadbalancer  Debian's HAProxy, in front of the service replicas
# The last stage is `service`, so a plain `podman build .` gives the service image.
#
# No image registry is reachable where this was made: the base is Debian bookworm made by
# debootstrap (containers/base-image.sh). With a registry: --build-arg BASE_IMAGE=debian:bookworm.
ARG BASE_IMAGE=localhost/debian:bookworm

# --- the base every image shares: Debian and the one non-root user --------------------------------
FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
# Numeric uid/gid, so a runtime can check runAsNonRoot; every image runs as this user.
RUN groupadd --system --gid 10001 movierec \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/movierec --no-create-home \
       --shell /usr/sbin/nologin movierec \
    && install -d -o 10001 -g 10001 -m 0755 /var/lib/movierec

# --- Debian's Python 3.11 (the project's version), nothing else -------------------------------
FROM base AS python
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log

# --- a virtualenv builder (pip and venv exist only here) -----------------------------------------
FROM python AS venv
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
WORKDIR /build
COPY requirements.txt constraints.txt containers/service-packages.txt ./

# The service's packages: names in containers/service-packages.txt, every version (theirs and
# their dependencies') fixed by constraints.txt, wheels only. The `cacerts` secret is the build
# machine's CA bundle (containers/build-images.sh passes it): where HTTPS goes through an
# intercepting proxy, its CA is in there; a secret is mounted for the one step, never stored.
FROM venv AS service-venv
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=cacerts \
    if [ -s /run/secrets/cacerts ]; then export PIP_CERT=/run/secrets/cacerts; fi \
    && grep -v '^#' service-packages.txt | xargs /opt/venv/bin/pip install --only-binary=:all: -c constraints.txt \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --quiet --yes pip setuptools

# The pipeline's: requirements.txt and constraints.txt whole, as `make install` does.
FROM venv AS pipeline-venv
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=cacerts \
    if [ -s /run/secrets/cacerts ]; then export PIP_CERT=/run/secrets/cacerts; fi \
    && /opt/venv/bin/pip install --progress-bar off -r requirements.txt -c constraints.txt

# --- the sources, byte-compiled now (at run time the root filesystem is read-only) -------------
FROM python AS sources
WORKDIR /app
COPY pyproject.toml airflow.cfg ./
COPY movierec movierec
COPY server server
COPY simulator simulator
COPY spark_jobs spark_jobs
COPY dags dags
COPY expectations expectations
COPY containers/movierec.sh containers/foreground.sh containers/healthcheck.py /app/bin/
RUN python3 -m compileall -q /app

# --- the Kafka broker's jars, resolved by Maven once at build time (the broker never runs mvn) ----
FROM python AS kafka-jars
RUN apt-get update \
    && apt-get install -y --no-install-recommends maven openjdk-17-jdk-headless \
    && rm -rf /var/lib/apt/lists/*
COPY movierec/ops/broker/pom.xml /build/pom.xml
ARG KAFKA_VERSION=4.1.1
# Java reads its own trust store: the build machine's CAs go in one certificate per file
# (update-ca-certificates then rebuilds Java's cacerts). This stage is thrown away.
RUN --mount=type=secret,id=cacerts \
    if [ -s /run/secrets/cacerts ]; then \
      cd /usr/local/share/ca-certificates \
      && csplit --quiet --elide-empty-files --prefix=build-ca- --suffix-format='%03d.crt' \
         /run/secrets/cacerts '/-----BEGIN CERTIFICATE-----/' '{*}' \
      && update-ca-certificates >/dev/null; \
    fi \
    && mkdir -p /opt/kafka/${KAFKA_VERSION}/libs \
    && mvn -B -q -f /build/pom.xml dependency:copy-dependencies -DincludeScope=runtime \
       -Dkafka.version=${KAFKA_VERSION} -DoutputDirectory=/opt/kafka/${KAFKA_VERSION}/libs \
    && (cd /opt/kafka/${KAFKA_VERSION}/libs && ls *.jar > .resolved) \
    && rm -rf /root/.m2

# --- pipeline: broker, catalog API, Airflow, Spark jobs -----------------------------------------
FROM python AS pipeline
RUN apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
COPY --from=pipeline-venv /opt/venv /opt/venv
COPY --from=kafka-jars /opt/kafka /opt/kafka
COPY --from=sources /app /app
RUN ln -s /app/bin/movierec.sh /usr/local/bin/movierec \
    && ln -s /app/bin/foreground.sh /usr/local/bin/movierec-foreground
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app MOVIEREC_HOME=/var/lib/movierec \
    MOVIEREC_KAFKA_CACHE=/opt/kafka
LABEL org.opencontainers.image.title="movierec pipeline"
USER 10001:10001
VOLUME /var/lib/movierec
ENTRYPOINT ["movierec"]
CMD ["config"]

# --- loadbalancer: HAProxy from Debian with containers/haproxy.cfg (mount another over it) -------
FROM base AS loadbalancer
RUN apt-get update \
    && apt-get install -y --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /var/log/apt /var/log/dpkg.log
COPY containers/haproxy.cfg /usr/local/etc/haproxy/haproxy.cfg
USER 10001:10001
# -W: master-worker (a reload never drops the listening socket); -db: stay in the foreground.
ENTRYPOINT ["haproxy", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]

# --- service: the recommendation service (the default target) ---------------------------------
FROM python AS service
COPY --from=service-venv /opt/venv /opt/venv
COPY --from=sources /app/movierec /app/movierec
COPY --from=sources /app/server /app/server
COPY --from=sources /app/bin/movierec.sh /usr/local/bin/movierec
COPY --from=sources /app/bin/healthcheck.py /usr/local/bin/movierec-healthcheck
WORKDIR /app
# Settings are the same MOVIEREC_* variables as outside a container; these are only the
# container's defaults (all state under the volume, listen on every interface of the container).
ENV PATH=/opt/venv/bin:$PATH PYTHONPATH=/app MOVIEREC_HOME=/var/lib/movierec \
    MOVIEREC_SERVER_HOST=0.0.0.0 MOVIEREC_SERVER_PORT=8082 MOVIEREC_SERVER_WORKERS=2
# (The revision label, org.opencontainers.image.revision, is the build's --label: buildah's layer
# cache does not tell a LABEL apart by its build-arg value.)
LABEL org.opencontainers.image.title="movierec recommendation service"
USER 10001:10001
EXPOSE 8082
# Healthy = /healthz says 200: a worker answers and a valid serving file is open.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 CMD ["movierec-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["movierec"]
CMD ["serve"]
