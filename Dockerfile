# fluxion-etl: one image for `fluxion-etl serve` (the default command) and `fluxion-etl worker
# --run-id ID` (the ECS launcher's command override). Build from the repository root:
#   docker build -t fluxion-etl .                       (configuration: examples/chain.toml)
#   docker build --build-arg CHAIN_CONFIG=path/to/chain.toml -t fluxion-etl .
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# --- build: the locked dependencies (binary wheels only: no compiler) and our own wheel ----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements/ requirements/
COPY deploy/aws/image-requirements.sh deploy/aws/image-requirements.sh
RUN python -m venv /opt/fluxion \
    && sh deploy/aws/image-requirements.sh . > /tmp/image-requirements.txt \
    && /opt/fluxion/bin/pip install --no-deps --only-binary=:all: -r /tmp/image-requirements.txt
COPY pyproject.toml README.md ./
COPY src/ src/
RUN /opt/fluxion/bin/pip wheel --no-deps --wheel-dir /tmp/wheels . \
    && /opt/fluxion/bin/pip install --no-deps /tmp/wheels/fluxion_etl-*.whl \
    && /opt/fluxion/bin/pip check \
    && /opt/fluxion/bin/pip uninstall --yes pip

# --- runtime: the virtual environment, the configuration file, a user without privileges --------
FROM ${PYTHON_IMAGE}
ARG CHAIN_CONFIG=examples/chain.toml
RUN groupadd --system --gid 10001 fluxion \
    && useradd --system --uid 10001 --gid fluxion --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin fluxion
COPY --from=build /opt/fluxion /opt/fluxion
COPY ${CHAIN_CONFIG} /etc/fluxion/chain.toml
ENV PATH=/opt/fluxion/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FLUXION_CONFIG=/etc/fluxion/chain.toml \
    FLUXION_LOG_FORMAT=json
WORKDIR /tmp
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["fluxion-etl"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
