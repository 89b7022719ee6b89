"""Builds acb's C++ pieces with CMake and puts them into the package.

CMake is the one source of truth for the C++ build; this file only drives it
(configure, build, copy the outputs), the way vLLM and pytorch/ao do. Build
with `pip install --no-build-isolation .` so that the extension is compiled
against the torch that is installed, never one fetched into an isolated
environment.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def torch_cmake_args():
    """CMake arguments that point at the installed torch, or [] without torch.

    cmake/acb_torch.cmake takes torch's headers and libraries from the torch
    that this Python imports (CPU or CUDA build alike)."""
    try:
        import torch  # noqa: F401  (only to locate its CMake config)
        import torch.utils
    except ImportError:
        print("acb: torch is not installed; building without the acb._C extension", file=sys.stderr)
        return []
    return [
        "-DACB_BUILD_TORCH=ON",
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
        f"-DACB_TORCH_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
    ]


class CMakeBuild(build_ext):
    def run(self):
        build_dir = Path(os.environ.get("ACB_CMAKE_BUILD_DIR", ROOT / "build" / "py"))
        build_dir.mkdir(parents=True, exist_ok=True)
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('ACB_BUILD_TYPE', 'Release')}",
            f"-DPython3_EXECUTABLE={sys.executable}",
            "-DACB_BUILD_TESTS=OFF", "-DACB_BUILD_BENCHMARKS=ON",
            *torch_cmake_args(),
        ]
        subprocess.check_call(configure)
        jobs = os.environ.get("ACB_BUILD_JOBS", str(os.cpu_count() or 2))
        subprocess.check_call(["cmake", "--build", str(build_dir), "-j", jobs])

        package_dir = Path(self.build_lib) / "acb"
        (package_dir / "bin").mkdir(parents=True, exist_ok=True)
        (package_dir / "lib").mkdir(parents=True, exist_ok=True)
        for module in build_dir.glob("**/_C*.so"):
            shutil.copy2(module, package_dir / module.name)
        for lib in build_dir.glob("**/libacb_alloc.so"):
            shutil.copy2(lib, package_dir / "lib" / lib.name)
        # The options table is shared with C++; Python reads it at run time.
        shutil.copy2(ROOT / "csrc" / "common" / "options.json", package_dir / "options.json")
        broker = next(build_dir.glob("**/acb-broker"), None)
        if broker is None:
            raise RuntimeError(f"acb: the build did not produce acb-broker under {build_dir}")
        shutil.copy2(broker, package_dir / "bin" / "acb-broker")
        # A .pth file at the wheel's root lands in site-packages: it runs acb's
        # auto-activation check at interpreter start (it imports nothing unless
        # ACB_ENABLE=1 or ACB_BROKER is set).
        pth = ROOT / "python" / "acb-autoactivate.pth"
        if pth.exists():
            shutil.copy2(pth, Path(self.build_lib) / pth.name)


setup(
    ext_modules=[Extension("acb._C", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
)
