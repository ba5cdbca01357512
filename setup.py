"""Build the Cython merge kernel, or nothing when TWITTERCORE_NO_EXTENSIONS is set.

With the switch set, the package installs pure Python and imports the twin
(``twittercore._merge_py``); without it a compiler failure fails the build
rather than quietly shipping the slow path.
"""

import os

from setuptools import Extension, setup

NO_EXTENSIONS = os.environ.get("TWITTERCORE_NO_EXTENSIONS", "") not in ("", "0")

ext_modules = []
if not NO_EXTENSIONS:
    from Cython.Build import cythonize

    ext_modules = cythonize(
        [
            Extension(f"twittercore.{name}", [f"src/twittercore/{name.replace('.', '/')}.pyx"], extra_compile_args=["-O3"])
            for name in ("_merge", "_codec", "backends.lmdb._txn")
        ],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )

setup(ext_modules=ext_modules)
