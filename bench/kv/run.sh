#!/usr/bin/env bash
# Side-by-side key-value benchmark on one machine, in one run:
#   - a 3-member etcd cluster (Debian etcd-server, default fsync),
#   - Redis with appendonly yes + appendfsync always,
#   - Redis with persistence off,
#   - a 3-process kvnode cluster, when a kvnode binary is available
#     (KVNODE=/path/to/kvnode, or `go build ./examples/kvnode` succeeds).
# Each system runs alone (the others are stopped), on 127.0.0.1 only, in fresh
# temporary directories, under `timeout`, and is stopped by pid on exit.
# kvload drives every system with the same workload (1 and 64 clients, SET
# and GET); redis-benchmark -t set,get runs against every RESP server.
# The Markdown report goes to stdout and to $OUT.
#
# Knobs (environment): DURATION, WARMUP (kvload window and warm-up, Go
# durations), CLIENTS ("1 64"), SET_KEYS, GET_KEYS, VALUE_SIZE, RB_REQUESTS,
# RB_CLIENTS, SYSTEMS ("etcd redis-fsync redis-nopersist kvnode"), KVNODE,
# KVNODE_TARGET and ETCD_TARGET (leader|spread|first), OUT, KEEP=1 keeps the
# temporary directory (data, logs, raw results).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CLIENTS=${CLIENTS:-"1 64"}
SET_KEYS=${SET_KEYS:-100000}
GET_KEYS=${GET_KEYS:-1000}
VALUE_SIZE=${VALUE_SIZE:-256}
RB_REQUESTS=${RB_REQUESTS:-100000}
RB_CLIENTS=${RB_CLIENTS:-50}
SYSTEMS=${SYSTEMS:-"etcd redis-fsync redis-nopersist kvnode"}
ETCD_TARGET=${ETCD_TARGET:-leader}
KVNODE_TARGET=${KVNODE_TARGET:-leader}
OUT=${OUT:-$HERE/BENCHMARKS.md}
SERVER_LIFETIME=${SERVER_LIFETIME:-30m} # hard limit on every server process
LOAD_LIMIT=${LOAD_LIMIT:-15m}           # hard limit on every load process

# Ports, all on 127.0.0.1.
ETCD_CLIENT_PORTS=(23791 23792 23793)
ETCD_PEER_PORTS=(23801 23802 23803)
REDIS_FSYNC_PORT=46379
REDIS_NOPERSIST_PORT=46378
KV_RAFT_PORTS=(47101 47102 47103)
KV_REDIS_PORTS=(46381 46382 46383)
KV_HTTP_PORTS=(47081 47082 47083)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'run.sh: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup ---
PIDS=()
WORK=$(mktemp -d -t kvbench.XXXXXX)
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	PIDS=()
	if [[ ${KEEP:-0} == 1 ]]; then
		log "kept $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pids PID...: stops the given servers (TERM, then KILL after 10 s).
