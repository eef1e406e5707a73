# docker build -t deep-ecg . && docker run -v "$PWD/data:/data" deep-ecg [--mode realtime ...]
# docker run -v "$PWD/data:/data" deep-ecg predict --model /data/runs/<run> --record /data/mitdb/232
# The data volume holds mitdb/ (downloaded there on first run if missing), the cache and the runs.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
# The CPU build of torch first (the PyPI wheel for Linux is the multi-GB CUDA build), then the rest.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -r requirements.txt
COPY *.py polarity.json ./
COPY bench ./bench
# Runs from the volume: data in /data/mitdb, cache in /data/cache, results in /data/runs/.
VOLUME /data
WORKDIR /data
ENV DEEP_ECG_DATA_DIR=/data/mitdb
ENTRYPOINT ["python", "/app/main.py"]
