#!/usr/bin/env bash
# Runs every fuzz target of a `fuzz` preset build for SECONDS each:
#   run_fuzz.sh BUILD_DIR SECONDS [TARGET...]
# Each target gets generated seeds (make_seeds.sh) plus its growing corpus
# in BUILD_DIR/fuzz/corpus/<target>, its dictionary, and libFuzzer's bounds:
# -rss_limit_mb=2048, -malloc_limit_mb (no single allocation a small input
# cannot justify), -timeout per input. A crash, leak, sanitizer report,
# timeout or OOM leaves its input in BUILD_DIR/fuzz/artifacts/<target>/ and
# fails the run; minimise it (-minimize_crash=1) and add it to
# tests/fuzz/regressions/<target>/ with the fix (docs/reliability.md).
set -uo pipefail
build=$(cd "$1" && pwd)
seconds=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
all=(vmdk_descriptor vmdk_sparse_header vdi_header qcow2_header vhd_header crypt_keystore probe config_file batch_file vmdk_image vdi_image qcow2_image vhd_image disk volumes)
targets=("${all[@]}")
[ $# -gt 0 ] && targets=("$@")
fz=$build/fuzz
seeds=$fz/seeds
if [ ! -d "$seeds" ]; then
  vdkit=""
  for c in "$src/../../build/bin/vdkit" "$build/bin/vdkit"; do [ -x "$c" ] && vdkit=$c && break; done
  bash "$src/make_seeds.sh" "$seeds" "$vdkit" || { echo "fuzz: cannot make seeds" >&2; exit 1; }
fi
dict_of() {
  case $1 in
    vmdk_*) echo vmdk ;; vdi_*) echo vdi ;; qcow2_*) echo qcow2 ;; vhd_*) echo vhd ;; probe|disk) echo probe ;; volumes) echo volumes ;; config_file|batch_file) echo yaml ;; crypt_keystore) echo keystore ;;
  esac
}
maxlen_of() {
  case $1 in
    vmdk_sparse_header|vdi_header|crypt_keystore|vhd_header) echo 4096 ;; qcow2_header) echo 65536 ;; vmdk_descriptor|config_file|batch_file) echo 16384 ;;
    *) echo 524288 ;;
  esac
}
failed=()
summary=$fz/summary.txt
: > "$summary"
for t in "${targets[@]}"; do
  exe=$fz/fuzz_$t
  [ -x "$exe" ] || { echo "fuzz: no target $exe (build the fuzz preset)" >&2; failed+=("$t"); continue; }
  mkdir -p "$fz/corpus/$t" "$fz/artifacts/$t" "$seeds/$t"
  dict=$src/dict/$(dict_of "$t").dict
  [ -s "$dict" ] || { echo "fuzz: no dictionary for $t ($dict; dict_of in $0)" >&2; failed+=("$t"); continue; }
  log=$fz/$t.log
  echo "fuzz: $t for ${seconds}s"
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0} \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$exe" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
      -max_len="$(maxlen_of "$t")" -dict="$dict" -print_final_stats=1 \
      -artifact_prefix="$fz/artifacts/$t/" "$fz/corpus/$t" "$seeds/$t" > "$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "$t seconds=$seconds execs=${execs:-?} ${cov:-} rc=$rc" | tee -a "$summary"
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written' "$log" | head -8 >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (logs in $fz/*.log, inputs in $fz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: all ${#targets[@]} target(s) ran ${seconds}s without a finding"
