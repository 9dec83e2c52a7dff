"""The edgemeter agent: runs inference, samples power and system state, publishes results.

Importing this package imports no inference runtime, power library or database driver: backends
and power sources are found through registries and import their libraries on first use.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgemeter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+source"

__all__ = ["__version__"]
