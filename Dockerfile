# Deepfake Forensics Studio: the app on CPU. Same set-up as the README's `make app`.
FROM python:3.11-slim-bookworm

# ffmpeg: Gradio converts uploaded videos to browser-playable H.264; make for the README's set-up.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg make \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 studio
USER studio
WORKDIR /home/studio/app

# CPU-only torch: the same pins (torch==2.14.1 matches the CPU build 2.14.1+cpu), without the
# CUDA libraries the default build pulls in.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY --chown=studio:studio requirements.txt pyproject.toml Makefile README.md ./
COPY --chown=studio:studio forensics ./forensics
RUN PIP_EXTRA_INDEX_URL=${TORCH_INDEX} make install PYTHON=python3

COPY --chown=studio:studio . .

ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_ANALYTICS_ENABLED=False
EXPOSE 7860
CMD ["make", "app"]
