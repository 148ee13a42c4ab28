# The binderhub-service image.
#
# Online:  docker build -t binderhub-service .
# Offline: put wheels of the service and all its dependencies in ./wheels
#          (pip wheel . -w wheels) and build with
#          --build-arg PIP_OPTIONS="--no-index --find-links=/src/wheels" \
#          --build-arg PACKAGE=binderhub-service
#          from a base image that has python3 and python3-venv
#          (.ci/build-service-image does all of this).
# Both: put the docker CLI and its buildx plugin in ./engine-cli as
#       usr/bin/docker and usr/libexec/docker/cli-plugins/docker-buildx (static
#       Go programs needing only libc); build containers run repo2docker with them.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_OPTIONS=""
# What to install: the source (default), or the project's name to take its wheel.
ARG PACKAGE=/src
COPY . /src
RUN python3 -m venv /opt/binderhub-service \
 && /opt/binderhub-service/bin/pip install --no-cache-dir ${PIP_OPTIONS} "${PACKAGE}"

FROM ${BASE_IMAGE}
COPY --from=build /opt/binderhub-service /opt/binderhub-service
COPY engine-cli/ /
RUN useradd --uid 1000 --user-group --no-create-home --home-dir /tmp binderhub-service
ENV PATH=/opt/binderhub-service/bin:$PATH \
    PYTHONUNBUFFERED=1
USER 1000:1000
EXPOSE 8585
ENTRYPOINT ["binderhub-service"]
CMD ["--config", "/etc/binderhub-service/config.py"]
