"""Shared fixtures of the vdkit Python binding tests.

Run by ctest against the build tree (PYTHONPATH=<build>/python); tools
nobody here wrote (qemu-img, qemu-io) are oracles: a missing one skips the
test locally and fails it under CI=true, as tests/support/script_lib.sh does.
"""
import json
import os
import random
import shutil
import subprocess

import pytest

import vdkit


def require_tools(*names):
    for name in names:
        if shutil.which(name) is None:
            message = "%s is not installed (scripts/install-deps.sh installs it)" % name
            if os.environ.get("CI") == "true":
                pytest.fail(message + "; CI=true: every test must run")
            pytest.skip(message)


def tool_env():
    """The environment for outside tools: without the sanitizer runtime the
    ASan build preloads into this interpreter (qemu-img hangs with it)."""
    return {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def run(*argv, check=True):
    """Run a command; its stdout (text). A failure shows the command's stderr."""
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=tool_env(), timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError("%s exited %d: %s" % (" ".join(map(str, argv)), proc.returncode, proc.stderr))
    return proc


def qemu_json(*argv):
    return json.loads(run("qemu-img", *argv, "--output=json").stdout)


@pytest.fixture(scope="session")
def seed():
    value = int(os.environ.get("VDKIT_TEST_SEED") or random.SystemRandom().randrange(1 << 32))
    print("random data seed: VDKIT_TEST_SEED=%d" % value)
    return value


@pytest.fixture
def rng(seed, request):
    # One stream per test (seed and test name), so a single test replays alone.
    return random.Random("%d:%s" % (seed, request.node.nodeid))


@pytest.fixture(scope="session")
def lib():
    # Plugins come from the build tree, next to libvdkit (search_install_dir).
    return vdkit.Library(search_environment=False)


# Formats vdkit writes that qemu-img reads.
WRITABLE_FORMATS = ["raw", "vdi", "vmdk"]


def pytest_sessionfinish(session, exitstatus):
    # A file whose every test was skipped exits 77, which ctest shows as
    # skipped (SKIP_RETURN_CODE), not as passed.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if exitstatus == 0 and reporter is not None:
        if reporter.stats.get("skipped") and not reporter.stats.get("passed"):
            session.exitstatus = 77
