#!/usr/bin/env bash
# Installs the Debian packages vdkit needs to build and test, if missing.
# Run as root (or with sudo available); otherwise prints what to install.
set -euo pipefail

packages=(
  # toolchain
  cmake ninja-build g++ pkg-config make binutils python3
  # libraries (docs/dependencies.md says why each)
  libboost-dev libboost-filesystem-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  zlib1g-dev libdeflate-dev libssl-dev libfuse3-dev libnbd-dev libcurl4-openssl-dev
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
  # bench/ (GNU time measures peak memory)
  time
  # make docs and its ctest: the API reference, failing on undocumented public functions
  doxygen
)

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