stop_pids() {
	local pid i
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "$@"; do
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	local keep=()
	for pid in "${PIDS[@]}"; do
		[[ " $* " == *" $pid "* ]] || keep+=("$pid")
	done
	PIDS=("${keep[@]}")
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
require_ports() {
	local p
	for p in "$@"; do
		port_free "$p" || die "port 127.0.0.1:$p is in use; stop what holds it"
	done
}

# ------------------------------------------------------------- packages ---
install_packages() {
	local missing=()
	command -v etcd >/dev/null || missing+=(etcd-server)
	command -v etcdctl >/dev/null || missing+=(etcd-client)
	command -v redis-server >/dev/null || missing+=(redis-server)
	{ command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null; } || missing+=(redis-tools)
	((${#missing[@]} == 0)) && return 0
	local sudo=()
	[[ $(id -u) == 0 ]] || sudo=(sudo)
	log "installing ${missing[*]}"
	"${sudo[@]}" apt-get update -qq
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- results ---
RESULTS=$WORK/results.jsonl
COMMANDS=$WORK/commands.txt
NOTES=$WORK/notes.txt
: >"$RESULTS"
: >"$COMMANDS"
: >"$NOTES"
FAILED=0
note() { printf -- '- %s\n' "$*" >>"$NOTES"; log "$*"; }

# record CMD...: remember a command, as run, for the report.
record() {
	local s
	s=$(printf "%q " "$@")
	printf "%s\n" "${s% }" >>"$COMMANDS"
}

KVLOAD=$WORK/bin/kvload
KVREPORT=$WORK/bin/kvreport

# load LABEL PROTO ENDPOINTS TARGET CLIENTS MIX [extra kvload flags...]
load() {
	local label=$1 proto=$2 endpoints=$3 target=$4 clients=$5 mix=$6
	shift 6
	local keys=$SET_KEYS extra=()
	if [[ $mix == get ]]; then
		keys=$GET_KEYS
		extra+=(-preload -1)
	fi
	local args=(-proto "$proto" -endpoints "$endpoints" -target "$target" -clients "$clients"
		-mix "$mix" -keys "$keys" -value "$VALUE_SIZE" "${extra[@]}" "$@"
		-warmup "$WARMUP" -duration "$DURATION" -label "$label")
	record kvload "${args[@]}"
	log "$label: kvload $mix, $clients clients"
	if ! timeout "$LOAD_LIMIT" "$KVLOAD" "${args[@]}" -json "$RESULTS" >"$WORK/last.out" 2>"$WORK/last.err"; then
		FAILED=1
		note "$label: kvload $mix with $clients clients failed: $(tail -n 3 "$WORK/last.err" | tr '\n' ' ')"
	fi
	sed -n '2,4p' "$WORK/last.out" | sed 's/^/    /' >&2
}

# loads LABEL PROTO ENDPOINTS TARGET [extra GET flags...]: the standard set.
loads() {
	local label=$1 proto=$2 endpoints=$3 target=$4 c
	shift 4
	for c in $CLIENTS; do
		load "$label" "$proto" "$endpoints" "$target" "$c" set
		load "$label" "$proto" "$endpoints" "$target" "$c" get "$@"
	done
}

# rbench LABEL PORT: redis-benchmark -t set,get, converted to result lines.
rbench() {
	local label=$1 port=$2
	local args=(-h 127.0.0.1 -p "$port" -t set,get -n "$RB_REQUESTS" -c "$RB_CLIENTS" -d "$VALUE_SIZE" --csv)
	record redis-benchmark "${args[@]}"
	log "$label: redis-benchmark -t set,get -c $RB_CLIENTS -n $RB_REQUESTS"
	if ! timeout "$LOAD_LIMIT" redis-benchmark "${args[@]}" >"$WORK/rb.csv" 2>"$WORK/rb.err"; then
		FAILED=1
		note "$label: redis-benchmark failed: $(tail -n 3 "$WORK/rb.err" | tr '\n' ' ')"
		return 0
	fi
	local errs
	errs=$(grep -c -i 'error' "$WORK/rb.err" || true)
	# CSV: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
	awk -F'","' -v sys="$label" -v c="$RB_CLIENTS" -v errs="$errs" -v cmd="redis-benchmark ${args[*]}" '
		NR > 1 {
			gsub(/"/, "", $1); gsub(/"/, "", $8)
			kind = tolower($1)
			printf "{\"tool\":\"redis-benchmark\",\"system\":\"%s\",\"proto\":\"resp\",\"test\":\"%s\",\"kind\":\"%s\",\"clients\":%d,\"ops_per_sec\":%s,\"ops\":0,\"mean_ms\":%s,\"p50_ms\":%s,\"p99_ms\":%s,\"max_ms\":%s,\"errors_total\":%d%s,\"command\":\"%s\"}\n",
				sys, $1, kind, c, $2, $3, $5, $7, $8, errs, (errs > 0 ? ",\"errors\":{\"error lines on stderr\":" errs "}" : ""), cmd
		}' "$WORK/rb.csv" >>"$RESULTS"
	sed 's/^/    /' "$WORK/rb.csv" >&2
}

# wait_until SECONDS "PID..." CMD...: retries CMD every 0.1 s until it succeeds
# (0), SECONDS pass (1), or one of the server PIDs has exited (2).
wait_until() {
	local secs=$1 pids=$2 i pid
	shift 2
	for i in $(seq 1 $((secs * 10))); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		for pid in $pids; do
			kill -0 "$pid" 2>/dev/null || return 2
		done
		sleep 0.1
	done
	return 1
}

# ------------------------------------------------------------------ etcd ---
run_etcd() {
	local d=$WORK/etcd i cluster="" endpoints="" pids=()
	mkdir -p "$d"
	require_ports "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
	for i in 1 2 3; do
		cluster+="${cluster:+,}m$i=http://127.0.0.1:${ETCD_PEER_PORTS[i - 1]}"
		endpoints+="${endpoints:+,}127.0.0.1:${ETCD_CLIENT_PORTS[i - 1]}"
	done
	for i in 1 2 3; do
		local cp=${ETCD_CLIENT_PORTS[i - 1]} pp=${ETCD_PEER_PORTS[i - 1]}
		local args=(--name "m$i" --data-dir "$d/m$i"
			--listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp"
			--listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp"
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token kvbench
			--logger zap --log-outputs stderr --log-level warn)
		record etcd "${args[@]}"
		timeout "$SERVER_LIFETIME" etcd "${args[@]}" 2>"$d/m$i.log" &
		pids+=($!)
		PIDS+=($!)
	done
	log "etcd: waiting for a healthy 3-member cluster"
	if ! wait_until 60 "${pids[*]}" env ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --command-timeout=2s endpoint health; then
		FAILED=1
		note "etcd: cluster not healthy (a member exited, or 60 s passed); log tail: $(tail -n 2 "$d/m1.log" 2>/dev/null | tr '\n' ' ')"
		stop_pids "${pids[@]}"
		return 0
	fi
	loads etcd-3 etcd "$endpoints" "$ETCD_TARGET" -read linearizable
	stop_pids "${pids[@]}"
}

# ----------------------------------------------------------------- redis ---
run_redis() { # run_redis LABEL PORT persistence-flags...
	local label=$1 port=$2
	shift 2
	local d=$WORK/$label
	mkdir -p "$d"
	require_ports "$port"
	local args=(--bind 127.0.0.1 --port "$port" --dir "$d" "$@" --logfile "$d/redis.log")
	record redis-server "${args[@]}"
	timeout "$SERVER_LIFETIME" redis-server "${args[@]}" &
	local pid=$!
	PIDS+=("$pid")
	if ! wait_until 30 "$pid" redis-cli -h 127.0.0.1 -p "$port" ping; then
		FAILED=1
		note "$label: redis-server exited or did not answer PING within 30 s; log tail: $(tail -n 2 "$d/redis.log" 2>/dev/null | tr '\n' ' ')"
		stop_pids "$pid"
		return 0
	fi
	loads "$label" resp "127.0.0.1:$port" first
	rbench "$label" "$port"
	stop_pids "$pid"
}

# ---------------------------------------------------------------- kvnode ---
KVNODE_BIN=""
find_kvnode() {
	if [[ -n ${KVNODE:-} ]]; then
		[[ -x $KVNODE ]] || die "KVNODE=$KVNODE is not an executable file"
		KVNODE_BIN=$KVNODE
		return 0
	fi
	if [[ ! -d $ROOT/examples/kvnode ]]; then
		note "kvnode: skipped: examples/kvnode does not exist in this checkout (set KVNODE=/path/to/kvnode to measure a build)"
		return 1
	fi
	if ! (cd "$ROOT" && go build -o "$WORK/bin/kvnode" ./examples/kvnode) 2>"$WORK/kvnode-build.err"; then
		note "kvnode: skipped: go build ./examples/kvnode failed: $(head -n 3 "$WORK/kvnode-build.err" | tr '\n' ' ')"
		return 1
	fi
	KVNODE_BIN=$WORK/bin/kvnode
}

run_kvnode() {
	find_kvnode || return 0
	local d=$WORK/kvnode i peers="" endpoints="" pids=()
	mkdir -p "$d"
	require_ports "${KV_RAFT_PORTS[@]}" "${KV_REDIS_PORTS[@]}" "${KV_HTTP_PORTS[@]}"
	for i in 1 2 3; do
		peers+="${peers:+,}$i=127.0.0.1:${KV_RAFT_PORTS[i - 1]}"
		endpoints+="${endpoints:+,}127.0.0.1:${KV_REDIS_PORTS[i - 1]}"
	done
	for i in 1 2 3; do
		local args=(-id "$i" -peers "$peers" -redis "127.0.0.1:${KV_REDIS_PORTS[i - 1]}"
			-http "127.0.0.1:${KV_HTTP_PORTS[i - 1]}" -data "$d/n$i")
		record kvnode "${args[@]}"
		timeout "$SERVER_LIFETIME" "$KVNODE_BIN" "${args[@]}" >"$d/n$i.log" 2>&1 &
		pids+=($!)
		PIDS+=($!)
	done
	log "kvnode: waiting until a SET commits"
	if ! wait_until 60 "${pids[*]}" bash -c "redis-cli -h 127.0.0.1 -p ${KV_REDIS_PORTS[0]} set kvbench:ready 1 | grep -q OK"; then
		FAILED=1
		note "kvnode: a node exited, or no SET committed within 60 s; log tail of node 1: $(tail -n 3 "$d/n1.log" 2>/dev/null | tr '\n' ' ')"
		stop_pids "${pids[@]}"
		return 0
	fi
	loads kvnode resp "$endpoints" "$KVNODE_TARGET"
	local rbport=${KV_REDIS_PORTS[0]} leader
	if leader=$("$KVLOAD" -proto resp -endpoints "$endpoints" -target leader -find-leader 2>/dev/null); then
		rbport=${leader##*:}
	else
		note "kvnode: INFO names no leader (role:leader); redis-benchmark ran against 127.0.0.1:$rbport"
	fi
	rbench kvnode "$rbport"
	stop_pids "${pids[@]}"
}

# ------------------------------------------------------------------ main ---
command -v go >/dev/null || die "go is not installed"
install_packages
log "building kvload and kvreport"
(cd "$HERE" && go build -o "$WORK/bin/" ./cmd/kvload ./cmd/kvreport)

START=$(date -u '+%Y-%m-%d %H:%M UTC')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
for sys in $SYSTEMS; do
	case $sys in
	etcd) run_etcd ;;
	redis-fsync) run_redis redis-fsync "$REDIS_FSYNC_PORT" --appendonly yes --appendfsync always ;;
	redis-nopersist) run_redis redis-nopersist "$REDIS_NOPERSIST_PORT" --appendonly no --save '' ;;
	kvnode) run_kvnode ;;
	*) die "unknown system $sys in SYSTEMS" ;;
	esac
done

REPORT=$WORK/report.md
{
	echo "# Key-value benchmark: kvnode, etcd, Redis"
	echo
	echo "Run $START on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), Linux $(uname -r));"
	echo "load average at start: $LOADAVG. Every load generator shares the machine with the system it measures;"
	echo "compare systems within one run only."
	echo
	echo "Versions: etcd $(etcd --version | awk 'NR == 1 {print $3}'), $(redis-server --version | awk '{sub(/v=/, "", $3); print $1, $3}'), $(go version | cut -d' ' -f3)."
	echo "kvload: DURATION=$DURATION WARMUP=$WARMUP, SET over $SET_KEYS keys, GET over $GET_KEYS preloaded keys,"
	echo "16-byte keys, $VALUE_SIZE-byte values, closed loop (one request in flight per client); etcd target $ETCD_TARGET,"
	echo "etcd GETs linearizable. redis-benchmark: -n $RB_REQUESTS -c $RB_CLIENTS -d $VALUE_SIZE (one fixed key; no p99.9)."
	echo
	"$KVREPORT" -in "$RESULTS" -subject kvnode -baselines etcd-3,redis-fsync
	if [[ -s $NOTES ]]; then
		echo
		echo "Notes:"
		echo
		cat "$NOTES"
	fi
	echo
	echo "Reproduce: \`${KVNODE:+KVNODE=$KVNODE }DURATION=$DURATION WARMUP=$WARMUP SYSTEMS=\"$SYSTEMS\" bench/kv/run.sh\` (from the repository root)."
	echo "Commands run (data directories are fresh temporary directories):"
	echo
	echo '```'
	cat "$COMMANDS"
	echo '```'
} >"$REPORT"
cat "$REPORT"
if [[ $OUT != /dev/stdout ]]; then
	cp "$REPORT" "$OUT"
	log "report written to $OUT"
fi
exit "$FAILED"
