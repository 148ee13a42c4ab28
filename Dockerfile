# The binderhub-service image.
#
# Online:  docker build -t binderhub-service .
# Offline: put wheels of the service and all its dependencies in ./wheels
#          (pip wheel . -w wheels) and build with
#          --build-arg PIP_OPTIONS="--no-index --find-links=/src/wheels" \
#          --build-arg PACKAGE=binderhub-service
#          from a base image that has python3 and python3-venv
#          (.ci/build-service-image does all of this).
#
# The service runs as uid 1000 from /srv/binderhub-service, and keeps its
# records in /srv/binderhub-service/data (BINDERHUB_SERVICE_DATA_DIR): mount a
# persistent volume there (the Helm chart does).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_OPTIONS=""
# What to install: the source (default), or the project's name to take its wheel.
ARG PACKAGE=/src
COPY . /src
RUN python3 -m venv /opt/binderhub-service \
 && /opt/binderhub-service/bin/pip install --no-cache-dir ${PIP_OPTIONS} "${PACKAGE}" \
 && /opt/binderhub-service/bin/pip uninstall --yes --quiet pip setuptools

FROM ${BASE_IMAGE}
# git (the git provider clones and resolves refs) and CA certificates; a base
# image that has them (the offline build's) needs no package index.
RUN if ! command -v git >/dev/null || [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
        apt-get update \
     && apt-get install --yes --no-install-recommends git ca-certificates \
     && rm -rf /var/lib/apt/lists/*; \
    fi
# No package installer in the runtime image (the python base image ships one).
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        python3 -m pip uninstall --yes --quiet pip setuptools wheel; \
    fi
COPY --from=build /opt/binderhub-service /opt/binderhub-service
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp binderhub-service \
 && install --directory --owner=1000 --group=1000 /srv/binderhub-service /srv/binderhub-service/data
WORKDIR /srv/binderhub-service
ENV PATH=/opt/binderhub-service/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    BINDERHUB_SERVICE_DATA_DIR=/srv/binderhub-service/data
USER 1000:1000
EXPOSE 8585
ENTRYPOINT ["binderhub-service"]
CMD ["--config", "/etc/binderhub-service/config.py"]
