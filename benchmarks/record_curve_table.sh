#!/usr/bin/env bash
# Record (or continue) the learning-curve table in the background: seeds 0-2 for every config first
# (the seeds a simulated search sees), then seeds 3-4 (held out: the true quality of a config).
# Resumable: run it again after a stop. Log: studies/curve_table.log.
cd "$(dirname "$0")/.."
setsid nohup bash -c '. .venv/bin/activate && nice -n 5 python benchmarks/curve_table.py --seeds 0,1,2 \
  && nice -n 5 python benchmarks/curve_table.py --seeds 3,4' >> studies/curve_table.log 2>&1 < /dev/null &
echo "recording in process group $! (log: studies/curve_table.log)"
