#!/usr/bin/env bash
# Installs the Debian packages vdkit needs to build and test, if missing.
# Run as root (or with sudo available); otherwise prints what to install.
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ pkg-config make binutils python3
  # libraries (docs/dependencies.md says why each)
  libboost-dev libboost-filesystem-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  zlib1g-dev libdeflate-dev libzstd-dev libssl-dev libfuse3-dev libnbd-dev libcurl4-openssl-dev
  # vdkit fuse: fusermount3 (unmount) and the FUSE kernel helper
  fuse3
  # vdkit volumes: libblkid identifies filesystems (docs/dependencies.md)
  libblkid-dev
  # vdkit mount without root (or without a kernel driver): FUSE drivers for ext2/3/4, NTFS, FAT, exFAT
  fuse2fs ntfs-3g fusefat exfat-fuse
  # tests/cli/volumes_test.sh: partition tables, filesystems and LVM made by the test
  fdisk gdisk xfsprogs dosfstools btrfs-progs exfatprogs lvm2 mtools
  # tests
  catch2 qemu-utils nbdkit libnbd-bin libvmdk-utils python3-cryptography python3-yaml
  # plugins/serve/nbdkit: the nbdkit plugin serving any disk vdkit opens
  nbdkit-plugin-dev
  # convert_target_test.sh kills a convert between two renames (strace -e inject);
  # tests/hostile records every file a hostile image makes vdkit open
  strace
  # bindings/python: built with pybind11 against Debian's python3, tested with pytest
  python3-dev pybind11-dev python3-pytest
  # tests/fuzz (make fuzz, make fuzz-ci): clang, libFuzzer and
  # clang's sanitizer runtimes
  clang libclang-rt-dev
  # make test-tsan: the ThreadSanitizer runtime of Debian 12's g++ (-fsanitize=thread)
  libtsan2
  # plugins/transports/http/tests: nginx serves images with range requests (run
  # unprivileged by the test, with its own configuration under the test's directory)
  nginx
  # plugins/transports/http/tests/s3_test.sh uploads objects with curl's own SigV4 signing;
  # http_test.sh makes a self-signed certificate for nginx's https server with openssl
  curl openssl
  # compat/vixdisklib/tests: a Ruby client binds libvixDiskLib with ruby-ffi, as the
  # ffi-vix_disk_lib gem does
  ruby ruby-ffi
  # bench/ (GNU time measures peak memory)
  time
  # make docs and its ctest: the API reference, failing on undocumented public functions
  doxygen
  # tests/cli/install_test.sh renders the installed man pages (man -l) and checks the zsh
  # completion parses (zsh -n)
  man-db zsh
  # make format / scripts/format-check.sh: .clang-format applied and checked (the
  # `clang` package does not bring clang-format)
  clang-format
)

# plugins/transports/http/tests/s3_test.sh: s3rver, a local S3-compatible
# server (Debian packages none), installed with npm into build/test-tools/ of
# this checkout, never globally. Without npm the S3 test skips (fails in CI).
install_s3rver() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/build/test-tools"
  [ -x "$dir/node_modules/.bin/s3rver" ] && return 0
  if ! command -v npm > /dev/null; then
    echo "vdkit: npm not found; the s3 transport test will skip (install nodejs/npm, rerun this script)" >&2
    return 0
  fi
  mkdir -p "$dir"
  echo "vdkit: installing s3rver@3.7.1 into $dir"
  npm install --prefix "$dir" --no-audit --no-fund --silent s3rver@3.7.1 ||
    echo "vdkit: npm could not install s3rver; the s3 transport test will skip" >&2
}
install_s3rver

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "vdkit: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  apt_get=(apt-get)
elif command -v sudo > /dev/null && sudo -n true 2>/dev/null; then
  apt_get=(sudo apt-get)
else
  echo "vdkit: run as root, or install them yourself: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt_get[@]}" update -qq
"${apt_get[@]}" install -y -qq --no-install-recommends "${missing[@]}"
