"""`cmake --install` puts the package into the Python site directory of the
prefix, and the installed module finds the installed libvdkit and plugins."""
import os
import subprocess
import sys

import pytest

from conftest import run

SCRIPT = r"""
import os, sys, vdkit
print(vdkit.__file__)
print(vdkit._vdkit.__file__)
lib = vdkit.Library(search_environment=False)
print(",".join(sorted(lib.formats())))
with lib.create(sys.argv[1], "vdi", 1 << 20) as disk:
    disk.write(0, b"installed")
with lib.open(sys.argv[1]) as disk:
    assert disk.read(0, 9) == b"installed"
print(next(l.split()[-1] for l in open("/proc/self/maps") if "libvdkit.so" in l))
"""


def test_installed_package_works_from_the_prefix(tmp_path):
    build = os.environ.get("VDKIT_BUILD_DIR")
    site = os.environ.get("VDKIT_PYTHON_INSTALL_DIR")
    if not build or not site:
        pytest.skip("run by ctest (VDKIT_BUILD_DIR, VDKIT_PYTHON_INSTALL_DIR)")
    prefix = tmp_path / "prefix"
    run("cmake", "--install", build, "--prefix", prefix)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VDKIT_PLUGIN_PATH", "LD_LIBRARY_PATH")}
    env["PYTHONPATH"] = str(prefix / site)
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "a.vdi")], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    package, module, formats, libvdkit = out.stdout.split("\n")[:4]
    assert package == str(prefix / site / "vdkit" / "__init__.py")
    assert module.startswith(str(prefix / site / "vdkit" / "_vdkit"))
    assert {"raw", "vdi", "vmdk"} <= set(formats.split(","))
    assert os.path.realpath(libvdkit).startswith(str(prefix) + "/"), libvdkit
