# One image, two SageMaker contracts: `docker run IMAGE train` and `docker run IMAGE serve`.
# Build: python -m jenkins.image build --tag mlship:dev   (or: docker build -t mlship .)
ARG BASE_IMAGE=debian:bookworm-slim

# ---- build stage: a venv with the locked dependencies and the project -------------
FROM ${BASE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
COPY requirements/runtime.lock /tmp/runtime.lock
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/runtime.lock \
 # test suites and headers shipped inside wheels are dead weight at run time
 && find /opt/venv/lib -depth -type d \( -name tests -o -name testing \) -path "*site-packages/pandas/*" -exec rm -rf {} + \
 && find /opt/venv/lib -depth -type d -name tests -path "*site-packages/scipy/*" -exec rm -rf {} + \
 && find /opt/venv/lib -depth -type d -name tests -path "*site-packages/sklearn/*" -exec rm -rf {} + \
 && find /opt/venv/lib -type d -name include -path "*site-packages/tensorflow/*" -prune -exec rm -rf {} +
# libclang (62 MB) comes with tensorflow for its build tooling; nothing imports it at run time
RUN rm -rf /opt/venv/lib/python3*/site-packages/clang /opt/venv/lib/python3*/site-packages/libclang*
# setup.py builds modelformat/_forest.c (the forest walk for a few rows); the compiler stays in
# this stage, the runtime stage gets the built module only.
COPY pyproject.toml setup.py README.md /src/
COPY container /src/container
COPY modelformat /src/modelformat
COPY training /src/training
COPY inference /src/inference
COPY jenkins /src/jenkins
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps /src \
 && /opt/venv/bin/python -m compileall -q /opt/venv/lib

# ---- runtime stage -------------------------------------------------------------------
FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="mlship" \
      org.opencontainers.image.description="SageMaker-compatible train/serve image: gender and propensity models, MLapp portal" \
      com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true \
      com.amazonaws.sagemaker.capabilities.multi-models=true
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 --user-group mlship \
 && mkdir -p /opt/ml/model /opt/ml/input/config /opt/ml/input/data /opt/ml/output /opt/ml/checkpoints /opt/ml/models \
 && chown -R mlship:mlship /opt/ml
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}" \
    MLSHIP_RUN_AS=mlship \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLCONFIGDIR=/tmp/matplotlib
# No USER: SageMaker starts containers as root and mounts /opt/ml/model and /opt/ml/output owned by
# root 0755; `train` and `serve` hand those folders to mlship and drop to it themselves
# (container/privileges.py), and run unchanged when a platform starts them under another uid.
WORKDIR /home/mlship
EXPOSE 8080
# No ENTRYPOINT: SageMaker runs `IMAGE train` / `IMAGE serve`; local mode needs CMD train.
CMD ["train"]
