# МЦУ assistant: one image for every role; the command chooses it
# (`mcu serve --port 8080`, `mcu worker`, `mcu migrate`, or `mcu run` on SQLite).
# See deploy/compose.yaml and the README section «Развёртывание».
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MCU_DATA_DIR=/var/lib/mcu/data

RUN groupadd --system mcu \
    && useradd --system --gid mcu --home-dir /var/lib/mcu --shell /usr/sbin/nologin mcu \
    && mkdir -p /var/lib/mcu/data \
    && chown -R mcu:mcu /var/lib/mcu

WORKDIR /opt/mcu/src

# The dependencies first, at the pinned versions of constraints.txt: this layer is rebuilt only
# when they change, not on every change of the code.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY . .
RUN pip install --no-deps -c constraints.txt .

# The working directory is the data directory's parent: vkbottle and matplotlib write there.
WORKDIR /var/lib/mcu
USER mcu
# mcu serve listens here (MCU_SERVE_HOST=0.0.0.0 in a container).
EXPOSE 8080
ENTRYPOINT ["mcu"]
CMD ["--help"]
