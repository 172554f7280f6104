import os

import sb3_loop.envs  # noqa: F401  (registers the safety env ids with Gymnasium)
from sb3_loop.lookahead import LookaheadPolicy, lookahead
from sb3_loop.loop import LOOP
from sb3_loop.offline import CRR, TD3BC, OfflineLOOP
from sb3_loop.safe import SACLagrangian, SafeLOOP

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = [
    "CRR",
    "LOOP",
    "TD3BC",
    "LookaheadPolicy",
    "OfflineLOOP",
    "SACLagrangian",
    "SafeLOOP",
    "__version__",
    "lookahead",
]
