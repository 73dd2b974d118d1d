#!/usr/bin/env bash
# Record (or continue) the learning-curve table in the background: seeds 0-2 for every config first
# (the seeds a simulated search sees), then the scoring-only seeds 3 and 4, one at a
# time, the world where defaults are chosen (even) before the one where they are reported (odd).
# Resumable: run it again after a stop. Log: studies/curve_table.log.
cd "$(dirname "$0")/.."
mkdir -p studies
T="nice -n 5 python benchmarks/curve_table.py"
setsid nohup bash -c ". .venv/bin/activate && $T --seeds 0,1,2 && $T --seeds 3 --parity even \
  && $T --seeds 3 --parity odd && $T --seeds 4 --parity even && $T --seeds 4 --parity odd" \
  >> studies/curve_table.log 2>&1 < /dev/null &
echo "recording in process group $! (log: studies/curve_table.log)"
