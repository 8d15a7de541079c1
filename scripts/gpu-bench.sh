#!/usr/bin/env bash
# The GPU measurement of issue 11 in one go (about 8 minutes on an H100/H200), for gpu-kit:
#     bash ../shared/tools/gpu-kit/pack.sh 'bash $GK_REPO/scripts/gpu-bench.sh'
# U-Net step time, dense vs ToDo, batch 2, at 512/1024 (ToDo 2) and 2048 (ToDo auto = 4), in fp32
# and fp16, ToDo's attention both as MultiHeadAttention and query-chunked; the attention-form micro-benchmark (16,384 queries, ToDo's 4x and 16x fewer keys); a
# whole 20-step 1024² generation with the loop on the device and without it (and a 1-step one, to
# tell start-up from step time). Run it with the
# device's timeout_s 600 and GK_BUDGET=570. Writes
# gpu-bench.json (every record) and gpu-bench.md (the tables) into $OUT_DIR.
# Rehearse here with tiny sizes on the CPU: DRY=1 PROVIDER=cpu bash scripts/gpu-bench.sh
# env: PROVIDER (webgpu), DRY (1: tiny model and sizes), OUT_DIR (./out), GK_DIR (scratch, /tmp/gk),
#      TODO_SD (the command, default: node dist/cli/main.js)
set -euo pipefail
PROVIDER=${PROVIDER:-webgpu}
OUT_DIR=${OUT_DIR:-out}
WORK=${GK_DIR:-/tmp/gk}/gpu-bench
read -r -a TODO_SD <<< "${TODO_SD:-node dist/cli/main.js}"
export TODO_SD_CACHE=$WORK/cache
mkdir -p "$OUT_DIR" "$WORK"
RUNS=$WORK/runs
rm -rf "$RUNS" && mkdir -p "$RUNS"

if [ "${DRY:-0}" = 1 ]; then
  ARCH=tiny; SMALL=64,128; LARGE=256; ATTN=256; GEN=64; STEPS=3; BUDGET=60
else
  ARCH=sd15; SMALL=512,1024; LARGE=2048; ATTN=16384; GEN=1024; STEPS=20; BUDGET=85
fi
log() { echo "gpu-bench: $*" >&2; }
start=$(date +%s)
log "writing a random $ARCH model"
"${TODO_SD[@]}" random-model --arch "$ARCH" --out "$WORK/model" > /dev/null

# The summary is rewritten after every stage: if the device's time limit stops the run, what was
# measured so far still comes back.
summarize() {
  node - "$RUNS" "$OUT_DIR" <<'JS'
const fs = require('node:fs');
const path = require('node:path');
const [runs, out] = process.argv.slice(2);
const read = (f) => { try { return JSON.parse(fs.readFileSync(path.join(runs, f), 'utf8')); } catch { return undefined; } };
const benches = ['small-fp32', 'large-fp32', 'small-fp16', 'large-fp16'].filter((d) => fs.existsSync(path.join(runs, d, 'speed.json')));
const runsOf = ['device-1', 'device', 'js'].map((k) => [k, read(`generate-${k}.json`)]);
const json = { kind: 'todo-sd gpu benchmark', benches: Object.fromEntries(benches.map((d) => [d, read(`${d}/speed.json`)])), generate: Object.fromEntries(runsOf) };
fs.writeFileSync(path.join(out, 'gpu-bench.json'), `${JSON.stringify(json, null, 2)}\n`);
const g = json.generate;
const sec = (ms) => (ms / 1000).toFixed(2);
const row = (name, r) => (r ? `| ${name} | ${r.width}x${r.height} | ${r.steps} | ${sec(r.timings.textMs)} | ${sec(r.timings.denoiseMs)} | ${sec(r.timings.decodeMs)} |` : `| ${name} | not run | | | | |`);
// One step apart from start-up: the 20-step and 1-step runs differ by 19 steps.
const perStep = g.device && g['device-1'] ? (g.device.timings.denoiseMs - g['device-1'].timings.denoiseMs) / (g.device.steps - 1) : undefined;
const md = ['# GPU benchmark', '',
  ...benches.map((d) => fs.readFileSync(path.join(runs, d, 'speed.md'), 'utf8').replace(/^# Speed:/, `## ${d}:`).replace(/!\[.*\n?/g, '')),
  '## Whole generation (ToDo auto, euler, default precision)', '',
  'Each run is a fresh process: denoise time includes the U-Net session creation and shader compilation.', '',
  '| loop | size | steps | text s | denoise s | decode s |', '| --- | --- | --- | --- | --- | --- |',
  row('on the device, 1 step', g['device-1']), row('on the device', g.device), row('in JavaScript', g.js), '',
  perStep === undefined ? '' : `Per step on the device, start-up excluded: **${sec(perStep)} s**; start-up (sessions, shaders) about ${sec(g['device-1'].timings.denoiseMs - perStep)} s.`,
  g.js && g.device ? `The JavaScript loop took ${sec(g.js.timings.denoiseMs - g.device.timings.denoiseMs)} s more over ${g.js.steps} steps (its round trips, and start-up noise).` : '', ''].join('\n');
fs.writeFileSync(path.join(out, 'gpu-bench.md'), md);
JS
}

# Each call bounded by --max-seconds: stopped early, it keeps what it measured.
bench() { # name precision sizes methods attention-tokens
  log "bench speed $1 ($(($(date +%s) - start)) s so far)"
  "${TODO_SD[@]}" bench speed --model "$WORK/model" --provider "$PROVIDER" --precision "$2" --batch 2 \
    --sizes "$3" --methods "$4" --runs 3 --warmup 1 --attention "$5" --matmul 0 \
    --max-seconds "$BUDGET" --out "$RUNS/$1" > /dev/null || log "bench $1 failed (exit $?)"
  summarize
}
generate() { # name device-loop steps
  log "generate $GEN² $3 steps, device loop $2 ($(($(date +%s) - start)) s so far)"
  "${TODO_SD[@]}" generate --model "$WORK/model" -p 'a lighthouse on a cliff at dusk' -W "$GEN" -H "$GEN" \
    --steps "$3" --sampler euler --seed 1 --todo auto --provider "$PROVIDER" --device-loop "$2" --json \
    -o "$RUNS/generate-$1.png" > "$RUNS/generate-$1.json" || log "generate $1 failed (exit $?)"
  summarize
}

for p in fp32 fp16; do
  bench "small-$p" "$p" "$SMALL" dense,todo-2@mha,todo-2@chunked "$ATTN"
  bench "large-$p" "$p" "$LARGE" dense,todo-auto@mha,todo-auto@chunked ''
done
generate device-1 on 1
generate device on "$STEPS"
generate js off "$STEPS"
cp "$RUNS/generate-device.png" "$OUT_DIR/" 2> /dev/null || true
log "done in $(($(date +%s) - start)) s"
