# The alto-stream worker image used by compose.yaml (`alto-stream` is the entrypoint).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY alto_stream ./alto_stream
COPY schemas ./schemas
COPY topics ./topics
COPY workers ./workers
RUN pip install --no-cache-dir .
ENV ALTO_BOOTSTRAP_SERVERS=kafka:9092
ENTRYPOINT ["alto-stream"]
