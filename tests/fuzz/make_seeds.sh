#!/usr/bin/env bash
# Seed corpora for the fuzz targets, generated from valid images (nothing
# large is committed): make_seeds.sh OUTDIR [VDKIT_CLI]
#   OUTDIR/<target>/ gets a few small inputs per target. Image seeds are
#   made with qemu-img/qemu-io (VMDK monolithicSparse, streamOptimized,
#   twoGbMaxExtentSparse, monolithicFlat; VDI dynamic and fixed), with
#   plugins/formats/vmdk/tests/make_esx_extents.py (COWD, seSparse) and,
#   when a vdkit CLI is given, vdkit (a VDI differencing image with its
#   parent). Multi-file images are packed as fuzz_support.hpp describes.
set -euo pipefail
out=$(mkdir -p "$1" && cd "$1" && pwd)
vdkit=${2:-}
src=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for t in vmdk_descriptor vmdk_sparse_header vdi_header qcow2_header vhd_header probe config_file batch_file vmdk_image vdi_image qcow2_image vhd_image disk crypt_keystore volumes; do
  mkdir -p "$out/$t"
done

# pack OUT MAIN [NAME...]: MAIN's bytes, then each NAME as a separate file.
pack() {
  python3 - "$@" <<'PY'
import os, sys
out, main, rest = sys.argv[1], sys.argv[2], sys.argv[3:]
data = open(main, "rb").read()
for p in rest:
    data += b"\n@@vdkit-fuzz-file " + os.path.basename(p).encode() + b"\n" + open(p, "rb").read()
open(out, "wb").write(data)
PY
}
# seed TARGETS... -- FILE: copy FILE into each target's seed directory.
seed() {
  local f=${!#} name
  name=$(basename "$f")
  for t in "${@:1:$#-1}"; do cp "$f" "$out/$t/$name"; done
}
write_data() { # a few patterns, a zero range, in a 1 MiB image
  qemu-io -f "$1" -c 'write -P 0x5a 0 4k' -c 'write -P 0xa5 300k 8k' -c 'write -z 640k 64k' "$2" > /dev/null
}

cd "$tmp"
if command -v qemu-img > /dev/null; then
  truncate -s 1M r.raw && write_data raw r.raw
  for sub in monolithicSparse streamOptimized; do
    qemu-img convert -q -f raw -O vmdk -o subformat=$sub r.raw w-$sub.vmdk
    seed vmdk_image disk probe w-$sub.vmdk
    head -c 512 w-$sub.vmdk > hdr-$sub; seed vmdk_sparse_header hdr-$sub
  done
  # The stream's footer recovery: the same image cut before its footer.
  sz=$(stat -c %s w-streamOptimized.vmdk); head -c $((sz - 1024)) w-streamOptimized.vmdk > w-stream-cut.vmdk
  seed vmdk_image disk w-stream-cut.vmdk
  # Descriptor + extents (qemu names extents after the descriptor).
  mkdir split && (cd split && qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse image.vmdk 1M &&
    write_data vmdk image.vmdk && qemu-img create -q -f vmdk -o subformat=monolithicFlat flat.vmdk 64k)
  pack w-split.vmdk split/image.vmdk split/image-s001.vmdk
  seed vmdk_image disk w-split.vmdk
  cp split/image.vmdk d-split.txt; cp split/flat.vmdk d-flat.txt
  seed vmdk_descriptor probe d-split.txt; seed vmdk_descriptor d-flat.txt
  (cd split && pack ../w-flat.vmdk flat.vmdk flat-flat.vmdk)
  seed vmdk_image w-flat.vmdk
  # A monolithicSparse diff over a base: the child names the parent.
  mkdir chain && (cd chain && qemu-img create -q -f vmdk base.vmdk 1M && write_data vmdk base.vmdk &&
    qemu-img create -q -f vmdk -b base.vmdk -F vmdk image.vmdk && qemu-io -f vmdk -c 'write -P 7 64k 4k' image.vmdk > /dev/null)
  pack w-chain.vmdk chain/image.vmdk chain/base.vmdk
  seed vmdk_image w-chain.vmdk
  # The embedded descriptor of a sparse extent.
  dd if=w-monolithicSparse.vmdk bs=512 skip=1 count=20 status=none | tr -d '\000' > d-embedded.txt
  seed vmdk_descriptor d-embedded.txt

  # qemu's VDI blocks are 1 MiB: an empty one here (vdkit below makes small
  # blocks with data).
  qemu-img create -q -f vdi w-dynamic.vdi 4M
  seed vdi_image disk probe w-dynamic.vdi
  head -c 512 w-dynamic.vdi > hdr-vdi; seed vdi_header hdr-vdi
  # qcow2 (plugins/formats/qcow2): versions 2 and 3, small and extended-L2
  # clusters, zlib and zstd compression, a chain (the child names its base).
  for v in "compat=0.10,cluster_size=512" "compat=1.1,cluster_size=4k" "extended_l2=on,cluster_size=16k"; do
    n=q-$(echo "$v" | tr -c 'a-z0-9' '_').qcow2
    qemu-img convert -q -f raw -O qcow2 -o "$v" r.raw "$n"
    seed qcow2_image disk probe "$n"; head -c 4096 "$n" > "hdr-$n"; seed qcow2_header "hdr-$n"
  done
  qemu-img convert -q -f raw -O qcow2 -c -o cluster_size=4k r.raw q-zlib.qcow2 && seed qcow2_image disk q-zlib.qcow2
  qemu-img convert -q -f raw -O qcow2 -c -o cluster_size=4k,compression_type=zstd r.raw q-zstd.qcow2 2> /dev/null &&
    seed qcow2_image disk q-zstd.qcow2
  mkdir qchain && (cd qchain && qemu-img create -q -f qcow2 -o cluster_size=4k base.qcow2 1M && write_data qcow2 base.qcow2 &&
    qemu-img create -q -f qcow2 -o cluster_size=4k -b base.qcow2 -F qcow2 image.qcow2 &&
    qemu-io -f qcow2 -c 'write -P 7 64k 4k' -c 'write -z 128k 4k' image.qcow2 > /dev/null)
  pack q-chain.qcow2 qchain/image.qcow2 qchain/base.qcow2
  seed qcow2_image q-chain.qcow2
  # VHD (plugins/formats/vhd): qemu's fixed and dynamic, exact and CHS sizes;
  # the header target gets the footer copy and dynamic header (1536 bytes).
  for v in "subformat=dynamic" "subformat=dynamic,force_size=on" "subformat=fixed"; do
    n=v-$(echo "$v" | tr -c 'a-z0-9' '_').vhd
    qemu-img convert -q -f raw -O vpc -o "$v" r.raw "$n"
    seed vhd_image disk probe "$n"
    case $v in *dynamic*) head -c 1536 "$n" > "hdr-$n"; seed vhd_header "hdr-$n" ;; esac
  done
  # Foreign containers the probe must refuse as raw.
  for f in qcow2 vpc vhdx qed parallels luks; do
    if qemu-img create -q -f $f c-$f 1M 2> /dev/null; then head -c 65536 c-$f > p-$f; seed probe p-$f; fi
  done
