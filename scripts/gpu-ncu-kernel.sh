#!/usr/bin/env bash
# One kernel under Nsight Compute, in one device call: its speed of light,
# scheduler and warp-state sections, and the SASS instructions where its
# warps stall most (sampled), e.g. the prefill attention at 4096 tokens:
#   run(command="bash scripts/gpu-ncu-kernel.sh",
#       carry=["bench-artifacts/v3-train", ".deps"])
# KERNEL: a regex of the kernel's name (default mla_prefill_wgmma; without
# template arguments unless NAME_BASE=demangled, e.g.
# KERNEL='fp8_gemm_tma_wide<.int.3>' NAME_BASE=demangled: ncu names it
# "void dsv3::fp8_gemm_tma_wide<(int)3>(...)");
# SKIP: its launches to pass over first (default 4: past bf16-check's
# checks, into its timing); ARGS: the dsv3-run command (default bf16-check
# of bench-artifacts/v3-train with DSV3_ATTENTION_TIME=4096); TOP: SASS
# lines shown.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/gpu-env.sh /tmp/gpu-ncu
KERNEL=${KERNEL:-mla_prefill_wgmma}
SKIP=${SKIP:-4}
TOP=${TOP:-60}
ARGS=${ARGS:-"bf16-check bench-artifacts/v3-train --seq 200 --shape 64,7168,2048"}
export DSV3_ATTENTION_TIME=${DSV3_ATTENTION_TIME:-4096}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 400 "$NCU" --clock-control none --kernel-name-base "${NAME_BASE:-function}" -k "regex:$KERNEL" --launch-skip "$SKIP" -c 1 \
  --section SpeedOfLight --section SchedulerStats --section WarpStateStats \
  --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SourceCounters \
  --import-source no -o "$OUT/kernel" -f $RUN $ARGS > "$OUT/ncu-run.log" 2>&1
tail -3 "$OUT/ncu-run.log"
"$NCU" --import "$OUT/kernel.ncu-rep" --page details > "$OUT/details.txt" 2>&1
grep -v "^    ---\|^  *$" "$OUT/details.txt" | head -120
# Per SASS instruction: the sampled stalls; the TOP most stalled, with
# their neighbours' text for context in sass.csv.
"$NCU" --import "$OUT/kernel.ncu-rep" --page source --csv --print-source sass \
  > "$OUT/sass.csv" 2>&1
python3 - "$OUT/sass.csv" "$TOP" <<'EOF'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head = next((i for i, r in enumerate(rows) if "Source" in r), None)
if head is None:
    print("no SASS table:", rows[:3]); sys.exit(0)
h = rows[head]; body = [r for r in rows[head + 1:] if len(r) == len(h)]
src = h.index("Source")
key = next((c for c in h if c.startswith("Warp Stall Sampling (All")), None)
if key is None:
    print("columns:", h); sys.exit(0)
k = h.index(key)
val = lambda r: float(r[k].replace(",", "") or 0)
total = sum(val(r) for r in body) or 1
print(f"{len(body)} SASS instructions, {total:.0f} stall samples; most stalled:")
for r in sorted(body, key=val, reverse=True)[:int(sys.argv[2])]:
    print(f"{100 * val(r) / total:6.2f}%  {r[0]:>6}  {r[src][:110]}")
EOF
