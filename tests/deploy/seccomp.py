"""deploy/seccomp.json: the container engines' default syscall filter (containers-common's, the
one podman applies; Docker reads the same format) with what bubblewrap calls to build a sandbox
allowed without CAP_SYS_ADMIN, which the container never has.

    python -m tests.deploy.seccomp > deploy/seccomp.json    # made again from this host's default
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT = Path("/usr/share/containers/seccomp.json")
# bubblewrap: new namespaces (clone, unshare), the sandbox's file system (mount, umount2,
# pivot_root) and its host name (sethostname, in its own UTS namespace). Docker's default
# allows these to CAP_SYS_ADMIN only; containers-common's all but sethostname.
BUBBLEWRAP_CALLS = ("clone", "clone3", "mount", "pivot_root", "sethostname", "umount2", "unshare")


def gated(rule: dict[str, Any]) -> bool:
    """A rule that applies only with or without some capability, or to some arguments."""
    return bool(
        (rule.get("includes") or {}).get("caps")
        or (rule.get("excludes") or {}).get("caps")
        or rule.get("args")
    )


def profile(default: dict[str, Any]) -> dict[str, Any]:
    """C{default} with L{BUBBLEWRAP_CALLS} allowed whatever the capabilities and arguments."""
    result = copy.deepcopy(default)
    rules = []
    for rule in result["syscalls"]:
        if gated(rule):
            rule["names"] = [n for n in rule["names"] if n not in BUBBLEWRAP_CALLS]
            if not rule["names"]:
                continue
        rules.append(rule)
    allow = next(r for r in rules if r["action"] == "SCMP_ACT_ALLOW" and not gated(r))
    allow["names"] = sorted(set(allow["names"]) | set(BUBBLEWRAP_CALLS))
    result["syscalls"] = rules
    return result


if __name__ == "__main__":
    json.dump(profile(json.loads(DEFAULT.read_text())), sys.stdout, indent=2)
    sys.stdout.write("\n")
