from sb3_loop.loop.loop import LOOP
from sb3_loop.loop.policies import LOOPPolicy, MlpPolicy

__all__ = ["LOOP", "LOOPPolicy", "MlpPolicy"]
