# The studio as a hosted demo: CPU-only PyTorch, a non-root user, demo limits on.
FROM python:3.11-slim

# CPU wheels keep the image around 1.5 GB instead of several GB of CUDA libraries.
# Pass --build-arg TORCH_INDEX_URL=https://pypi.org/simple for the default (CUDA) build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    STUDIO_DATA_DIR=/data/medmnist \
    STUDIO_RUNS_DIR=/data/runs \
    STUDIO_DEMO=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends curl libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --index-url "${TORCH_INDEX_URL}" torch torchvision \
    && pip install -r requirements.txt

COPY core/ core/
COPY studio/ studio/
COPY pages/ pages/
COPY .streamlit/ .streamlit/

RUN useradd --create-home --uid 1000 studio \
    && mkdir -p /data/medmnist /data/runs \
    && chown -R studio:studio /data
USER studio
VOLUME ["/data"]

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD curl --fail --silent http://localhost:8501/_stcore/health || exit 1
CMD ["streamlit", "run", "studio/app.py", "--server.port=8501", "--server.address=0.0.0.0"]
