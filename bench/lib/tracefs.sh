# tracefs.sh: sourced by the bench's tracing scripts (child-trace.sh, phase-trace.sh, exit-trace.sh).
#   tracefs_begin NAME "EVENTS" [BUFFER_KB] [CLOCK]
# checks for root and tracefs (NAME is the caller's name, for the message), switches tracing off,
# clears the buffer, sets its size and trace clock if given, and enables EVENTS (paths under
# events/). On exit everything it touched is put back: tracing off, the events disabled, the
# buffer cleared, its size and clock as they were; a caller's tracefs_cleanup function, if defined,
# runs first. The caller switches tracing on and off around what it measures.
T=/sys/kernel/tracing
tracefs_begin() {
  local name=$1
  [ -w $T/tracing_on ] || { echo "$name: needs root and tracefs at $T" >&2; exit 1; }
  TRACEFS_EVENTS=$2
  TRACEFS_SIZE=$(cat $T/buffer_size_kb)
  TRACEFS_CLOCK=$(sed -n 's/.*\[\(.*\)\].*/\1/p' $T/trace_clock)
  trap tracefs_end EXIT
  echo 0 > $T/tracing_on
  echo > $T/trace
  [ -z "${3:-}" ] || echo "$3" > $T/buffer_size_kb
  [ -z "${4:-}" ] || echo "$4" > $T/trace_clock
  for e in $TRACEFS_EVENTS; do echo 1 > $T/events/$e/enable; done
}
tracefs_end() {
  if declare -F tracefs_cleanup > /dev/null; then tracefs_cleanup; fi
  echo 0 > $T/tracing_on
  for e in $TRACEFS_EVENTS; do echo 0 > $T/events/$e/enable; done
  echo > $T/trace
  echo "$TRACEFS_CLOCK" > $T/trace_clock
  echo "$TRACEFS_SIZE" > $T/buffer_size_kb
}
