#!/usr/bin/env bash
# Runs every benchmark (release builds) and prints one table: figure, target, measured,
# met or not, and the machine it ran on.
#
#   scripts/bench.sh                 run every bench in BENCHES, then print the table
#   scripts/bench.sh cli ipc         run only these
#   scripts/bench.sh --from-logs DIR re-print the table from an earlier run's logs
#
# Each bench's full output is kept in target/bench-logs/<bench>.log.
#
# Adding a figure: add a line to ROWS below — bench name, figure, a Perl regex whose
# first group is the number (an optional second group `µs` converts to ms), unit, and
# the target as "<= N", ">= N" or "-" (reported, no target). A new bench file also goes
# into BENCHES.
set -euo pipefail
cd "$(dirname "$0")/.."

BENCHES=(cli ipc scheduler agent orchestrator container discord retention)

# bench | figure | regex (group 1 = value, group 2 = optional µs) | unit | target
ROWS=(
  'cli|CLI: list-tasks --json, 1,000 tasks (median, incl. process start)|rust_claw list-tasks --json, 1,000 tasks: median ([0-9.]+) ms|ms|<= 5'
  'cli|CLI: list-groups (median)|rust_claw list-groups: median ([0-9.]+) ms|ms|-'
  'ipc|IPC: rename into tasks/ -> response, p50|latency \(rename.*?p50 ([0-9.]+) ms|ms|<= 2'
  'ipc|IPC: rename into tasks/ -> response, p99|latency \(rename.*?p99 ([0-9.]+) ms|ms|<= 10'
  'ipc|IPC: throughput, 10,000 requests over 50 groups|= ([0-9.]+) req/s; outbox rows \d+, none lost|req/s|>= 5000'
  'ipc|IPC: idle CPU, 100 groups|idle: 100 registered groups.*= ([0-9.]+)% of one core|% core|<= 0.1'
  'ipc|IPC: schedule_task after 0-1 s of quiet, 10 tasks stored, p99|\[this build\] schedule_task after 0-1 s of quiet, 10 tasks stored.*?p99 ([0-9.]+) ms|ms|<= 10'
  'ipc|IPC: schedule_task back to back, 10 tasks stored, p99|\[this build\] schedule_task back to back, 10 tasks stored.*?p99 ([0-9.]+) ms|ms|<= 10'
  'ipc|IPC: 5,000 schedule_task at once over 10 groups, 10 stored|\[this build\] schedule_task burst: \d+ requests over 10 groups, 10 tasks stored: .*?= ([0-9.]+) req/s, none lost|req/s|>= 5000'
  'ipc|IPC: daemon Private_Dirty 60 s after the burst, 10 stored|\[this build\] daemon private memory \(Private_Dirty\) after the burst, 10 tasks stored: [0-9.]+ MB just after, ([0-9.]+) MB|MB|<= 4'
  'ipc|IPC: schedule_task after 0-1 s of quiet, 5,000 tasks stored, p99|\[this build\] schedule_task after 0-1 s of quiet, 5000 tasks stored.*?p99 ([0-9.]+) ms|ms|<= 10'
  'ipc|IPC: schedule_task back to back, 5,000 tasks stored, p99|\[this build\] schedule_task back to back, 5000 tasks stored.*?p99 ([0-9.]+) ms|ms|<= 10'
  'ipc|IPC: 5,000 schedule_task at once over 10 groups, 5,000 stored|\[this build\] schedule_task burst: \d+ requests over 10 groups, 5000 tasks stored: .*?= ([0-9.]+) req/s, none lost|req/s|>= 5000'
  'ipc|IPC: daemon Private_Dirty 60 s after the burst, 5,000 stored|\[this build\] daemon private memory \(Private_Dirty\) after the burst, 5000 tasks stored: [0-9.]+ MB just after, ([0-9.]+) MB|MB|<= 4'
  'scheduler|scheduler: due -> queue, p99 (10,000 other tasks)|lateness due -> handed over, .* [1-9]\d* other active tasks: .*?p99 ([0-9.]+) ms|ms|<= 50'
  'scheduler|scheduler: idle CPU, 10,000 active tasks|idle, \d+ active tasks, .*?process CPU ([0-9.]+) ms|ms CPU|-'
  'agent|agent: spawn -> ready, new thread (p50)|spawn → ready \(new thread, first run\)\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|-'
  'agent|agent: warm turn overhead beyond the mock (p50)|turn overhead \(warm thread, instant mock\)\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|<= 50'
  'orchestrator|message received -> turn started, warm (p99)|message received → turn started \(warm\)\s+n=\S+\s+min.*?p99\s+([0-9.]+) (µs)?|ms|<= 20'
  'orchestrator|end to end message -> reply, warm (p50, codex + mock model)|end to end, warm \(codex \+ mock model\)\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|-'
  'orchestrator|end to end, cold (spawns codex)|end to end, cold \(spawns codex\): ([0-9.]+) ms|ms|-'
  'orchestrator|rust_claw run idle, 100 groups: private memory (Private_Dirty)|rust_claw run idle, 100 groups, no channel: RSS [0-9.]+ MB, private \(Private_Dirty\) ([0-9.]+) MB|MB|<= 4'
  'orchestrator|rust_claw run idle, 100 groups: RSS (incl. clean executable pages)|rust_claw run idle, 100 groups, no channel: RSS ([0-9.]+) MB|MB|-'
  'orchestrator|rust_claw run idle, 100 groups: CPU|rust_claw run idle.*CPU ([0-9.]+)% of a core|% core|<= 0.1'
  'orchestrator|SIGTERM -> exit, idle daemon|SIGTERM → exit ([0-9.]+) ms|ms|<= 5000'
  'container|agent cold start -> thread ready, host (p50)|cold start → thread ready, host\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|-'
  'container|agent cold start -> thread ready, container (p50)|cold start → thread ready, container\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|<= 600'
  'container|agent warm turn, host (p50, codex + mock)|warm turn, host\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|-'
  'container|agent warm turn, container (p50, codex + mock)|warm turn, container\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|-'
  'container|agent warm turn: container minus host (p50)|warm turn p50 ([+-]?[0-9.]+) ms vs host|ms|<= 5'
  'discord|Discord: MESSAGE_CREATE -> reply POST, our part (p99)|our part \(in \+ out\)\s+n=\S+\s+min.*?p99\s+([0-9.]+) (µs)?|ms|<= 10'
  'discord|Discord: round trip, warm (p50, codex + mock)|end to end, warm\s+n=\S+\s+min\s+\S+ \S+\s+p50\s+([0-9.]+) (µs)?|ms|-'
  'discord|Discord: round trip, cold (spawns codex)|end to end, cold \(spawns codex\): ([0-9.]+) ms|ms|-'
  'discord|rust_claw run connected to Discord, 100 groups: RSS|connected to the fake, 100 groups, \d+ messages: RSS ([0-9.]+) MB|MB|<= 15'
  'discord|rust_claw run connected to Discord, 100 groups: Private_Dirty|connected to the fake, 100 groups, .*Private_Dirty ([0-9.]+) MB|MB|-'
  'retention|retention: database after a year, pruned every 6 h|days pruned every 6 h \(default retention\): database ([0-9.]+) MB|MB|-'
  'retention|retention: database after a year, never pruned|days never pruned: database ([0-9.]+) MB|MB|-'
  'retention|retention: one steady-state pruning pass (median)|one steady-state pruning pass: median ([0-9.]+) ms|ms|-'
  'retention|retention: first pass over a never-pruned year|first pass over the unpruned \d+ days: \d+ rows deleted in ([0-9.]+) ms|ms|-'
)