fi
if command -v python3 > /dev/null; then
  python3 "$src/tests/fuzz/make_qcow2_seed.py" q-built.qcow2
  seed qcow2_image disk probe q-built.qcow2; seed qcow2_header q-built.qcow2
  python3 "$src/plugins/formats/vmdk/tests/make_esx_extents.py" cowd w-cowd.vmdk 256 16 - /dev/null 1
  python3 "$src/plugins/formats/vmdk/tests/make_esx_extents.py" sesparse w-sesparse.vmdk 256 - /dev/null 1
  seed vmdk_image disk w-cowd.vmdk; seed vmdk_image disk w-sesparse.vmdk
fi
if [ -n "$vdkit" ] && [ -x "$vdkit" ] && [ -f r.raw ]; then
  # Small blocks and grains keep these seeds small (4 KiB VDI blocks, 8 KiB grains).
  "$vdkit" -q convert -f raw -O vdi -o block-size=4k,alignment=4k r.raw v-dynamic.vdi
  head -c 262144 r.raw > r256.raw
  "$vdkit" -q convert -f raw -O vdi -o block-size=4k,alignment=4k --preallocate r256.raw v-fixed.vdi
  "$vdkit" -q convert -f raw -O vmdk -o grain-size=8k r.raw v-sparse.vmdk
  "$vdkit" -q convert -f raw -O vmdk -o subformat=streamOptimized,grain-size=8k r.raw v-stream.vmdk
  mkdir vdichain && (cd vdichain && "$vdkit" create -f vdi -o block-size=4k,alignment=4k base.vdi 256k > /dev/null &&
    "$vdkit" create -f vdi -o block-size=4k,alignment=4k -b base.vdi image.vdi > /dev/null) &&
    pack v-diff.vdi vdichain/image.vdi vdichain/base.vdi
  seed vdi_image disk v-dynamic.vdi; seed vdi_image disk v-fixed.vdi; seed vdi_image disk v-diff.vdi
  seed vmdk_image disk v-sparse.vmdk; seed vmdk_image disk v-stream.vmdk
