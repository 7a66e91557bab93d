"""vlserve: a self-hosted service for the Qwen3-VL vision-language models.

``import vlserve`` stays light: torch and the heavy optional dependencies are imported only by
the modules that need them (the embedded engine, 3D compilation).
"""

from vlserve.errors import VlserveError

__version__ = "0.1.0"
__all__ = ["VlserveError", "__version__"]
