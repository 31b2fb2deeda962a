"""twistd plugin: `twistd jupybot`. Only the maker lives here; the package loads on use."""

from twisted.application.service import ServiceMaker

jupybot = ServiceMaker(
    "jupybot",
    "jupybot.tap",
    "Browser terminals, Jupyter kernels, Matrix and Discord bots on one asyncio reactor.",
    "jupybot",
)