fi
cp "$src"/config/vdkit.yaml "$out/config_file/"
cp "$src"/config/examples/*.yaml "$out/batch_file/"
printf 'version: 1\nparallel: 2\njobs:\n  - name: a\n    source: in.vmdk\n    target: out.vdi\n    format: vdi\n' > "$out/batch_file/min.yaml"
# crypt_keystore: VirtualBox key stores (base64) from the crypt tests'
# independent Python implementation, one per cipher and key derivation.
if python3 -c 'import cryptography' 2> /dev/null; then
  printf 'seed password' > "$tmp/pw"
  for c in AES-XTS128-PLAIN64:PBKDF2-SHA256 AES-XTS256-PLAIN64:PBKDF2-SHA512 AES-XTS128-PLAIN64:PBKDF2-SHA1; do
    python3 "$src/plugins/filters/crypt/tests/vbox_keystore.py" make "$tmp/pw" "${c%%:*}" "${c#*:}" 20000 \
      "$out/crypt_keystore/${c//:/-}.b64"
  done
fi

# volumes: partition tables (sfdisk: MBR with a logical chain, GPT at 512 and
# 4096-byte sectors), cut to their first 64 KiB (the fuzz target reads the
# tail as zeros and claims the size from the last 8 bytes).
if command -v sfdisk > /dev/null; then
  truncate -s 8M "$tmp/vm.img"
  printf 'label: dos\nstart=2048, size=2048, type=83\nstart=4096, type=5\nstart=6144, size=1024, type=83\nstart=8192, type=7\n' |
    sfdisk -q "$tmp/vm.img" && head -c 65536 "$tmp/vm.img" > "$out/volumes/mbr-logical"
  truncate -s 8M "$tmp/vg.img"
  printf 'label: gpt\nsize=2048, type=linux\nsize=1024, type=swap, name=sw\n' | sfdisk -q "$tmp/vg.img" &&
    head -c 65536 "$tmp/vg.img" > "$out/volumes/gpt"
  truncate -s 8M "$tmp/v4.img"
  printf 'label: gpt\nsector-size: 4096\nsize=256, type=linux\n' | sfdisk -q --sector-size 4096 "$tmp/v4.img" 2> /dev/null &&
    head -c 65536 "$tmp/v4.img" > "$out/volumes/gpt-4k"
fi
cp "$src"/tests/fuzz/regressions/volumes/* "$out/volumes/" 2> /dev/null || true

echo "seeds: $(find "$out" -type f | wc -l) files in $out"