logs=target/bench-logs
run=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --from-logs) logs=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) run+=("$1"); shift ;;
  esac
done
from_logs=0
[[ "$logs" != target/bench-logs ]] && from_logs=1
[[ ${#run[@]} -eq 0 && $from_logs == 0 ]] && run=("${BENCHES[@]}")

if [[ ${#run[@]} -gt 0 ]]; then
  # shellcheck disable=SC1091
  source scripts/test-env.sh
  mkdir -p "$logs"
  for b in "${run[@]}"; do
    printf '\n==> cargo bench --bench %s\n' "$b"
    cargo bench --locked --bench "$b" 2>&1 | tee "$logs/$b.log"
  done
  cargo build --release --locked --quiet
fi

# The value a row's regex finds in its bench's log (the last match), in the row's unit.
extract() {
  local log=$1 re=$2
  [[ -f "$log" ]] || return 0
  perl -CSD -Mutf8 -ne 'BEGIN { $re = shift @ARGV; utf8::decode($re) } if (/$re/) { $v = $1; $v /= 1000 if defined $2 && $2 eq "µs"; $last = $v } END { print $last if defined $last }' "$re" "$log"
}

met() {
  local v=$1 target=$2
  [[ "$target" == "-" ]] && { echo "-"; return; }
  local op=${target%% *} n=${target#* }
  if perl -e "exit !($v $op $n)"; then echo "met"; else echo "MISSED"; fi
}

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
printf '\nmachine: %s cores, %s, %s RAM, %s, %s; load average %s\n' \
  "$(nproc)" "$cpu" "$mem" "$(uname -sr)" "$(rustc --version | cut -d' ' -f1-2)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-66s %-12s %-12s %s\n' "figure" "target" "measured" "met"
for row in "${ROWS[@]}"; do
  IFS='|' read -r bench figure re unit target <<<"$row"
  v=$(extract "$logs/$bench.log" "$re")
  if [[ -z "$v" ]]; then
    printf '%-66s %-12s %-12s %s\n' "$figure" "$target" "not run" "-"
    continue
  fi
  printf '%-66s %-12s %-12s %s\n' "$figure" "$target" "$(printf '%.3g %s' "$v" "$unit")" "$(met "$v" "$target")"
done
if [[ -f target/release/rust_claw ]]; then
  size=$(stat -c %s target/release/rust_claw)
  printf '%-66s %-12s %-12s %s\n' "release binary size (stripped)" "-" "$(awk -v s="$size" 'BEGIN { printf "%.1f MB", s / 1048576 }')" "-"
fi
