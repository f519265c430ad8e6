"""Packaging: one version everywhere; the C++ SDK that `cmake --install <build> --component sdk`
writes (headers, libquanto + libquanto_api, the CMake package, bin/quanto), used by an application
outside the tree (tests/cmake_consumer: find_package(quanto) + quanto::api); and the CLI run from
its installed locations (the SDK's bin/, and the layout of a pip install: <env>/bin next to
site-packages/quanto/_native).

Works on the `make build` tree (build/, or $QUANTO_BUILD_DIR), in build/packaging-test/ (a fixed
folder, so that ccache serves the consumer's compilation again on the next run).
"""

import importlib.metadata
import os
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch.utils

import quanto

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("QUANTO_BUILD_DIR", ROOT / "build")).resolve()
WORK = BUILD / "packaging-test"
PREFIX = WORK / "prefix"

if not (BUILD / "CMakeCache.txt").is_file():
    pytest.skip(f"no CMake build in {BUILD} (run `make build`)", allow_module_level=True)


def _cache(name):
    m = re.search(rf"^{name}:[A-Z]+=(.*)$", (BUILD / "CMakeCache.txt").read_text(), re.MULTILINE)
    return m.group(1) if m else None


CMAKE = _cache("CMAKE_COMMAND") or shutil.which("cmake")


def _env():
    env = dict(os.environ)
    env.pop("LD_LIBRARY_PATH", None)  # what is found must come from the binaries' own RUNPATH
    return env


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=_env(), **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def _resolved(binary):
    """soname -> path the dynamic loader picks for `binary` (ldd)."""
    out = _run(["ldd", binary]).stdout
    return {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\S+) => (\S+)", out, re.MULTILINE)}


def _runpath(binary):
    out = _run(["readelf", "-d", binary]).stdout
    m = re.search(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out)
    return m.group(1).split(":") if m else []


def test_one_version():
    v = quanto.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", v)
    # pyproject.toml takes it from python/quanto/__init__.py, CMakeLists.txt too.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^dynamic = \["version"\]', pyproject, re.MULTILINE)
    assert 'input = "python/quanto/__init__.py"' in pyproject
    assert not re.search(r"^version\s*=", pyproject, re.MULTILINE)
    assert _cache("CMAKE_PROJECT_VERSION") == v
    assert importlib.metadata.version("quanto") == v  # the (editable) install's metadata
    r = _run([BUILD / "quanto", "--version"])
    assert r.stdout.strip() == f"quanto {v}"


@pytest.fixture(scope="module")
def sdk():
    shutil.rmtree(WORK, ignore_errors=True)
    _run([CMAKE, "--install", BUILD, "--prefix", PREFIX, "--component", "sdk"])
    return PREFIX


def _libdir(prefix):
    (config,) = prefix.glob("lib*/**/cmake/quanto/quantoConfig.cmake")
    return config.parents[2]


def test_sdk_layout(sdk):
    libdir = _libdir(sdk)
    for name in ("quantoConfig.cmake", "quantoConfigVersion.cmake", "quantoTargets.cmake"):
        assert (libdir / "cmake" / "quanto" / name).is_file(), name
    assert (libdir / "libquanto.so").is_file() and (libdir / "libquanto_api.so").is_file()
    headers = {p.name for p in (sdk / "include" / "quanto").iterdir()}
    assert {"quanto.h", "ops.h", "nn.h", "quantize.h", "serialization.h", "tensor.h", "weights.h", "qtype.h"} <= headers
    # Only the SDK: nothing of the wheel's component (quanto/_native) under the prefix.
    assert not list(sdk.rglob("_native"))
    version_file = (libdir / "cmake" / "quanto" / "quantoConfigVersion.cmake").read_text()
    assert f'set(PACKAGE_VERSION "{quanto.__version__}")' in version_file


def test_installed_cli(sdk):
    cli = sdk / "bin" / "quanto"
    # Not the build tree's library: the one installed next to it (../lib).
    assert Path(_resolved(cli)["libquanto.so"]).resolve() == (_libdir(sdk) / "libquanto.so").resolve()
    assert not any(str(BUILD) in p for p in _runpath(cli))
    r = _run([cli, "--version"])
    assert r.stdout.strip() == f"quanto {quanto.__version__}"
    r = subprocess.run([cli, "inspect", "--help"], capture_output=True, text=True, env=_env())
    assert r.returncode == 0 and "inspect" in r.stdout


def test_cli_in_pip_layout(sdk, tmp_path):
    """The wheel puts the CLI in <env>/bin and libquanto in <site-packages>/quanto/_native: the
    same binary, copied into that layout (this Python's), finds the library there."""
    cli = sdk / "bin" / "quanto"
    if not any("quanto/_native" in p for p in _runpath(cli)):
        pytest.skip("not a pip (scikit-build-core) build: no wheel layout in the CLI's RUNPATH")
    scripts, platlib = Path(sysconfig.get_path("scripts")), Path(sysconfig.get_path("platlib"))
    env = tmp_path / "env"
    native = Path(os.path.normpath(env / "bin" / os.path.relpath(platlib, scripts) / "quanto" / "_native"))
    native.mkdir(parents=True)
    (env / "bin").mkdir()
    shutil.copy2(cli, env / "bin" / "quanto")
    shutil.copy2(_libdir(sdk) / "libquanto.so", native / "libquanto.so")
    assert Path(_resolved(env / "bin" / "quanto")["libquanto.so"]).resolve() == (native / "libquanto.so").resolve()
    r = _run([env / "bin" / "quanto", "--version"])
    assert r.stdout.strip() == f"quanto {quanto.__version__}"


def test_cmake_consumer(sdk):
    """An application outside the tree: find_package(quanto) + quanto::api, the ops and a QLinear
    quantized, frozen and run."""
    build = WORK / "consumer"
    cmd = [CMAKE, "-S", ROOT / "tests" / "cmake_consumer", "-B", build, "-DCMAKE_BUILD_TYPE=Release",
           f"-DCMAKE_PREFIX_PATH={sdk};{torch.utils.cmake_prefix_path}"]
    if shutil.which("ninja"):
        cmd += ["-G", "Ninja"]
    if shutil.which("ccache"):
        cmd += ["-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"]
    r = _run(cmd)
    assert f"quanto {quanto.__version__} from {_libdir(sdk) / 'cmake' / 'quanto'}" in r.stdout
    _run([CMAKE, "--build", build, "-j", str(os.cpu_count() or 2)])
    app = build / "quanto_consumer"
    libs = _resolved(app)
    for lib in ("libquanto.so", "libquanto_api.so"):
        assert Path(libs[lib]).resolve() == (_libdir(sdk) / lib).resolve(), (lib, libs[lib])
    out = _run([app]).stdout
    assert f"package version {quanto.__version__}" in out
    assert "FAILED" not in out and out.rstrip().endswith("quanto consumer: OK"), out


def test_find_package_version_check(sdk, tmp_path):
    """quantoConfigVersion.cmake: a request for another major version is refused."""
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.25)\nproject(v LANGUAGES NONE)\nfind_package(quanto 99 REQUIRED)\n")
    r = subprocess.run([CMAKE, "-S", tmp_path, "-B", tmp_path / "b", f"-DCMAKE_PREFIX_PATH={sdk}"],
                       capture_output=True, text=True, env=_env())
    assert r.returncode != 0, r.stdout
    assert f"quantoConfig.cmake, version: {quanto.__version__}" in r.stderr, r.stderr
