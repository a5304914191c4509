"""Play the learned world: `World` (reset/step), the key map, a Gymnasium env ("genie/World-v0")."""

from genie.world.env import WorldEnv, register
from genie.world.world import World, WorldModels

register()

__all__ = ["World", "WorldEnv", "WorldModels"]
