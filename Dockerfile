# One image for every b2bsim component (`b2bsim serve ...`); the broker uses
# the apache/activemq-classic image. See compose/ and docs/deploy.md.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY simulator simulator
COPY ka_producer ka_producer
COPY icc_bridge icc_bridge
COPY supplier_stub supplier_stub
RUN pip install --no-cache-dir . && useradd --create-home b2bsim && mkdir /state \
    && chown b2bsim /state
USER b2bsim
ENV B2BSIM_STATE=/state
CMD ["b2bsim", "--help"]
