# Builds docker_logs.so and puts it into the official Fluent Bit image.
#   docker build -t fluent-bit-docker-logs .
# The plugin is built on the same Debian release as the Fluent Bit image's
# base, so the .so links against a compatible glibc.
ARG FLUENT_BIT_VERSION=4.0
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN make build/docker_logs.so

FROM fluent/fluent-bit:${FLUENT_BIT_VERSION}
COPY --from=build /src/build/docker_logs.so /fluent-bit/plugins/docker_logs.so
COPY deploy/fluent-bit.yaml /fluent-bit/etc/fluent-bit.yaml
# Fluent Bit copies each collect's batch (up to Queue_Max_Size) twice into
# memory that glibc maps anew above 32 MiB; with transparent huge pages
# (enabled: madvise or always) those copies fault once per 2 MiB instead of
# once per 4 KiB, which halved Fluent Bit's CPU per line while reading a
# backlog (README, Performance). glibc before 2.35 ignores it.
ENV GLIBC_TUNABLES=glibc.malloc.hugetlb=1
CMD ["/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.yaml"]
