# The alto-stream worker image used by compose.yaml (`alto-stream` is the entrypoint).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY alto_stream ./alto_stream
COPY schemas ./schemas
COPY topics ./topics
COPY workers ./workers
# EXTRAS=ml,llm for the AI apps (compose.yaml's app services): llama.cpp builds from source.
ARG EXTRAS=""
RUN if [ -n "$EXTRAS" ]; then \
      apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
      && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir ".[$EXTRAS]"; \
    else pip install --no-cache-dir .; fi
ENV ALTO_BOOTSTRAP_SERVERS=kafka:9092
ENTRYPOINT ["alto-stream"]
