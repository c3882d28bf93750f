# syntax=docker/dockerfile:1
# The loyalty-engine image, built from the wheel: the first stage builds the wheel from the
# sources; the second installs that wheel alone, with the dependencies pinned in
# constraints.txt, into a slim Python and runs it as a non-root user. Neither the source
# tree nor the wheel reaches the final image: both are bind-mounted for the install
# (BuildKit, the default builder of Docker 23+ and of docker compose). See "Installing and
# deploying" in the README. tests/e2e/test_wheel.py runs the two pip commands below, and
# tests/e2e/test_packaging.py checks the rest (no Docker engine runs the tests).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY loyalty_engine/ loyalty_engine/
COPY migrations/ migrations/
COPY rules/ rules/
RUN pip wheel --no-cache-dir --disable-pip-version-check --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=wheel,source=/dist,target=/tmp/dist \
    --mount=type=bind,source=constraints.txt,target=/tmp/constraints.txt \
    pip install --no-cache-dir --disable-pip-version-check \
        -c /tmp/constraints.txt /tmp/dist/loyalty_engine-*.whl
RUN useradd --create-home --uid 10001 --user-group loyalty
# By number, so that a runtime that requires a non-root user can check it.
USER 10001:10001
# Without LOYALTY_DATABASE_URL the engine uses ./loyalty.db here (SQLite, lost with the
# container): compose.yaml sets PostgreSQL.
WORKDIR /home/loyalty
EXPOSE 8000
ENTRYPOINT ["loyalty"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
