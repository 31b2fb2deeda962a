"""jupybot: browser terminals, Jupyter kernels and chat bots on one Twisted asyncio reactor."""

__version__ = "0.1.0"

__all__ = ["__version__"]
