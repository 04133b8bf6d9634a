#!/bin/bash
# Off-shell pseudo-experiments, 1000 per point, on a machine with many cores (the device machine, issue 11).
#
# The exact method's fits cost ~1 s of CPU a toy (3000: ~50 min on 2 cores, 2-4 min on 16). Prepare the wheels
# the machine lacks here (python 3.12, x86_64: pydantic, iminuit, pyhf, uproot, awkward, minio, hist, mplhep,
# hera and their needs, and `pip wheel --no-deps .` for nsbiflow itself) into .whl/, carry .whl, and run
#     bash benchmarks/toys_device.sh "exact"          # or "nsbi", "histogram"
# It runs the workflow twice: nominal, then the +-1 sigma pair (each run's toys start from the same toy seed, so
# every method sees the same pseudo-data at a point), with the toys step given 16 fitting processes, and copies
# each run's toys.json to $OUT. Table them here with
#     python benchmarks/toys.py --only offshell --documents ... --machine TEXT --name toys_offshell_device
set -u
METHODS=${1:-exact}
T0=$(date +%s)
if [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
fi
export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
python3 -c "import torch, os; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'cores', os.cpu_count())"
if [ ! -d /tmp/repo ]; then
  cp -r "$(pwd)" /tmp/repo
  sed -i "s/resources: {cpu: 2, memory: 4Gi}/resources: {cpu: 16, memory: 32Gi}/" /tmp/repo/steps/toys/step.yaml
fi
cd /tmp/repo || exit 3
NOMINAL='[{"mu": 1.0}]'
PLUS_MINUS='[{"mu": 1.0, "theta_angle_tilt": 1.0, "theta_m4l_scale": 1.0, "qcd_scale_gg": 1.0},
             {"mu": 1.0, "theta_angle_tilt": -1.0, "theta_m4l_scale": -1.0, "qcd_scale_gg": -1.0}]'
for part in nominal plus_minus; do
  if [ "$part" = nominal ]; then points=$NOMINAL; else points=$PLUS_MINUS; fi
  tag=${METHODS//[^a-z]/_}-$part
  nsbiflow run workflows/offshell-toy.yaml --store /tmp/store --results "/tmp/res-$tag" --jobs 16 --json \
    --set toys=1000 --set toy_limits=0 --set "toy_methods=[\"${METHODS//,/\", \"}\"]" --set "toy_points=$points" \
    > "$OUT/run-$tag.json" 2> "$OUT/run-$tag.err"
  echo "$tag: rc=$? at $(( $(date +%s) - T0 )) s"
  cp "/tmp/res-$tag/toys/toys.json" "$OUT/toys-$tag.json"
  grep "| toys " "$OUT/run-$tag.err"
done
